// CancellationSource, CancellationToken, CancellationRegistration and DeadlineSource.
#include "spindle/coro/cancellation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "spindle/common/status.h"
#include "spindle/coro/async_event.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "tests/lib/coro/test_util.h"

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::spindle::coro::testing::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CancellationTest, DefaultTokenIsNeverCancelled) {
  CancellationToken token;
  EXPECT_FALSE(token.CanBeCancelled());
  EXPECT_FALSE(token.IsCancelled());
  EXPECT_THAT(token.status(), IsOk());
  bool ran = false;
  CancellationRegistration registration(token, [&] { ran = true; });
  EXPECT_FALSE(ran);
}

TEST(CancellationTest, CancelRunsEveryCallbackOnceInRegistrationOrder) {
  CancellationSource source;
  std::vector<int> order;
  CancellationRegistration first(source.token(), [&] { order.push_back(1); });
  CancellationRegistration second(source.token(), [&] { order.push_back(2); });
  EXPECT_TRUE(source.Cancel());
  EXPECT_FALSE(source.Cancel());
  EXPECT_THAT(order, ElementsAre(1, 2));
  EXPECT_TRUE(source.IsCancelled());
  EXPECT_TRUE(source.token().IsCancelled());
}

TEST(CancellationTest, RegisteringOnACancelledTokenRunsTheCallbackAtOnce) {
  CancellationSource source;
  source.Cancel();
  int runs = 0;
  CancellationRegistration registration(source.token(), [&] { ++runs; });
  EXPECT_EQ(runs, 1);
}

TEST(CancellationTest, DestroyedRegistrationNeverRuns) {
  CancellationSource source;
  bool ran = false;
  {
    CancellationRegistration registration(source.token(), [&] { ran = true; });
  }
  source.Cancel();
  EXPECT_FALSE(ran);
}

TEST(CancellationTest, TokenCarriesTheFirstReason) {
  CancellationSource source;
  CancellationToken token = source.token();
  EXPECT_THAT(token.status(), IsOk());
  source.Cancel(spindle::DeadlineExceeded("too late"));
  source.Cancel(spindle::Cancelled("ignored"));
  EXPECT_THAT(token.status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(token.status().message(), "too late");
}

TEST(CancellationTest, OkReasonBecomesCancelled) {
  CancellationSource source;
  source.Cancel(absl::OkStatus());
  EXPECT_THAT(source.token().status(), StatusIs(absl::StatusCode::kCancelled));
}

TEST(CancellationTest, TokensOutliveTheirSource) {
  CancellationToken token;
  {
    CancellationSource source;
    token = source.token();
  }
  EXPECT_TRUE(token.CanBeCancelled());
  EXPECT_FALSE(token.IsCancelled());
}

TEST(CancellationTest, ChildIsCancelledWithItsParentsReason) {
  CancellationSource parent;
  CancellationSource child(parent.token());
  parent.Cancel(spindle::Cancelled("client disconnected"));
  EXPECT_TRUE(child.IsCancelled());
  EXPECT_EQ(child.token().status().message(), "client disconnected");
}

TEST(CancellationTest, CancellingAChildLeavesItsParentAlone) {
  CancellationSource parent;
  CancellationSource child(parent.token());
  child.Cancel();
  EXPECT_FALSE(parent.IsCancelled());
}

TEST(CancellationTest, MovedSourceKeepsItsLinkToTheParent) {
  CancellationSource parent;
  CancellationSource child(parent.token());
  CancellationToken token = child.token();
  CancellationSource moved = std::move(child);
  parent.Cancel();
  EXPECT_TRUE(moved.IsCancelled());
  EXPECT_TRUE(token.IsCancelled());
}

TEST(CancellationTest, CallbackMayDestroyItsOwnRegistration) {
  CancellationSource source;
  std::unique_ptr<CancellationRegistration> registration;
  bool ran = false;
  registration = std::make_unique<CancellationRegistration>(source.token(), [&] {
    registration.reset();
    ran = true;
  });
  source.Cancel();
  EXPECT_TRUE(ran);
  EXPECT_EQ(registration, nullptr);
}

TEST(CancellationTest, DeregistrationWaitsForACallbackRunningOnAnotherThread) {
  CancellationSource source;
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  auto registration = std::make_unique<CancellationRegistration>(source.token(), [&] {
    started.store(true);
    while (!release.load()) {
      std::this_thread::yield();
    }
    finished.store(true);
  });
  std::thread canceller([&] { source.Cancel(); });
  WaitUntil([&] { return started.load(); });
  std::thread releaser([&] {
    for (int i = 0; i < 1000; ++i) {
      std::this_thread::yield();
    }
    release.store(true);
  });
  registration.reset();  // Must not return while the callback runs.
  EXPECT_TRUE(finished.load());
  canceller.join();
  releaser.join();
}

TEST(CancellationTest, ConcurrentCancelAndDeregistrationRunEachCallbackAtMostOnce) {
  for (int round = 0; round < 50; ++round) {
    CancellationSource source;
    constexpr int kThreads = 4;
    constexpr int kPerThread = 50;
    std::atomic<int> runs{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) {
          std::atomic<int> mine{0};
          {
            CancellationRegistration registration(source.token(), [&] {
              mine.fetch_add(1);
              runs.fetch_add(1);
            });
          }
          EXPECT_LE(mine.load(), 1);
        }
      });
    }
    source.Cancel();
    for (auto& thread : threads) {
      thread.join();
    }
    EXPECT_LE(runs.load(), kThreads * kPerThread);
  }
}

