// The executor's reactor: one thread blocked in epoll_wait that notices fd readiness and timer
// expiry and hands the waiting coroutines to the executor's workers.
//
// Fds are registered with EPOLLONESHOT while they have waiters (one registration per fd, shared by
// its readers and writers) and removed from epoll when the last waiter leaves, so a closed fd never
// lingers in the interest list. Timers live in an indexed heap (O(log n) add and cancel) and drive
// one timerfd armed at the earliest deadline with nanosecond resolution; adding a timer that is not
// the earliest costs no system call. An eventfd wakes the thread for Stop().
//
// Wake-ups found in one loop pass are collected and injected into the executor together (one lock,
// one notify), then the thread sleeps again.
//
// Thread-safety: thread-safe. Timers and fds have separate mutexes; callbacks (Timer::fire,
// FdWaiter::ready) run on the reactor thread with no reactor lock held.
#ifndef SPINDLE_CORO_INTERNAL_REACTOR_H_
#define SPINDLE_CORO_INTERNAL_REACTOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "spindle/coro/internal/lag_tracker.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/timer_heap.h"
#include "spindle/coro/internal/waiter.h"
#include "spindle/coro/stats.h"

namespace spindle::coro {

class Executor;

namespace internal {

struct Timer : TimerNode {
  // Runs on the reactor thread, with no reactor lock held, once the deadline has passed.
  void (*fire)(Timer* timer) = nullptr;
  void* context = nullptr;
  // false: fire() is the reactor's last access to the timer (it completes a waiter), and
  //        CancelTimer() never waits.
  // true:  CancelTimer() waits for a running fire() to return (DeadlineSource).
  bool wait_for_fire = false;
  bool firing = false;  // Guarded by Reactor::timers_mu_.
};

struct FdWaiter : WaiterNode {
  int fd = -1;
  bool writable = false;  // Waits for EPOLLOUT; otherwise for EPOLLIN.
  // Runs on the reactor thread once the fd is ready (or hung up / in error). The reactor's last
  // access to the waiter.
  void (*ready)(FdWaiter* waiter) = nullptr;
  void* context = nullptr;
};

class Reactor {
 public:
  // Creates the epoll, timer and wake fds. Errors: the errno of the failing call (e.g. EMFILE).
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(Executor* executor);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Starts the thread. Throws std::system_error when it cannot be created.
  void Start(const std::string& thread_name);
  // Stops and joins the thread. Timers and fd waiters still registered are left as they are: they
  // never fire. Idempotent.
  void Stop();

  // Arms `timer` for `deadline_ns` (monotonic). REQUIRES: `timer` is not armed; it stays alive
  // until fired or until CancelTimer() returned true.
  void AddTimer(Timer* timer, int64_t deadline_ns);
  // Returns true when the timer was disarmed before firing. If it is firing right now and has
  // wait_for_fire, waits for fire() to return (unless called on the reactor thread).
  bool CancelTimer(Timer* timer);

  // Queues `waiter` for readiness of waiter->fd. Returns true when queued, false when the fd is
  // always ready (epoll refuses regular files; the caller treats them as ready), or the error of
  // epoll_ctl (EBADF, ENOMEM, ...). REQUIRES: the fd stays open until the waiter leaves.
  absl::StatusOr<bool> AddFdWaiter(FdWaiter* waiter);
  // Returns true when the waiter was removed before becoming ready.
  bool RemoveFdWaiter(FdWaiter* waiter);

  bool OnReactorThread() const noexcept;
  // Reactor thread only: queue `item` for the executor at the end of this loop pass.
  void Defer(void* item) { deferred_.push_back(item); }

  int64_t pending_timers() const;
  int64_t registered_fds() const;
  LagStats timer_lag() const;

 private:
  struct FdEntry {
    WaiterList<FdWaiter> readers;
    WaiterList<FdWaiter> writers;
    uint32_t armed_events = 0;  // Interest currently armed in epoll; 0 when disarmed.
  };

  Reactor(Executor* executor, int epoll_fd, int timer_fd, int wake_fd);
  void Run();
  void ProcessTimers();
  void ProcessFd(int fd, uint32_t events);
  void ArmTimerFd(int64_t deadline_ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(timers_mu_);
  // Re-arms, modifies or deletes the epoll registration of `fd` to match its waiters.
  absl::Status SyncRegistration(int fd, FdEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(fds_mu_);

  Executor* const executor_;
  const int epoll_fd_;
  const int timer_fd_;
  const int wake_fd_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable Mutex timers_mu_;
  CondVar fire_done_;
  TimerHeap timers_ ABSL_GUARDED_BY(timers_mu_);
  int64_t armed_deadline_ns_ ABSL_GUARDED_BY(timers_mu_);
  LagTracker timer_lag_ ABSL_GUARDED_BY(timers_mu_);

  mutable Mutex fds_mu_;
  absl::flat_hash_map<int, FdEntry> fds_ ABSL_GUARDED_BY(fds_mu_);

  // Reactor thread only.
  std::vector<void*> deferred_;
  std::vector<Timer*> expired_;
};

}  // namespace internal
}  // namespace spindle::coro

#endif  // SPINDLE_CORO_INTERNAL_REACTOR_H_
