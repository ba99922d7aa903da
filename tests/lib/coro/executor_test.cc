// Executor: scheduling, spawning, posting, shutdown and stats; TaskScope.
#include "spindle/coro/executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "spindle/coro/async_event.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/task.h"
#include "spindle/coro/task_scope.h"
#include "tests/lib/coro/test_util.h"

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::spindle::coro::testing::WaitUntil;
using ::testing::ElementsAre;

Task<std::thread::id> ThreadAfterSchedule(Executor* executor) {
  co_await executor->Schedule();
  co_return std::this_thread::get_id();
}

Task<bool> OnExecutorAfterSchedule(Executor* executor) {
  co_await executor->Schedule();
  co_return Executor::Current() == executor && executor->IsCurrent();
}

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

Task<absl::Status> AwaitEvent(AsyncEvent* event) {
  co_return co_await event->Wait(CancellationToken());
}

Task<void> CountAndArrive(std::atomic<int>* count, Latch* done) {
  count->fetch_add(1, std::memory_order_relaxed);
  done->CountDown();
  co_return;
}

TEST(ExecutorTest, CreateRejectsNegativeThreads) {
  EXPECT_THAT(Executor::Create({.threads = -1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ExecutorTest, ZeroThreadsMeansOnePerCore) {
  auto executor = MakeExecutor(0);
  EXPECT_EQ(executor->threads(),
            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

TEST(ExecutorTest, ScheduleMovesTheCoroutineOntoAWorker) {
  auto executor = MakeExecutor(2);
  EXPECT_NE(SyncWait(ThreadAfterSchedule(executor.get())), std::this_thread::get_id());
  EXPECT_TRUE(SyncWait(OnExecutorAfterSchedule(executor.get())));
  EXPECT_EQ(Executor::Current(), nullptr);
  EXPECT_FALSE(executor->IsCurrent());
}

TEST(ExecutorTest, SpawnRunsEveryTask) {
  auto executor = MakeExecutor(2);
  constexpr int kTasks = 10'000;
  std::atomic<int> count{0};
  Latch done(kTasks);
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_TRUE(executor->Spawn(CountAndArrive(&count, &done)));
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(count.load(), kTasks);
}

TEST(ExecutorTest, PostRunsCallbacksFromForeignThreadsOnWorkers) {
  auto executor = MakeExecutor(2);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2'000;
  std::atomic<int> on_worker{0};
  Latch done(kThreads * kPerThread);
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(executor->Post([&] {
          if (executor->IsCurrent()) {
            on_worker.fetch_add(1, std::memory_order_relaxed);
          }
          done.CountDown();
        }));
      }
    });
  }
  for (auto& poster : posters) {
    poster.join();
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(on_worker.load(), kThreads * kPerThread);
  EXPECT_GE(executor->Stats().posted_total, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_GT(executor->Stats().queue_lag.count, 0u);
}

Task<void> RecordTurns(std::string name, int turns, std::vector<std::string>* log) {
  for (int i = 0; i < turns; ++i) {
    log->push_back(name);
    co_await Yield();
  }
}

Task<void> InterleaveTwo(Executor* executor, std::vector<std::string>* log) {
  co_await executor->Schedule();
  TaskScope scope(*executor);
  scope.Spawn(RecordTurns("a", 3, log));
  scope.Spawn(RecordTurns("b", 3, log));
  co_await scope.Join();
}

TEST(ExecutorTest, YieldLetsOtherRunnableWorkGoFirst) {
  auto executor = MakeExecutor(1);
  std::vector<std::string> log;
  SyncWait(InterleaveTwo(executor.get(), &log));
  EXPECT_THAT(log, ElementsAre("a", "b", "a", "b", "a", "b"));
}

TEST(ExecutorTest, YieldOutsideAnExecutorDoesNothing) {
  std::vector<std::string> log;
  SyncWait(RecordTurns("x", 2, &log));
  EXPECT_THAT(log, ElementsAre("x", "x"));
}

Task<void> WaitAndCount(AsyncEvent* event, Executor* executor, std::atomic<int>* on_worker,
                        Latch* done) {
  co_await executor->Schedule();
  // (Not `if ((co_await ...).ok())`: GCC 12 misaligns frames with co_await in a condition.)
  absl::Status status = co_await event->Wait(CancellationToken());
  if (status.ok() && executor->IsCurrent()) {
    on_worker->fetch_add(1, std::memory_order_relaxed);
  }
  done->CountDown();
}

TEST(ExecutorTest, ManyThreadsResumingCoroutinesConcurrently) {
  auto executor = MakeExecutor(2);
  constexpr int kCoroutines = 400;
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    std::vector<std::unique_ptr<AsyncEvent>> events;
    for (int i = 0; i < kCoroutines; ++i) {
      events.push_back(std::make_unique<AsyncEvent>());
    }
    std::atomic<int> on_worker{0};
    Latch done(kCoroutines);
    for (int i = 0; i < kCoroutines; ++i) {
      executor->Spawn(
          WaitAndCount(events[static_cast<size_t>(i)].get(), executor.get(), &on_worker, &done));
    }
    std::vector<std::thread> setters;
    for (int t = 0; t < kThreads; ++t) {
      setters.emplace_back([&, t] {
        for (int i = t; i < kCoroutines; i += kThreads) {
          events[static_cast<size_t>(i)]->Set();
        }
      });
    }
    for (auto& setter : setters) {
      setter.join();
    }
    EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
    EXPECT_EQ(on_worker.load(), kCoroutines);
  }
}

Task<void> SleepAndRecord(Executor* executor, absl::Duration duration, CancellationToken token,
                          std::atomic<int>* cancelled) {
  absl::Status status = co_await executor->SleepFor(duration, std::move(token));
  if (status.code() == absl::StatusCode::kCancelled) {
    cancelled->fetch_add(1, std::memory_order_relaxed);
  }
}

TEST(ExecutorTest, ShutdownCancelsPendingWaitsAndWaitsForTheTasks) {
  auto executor = MakeExecutor(2);
  constexpr int kTasks = 200;
  std::atomic<int> cancelled{0};
  for (int i = 0; i < kTasks; ++i) {
    executor->Spawn(
        SleepAndRecord(executor.get(), absl::Hours(1), executor->shutdown_token(), &cancelled));
  }
  WaitUntil([&] { return executor->Stats().pending_timers == kTasks; });
  executor->Shutdown();
  EXPECT_EQ(cancelled.load(), kTasks);
  ExecutorStats stats = executor->Stats();
  EXPECT_EQ(stats.pending_timers, 0);
  EXPECT_EQ(stats.tasks_spawned_total, static_cast<uint64_t>(kTasks));
  EXPECT_EQ(stats.tasks_completed_total, static_cast<uint64_t>(kTasks));
}

TEST(ExecutorTest, ShutdownRunsWorkQueuedBeforeIt) {
  auto executor = MakeExecutor(2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 5'000; ++i) {
    ASSERT_TRUE(executor->Post([&] { ran.fetch_add(1, std::memory_order_relaxed); }));
  }
  executor->Shutdown();
  EXPECT_EQ(ran.load(), 5'000);
}

TEST(ExecutorTest, SpawnAndPostAreRefusedAfterShutdown) {
  auto executor = MakeExecutor(1);
  executor->Shutdown();
  executor->Shutdown();  // Idempotent.
  std::atomic<int> count{0};
  Latch unused(1);
  EXPECT_FALSE(executor->Spawn(CountAndArrive(&count, &unused)));
  EXPECT_FALSE(executor->Post([&] { count.fetch_add(1); }));
  EXPECT_EQ(count.load(), 0);
  EXPECT_TRUE(executor->shutdown_token().IsCancelled());
  // A coroutine hopping onto a shut-down executor continues on the calling thread.
  EXPECT_EQ(SyncWait(ThreadAfterSchedule(executor.get())), std::this_thread::get_id());
}

TEST(ExecutorTest, StatsReportThreadsTasksAndTimers) {
  auto executor = MakeExecutor(2, "stats");
  CancellationSource source;
  std::atomic<int> cancelled{0};
  executor->Spawn(SleepAndRecord(executor.get(), absl::Hours(1), source.token(), &cancelled));
  WaitUntil([&] { return executor->Stats().pending_timers == 1; });
  ExecutorStats stats = executor->Stats();
  EXPECT_EQ(stats.name, "stats");
  EXPECT_EQ(stats.threads, 2);
  EXPECT_EQ(stats.tasks_spawned_total, 1u);
  EXPECT_EQ(stats.tasks_completed_total, 0u);
  EXPECT_GE(stats.live_coroutines, 1);
  source.Cancel();
  executor->Shutdown();
  EXPECT_EQ(executor->Stats().tasks_completed_total, 1u);
  EXPECT_EQ(cancelled.load(), 1);
}

TEST(ExecutorTest, TimerLagIsMeasured) {
  auto executor = MakeExecutor(1);
  std::atomic<int> cancelled{0};
  executor->Spawn(
      SleepAndRecord(executor.get(), absl::Milliseconds(1), CancellationToken(), &cancelled));
  executor->Shutdown();
  LagStats lag = executor->Stats().timer_lag;
  EXPECT_EQ(lag.count, 1u);
  uint64_t in_buckets = 0;
  for (uint64_t bucket : lag.buckets) {
    in_buckets += bucket;
  }
  EXPECT_EQ(in_buckets, 1u);
  EXPECT_EQ(LagStats::BucketUpperBoundMicros(0), 1.0);
  EXPECT_EQ(LagStats::BucketUpperBoundMicros(10), 1024.0);
}

// TaskScope

Task<void> WaitForCancel(CancellationToken token, std::atomic<int>* cancelled) {
  AsyncEvent never;
  absl::Status status = co_await never.Wait(std::move(token));
  if (!status.ok()) {
    cancelled->fetch_add(1, std::memory_order_relaxed);
  }
}

Task<void> Throw() {
  throw std::runtime_error("child failed");
  co_return;
}

Task<void> SpawnGrandchildren(TaskScope* scope, std::atomic<int>* count, Latch* done, int n) {
  for (int i = 0; i < n; ++i) {
    scope->Spawn(CountAndArrive(count, done));
  }
  co_return;
}

Task<int64_t> SpawnAndJoin(Executor* executor, int children, std::atomic<int>* count) {
  co_await executor->Schedule();
  TaskScope scope(*executor);
  Latch done(children);
  for (int i = 0; i < children; ++i) {
    scope.Spawn(CountAndArrive(count, &done));
  }
  co_await scope.Join();
  co_return scope.active();
}

Task<void> CancelAndJoin(Executor* executor, int children, std::atomic<int>* cancelled) {
  TaskScope scope(*executor);
  for (int i = 0; i < children; ++i) {
    scope.Spawn(WaitForCancel(scope.token(), cancelled));
  }
  scope.Cancel();
  co_await scope.Join();
}

Task<std::string> JoinThrowingScope(Executor* executor, std::atomic<int>* cancelled) {
  TaskScope scope(*executor);
  scope.Spawn(WaitForCancel(scope.token(), cancelled));
  scope.Spawn(Throw());
  try {
    co_await scope.Join();
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

Task<void> JoinEmpty(Executor* executor) {
  TaskScope scope(*executor);
  co_await scope.Join();
}

Task<void> JoinWithParent(Executor* executor, CancellationToken parent, std::atomic<int>* cancelled,
                          AsyncEvent* started) {
  TaskScope scope(*executor, parent);
  scope.Spawn(WaitForCancel(scope.token(), cancelled));
  started->Set();
  co_await scope.Join();
}

Task<void> NestedSpawns(Executor* executor, std::atomic<int>* count) {
  TaskScope scope(*executor);
  Latch done(100);
  scope.Spawn(SpawnGrandchildren(&scope, count, &done, 100));
  co_await scope.Join();
}

TEST(TaskScopeTest, JoinWaitsForEveryChildAndFreesTheirFrames) {
  auto executor = MakeExecutor(2);
  std::atomic<int> count{0};
  EXPECT_EQ(SyncWait(SpawnAndJoin(executor.get(), 1000, &count)), 0);
  EXPECT_EQ(count.load(), 1000);
}

TEST(TaskScopeTest, JoinWithoutChildrenReturnsAtOnce) {
  auto executor = MakeExecutor(1);
  SyncWait(JoinEmpty(executor.get()));
}

TEST(TaskScopeTest, CancelReachesEveryChild) {
  auto executor = MakeExecutor(2);
  std::atomic<int> cancelled{0};
  SyncWait(CancelAndJoin(executor.get(), 100, &cancelled));
  EXPECT_EQ(cancelled.load(), 100);
}

TEST(TaskScopeTest, ChildExceptionCancelsSiblingsAndIsRethrownByJoin) {
  auto executor = MakeExecutor(2);
  std::atomic<int> cancelled{0};
  EXPECT_EQ(SyncWait(JoinThrowingScope(executor.get(), &cancelled)), "child failed");
  EXPECT_EQ(cancelled.load(), 1);
}

TEST(TaskScopeTest, ParentCancellationReachesChildren) {
  auto executor = MakeExecutor(2);
  CancellationSource parent;
  std::atomic<int> cancelled{0};
  AsyncEvent started;
  std::thread canceller([&] {
    EXPECT_THAT(SyncWait(AwaitEvent(&started)), IsOk());
    parent.Cancel();
  });
  SyncWait(JoinWithParent(executor.get(), parent.token(), &cancelled, &started));
  canceller.join();
  EXPECT_EQ(cancelled.load(), 1);
}

TEST(TaskScopeTest, ChildrenMaySpawnIntoTheirScope) {
  auto executor = MakeExecutor(2);
  std::atomic<int> count{0};
  SyncWait(NestedSpawns(executor.get(), &count));
  EXPECT_EQ(count.load(), 100);
}

TEST(TaskScopeTest, ExecutorShutdownCancelsScopesOnIt) {
  auto executor = MakeExecutor(2);
  std::atomic<int> cancelled{0};
  auto scope = std::make_unique<TaskScope>(*executor);
  scope->Spawn(WaitForCancel(scope->token(), &cancelled));
  executor->Shutdown();
  EXPECT_EQ(cancelled.load(), 1);
  EXPECT_EQ(scope->active(), 0);
}

}  // namespace
}  // namespace spindle::coro
