// A TimerService on real time with its own thread, for engine tests that run real processes
// (timeouts, kill graces and backoffs must actually elapse).
//
// Thread-safety: thread-safe; callbacks run on the timer thread without the lock held.
#ifndef SPINDLE_TESTS_LIB_POOL_REAL_TIMER_SERVICE_H_
#define SPINDLE_TESTS_LIB_POOL_REAL_TIMER_SERVICE_H_

#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/timer.h"

namespace spindle::testing {

class RealTimerService final : public TimerService {
 public:
  RealTimerService() : thread_([this] { Run(); }) {}
  ~RealTimerService() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      changed_ = true;
    }
    thread_.join();
  }

  absl::Time Now() const override { return absl::Now(); }

  TimerId Schedule(absl::Time when, Callback callback) override {
    absl::MutexLock lock(&mu_);
    TimerId id = ++next_id_;
    timers_.emplace(std::make_pair(when, id), std::move(callback));
    ids_.emplace(id, when);
    changed_ = true;
    return id;
  }

  bool Cancel(TimerId id) override {
    absl::MutexLock lock(&mu_);
    auto it = ids_.find(id);
    if (it == ids_.end()) return false;
    timers_.erase(std::make_pair(it->second, id));
    ids_.erase(it);
    return true;
  }

 private:
  void Run() {
    while (true) {
      Callback callback;
      {
        absl::MutexLock lock(&mu_);
        while (true) {
          if (stop_) return;
          absl::Time next =
              timers_.empty() ? absl::Now() + absl::Milliseconds(50) : timers_.begin()->first.first;
          if (!timers_.empty() && next <= absl::Now()) break;
          mu_.AwaitWithDeadline(absl::Condition(&changed_), next);
          changed_ = false;
        }
        auto it = timers_.begin();
        callback = std::move(it->second);
        ids_.erase(it->first.second);
        timers_.erase(it);
      }
      std::move(callback)();
    }
  }

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<absl::Time, TimerId>, Callback> timers_ ABSL_GUARDED_BY(mu_);
  std::map<TimerId, absl::Time> ids_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_LIB_POOL_REAL_TIMER_SERVICE_H_
