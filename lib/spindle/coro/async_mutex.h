// AsyncMutex: a mutual-exclusion lock for coroutines, FIFO and cancellable. Waiting for it
// suspends the coroutine; no thread blocks. Unlock hands the lock directly to the oldest waiter
// (no barging), so waiters are served strictly in arrival order.
//
//   absl::StatusOr<AsyncMutex::Guard> guard = co_await mu.Lock(token);
//   if (!guard.ok()) co_return guard.status();   // CANCELLED / DEADLINE_EXCEEDED, not queued
//   ... critical section, may co_await ...
//   // ~Guard unlocks.
//
// Cancellation removes the waiter from the queue; a waiter whose wait ended by cancellation never
// holds the lock (if the grant won the race, Lock() succeeds and the caller owns the guard).
//
// The next owner resumes as described in executor.h ("Which thread resumes a waiter"): when the
// unlocking coroutine runs on a worker of the waiter's executor, the waiter runs on that worker
// right after it, with no thread hop.
//
// Thread-safety: thread-safe. A Guard may be released on any thread. The destructor requires the
// mutex to be unlocked with no waiters.
#ifndef SPINDLE_CORO_ASYNC_MUTEX_H_
#define SPINDLE_CORO_ASYNC_MUTEX_H_

#include <coroutine>
#include <cstddef>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/wait_operation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro {

class AsyncMutex {
 public:
  // Ownership of the lock; unlocks on destruction.
  class [[nodiscard]] Guard {
   public:
    Guard(Guard&& other) noexcept : mutex_(std::exchange(other.mutex_, nullptr)) {}
    Guard& operator=(Guard&& other) noexcept {
      if (this != &other) {
        Unlock();
        mutex_ = std::exchange(other.mutex_, nullptr);
      }
      return *this;
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard() { Unlock(); }

    // Unlocks early; no-op when already unlocked.
    void Unlock() {
      if (mutex_ != nullptr) {
        std::exchange(mutex_, nullptr)->Unlock();
      }
    }
    bool owns_lock() const noexcept { return mutex_ != nullptr; }

   private:
    friend class AsyncMutex;
    explicit Guard(AsyncMutex* mutex) noexcept : mutex_(mutex) {}
    AsyncMutex* mutex_;
  };

  // `co_await mu.Lock(token)` yields absl::StatusOr<Guard>.
  class [[nodiscard]] LockOperation : public internal::WaitOperation, private internal::WaiterNode {
   public:
    bool await_ready();
    bool await_suspend(std::coroutine_handle<> handle);
    absl::StatusOr<Guard> await_resume();

   private:
    friend class AsyncMutex;
    friend class internal::WaiterList<LockOperation>;
    LockOperation(AsyncMutex* mutex, CancellationToken token) noexcept
        : internal::WaitOperation(std::move(token)), mutex_(mutex) {}
    void OnCancel();

    AsyncMutex* const mutex_;
  };

  AsyncMutex() = default;
  ~AsyncMutex();
  AsyncMutex(const AsyncMutex&) = delete;
  AsyncMutex& operator=(const AsyncMutex&) = delete;

  // Waits for the lock. An already-cancelled token fails at once, without taking the lock.
  LockOperation Lock(CancellationToken token) { return LockOperation(this, std::move(token)); }
  // Takes the lock if it is free (free implies nobody is queued).
  std::optional<Guard> TryLock();

  bool IsLocked() const;
  size_t waiters() const;

 private:
  void Unlock();

  mutable internal::Mutex mu_;
  bool locked_ ABSL_GUARDED_BY(mu_) = false;
  internal::WaiterList<LockOperation> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_ASYNC_MUTEX_H_
