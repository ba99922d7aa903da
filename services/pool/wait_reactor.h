// A unary reactor for PoolService calls that wait in the engine (JoinPool, WaitTask, SubmitTask
// with wait, CancelTask/TerminatePool with wait). No gRPC thread waits: the engine calls back.
//
// Exactly one of the engine's callback (Complete) and a successful CancelWait in OnCancel
// finishes the call; a client cancel or deadline removes the waiter from the engine.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_POOL_WAIT_REACTOR_H_
#define SPINDLE_SERVICES_POOL_WAIT_REACTOR_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>

#include "absl/synchronization/mutex.h"
#include "spindle/pool/pool_table.h"

namespace spindle::services {

class PoolWaitReactor final : public grpc::ServerUnaryReactor {
 public:
  PoolWaitReactor(grpc::CallbackServerContext* context, pool::PoolTable& table)
      : context_(context), table_(table) {}

  // Records the engine's waiter id (0: the callback already ran or will not be needed).
  void SetWaiter(pool::PoolTable::WaiterId id) {
    bool cancel;
    {
      absl::MutexLock lock(&mu_);
      id_ = id;
      cancel = cancelled_ && id != 0;
    }
    if (cancel && table_.CancelWait(id)) FinishCancelled();
  }

  // Called by the engine callback.
  void Complete(const grpc::Status& status) { Finish(status); }

  void OnCancel() override {
    pool::PoolTable::WaiterId id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = id_;
    }
    if (id != 0 && table_.CancelWait(id)) FinishCancelled();
  }

  void OnDone() override { delete this; }
  // Every reaction here is short and the pool table calls back only after it has released its
  // locks, so gRPC may run them inline as it does for its default reactor instead of handing each
  // call's OnDone to an executor thread (a thread hop per call).
  bool InternalInlineable() override { return true; }

 private:
  void FinishCancelled() {
    if (context_->deadline() <= std::chrono::system_clock::now()) {
      Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded while waiting"));
    } else {
      Finish(grpc::Status::CANCELLED);
    }
  }

  grpc::CallbackServerContext* const context_;
  pool::PoolTable& table_;
  absl::Mutex mu_;
  pool::PoolTable::WaiterId id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_WAIT_REACTOR_H_
