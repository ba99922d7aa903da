// Futex-based waiting: the executor's shutdown drain and SyncWait (workers park on their own
// futex word, see Executor::Park).
//
// EventCount lets a thread sleep until "something may have changed" without a lock on the notify
// side (the protocol of folly::EventCount): a waiter announces itself with PrepareWait(), checks
// its condition again, and then either CancelWait()s or Wait()s; a notifier changes the condition
// first and then calls Notify(). A notification that lands between PrepareWait() and Wait() makes
// Wait() return at once, so no wake-up is lost. Notify() costs one atomic increment when nobody
// sleeps, plus a futex wake when somebody does.
//
// OneShotEvent is a single Set() -> Wait() hand-off. It may be destroyed as soon as Wait()
// returns, even while Set() is still returning: after its store, Set() only passes the address to
// the futex wake system call, which does not touch the memory.
//
// Thread-safety: both classes are thread-safe.
#ifndef SPINDLE_CORO_INTERNAL_EVENT_COUNT_H_
#define SPINDLE_CORO_INTERNAL_EVENT_COUNT_H_

#include <atomic>
#include <cstdint>

namespace spindle::coro::internal {

// Blocks while `*word == expected` (or until a wake-up; callers re-check).
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) noexcept;
// Wakes up to `count` threads blocked in FutexWait on `word`.
void FutexWake(std::atomic<uint32_t>* word, int count) noexcept;

class EventCount {
 public:
  using Key = uint32_t;

  Key PrepareWait() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }
  void CancelWait() noexcept { waiters_.fetch_sub(1, std::memory_order_seq_cst); }
  // Sleeps until a Notify() that happened after PrepareWait() returned `key`.
  void Wait(Key key) noexcept {
    while (epoch_.load(std::memory_order_seq_cst) == key) {
      FutexWait(&epoch_, key);
    }
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Returns whether a waiter was announced (and so possibly woken).
  bool Notify(int count) noexcept {
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) > 0) {
      FutexWake(&epoch_, count);
      return true;
    }
    return false;
  }
  bool NotifyOne() noexcept { return Notify(1); }
  bool NotifyAll() noexcept { return Notify(INT32_MAX); }

  // A hint: whether some thread is between PrepareWait() and the end of Wait()/CancelWait().
  bool HasWaiters() const noexcept { return waiters_.load(std::memory_order_relaxed) > 0; }

 private:
  alignas(64) std::atomic<uint32_t> epoch_{0};
  alignas(64) std::atomic<int32_t> waiters_{0};
};

class OneShotEvent {
 public:
  void Set() noexcept {
    state_.store(1, std::memory_order_release);
    FutexWake(&state_, INT32_MAX);
  }
  void Wait() noexcept {
    while (state_.load(std::memory_order_acquire) == 0) {
      FutexWait(&state_, 0);
    }
  }
  bool IsSet() const noexcept { return state_.load(std::memory_order_acquire) != 0; }

 private:
  std::atomic<uint32_t> state_{0};
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_EVENT_COUNT_H_
