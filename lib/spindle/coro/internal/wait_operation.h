// The state every cancellable wait operation carries: its token, the completion handshake, the
// cancellation registration, and the result when the wait ended without suspending. The async
// primitives (AsyncMutex, AsyncSemaphore, Channel, AsyncEvent) derive their awaitables from it;
// see waiter.h for the protocol.
//
// Thread-safety: one operation belongs to one suspended coroutine; the completion handshake makes
// Complete() from another thread safe.
#ifndef SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_
#define SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_

#include <coroutine>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro::internal {

class WaitOperation {
 public:
  WaitOperation(const WaitOperation&) = delete;
  WaitOperation& operator=(const WaitOperation&) = delete;

 protected:
  explicit WaitOperation(CancellationToken token) noexcept : token_(std::move(token)) {}
  ~WaitOperation() = default;

  // For await_ready: ends the wait at once when the token is already cancelled.
  bool EndIfCancelled(absl::string_view what) {
    if (token_.IsCancelled()) {
      EndInline(AbandonedWait(token_, what));
    }
    return completed_inline_;
  }

  // The wait ends without suspending (await_ready returns true / await_suspend returns false).
  void EndInline(absl::Status status) noexcept {
    inline_status_ = std::move(status);
    completed_inline_ = true;
  }

  // First step of await_suspend: the coroutine will resume on the executor it runs on now, or on
  // `target` when given (reactor waits resume on their reactor's executor).
  void Prepare(std::coroutine_handle<> handle, Executor* target = nullptr) noexcept {
    completion_.Prepare(handle, target != nullptr ? target : CurrentExecutor());
  }

  // Last step of await_suspend, once the waiter is queued: registers `Derived::OnCancel` (called
  // at most once, maybe at once) and returns whether to stay suspended.
  template <auto OnCancel, typename Derived>
  bool Suspend(Derived* self) {
    if (token_.CanBeCancelled()) {
      registration_.Register(
          token_, [](void* op) { (static_cast<Derived*>(op)->*OnCancel)(); }, self);
    }
    return completion_.FinishSuspend();
  }

  // For await_resume: the outcome. Deregisters first (waiting for a racing callback).
  absl::Status TakeResult() noexcept {
    registration_.Deregister();
    return completed_inline_ ? std::move(inline_status_) : completion_.TakeStatus();
  }

  const CancellationToken& token() const noexcept { return token_; }
  Completion& completion() noexcept { return completion_; }

 private:
  CancellationToken token_;
  Completion completion_;
  WaitRegistration registration_;
  bool completed_inline_ = false;
  absl::Status inline_status_;
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_WAIT_OPERATION_H_
