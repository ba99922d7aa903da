// The engine's TimerService on the coroutine executor: one driver coroutine sleeps on the reactor's
// timer heap until the earliest deadline, runs every timer that is due, and sleeps again.
//
// Timers live in an ordered map under one mutex, so Schedule and Cancel cost a map insert or erase
// from any thread and never wake a worker, except when a new timer is earlier than the driver's
// wake-up time (then the driver's sleep is cut short). A cancelled timer is simply erased: the
// driver still wakes at its deadline, finds nothing due and sleeps on; so a stream of timers each
// armed and cancelled before the next (a lease per Acquire, released soon after) costs one
// wake-up per deadline passed, not one per timer. Engine tables arm and
// cancel a timer per grant, lease and waiter, so this keeps thread hand-offs off their hot paths.
//
// Callbacks run on the driver, on an executor worker thread, one after another in deadline order
// (never inside Schedule()); they must not block. Executor shutdown ends the driver and drops every
// pending timer (its callback never runs); timers scheduled afterwards never run either.
//
// Thread-safety: thread-safe. REQUIRES: the executor is shut down (or outlives this object)
// before this object is destroyed.
#ifndef SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_
#define SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_

#include <atomic>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/timer.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/task.h"

namespace spindle::services {

class ExecutorTimerService final : public TimerService {
 public:
  explicit ExecutorTimerService(coro::Executor& executor);

  absl::Time Now() const override { return absl::Now(); }
  TimerId Schedule(absl::Time when, Callback callback) override;
  bool Cancel(TimerId id) override;

  // Timers scheduled and not yet run or cancelled.
  size_t pending() const;

  // Times the driver woke up (at a deadline, or cut short by an earlier timer).
  uint64_t wakeups() const { return wakeups_.load(std::memory_order_relaxed); }

 private:
  using Key = std::pair<absl::Time, TimerId>;

  static coro::Task<void> Drive(ExecutorTimerService* self);

  coro::Executor& executor_;
  std::atomic<TimerId> next_id_{0};
  std::atomic<uint64_t> wakeups_{0};
  mutable absl::Mutex mu_;
  absl::btree_map<Key, Callback> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TimerId, absl::Time> deadlines_ ABSL_GUARDED_BY(mu_);
  // When the driver wakes next (InfiniteFuture: only when woken), and the source that wakes it
  // earlier; taken by the first Schedule that needs an earlier wake-up.
  absl::Time armed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::shared_ptr<coro::CancellationSource> wake_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_