// DeadlineSource

Task<absl::Status> WaitForEvent(AsyncEvent* event, CancellationToken token) {
  co_return co_await event->Wait(std::move(token));
}

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

TEST(DeadlineSourceTest, WaitEndsWithDeadlineExceededWhenTheDeadlinePasses) {
  auto executor = MakeExecutor(1);
  AsyncEvent never;
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(20));
  absl::Status status = SyncWait(WaitForEvent(&never, deadline.token()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(std::string(status.message()), HasSubstr("waiting for AsyncEvent"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("exceeded"));
  EXPECT_EQ(spindle::Reason(status), "DEADLINE_EXCEEDED");
  EXPECT_EQ(never.waiters(), 0u);
}

TEST(DeadlineSourceTest, PastDeadlineCancelsAtOnce) {
  auto executor = MakeExecutor(1);
  DeadlineSource deadline(*executor, absl::Now() - absl::Seconds(1));
  EXPECT_THAT(deadline.token().status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(DeadlineSourceTest, InfiniteDeadlineArmsNoTimer) {
  auto executor = MakeExecutor(1);
  DeadlineSource deadline(*executor, absl::InfiniteFuture());
  EXPECT_EQ(executor->Stats().pending_timers, 0);
  EXPECT_FALSE(deadline.token().IsCancelled());
}

// Regression: a coroutine resumed inline by a firing deadline dropped its wait, left the
// DeadlineSource's scope and waited on a new source; Cancel() then went on with the freed state
// (re-used by the new source), cancelled the new wait spuriously and hung in Deregister.
TEST(CancellationTest, ACallbackMayDestroyTheSourceThatIsCancellingIt) {
  auto source = std::make_unique<CancellationSource>();
  CancellationSource* cancelling = source.get();
  std::optional<CancellationRegistration> wait;
  std::unique_ptr<CancellationSource> next;
  std::optional<CancellationRegistration> next_wait;
  bool next_cancelled = false;
  wait.emplace(source->token(), [&] {
    wait.reset();
    source.reset();
    next = std::make_unique<CancellationSource>();
    next_wait.emplace(next->token(), [&] { next_cancelled = true; });
  });
  EXPECT_TRUE(cancelling->Cancel());
  ASSERT_NE(next, nullptr);
  EXPECT_FALSE(next_cancelled);
  EXPECT_FALSE(next->IsCancelled());
  next_wait.reset();
  EXPECT_TRUE(next->Cancel());
  EXPECT_FALSE(next_cancelled);  // Deregistered before.
}

TEST(DeadlineSourceTest, ParentCancellationKeepsItsOwnReason) {
  auto executor = MakeExecutor(1);
  CancellationSource call;
  DeadlineSource deadline(*executor, absl::Now() + absl::Hours(1), call.token());
  call.Cancel(spindle::Cancelled("client went away"));
  EXPECT_THAT(deadline.token().status(), StatusIs(absl::StatusCode::kCancelled));
}

TEST(DeadlineSourceTest, DestructionDisarmsTheTimer) {
  auto executor = MakeExecutor(1);
  {
    DeadlineSource deadline(*executor, absl::Now() + absl::Hours(1));
    EXPECT_EQ(executor->Stats().pending_timers, 1);
  }
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(DeadlineSourceTest, DeadlinesExpireInDeadlineOrder) {
  auto executor = MakeExecutor(1);
  constexpr int kTimers = 40;
  std::mutex mu;
  std::vector<int> fired;
  Latch all(kTimers);
  // Arm in a shuffled order; the callbacks run on the reactor thread as each deadline expires.
  const absl::Time base = absl::Now() + absl::Milliseconds(5);
  std::vector<std::unique_ptr<DeadlineSource>> deadlines;
  std::vector<std::unique_ptr<CancellationRegistration>> registrations;
  for (int i = 0; i < kTimers; ++i) {
    const int slot = (i * 17) % kTimers;  // 17 is coprime with 40: a permutation.
    deadlines.push_back(
        std::make_unique<DeadlineSource>(*executor, base + absl::Milliseconds(slot)));
    registrations.push_back(
        std::make_unique<CancellationRegistration>(deadlines.back()->token(), [&, slot] {
          {
            std::lock_guard<std::mutex> lock(mu);
            fired.push_back(slot);
          }
          all.CountDown();
        }));
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&all)), IsOk());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(fired.size(), static_cast<size_t>(kTimers));
  for (int i = 0; i < kTimers; ++i) {
    EXPECT_EQ(fired[static_cast<size_t>(i)], i);
  }
}

}  // namespace
}  // namespace spindle::coro
