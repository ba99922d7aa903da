// AsyncEvent: a manual-reset event for coroutines. Set() wakes every waiter and keeps the event
// set until Clear(); Wait() on a set event returns at once.
//
//   AsyncEvent ready;
//   absl::Status s = co_await ready.Wait(token);   // OK, or the token's status
//   ready.Set();                                   // from any thread
//
// Waiters resume as described in executor.h ("Which thread resumes a waiter"): on the executor
// they suspended on, on the setting worker itself when Set() runs on one of its workers.
//
// Thread-safety: thread-safe. The destructor requires that nobody waits.
#ifndef SPINDLE_CORO_ASYNC_EVENT_H_
#define SPINDLE_CORO_ASYNC_EVENT_H_

#include <atomic>
#include <coroutine>
#include <cstddef>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/wait_operation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro {

class AsyncEvent {
 public:
  // `co_await event.Wait(token)` yields absl::Status: OK once set, or the token's status (the
  // waiter is removed).
  class [[nodiscard]] WaitOperation : public internal::WaitOperation, private internal::WaiterNode {
   public:
    bool await_ready();
    bool await_suspend(std::coroutine_handle<> handle);
    absl::Status await_resume() noexcept { return TakeResult(); }

   private:
    friend class AsyncEvent;
    friend class internal::WaiterList<WaitOperation>;
    friend class internal::WaiterChain<WaitOperation>;
    WaitOperation(AsyncEvent* event, const char* what, CancellationToken token) noexcept
        : internal::WaitOperation(std::move(token)), event_(event), what_(what) {}
    void OnCancel();

    AsyncEvent* const event_;
    const char* const what_;  // Names the wait in a cancelled status ("AsyncEvent", "Latch").
  };

  explicit AsyncEvent(bool set = false) : set_(set) {}
  ~AsyncEvent();
  AsyncEvent(const AsyncEvent&) = delete;
  AsyncEvent& operator=(const AsyncEvent&) = delete;

  // Sets the event and wakes all waiters. No-op when already set.
  void Set();
  void Clear();
  bool IsSet() const noexcept { return set_.load(std::memory_order_acquire); }

  WaitOperation Wait(CancellationToken token) {
    return WaitOperation(this, "AsyncEvent", std::move(token));
  }

  size_t waiters() const;

 private:
  friend class Latch;
  WaitOperation WaitNamed(const char* what, CancellationToken token) {
    return WaitOperation(this, what, std::move(token));
  }

  mutable internal::Mutex mu_;
  std::atomic<bool> set_;  // Written under mu_; read without it for the fast path.
  internal::WaiterList<WaitOperation> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_ASYNC_EVENT_H_
