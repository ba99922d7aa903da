// The engine's TimerService on the coroutine executor: each timer is a coroutine sleeping on the
// reactor's timer heap until its deadline, cancellable in O(log n). Callbacks run on an executor
// worker thread. Executor shutdown cancels every pending timer (its callback never runs).
//
// Thread-safety: thread-safe. REQUIRES: the executor is shut down (or outlives this object)
// before this object is destroyed.
#ifndef SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_
#define SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_

#include <atomic>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/timer.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/task.h"

namespace spindle::services {

class ExecutorTimerService final : public TimerService {
 public:
  explicit ExecutorTimerService(coro::Executor& executor) : executor_(executor) {}

  absl::Time Now() const override { return absl::Now(); }
  TimerId Schedule(absl::Time when, Callback callback) override;
  bool Cancel(TimerId id) override;

  // Timers scheduled and not yet run or cancelled.
  size_t pending() const;

 private:
  struct Entry {
    explicit Entry(const coro::CancellationToken& parent) : source(parent) {}
    coro::CancellationSource source;
    Callback callback;
  };

  static coro::Task<void> RunTimer(ExecutorTimerService* self, TimerId id, absl::Time when,
                                   coro::CancellationToken token);

  coro::Executor& executor_;
  std::atomic<TimerId> next_id_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<TimerId, std::unique_ptr<Entry>> timers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_EXECUTOR_TIMER_SERVICE_H_
