#include "services/server/executor_timer_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace spindle::services {
namespace {

class ExecutorTimerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coro::Executor::Options options;
    options.threads = 2;
    options.name = "timer-test";
    auto executor = coro::Executor::Create(options);
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    timers_ = std::make_unique<ExecutorTimerService>(*executor_);
  }
  void TearDown() override {
    executor_->Shutdown();
    timers_.reset();
  }

  std::unique_ptr<coro::Executor> executor_;
  std::unique_ptr<ExecutorTimerService> timers_;
};

TEST_F(ExecutorTimerServiceTest, TimersFireInDeadlineOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time now = timers_->Now();
  for (int i : {3, 1, 2}) {
    timers_->Schedule(now + absl::Milliseconds(20 * i), [&, i] {
      bool last = false;
      {
        absl::MutexLock lock(&mu);
        order.push_back(i);
        last = order.size() == 3;
      }
      // Notify outside the lock: the test may return (destroying `mu`) as soon as it wakes.
      if (last) {
        done.Notify();
      }
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, CancelledTimerNeverRuns) {
  std::atomic<bool> ran{false};
  auto id = timers_->Schedule(timers_->Now() + absl::Milliseconds(50), [&] { ran = true; });
  EXPECT_TRUE(timers_->Cancel(id));
  EXPECT_FALSE(timers_->Cancel(id));  // Once only.
  // A later timer firing proves the cancelled one's deadline has passed.
  absl::Notification later;
  timers_->Schedule(timers_->Now() + absl::Milliseconds(100), [&] { later.Notify(); });
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE(ran);
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, PastDeadlineRunsAtOnceAndCancelAfterRunIsFalse) {
  absl::Notification ran;
  auto id = timers_->Schedule(timers_->Now() - absl::Seconds(1), [&] { ran.Notify(); });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE(timers_->Cancel(id));
}

TEST_F(ExecutorTimerServiceTest, ShutdownDropsPendingTimers) {
  std::atomic<bool> ran{false};
  timers_->Schedule(timers_->Now() + absl::Hours(1), [&] { ran = true; });
  EXPECT_EQ(timers_->pending(), 1u);
  executor_->Shutdown();
  EXPECT_FALSE(ran);
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, ManyTimersCancelCheaply) {
  std::vector<TimerService::TimerId> ids;
  const absl::Time far = timers_->Now() + absl::Hours(1);
  for (int i = 0; i < 10000; ++i) {
    ids.push_back(timers_->Schedule(far, [] {}));
  }
  EXPECT_EQ(timers_->pending(), 10000u);
  for (auto id : ids) {
    EXPECT_TRUE(timers_->Cancel(id));
  }
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, ArmingAndCancellingLaterTimersDoesNotWakeTheDriver) {
  // Leases and waiters arm a timer per call and usually cancel it soon after; each new deadline
  // is later than the ones before. None of that may cost a wake-up of the driver beyond the
  // first arming.
  const absl::Time start = timers_->Now() + absl::Hours(1);
  const uint64_t before = timers_->wakeups();
  for (int i = 0; i < 10000; ++i) {
    auto id = timers_->Schedule(start + absl::Microseconds(i), [] {});
    ASSERT_TRUE(timers_->Cancel(id));
  }
  EXPECT_LE(timers_->wakeups() - before, 2u);
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, EarlierTimerCutsTheDriversSleepShort) {
  timers_->Schedule(timers_->Now() + absl::Hours(1), [] {});
  absl::Notification fired;
  const absl::Time due = timers_->Now() + absl::Milliseconds(10);
  timers_->Schedule(due, [&] { fired.Notify(); });
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_GE(timers_->Now(), due);
  EXPECT_EQ(timers_->pending(), 1u);
}

TEST_F(ExecutorTimerServiceTest, CallbacksMayScheduleAndCancelTimers) {
  absl::Notification second;
  std::atomic<bool> cancelled_ran{false};
  const TimerService::TimerId victim =
      timers_->Schedule(timers_->Now() + absl::Hours(1), [&] { cancelled_ran = true; });
  std::atomic<bool> cancel_result{false};
  timers_->Schedule(timers_->Now(), [&] {
    cancel_result = timers_->Cancel(victim);
    // Re-arming from a callback (a lease timer that finds its lease refreshed does this).
    timers_->Schedule(timers_->Now() - absl::Seconds(1), [&] { second.Notify(); });
  });
  ASSERT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_TRUE(cancel_result);
  EXPECT_FALSE(cancelled_ran);
  EXPECT_EQ(timers_->pending(), 0u);
}

TEST_F(ExecutorTimerServiceTest, TimersScheduledAfterShutdownNeverRun) {
  executor_->Shutdown();
  std::atomic<bool> ran{false};
  auto id = timers_->Schedule(timers_->Now() - absl::Seconds(1), [&] { ran = true; });
  EXPECT_NE(id, 0u);
  EXPECT_FALSE(timers_->Cancel(id));
  EXPECT_EQ(timers_->pending(), 0u);
  EXPECT_FALSE(ran);
}

TEST_F(ExecutorTimerServiceTest, ManyThreadsArmAndCancelConcurrently) {
  // Four threads arm 2,000 timers each, a quarter due soon, and cancel every other one; every
  // timer not cancelled runs exactly once.
  absl::Mutex mu;
  int ran = 0;
  std::atomic<int> kept{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const absl::Duration in = absl::Milliseconds(i % 4 == 0 ? (i + t) % 20 : 50 + i % 100);
        auto id = timers_->Schedule(timers_->Now() + in, [&] {
          absl::MutexLock lock(&mu);
          ++ran;
        });
        if (i % 2 == 1 && timers_->Cancel(id)) {
          continue;
        }
        kept.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  const int expected = kept.load();
  std::pair<int*, int> progress(&ran, expected);
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(
      absl::Condition(
          +[](std::pair<int*, int>* p) { return *p->first >= p->second; }, &progress),
      absl::Seconds(30));
  EXPECT_EQ(ran, expected);
  EXPECT_EQ(timers_->pending(), 0u);
}

}  // namespace
}  // namespace spindle::services
