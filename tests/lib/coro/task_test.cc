// Task<T>, SyncWait, WhenAll and WhenAny.
#include "spindle/coro/task.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spindle/coro/async_event.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/when_all.h"
#include "spindle/coro/when_any.h"
#include "tests/lib/coro/test_util.h"

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::testing::ElementsAre;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kLongChain = 100'000;
#else
constexpr int kLongChain = 1'000'000;
#endif

Task<int> Value(int value) { co_return value; }

Task<std::string> Text(std::string text) { co_return text; }

Task<void> Nothing() { co_return; }

Task<void> SetTrue(bool* flag) {
  *flag = true;
  co_return;
}

Task<int> Throws(std::string message) {
  throw std::runtime_error(message);
  co_return 0;
}

Task<std::string> CatchFrom(Task<int> task) {
  try {
    co_await std::move(task);
  } catch (const std::runtime_error& e) {
    co_return std::string("caught: ") + e.what();
  }
  co_return "nothing thrown";
}

Task<std::unique_ptr<int>> MoveOnly(int value) { co_return std::make_unique<int>(value); }

Task<absl::StatusOr<int>> Parse(std::string text) {
  if (text.empty()) {
    co_return absl::InvalidArgumentError("empty");
  }
  co_return static_cast<int>(text.size());
}

Task<int64_t> SumSynchronously(int count) {
  int64_t sum = 0;
  for (int i = 0; i < count; ++i) {
    sum += co_await Value(1);
  }
  co_return sum;
}

Task<int> NestedOnExecutor(Executor* executor, int depth) {
  if (depth == 0) {
    co_await executor->Schedule();
    co_return 0;
  }
  co_return 1 + co_await NestedOnExecutor(executor, depth - 1);
}

TEST(TaskTest, BodyRunsOnlyWhenAwaited) {
  bool ran = false;
  Task<void> task = SetTrue(&ran);
  EXPECT_FALSE(ran);
  SyncWait(std::move(task));
  EXPECT_TRUE(ran);
}

TEST(TaskTest, DestroyingAnUnstartedTaskFreesItsFrameWithoutRunning) {
  const int64_t before = internal::LiveFrames::Count();
  bool ran = false;
  {
    Task<void> task = SetTrue(&ran);
    EXPECT_EQ(internal::LiveFrames::Count(), before + 1);
  }
  EXPECT_EQ(internal::LiveFrames::Count(), before);
  EXPECT_FALSE(ran);
}

TEST(TaskTest, YieldsValuesOfEveryKind) {
  EXPECT_EQ(SyncWait(Value(42)), 42);
  EXPECT_EQ(SyncWait(Text("spindle")), "spindle");
  EXPECT_EQ(*SyncWait(MoveOnly(7)), 7);
  EXPECT_THAT(SyncWait(Parse("abc")), IsOk());
  EXPECT_EQ(*SyncWait(Parse("abc")), 3);
  EXPECT_THAT(SyncWait(Parse("")), StatusIs(absl::StatusCode::kInvalidArgument));
  SyncWait(Nothing());
}

TEST(TaskTest, ExceptionPropagatesToTheAwaiter) {
  EXPECT_EQ(SyncWait(CatchFrom(Throws("boom"))), "caught: boom");
  EXPECT_THROW(SyncWait(Throws("boom")), std::runtime_error);
}

TEST(TaskTest, MoveTransfersOwnership) {
  Task<int> a = Value(5);
  Task<int> b = std::move(a);
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state.
  EXPECT_TRUE(b.valid());
  EXPECT_EQ(SyncWait(std::move(b)), 5);
}

TEST(TaskTest, LongSynchronousChainUsesConstantStack) {
  // Each co_await of a task that finishes without suspending returns to the loop instead of
  // nesting; without that this overflows the stack in every build mode (GCC only turns symmetric
  // transfer into a tail call at -O2 without sanitizers).
  EXPECT_EQ(SyncWait(SumSynchronously(kLongChain)), kLongChain);
}

TEST(TaskTest, CompletionsCascadeThroughNestedAwaitersOnAnotherThread) {
  auto executor = MakeExecutor(2);
  EXPECT_EQ(SyncWait(NestedOnExecutor(executor.get(), 1000)), 1000);
}

TEST(SyncWaitTest, ReturnsWhenTheTaskFinishesOnAnotherThread) {
  auto executor = MakeExecutor(1);
  EXPECT_EQ(SyncWait(NestedOnExecutor(executor.get(), 0)), 0);
}

// WhenAll

Task<absl::Status> WaitThenSet(AsyncEvent* wait_for, AsyncEvent* to_set) {
  absl::Status status = co_await wait_for->Wait(CancellationToken());
  to_set->Set();
  co_return status;
}

Task<absl::Status> SetThenWait(AsyncEvent* to_set, AsyncEvent* wait_for) {
  to_set->Set();
  co_return co_await wait_for->Wait(CancellationToken());
}

Task<int> ThrowAfterSetting(AsyncEvent* event) {
  event->Set();
  throw std::runtime_error("first");
  co_return 0;
}

Task<int> WaitAndRecord(AsyncEvent* event, bool* finished) {
  (void)co_await event->Wait(CancellationToken());
  *finished = true;
  co_return 1;
}

