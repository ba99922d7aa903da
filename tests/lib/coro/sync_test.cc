// AsyncMutex, AsyncSemaphore, AsyncEvent and Latch.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "spindle/common/status.h"
#include "spindle/coro/async_event.h"
#include "spindle/coro/async_mutex.h"
#include "spindle/coro/async_semaphore.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/task_scope.h"
#include "tests/lib/coro/test_util.h"

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::spindle::coro::testing::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

// AsyncMutex

Task<absl::Status> LockAndRelease(AsyncMutex* mutex, CancellationToken token) {
  absl::StatusOr<AsyncMutex::Guard> guard = co_await mutex->Lock(std::move(token));
  co_return guard.status();
}

Task<void> LockAndRecord(AsyncMutex* mutex, int id, std::vector<int>* order) {
  absl::StatusOr<AsyncMutex::Guard> guard = co_await mutex->Lock(CancellationToken());
  if (guard.ok()) {
    order->push_back(id);
  }
}

// Holds the lock while `count` waiters queue up behind it (one worker: they run in spawn order).
Task<void> QueueBehindHolder(Executor* executor, AsyncMutex* mutex, int count,
                             std::vector<int>* order) {
  co_await executor->Schedule();
  TaskScope scope(*executor);
  {
    absl::StatusOr<AsyncMutex::Guard> guard = co_await mutex->Lock(CancellationToken());
    for (int i = 0; i < count; ++i) {
      scope.Spawn(LockAndRecord(mutex, i, order));
    }
    while (mutex->waiters() < static_cast<size_t>(count)) {
      co_await Yield();
    }
  }
  co_await scope.Join();
}

Task<void> IncrementUnderLock(AsyncMutex* mutex, int iterations, int64_t* counter) {
  for (int i = 0; i < iterations; ++i) {
    absl::StatusOr<AsyncMutex::Guard> guard = co_await mutex->Lock(CancellationToken());
    const int64_t before = *counter;
    co_await Yield();  // Others run while this coroutine holds the lock.
    *counter = before + 1;
  }
}

Task<void> ContendedCounter(Executor* executor, AsyncMutex* mutex, int coroutines, int iterations,
                            int64_t* counter) {
  co_await executor->Schedule();
  TaskScope scope(*executor);
  for (int i = 0; i < coroutines; ++i) {
    scope.Spawn(IncrementUnderLock(mutex, iterations, counter));
  }
  co_await scope.Join();
}

TEST(AsyncMutexTest, UncontendedLockAndUnlock) {
  AsyncMutex mutex;
  {
    std::optional<AsyncMutex::Guard> guard = mutex.TryLock();
    ASSERT_TRUE(guard.has_value());
    EXPECT_TRUE(mutex.IsLocked());
    EXPECT_FALSE(mutex.TryLock().has_value());
    guard->Unlock();
    EXPECT_FALSE(guard->owns_lock());
    EXPECT_FALSE(mutex.IsLocked());
  }
  EXPECT_THAT(SyncWait(LockAndRelease(&mutex, CancellationToken())), IsOk());
  EXPECT_FALSE(mutex.IsLocked());
}

TEST(AsyncMutexTest, GuardMoveTransfersOwnership) {
  AsyncMutex mutex;
  std::optional<AsyncMutex::Guard> first = mutex.TryLock();
  ASSERT_TRUE(first.has_value());
  AsyncMutex::Guard second = std::move(*first);
  EXPECT_FALSE(first->owns_lock());
  EXPECT_TRUE(second.owns_lock());
  first.reset();
  EXPECT_TRUE(mutex.IsLocked());
  second.Unlock();
  EXPECT_FALSE(mutex.IsLocked());
}

TEST(AsyncMutexTest, WaitersAreGrantedInArrivalOrder) {
  auto executor = MakeExecutor(1);
  AsyncMutex mutex;
  std::vector<int> order;
  SyncWait(QueueBehindHolder(executor.get(), &mutex, 6, &order));
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_FALSE(mutex.IsLocked());
}

