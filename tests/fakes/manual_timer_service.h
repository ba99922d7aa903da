// A TimerService whose time moves only when a test says so. Due timers run inline in Advance(),
// on the test's thread, in deadline order (ties in scheduling order).
//
// Thread-safety: thread-safe; callbacks run without the internal lock held.
#ifndef SPINDLE_TESTS_FAKES_MANUAL_TIMER_SERVICE_H_
#define SPINDLE_TESTS_FAKES_MANUAL_TIMER_SERVICE_H_

#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/timer.h"

namespace spindle::testing {

class ManualTimerService final : public TimerService {
 public:
  explicit ManualTimerService(absl::Time start = absl::FromUnixSeconds(1'700'000'000))
      : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  TimerId Schedule(absl::Time when, Callback callback) override {
    absl::MutexLock lock(&mu_);
    TimerId id = ++next_id_;
    timers_.emplace(std::make_pair(when, id), std::move(callback));
    ids_.emplace(id, when);
    return id;
  }

  bool Cancel(TimerId id) override {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(id);
    if (it == ids_.end()) {
      return false;
    }
    timers_.erase(std::make_pair(it->second, id));
    ids_.erase(it);
    return true;
  }

  // Moves time forward by `d`, running every timer that falls due, each at its own time.
  void Advance(absl::Duration d) {
    absl::Time target;
    {
      absl::MutexLock lock(&mu_);
      target = now_ + d;
    }
    while (true) {
      Callback callback;
      {
        absl::MutexLock lock(&mu_);
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

  // Runs the timers already due without moving time.
  void RunDue() { Advance(absl::ZeroDuration()); }

  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<absl::Time, TimerId>, Callback> timers_ ABSL_GUARDED_BY(mu_);
  std::map<TimerId, absl::Time> ids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_FAKES_MANUAL_TIMER_SERVICE_H_
