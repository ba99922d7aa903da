// The state every cancellable wait operation carries: its token, the completion handshake and its
// cancellation callback node. The engine's awaitables (AsyncMutex::Lock, Channel::Receive,
// Executor::SleepFor, ...) derive from it; see waiter.h for the protocol.
//
// Size matters: one of these sits in every suspended waiter's frame (80 bytes). The operation is
// itself the cancellation callback node (no allocation, no std::function), and the same status
// field carries the outcome whether the wait suspended or not. Nothing in it needs more than
// 8-byte alignment.
//
// Thread-safety: one operation belongs to one suspended coroutine; the completion handshake makes
// Complete() from another thread safe.
#ifndef SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_
#define SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_

#include <coroutine>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro::internal {

class WaitOperation : private CancellationCallback {
 protected:
  explicit WaitOperation(CancellationToken token) noexcept
      : CancellationCallback(nullptr), token_(std::move(token)) {}
  ~WaitOperation() { Deregister(); }

  // For await_ready: ends the wait at once when the token is already cancelled.
  bool EndIfCancelled(absl::string_view what) {
    if (token_.IsCancelled()) {
      EndInline(AbandonedWait(token_, what));
      return true;
    }
    return false;
  }

  // The wait ends without suspending (await_ready returns true / await_suspend returns false).
  void EndInline(absl::Status status) noexcept { completion_.SetInline(std::move(status)); }

  // First step of await_suspend: the coroutine will resume on the executor it runs on now, or on
  // `target` when given (reactor waits resume on their reactor's executor).
  void Prepare(std::coroutine_handle<> handle, Executor* target = nullptr) noexcept {
    completion_.Prepare(handle, target != nullptr ? target : CurrentExecutor());
  }

  // Last step of await_suspend, once the waiter is queued: registers `Derived::OnCancel` (called
  // at most once, maybe at once) and returns whether to stay suspended.
  template <auto OnCancel, typename Derived>
  bool Suspend(Derived* self) {
    static_assert(std::is_base_of_v<WaitOperation, Derived>);
    if (token_.CanBeCancelled()) {
      set_invoke([](CancellationCallback* callback) {
        (static_cast<Derived*>(static_cast<WaitOperation*>(callback))->*OnCancel)();
      });
      Register(token_);
    }
    return completion_.FinishSuspend();
  }

  // For await_resume: the outcome. Deregisters first (waiting for a racing callback).
  absl::Status TakeResult() noexcept {
    Deregister();
    return completion_.TakeStatus();
  }

  const CancellationToken& token() const noexcept { return token_; }
  Completion& completion() noexcept { return completion_; }

 private:
  CancellationToken token_;
  Completion completion_;
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_
