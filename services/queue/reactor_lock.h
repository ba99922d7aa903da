// A lock for a reactor's state that finishes the call only after the mutex is released.
//
// A reactor may be deleted (OnDone) as soon as Finish() is called, possibly on another thread, so
// Finish must never run while the reactor's own mutex is held (the unlock would touch freed
// memory). Code under the lock asks for the finish by setting `*finish`; the destructor copies it,
// unlocks, and only then calls the reactor's Finish. Nothing may touch the reactor after that.
#ifndef SPINDLE_SERVICES_QUEUE_REACTOR_LOCK_H_
#define SPINDLE_SERVICES_QUEUE_REACTOR_LOCK_H_

#include <grpcpp/support/status.h>

#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

// `Reactor` is a gRPC server reactor (its Finish(grpc::Status) is called).
template <typename Reactor>
class ABSL_SCOPED_LOCKABLE ReactorLock {
 public:
  ReactorLock(Reactor* reactor, absl::Mutex* mu, std::optional<grpc::Status>* finish)
      ABSL_EXCLUSIVE_LOCK_FUNCTION(mu)
      : reactor_(reactor), mu_(mu), finish_(finish) {
    mu_->Lock();
  }
  ~ReactorLock() ABSL_UNLOCK_FUNCTION() {
    std::optional<grpc::Status> finish = std::move(*finish_);
    finish_->reset();
    mu_->Unlock();
    if (finish.has_value()) {
      reactor_->Finish(*finish);
    }
  }
  ReactorLock(const ReactorLock&) = delete;
  ReactorLock& operator=(const ReactorLock&) = delete;

 private:
  Reactor* const reactor_;
  absl::Mutex* const mu_;
  std::optional<grpc::Status>* const finish_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_REACTOR_LOCK_H_
