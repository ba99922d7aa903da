// The executor's mutex and condition variable: std::mutex and std::condition_variable with
// Abseil's thread-safety annotations (clang's -Wthread-safety checks guarded members as with
// absl::Mutex).
//
// Why not absl::Mutex here: Debian's Abseil is built without NDEBUG, so every absl::Mutex::Lock
// runs the deadlock detector (a process-wide graph behind a spinlock; it shows up in profiles of
// the timer and queue paths), and without -fsanitize=thread, so ThreadSanitizer cannot see it.
// The standard mutexes are plain futex locks that TSan understands. The executor holds these
// mutexes only for short, non-blocking critical sections and never across a suspension.
//
// Thread-safety: these are the synchronisation.
#ifndef SPINDLE_CORO_INTERNAL_MUTEX_H_
#define SPINDLE_CORO_INTERNAL_MUTEX_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace spindle::coro::internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

class CondVar {
 public:
  // Releases `mu` while waiting; holds it again on return. May wake spuriously.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // Still held; the caller unlocks.
  }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_MUTEX_H_