TEST(AsyncMutexTest, AlreadyCancelledTokenFailsWithoutTakingTheLock) {
  AsyncMutex mutex;
  CancellationSource source;
  source.Cancel();
  EXPECT_THAT(SyncWait(LockAndRelease(&mutex, source.token())),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_FALSE(mutex.IsLocked());
}

TEST(AsyncMutexTest, CancelledWaiterIsRemovedAndTheNextOneGetsTheLock) {
  auto executor = MakeExecutor(2);
  AsyncMutex mutex;
  std::optional<AsyncMutex::Guard> holder = mutex.TryLock();
  CancellationSource leaving;
  std::vector<int> order;
  Latch done(1);
  TaskScope scope(*executor);
  std::thread canceller([&] {
    WaitUntil([&] { return mutex.waiters() == 1; });
    scope.Spawn(LockAndRecord(&mutex, 2, &order));
    WaitUntil([&] { return mutex.waiters() == 2; });
    leaving.Cancel(spindle::Cancelled("client left"));
  });
  absl::Status status = SyncWait(LockAndRelease(&mutex, leaving.token()));
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(status.message(), "waiting for AsyncMutex lock: client left");
  EXPECT_EQ(mutex.waiters(), 1u);
  holder.reset();  // Goes to the remaining waiter, not to the one that left.
  executor->Shutdown();
  EXPECT_THAT(order, ElementsAre(2));
  EXPECT_FALSE(mutex.IsLocked());
}

TEST(AsyncMutexTest, DeadlineExceededWhileWaiting) {
  auto executor = MakeExecutor(1);
  AsyncMutex mutex;
  std::optional<AsyncMutex::Guard> holder = mutex.TryLock();
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(10));
  absl::Status status = SyncWait(LockAndRelease(&mutex, deadline.token()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(std::string(status.message()), HasSubstr("AsyncMutex lock"));
  EXPECT_EQ(mutex.waiters(), 0u);
}

// A waiter queues; the holder unlocks and the waiter is cancelled at the same time. Whichever
// wins, the waiter must not both report CANCELLED and own the lock: afterwards nobody holds it.
Task<void> RaceGrantAndCancel(AsyncMutex* mutex, CancellationToken token, std::atomic<int>* granted,
                              std::atomic<int>* cancelled, Latch* done) {
  {
    absl::StatusOr<AsyncMutex::Guard> guard = co_await mutex->Lock(std::move(token));
    if (guard.ok()) {
      granted->fetch_add(1);
    } else {
      cancelled->fetch_add(1);
    }
  }  // A granted guard is released here, before the test is told we are done.
  done->CountDown();
}

TEST(AsyncMutexTest, CancelledWaiterIsNeverGranted) {
  auto executor = MakeExecutor(2);
  std::atomic<int> granted{0};
  std::atomic<int> cancelled{0};
  constexpr int kRounds = 300;
  for (int round = 0; round < kRounds; ++round) {
    AsyncMutex mutex;
    std::optional<AsyncMutex::Guard> holder = mutex.TryLock();
    CancellationSource source;
    Latch done(1);
    executor->Spawn(RaceGrantAndCancel(&mutex, source.token(), &granted, &cancelled, &done));
    WaitUntil([&] { return mutex.waiters() == 1; });
    std::thread canceller([&] { source.Cancel(); });
    holder.reset();
    canceller.join();
    ASSERT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
    // A granted waiter released its guard when it finished; a cancelled one never had it.
    ASSERT_FALSE(mutex.IsLocked());
    ASSERT_EQ(mutex.waiters(), 0u);
  }
  EXPECT_EQ(granted.load() + cancelled.load(), kRounds);
}

TEST(AsyncMutexTest, ProvidesMutualExclusionAcrossWorkers) {
  auto executor = MakeExecutor(2);
  AsyncMutex mutex;
  int64_t counter = 0;  // Plain: TSan checks that the lock orders every access.
  SyncWait(ContendedCounter(executor.get(), &mutex, 100, 50, &counter));
  EXPECT_EQ(counter, 100 * 50);
  EXPECT_FALSE(mutex.IsLocked());
}

// AsyncSemaphore

Task<void> AcquireAndRecord(AsyncSemaphore* semaphore, int64_t count, int id,
                            std::vector<int>* order, CancellationToken token) {
  absl::Status status = co_await semaphore->Acquire(count, std::move(token));
  if (status.ok()) {
    order->push_back(id);
  }
}

Task<absl::Status> Acquire(AsyncSemaphore* semaphore, int64_t count, CancellationToken token) {
  co_return co_await semaphore->Acquire(count, std::move(token));
}

TEST(AsyncSemaphoreTest, BigRequestIsNotStarvedBySmallOnes) {
  auto executor = MakeExecutor(1);
  AsyncSemaphore semaphore(0);
  std::vector<int> order;
  TaskScope scope(*executor);
  scope.Spawn(AcquireAndRecord(&semaphore, 5, 1, &order, CancellationToken()));
  WaitUntil([&] { return semaphore.waiters() == 1; });
  scope.Spawn(AcquireAndRecord(&semaphore, 1, 2, &order, CancellationToken()));
  WaitUntil([&] { return semaphore.waiters() == 2; });
  semaphore.Release(1);  // Enough for the small one, but it stays behind the big one.
  EXPECT_EQ(semaphore.waiters(), 2u);
  EXPECT_EQ(semaphore.available(), 1);
  EXPECT_FALSE(semaphore.TryAcquire(1));  // No queue jumping either.
  semaphore.Release(4);
  WaitUntil([&] { return semaphore.waiters() == 1; });
  semaphore.Release(1);
  WaitUntil([&] { return semaphore.waiters() == 0; });
  executor->Shutdown();
  EXPECT_THAT(order, ElementsAre(1, 2));
  EXPECT_EQ(semaphore.available(), 0);
}

TEST(AsyncSemaphoreTest, CancellingTheHeadGrantsTheWaitersBehindIt) {
  auto executor = MakeExecutor(1);
  AsyncSemaphore semaphore(2);
  std::vector<int> order;
  CancellationSource big;
  TaskScope scope(*executor);
  scope.Spawn(AcquireAndRecord(&semaphore, 5, 1, &order, big.token()));
  WaitUntil([&] { return semaphore.waiters() == 1; });
  scope.Spawn(AcquireAndRecord(&semaphore, 2, 2, &order, CancellationToken()));
  WaitUntil([&] { return semaphore.waiters() == 2; });
  big.Cancel();
  WaitUntil([&] { return semaphore.waiters() == 0; });
  executor->Shutdown();
  EXPECT_THAT(order, ElementsAre(2));
  EXPECT_EQ(semaphore.available(), 0);
}

TEST(AsyncSemaphoreTest, NegativeCountIsAnInvalidArgument) {
  AsyncSemaphore semaphore(1);
  EXPECT_THAT(SyncWait(Acquire(&semaphore, -1, CancellationToken())),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(semaphore.TryAcquire(-1));
  EXPECT_EQ(semaphore.available(), 1);
}

TEST(AsyncSemaphoreTest, CancelledWaitEndsWithTheReasonAndTakesNothing) {
  auto executor = MakeExecutor(1);
  AsyncSemaphore semaphore(1);
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(5));
  absl::Status status = SyncWait(Acquire(&semaphore, 2, deadline.token()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(std::string(status.message()), HasSubstr("AsyncSemaphore permits"));
  EXPECT_EQ(semaphore.available(), 1);
  EXPECT_EQ(semaphore.waiters(), 0u);
}

Task<void> AcquireReleaseRaces(AsyncSemaphore* semaphore, CancellationToken token, Latch* done) {
  absl::Status status = co_await semaphore->Acquire(2, std::move(token));
  if (status.ok()) {
    co_await Yield();
    semaphore->Release(2);
  }
  done->CountDown();
}

TEST(AsyncSemaphoreTest, CancelledWaiterIsNeverGranted) {
  auto executor = MakeExecutor(2);
  constexpr int kWaiters = 500;
  AsyncSemaphore semaphore(3);
  std::vector<std::unique_ptr<CancellationSource>> sources;
  Latch done(kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    sources.push_back(std::make_unique<CancellationSource>());
    executor->Spawn(AcquireReleaseRaces(&semaphore, sources.back()->token(), &done));
  }
  for (int i = 0; i < kWaiters; i += 2) {
    sources[static_cast<size_t>(i)]->Cancel();
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  // Permits are conserved: a cancelled waiter never kept any.
  EXPECT_EQ(semaphore.available(), 3);
  EXPECT_EQ(semaphore.waiters(), 0u);
}

Task<void> AcquireOne(AsyncSemaphore* semaphore, Executor* executor, std::atomic<int>* on_worker,
                      Latch* done) {
  co_await executor->Schedule();
  absl::Status status = co_await semaphore->Acquire(1, CancellationToken());
  if (status.ok() && executor->IsCurrent()) {
    on_worker->fetch_add(1);
  }
  done->CountDown();
}

TEST(AsyncSemaphoreTest, ManyThreadsReleasingConcurrently) {
  auto executor = MakeExecutor(2);
  constexpr int kWaiters = 1000;
  constexpr int kThreads = 8;
  AsyncSemaphore semaphore(0);
  std::atomic<int> on_worker{0};
  Latch done(kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    executor->Spawn(AcquireOne(&semaphore, executor.get(), &on_worker, &done));
  }
  std::vector<std::thread> releasers;
  for (int t = 0; t < kThreads; ++t) {
    releasers.emplace_back([&] {
      for (int i = 0; i < kWaiters / kThreads; ++i) {
        semaphore.Release(1);
      }
    });
  }
  for (auto& releaser : releasers) {
    releaser.join();
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(on_worker.load(), kWaiters);
  EXPECT_EQ(semaphore.available(), 0);
}

// AsyncEvent

Task<absl::Status> WaitForEvent(AsyncEvent* event, CancellationToken token) {
  co_return co_await event->Wait(std::move(token));
}

Task<void> WaitForEventOnWorker(AsyncEvent* event, Executor* executor, std::atomic<int>* on_worker,
                                Latch* done) {
  co_await executor->Schedule();
  absl::Status status = co_await event->Wait(CancellationToken());
  if (status.ok() && executor->IsCurrent()) {
    on_worker->fetch_add(1);
  }
  done->CountDown();
}

TEST(AsyncEventTest, SetWakesEveryWaiterOnItsExecutor) {
  auto executor = MakeExecutor(2);
  AsyncEvent event;
  std::atomic<int> on_worker{0};
  Latch done(50);
  for (int i = 0; i < 50; ++i) {
    executor->Spawn(WaitForEventOnWorker(&event, executor.get(), &on_worker, &done));
  }
  WaitUntil([&] { return event.waiters() == 50; });
  event.Set();  // From this (foreign) thread.
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(on_worker.load(), 50);
  EXPECT_EQ(event.waiters(), 0u);
}

TEST(AsyncEventTest, WaitOnASetEventReturnsAtOnceUntilCleared) {
  auto executor = MakeExecutor(1);
  AsyncEvent event(/*set=*/true);
  EXPECT_TRUE(event.IsSet());
  EXPECT_THAT(SyncWait(WaitForEvent(&event, CancellationToken())), IsOk());
  event.Clear();
  EXPECT_FALSE(event.IsSet());
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(5));
  EXPECT_THAT(SyncWait(WaitForEvent(&event, deadline.token())),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST(AsyncEventTest, CancelledWaitIsRemoved) {
  AsyncEvent event;
  CancellationSource source;
  std::thread canceller([&] {
    WaitUntil([&] { return event.waiters() == 1; });
    source.Cancel();
  });
  absl::Status status = SyncWait(WaitForEvent(&event, source.token()));
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(std::string(status.message()), HasSubstr("waiting for AsyncEvent"));
  EXPECT_EQ(event.waiters(), 0u);
}

// Latch

TEST(LatchTest, WaitReturnsOnceTheCountReachesZero) {
  Latch latch(3);
  EXPECT_FALSE(latch.TryWait());
  std::thread counter([&] {
    latch.CountDown();
    latch.CountDown(2);
  });
  EXPECT_THAT(SyncWait(AwaitLatch(&latch)), IsOk());
  counter.join();
  EXPECT_TRUE(latch.TryWait());
  EXPECT_EQ(latch.count(), 0);
}

TEST(LatchTest, CountStopsAtZeroAndAZeroLatchIsOpen) {
  Latch latch(1);
  latch.CountDown(5);
  EXPECT_EQ(latch.count(), 0);
  Latch open(0);
  EXPECT_THAT(SyncWait(AwaitLatch(&open)), IsOk());
}

TEST(LatchTest, ManyThreadsCountingDown) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 1000;
  Latch latch(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        latch.CountDown();
      }
    });
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&latch)), IsOk());
  for (auto& thread : threads) {
    thread.join();
  }
}

Task<absl::Status> WaitForLatch(Latch* latch, CancellationToken token) {
  co_return co_await latch->Wait(std::move(token));
}

TEST(LatchTest, CancelledWaitNamesTheLatch) {
  Latch latch(1);
  CancellationSource source;
  source.Cancel(spindle::Cancelled("gone"));
  absl::Status status = SyncWait(WaitForLatch(&latch, source.token()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(status.message(), "waiting for Latch: gone");
  EXPECT_EQ(latch.count(), 1);
}

}  // namespace
}  // namespace spindle::coro
