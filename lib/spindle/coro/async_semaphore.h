// AsyncSemaphore: counting permits for coroutines, FIFO and cancellable.
//
//   absl::Status s = co_await slots.Acquire(4, token);   // OK: 4 permits are yours
//   ...
//   slots.Release(4);
//
// Waiters are served strictly in arrival order: while the oldest waiter's request does not fit,
// later (smaller) requests wait behind it, so a big request is never starved by a stream of small
// ones. TryAcquire() also refuses to jump the queue. When a waiter leaves by cancellation, the
// waiters behind it are re-examined at once (the permits go to the next waiter or stay).
//
// Waiters resume as described in executor.h ("Which thread resumes a waiter"): Release() on a
// worker of the waiter's executor runs it on that worker right after the releasing coroutine.
//
// Thread-safety: thread-safe. The destructor requires that nobody waits.
#ifndef SPINDLE_CORO_ASYNC_SEMAPHORE_H_
#define SPINDLE_CORO_ASYNC_SEMAPHORE_H_

#include <coroutine>
#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/wait_operation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro {

class AsyncSemaphore {
 public:
  // `co_await sem.Acquire(n, token)` yields absl::Status: OK with the permits taken, the token's
  // status (nothing taken, waiter removed), or INVALID_ARGUMENT for n < 0.
  class [[nodiscard]] AcquireOperation : public internal::WaitOperation,
                                         private internal::WaiterNode {
   public:
    bool await_ready();
    bool await_suspend(std::coroutine_handle<> handle);
    absl::Status await_resume() noexcept { return TakeResult(); }

   private:
    friend class AsyncSemaphore;
    friend class internal::WaiterList<AcquireOperation>;
    friend class internal::WaiterChain<AcquireOperation>;
    AcquireOperation(AsyncSemaphore* semaphore, int64_t count, CancellationToken token) noexcept
        : internal::WaitOperation(std::move(token)), semaphore_(semaphore), count_(count) {}
    void OnCancel();

    AsyncSemaphore* const semaphore_;
    const int64_t count_;
  };

  // REQUIRES: permits >= 0.
  explicit AsyncSemaphore(int64_t permits);
  ~AsyncSemaphore();
  AsyncSemaphore(const AsyncSemaphore&) = delete;
  AsyncSemaphore& operator=(const AsyncSemaphore&) = delete;

  AcquireOperation Acquire(int64_t count, CancellationToken token) {
    return AcquireOperation(this, count, std::move(token));
  }
  // Takes `count` permits if they are available and nobody is queued.
  bool TryAcquire(int64_t count = 1);
  // Returns `count` permits (REQUIRES: count >= 0) and grants queued waiters in order.
  void Release(int64_t count = 1);

  int64_t available() const;
  size_t waiters() const;

 private:
  using Granted = internal::WaiterChain<AcquireOperation>;
  // Moves waiters whose requests now fit, in order, into `granted`.
  void GrantWaiters(Granted& granted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Complete(Granted& granted);

  mutable internal::Mutex mu_;
  int64_t available_ ABSL_GUARDED_BY(mu_);
  internal::WaiterList<AcquireOperation> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_ASYNC_SEMAPHORE_H_
