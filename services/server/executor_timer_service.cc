#include "services/server/executor_timer_service.h"

#include <algorithm>
#include <vector>

namespace spindle::services {

ExecutorTimerService::ExecutorTimerService(coro::Executor& executor) : executor_(executor) {
  if (!executor_.Spawn(Drive(this))) {
    absl::MutexLock lock(&mu_);
    stopped_ = true;  // The executor is shutting down: no timer will ever fire.
  }
}

TimerService::TimerId ExecutorTimerService::Schedule(absl::Time when, Callback callback) {
  const TimerId id = next_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::shared_ptr<coro::CancellationSource> wake;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      return id;  // Never fires; `callback` is destroyed on return, outside the lock.
    }
    queue_.emplace(Key{when, id}, std::move(callback));
    deadlines_.emplace(id, when);
    if (when < armed_at_) {
      armed_at_ = when;
      wake = std::move(wake_);
    }
  }
  if (wake != nullptr) {
    wake->Cancel();
  }
  return id;
}

bool ExecutorTimerService::Cancel(TimerId id) {
  Callback dropped;
  {
    absl::MutexLock lock(&mu_);
    auto it = deadlines_.find(id);
    if (it == deadlines_.end()) {
      return false;
    }
    auto entry = queue_.find(Key{it->second, id});
    dropped = std::move(entry->second);
    queue_.erase(entry);
    deadlines_.erase(it);
  }
  return true;  // `dropped` is destroyed outside the lock: it may own engine state.
}

size_t ExecutorTimerService::pending() const {
  absl::MutexLock lock(&mu_);
  return deadlines_.size();
}

coro::Task<void> ExecutorTimerService::Drive(ExecutorTimerService* self) {
  const coro::CancellationToken shutdown = self->executor_.shutdown_token();
  std::vector<Callback> due;
  while (true) {
    absl::Time next;
    coro::CancellationToken woken;
    {
      absl::MutexLock lock(&self->mu_);
      // Engines compare deadlines with Now() (wall clock) while the reactor sleeps on the
      // monotonic clock: a timer runs only once its deadline has passed by Now().
      const absl::Time now = self->Now();
      while (!self->queue_.empty() && self->queue_.begin()->first.first <= now) {
        auto first = self->queue_.begin();
        self->deadlines_.erase(first->first.second);
        due.push_back(std::move(first->second));
        self->queue_.erase(first);
      }
      next = self->queue_.empty() ? absl::InfiniteFuture() : self->queue_.begin()->first.first;
      // Woken early, keep the wake-up time the sleep had even if its timer was cancelled since:
      // leases and waiters are armed and cancelled call after call, and the next ones are due
      // later, so they find the driver armed in time and wake nobody.
      if (self->armed_at_ > now) {
        next = std::min(next, self->armed_at_);
      }
      self->armed_at_ = next;
      self->wake_ = std::make_shared<coro::CancellationSource>(shutdown);
      woken = self->wake_->token();
    }
    for (Callback& callback : due) {
      std::move(callback)();
    }
    due.clear();
    (void)co_await self->executor_.SleepUntil(next, woken);
    self->wakeups_.fetch_add(1, std::memory_order_relaxed);
    if (shutdown.IsCancelled()) {
      break;
    }
  }
  absl::btree_map<Key, Callback> dropped;
  {
    absl::MutexLock lock(&self->mu_);
    self->stopped_ = true;
    dropped.swap(self->queue_);
    self->deadlines_.clear();
    self->wake_.reset();
  }
}

}  // namespace spindle::services
