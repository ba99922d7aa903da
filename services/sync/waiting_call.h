// WaitingCall: the reactor of a unary call that may wait in the lock table (Acquire, WaitEvent,
// WaitBarrier, WaitCondition).
//
// The handler registers the wait with the engine and returns this reactor; the engine's
// continuation calls Complete() when the wait ends (granted, max_wait, the call's deadline, a
// session end). When the client cancels or its deadline passes first, OnCancel withdraws the
// waiter from the engine; if the engine had already decided (a grant on its way), Complete()
// runs the `abandon` action (e.g. releases the grant nobody will receive) instead of answering.
// No gRPC thread ever blocks on a wait.
//
// Thread-safety: Complete/Started may run on any thread, concurrently with OnCancel. Finish is
// called exactly once, never with mu_ held.
#ifndef SPINDLE_SERVICES_SYNC_WAITING_CALL_H_
#define SPINDLE_SERVICES_SYNC_WAITING_CALL_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/status_convert.h"
#include "spindle/sync/lock_table.h"

namespace spindle::services {

class WaitingCall final : public grpc::ServerUnaryReactor {
 public:
  WaitingCall(grpc::CallbackServerContext* context, sync::LockTable& table)
      : context_(context), table_(table) {}

  // Answers at once (validation errors).
  void FinishNow(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;
      }
      finished_ = true;
    }
    Finish(status);
  }

  // The engine's continuation. `fill` writes the response (only while the call is live);
  // `abandon` undoes what the outcome handed out when the client has already left.
  void Complete(const absl::Status& status, const std::function<void()>& fill,
                const std::function<void()>& abandon) {
    bool gone;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        gone = true;
      } else {
        gone = cancelled_;
        finished_ = true;
        if (!gone && status.ok() && fill) {
          fill();
        }
      }
    }
    if (gone) {
      if (status.ok() && abandon) {
        abandon();
      }
      Finish(CancelledStatus());
      return;
    }
    Finish(ToGrpcStatus(status));
  }

  // Hands the reactor the engine's wait handle (empty when the answer was immediate).
  void Started(sync::WaitHandle handle) {
    bool cancel_now = false;
    {
      absl::MutexLock lock(&mu_);
      handle_ = handle;
      started_ = true;
      cancel_now = cancelled_ && !finished_;
    }
    if (cancel_now) {
      Withdraw();
    }
  }

  void OnCancel() override {
    bool withdraw = false;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;
      }
      cancelled_ = true;
      withdraw = started_;
    }
    if (withdraw) {
      Withdraw();
    }
  }

  void OnDone() override { delete this; }
  // Every reaction here is short and the table never calls back with a lock held, so gRPC may run
  // them inline as it does for its default reactor instead of handing each call's OnDone to an
  // executor thread (a thread hop per call).
  bool InternalInlineable() override { return true; }

 private:
  grpc::Status CancelledStatus() const {
    if (context_->deadline() <= std::chrono::system_clock::now()) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed while waiting");
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
  }

  void Withdraw() {
    sync::WaitHandle handle;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
    }
    if (!table_.Cancel(handle)) {
      return;  // decided: Complete() answers (and abandons)
    }
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;
      }
      finished_ = true;
    }
    Finish(CancelledStatus());
  }

  grpc::CallbackServerContext* const context_;
  sync::LockTable& table_;
  absl::Mutex mu_;
  sync::WaitHandle handle_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_WAITING_CALL_H_
