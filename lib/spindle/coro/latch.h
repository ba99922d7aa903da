// Latch: a single-use countdown for coroutines. Wait() returns once CountDown() has brought the
// count to zero; it stays at zero (later waits return at once).
//
//   Latch started(workers);
//   ... each worker: started.CountDown();
//   absl::Status s = co_await started.Wait(token);
//
// Waiters resume as described in executor.h ("Which thread resumes a waiter").
//
// Thread-safety: thread-safe. The destructor requires that nobody waits.
#ifndef SPINDLE_CORO_LATCH_H_
#define SPINDLE_CORO_LATCH_H_

#include <atomic>
#include <cstdint>

#include "spindle/coro/async_event.h"
#include "spindle/coro/cancellation.h"

namespace spindle::coro {

class Latch {
 public:
  // REQUIRES: count >= 0.
  explicit Latch(int64_t count);
  Latch(const Latch&) = delete;
  Latch& operator=(const Latch&) = delete;

  // Decrements by `n` (clamped at zero) and wakes the waiters when zero is reached.
  // REQUIRES: n >= 0.
  void CountDown(int64_t n = 1);
  bool TryWait() const noexcept { return count() == 0; }
  int64_t count() const noexcept { return count_.load(std::memory_order_acquire); }

  // Yields absl::Status: OK at zero, or the token's status.
  AsyncEvent::WaitOperation Wait(CancellationToken token) {
    return zero_.WaitNamed("Latch", std::move(token));
  }

 private:
  std::atomic<int64_t> count_;
  AsyncEvent zero_;
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_LATCH_H_
