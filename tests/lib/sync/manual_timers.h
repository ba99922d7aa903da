// ManualTimerService (tests/fakes/manual_timer_service.h) on a std::mutex.
//
// The shared fake guards its state with absl::Mutex, which ThreadSanitizer cannot see in this
// machine's (uninstrumented) Abseil, so the sync tests that schedule timers from several threads
// use this copy instead. Same contract: due timers run inline in Advance(), on the test's thread,
// in deadline order (ties in scheduling order), without the lock held.
#ifndef SPINDLE_TESTS_LIB_SYNC_MANUAL_TIMERS_H_
#define SPINDLE_TESTS_LIB_SYNC_MANUAL_TIMERS_H_

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "spindle/common/timer.h"

namespace spindle::sync {

class ManualTimers final : public TimerService {
 public:
  explicit ManualTimers(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }

  TimerId Schedule(absl::Time when, Callback callback) override {
    std::lock_guard lock(mu_);
    TimerId id = ++next_id_;
    timers_.emplace(std::make_pair(when, id), std::move(callback));
    ids_.emplace(id, when);
    return id;
  }

  bool Cancel(TimerId id) override {
    std::lock_guard lock(mu_);
    auto it = ids_.find(id);
    if (it == ids_.end()) {
      return false;
    }
    timers_.erase(std::make_pair(it->second, id));
    ids_.erase(it);
    return true;
  }

  void Advance(absl::Duration d) {
    absl::Time target;
    {
      std::lock_guard lock(mu_);
      target = now_ + d;
    }
    while (true) {
      Callback callback;
      {
        std::lock_guard lock(mu_);
        if (timers_.empty() || timers_.begin()->first.first > target) {
          now_ = target;
          return;
        }
        auto it = timers_.begin();
        now_ = std::max(now_, it->first.first);
        callback = std::move(it->second);
        ids_.erase(it->first.second);
        timers_.erase(it);
      }
      std::move(callback)();
    }
  }

 private:
  mutable std::mutex mu_;
  absl::Time now_;
  TimerId next_id_ = 0;
  std::map<std::pair<absl::Time, TimerId>, Callback> timers_;
  std::map<TimerId, absl::Time> ids_;
};

}  // namespace spindle::sync

#endif  // SPINDLE_TESTS_LIB_SYNC_MANUAL_TIMERS_H_