Task<int> ValueOnExecutor(Executor* executor, int value) {
  co_await executor->Schedule();
  (void)co_await executor->SleepFor(absl::Milliseconds(value % 3), CancellationToken());
  co_return value;
}

TEST(WhenAllTest, ReturnsATupleInArgumentOrder) {
  auto [number, text, nothing] = SyncWait(WhenAll(Value(1), Text("two"), Nothing()));
  EXPECT_EQ(number, 1);
  EXPECT_EQ(text, "two");
  EXPECT_EQ(nothing, std::monostate());
}

TEST(WhenAllTest, ReturnsAVectorInArgumentOrder) {
  std::vector<Task<int>> tasks;
  for (int i = 0; i < 5; ++i) {
    tasks.push_back(Value(i * i));
  }
  EXPECT_THAT(SyncWait(WhenAll(std::move(tasks))), ElementsAre(0, 1, 4, 9, 16));
  SyncWait(WhenAll(std::vector<Task<void>>{}));
  EXPECT_TRUE(SyncWait(WhenAll(std::vector<Task<int>>{})).empty());
}

TEST(WhenAllTest, ChildrenRunConcurrently) {
  // Sequential execution would deadlock: each child needs the other to make progress.
  AsyncEvent a;
  AsyncEvent b;
  auto [first, second] = SyncWait(WhenAll(WaitThenSet(&a, &b), SetThenWait(&a, &b)));
  EXPECT_THAT(first, IsOk());
  EXPECT_THAT(second, IsOk());
}

TEST(WhenAllTest, WaitsForEveryChildThenRethrowsTheFirstException) {
  AsyncEvent event;
  bool finished = false;
  std::vector<Task<int>> tasks;
  tasks.push_back(WaitAndRecord(&event, &finished));
  tasks.push_back(ThrowAfterSetting(&event));
  EXPECT_THROW(SyncWait(WhenAll(std::move(tasks))), std::runtime_error);
  EXPECT_TRUE(finished);
}

TEST(WhenAllTest, ChildrenFinishingOnWorkersResumeTheAwaiter) {
  auto executor = MakeExecutor(2);
  std::vector<Task<int>> tasks;
  for (int i = 0; i < 50; ++i) {
    tasks.push_back(ValueOnExecutor(executor.get(), i));
  }
  std::vector<int> results = SyncWait(WhenAll(std::move(tasks)));
  ASSERT_EQ(results.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(results[static_cast<size_t>(i)], i);
  }
}

// WhenAny

Task<absl::Status> SleepAndRecord(Executor* executor, absl::Duration duration,
                                  CancellationToken token, absl::Status* outcome) {
  *outcome = co_await executor->SleepFor(duration, token);
  co_return *outcome;
}

Task<absl::Status> SucceedAfterYield(Executor* executor) {
  co_await executor->Schedule();
  co_return absl::OkStatus();
}

Task<absl::Status> WaitForEvent(AsyncEvent* event, CancellationToken token) {
  co_return co_await event->Wait(token);
}

Task<absl::Status> ThrowOnWorker(Executor* executor) {
  co_await executor->Schedule();
  throw std::runtime_error("winner threw");
  co_return absl::OkStatus();
}

TEST(WhenAnyTest, FirstToFinishWinsAndLosersAreCancelledAndAwaited) {
  auto executor = MakeExecutor(2);
  absl::Status loser = absl::UnknownError("not finished");
  AnyResult<absl::Status> result = SyncWait(WhenAny(
      CancellationToken(),
      [&](CancellationToken token) {
        return SleepAndRecord(executor.get(), absl::Hours(1), token, &loser);
      },
      [&](CancellationToken) { return SucceedAfterYield(executor.get()); }));
  EXPECT_EQ(result.index, 1u);
  EXPECT_THAT(result.value, IsOk());
  // The loser finished (cancelled) before WhenAny returned, and its timer is gone.
  EXPECT_THAT(loser, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(WhenAnyTest, ParentCancellationEndsEveryAlternative) {
  auto executor = MakeExecutor(2);
  CancellationSource parent;
  AsyncEvent never;
  std::vector<AnyFactory<absl::Status>> alternatives;
  alternatives.emplace_back(
      [&](CancellationToken token) { return WaitForEvent(&never, std::move(token)); });
  alternatives.emplace_back(
      [&](CancellationToken token) { return WaitForEvent(&never, std::move(token)); });
  std::thread canceller([&] {
    testing::WaitUntil([&] { return never.waiters() == 2; });
    parent.Cancel(absl::CancelledError("client went away"));
  });
  AnyResult<absl::Status> result = SyncWait(WhenAny(parent.token(), std::move(alternatives)));
  canceller.join();
  EXPECT_THAT(result.value, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(std::string(result.value.message()), ::testing::HasSubstr("client went away"));
  EXPECT_EQ(never.waiters(), 0u);
}

TEST(WhenAnyTest, WinnersExceptionIsRethrownAfterLosersFinish) {
  auto executor = MakeExecutor(2);
  absl::Status loser = absl::UnknownError("not finished");
  EXPECT_THROW(
      SyncWait(WhenAny(
          CancellationToken(), [&](CancellationToken) { return ThrowOnWorker(executor.get()); },
          [&](CancellationToken token) {
            return SleepAndRecord(executor.get(), absl::Hours(1), token, &loser);
          })),
      std::runtime_error);
  EXPECT_THAT(loser, StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace spindle::coro
