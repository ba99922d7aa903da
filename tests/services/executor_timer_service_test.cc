#include "services/server/executor_timer_service.h"

#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
}  // namespace spindle::services
