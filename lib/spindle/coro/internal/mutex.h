// The executor's mutex and condition variable: absl::Mutex and absl::CondVar, swapped for
// std::mutex and std::condition_variable under ThreadSanitizer.
//
// Debian's Abseil is built without -fsanitize=thread: TSan cannot see absl::Mutex lock and unlock
// (every access they guard looks racy), and its deadlock detector's bookkeeping, done under an
// uninstrumented spinlock, trips TSan's memmove interceptor. The standard mutexes go through
// pthread, which TSan understands completely (including lock-order checks). Other builds use
// Abseil. The thread-safety annotations make clang's -Wthread-safety check guarded members in
// both.
//
// Thread-safety: these are the synchronisation.
#ifndef SPINDLE_CORO_INTERNAL_MUTEX_H_
#define SPINDLE_CORO_INTERNAL_MUTEX_H_

#include "absl/base/thread_annotations.h"

#if defined(__SANITIZE_THREAD__)
#include <condition_variable>
#include <mutex>
#else
#include "absl/synchronization/mutex.h"
#endif

namespace spindle::coro::internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

#if defined(__SANITIZE_THREAD__)
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
#else
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.Lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.Unlock(); }
#endif

 private:
  friend class CondVar;
#if defined(__SANITIZE_THREAD__)
  std::mutex mu_;
#else
  absl::Mutex mu_;
#endif
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
#if defined(__SANITIZE_THREAD__)
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // Still held; the caller unlocks.
#else
    cv_.Wait(&mu->mu_);
#endif
  }
  void SignalAll() {
#if defined(__SANITIZE_THREAD__)
    cv_.notify_all();
#else
    cv_.SignalAll();
#endif
  }

 private:
#if defined(__SANITIZE_THREAD__)
  std::condition_variable cv_;
#else
  absl::CondVar cv_;
#endif
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_MUTEX_H_
