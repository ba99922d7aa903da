#include "services/server/executor_timer_service.h"

namespace spindle::services {

TimerService::TimerId ExecutorTimerService::Schedule(absl::Time when, Callback callback) {
  const TimerId id = next_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  coro::CancellationToken token;
  {
    absl::MutexLock lock(&mu_);
    auto entry = std::make_unique<Entry>(executor_.shutdown_token());
    entry->callback = std::move(callback);
    token = entry->source.token();
    timers_.emplace(id, std::move(entry));
  }
  if (!executor_.Spawn(RunTimer(this, id, when, std::move(token)))) {
    // The executor is shutting down: the timer will never fire.
    absl::MutexLock lock(&mu_);
    timers_.erase(id);
  }
  return id;
}

bool ExecutorTimerService::Cancel(TimerId id) {
  std::unique_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = timers_.find(id);
    if (it == timers_.end()) {
      return false;
    }
    entry = std::move(it->second);
    timers_.erase(it);
  }
  // Wakes the sleeping coroutine, which finds its entry gone and ends.
  entry->source.Cancel();
  return true;
}

size_t ExecutorTimerService::pending() const {
  absl::MutexLock lock(&mu_);
  return timers_.size();
}

coro::Task<void> ExecutorTimerService::RunTimer(ExecutorTimerService* self, TimerId id,
                                                absl::Time when, coro::CancellationToken token) {
  absl::Status slept = co_await self->executor_.SleepUntil(when, token);
  // The reactor's timers run on the monotonic clock; engines compare deadlines with Now() (wall
  // clock). Never run a callback before its deadline by that clock: sleep out the difference.
  while (slept.ok() && self->Now() < when) {
    slept = co_await self->executor_.SleepUntil(when, token);
  }
  Callback callback;
  {
    absl::MutexLock lock(&self->mu_);
    auto it = self->timers_.find(id);
    if (it == self->timers_.end()) {
      co_return;  // Cancelled.
    }
    callback = std::move(it->second->callback);
    self->timers_.erase(it);
  }
  if (slept.ok()) {
    std::move(callback)();
  }
}

}  // namespace spindle::services
