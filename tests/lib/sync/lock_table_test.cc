#include "spindle/sync/lock_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/sync/session_table.h"
#include "tests/lib/sync/capture.h"
#include "tests/lib/sync/manual_timers.h"

namespace spindle::sync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Pending {
  Capture<AcquireResult> result;
  WaitHandle handle;
};

class LockTableTest : public ::testing::Test {
 protected:
  AcquireParams Params(std::string name, bool wait = true) {
    AcquireParams params;
    params.name = std::move(name);
    params.wait = wait;
    return params;
  }

  std::unique_ptr<Pending> Start(AcquireParams params) {
    auto pending = std::make_unique<Pending>();
    pending->handle = locks_.Acquire(std::move(params), pending->result.Callback());
    return pending;
  }

  // Acquires at once or fails the test.
  GrantInfo MustAcquire(AcquireParams params) {
    auto pending = Start(std::move(params));
    EXPECT_TRUE(pending->result.done());
    auto value = pending->result.value();
    EXPECT_TRUE(value.ok()) << value.status();
    EXPECT_TRUE(value->acquired);
    return value->grant;
  }

  std::string NewSession(absl::Duration ttl = absl::Seconds(10)) {
    CreateSessionParams params;
    params.ttl = ttl;
    return sessions_.Create(params)->session_id;
  }

  ReleaseParams Lease(const GrantInfo& grant) {
    ReleaseParams params;
    params.lease_id = grant.lease_id;
    return params;
  }

  // A grant of all `permits` of a new semaphore `name`.
  GrantInfo WholeSemaphore(std::string name, int32_t permits) {
    AcquireParams params = Params(std::move(name));
    params.kind = LockKind::kSemaphore;
    params.config.permits = permits;
    params.permits = permits;
    return MustAcquire(params);
  }

  ManualTimers timers_;
  SessionTable sessions_{timers_};
  LockTable locks_{timers_, &sessions_};
};

TEST_F(LockTableTest, TryAcquireOfAHeldMutexAnswersNotAcquired) {
  GrantInfo grant = MustAcquire(Params("m"));
  EXPECT_EQ(grant.kind, LockKind::kMutex);
  EXPECT_GT(grant.fencing_token, 0);
  EXPECT_EQ(grant.expire_time, timers_.Now() + kDefaultLeaseTtl);
  auto second = Start(Params("m", /*wait=*/false));
  ASSERT_TRUE(second->result.done());
  EXPECT_FALSE(second->result.value()->acquired);
  EXPECT_FALSE(second->handle.pending());
}

TEST_F(LockTableTest, WaitersAreGrantedInFifoOrder) {
  GrantInfo first = MustAcquire(Params("m"));
  std::vector<std::unique_ptr<Pending>> waiters;
  for (int i = 0; i < 5; ++i) {
    waiters.push_back(Start(Params("m")));
    EXPECT_FALSE(waiters.back()->result.done());
  }
  GrantInfo held = first;
  for (int i = 0; i < 5; ++i) {
    auto released = locks_.Release(Lease(held));
    ASSERT_TRUE(released.ok()) << released.status();
    EXPECT_EQ(released->granted_waiters, 1);
    ASSERT_TRUE(waiters[i]->result.done()) << i;
    for (int j = i + 1; j < 5; ++j) {
      EXPECT_FALSE(waiters[j]->result.done());
    }
    held = waiters[i]->result.value()->grant;
  }
}

TEST_F(LockTableTest, FencingTokensStrictlyIncrease) {
  int64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    GrantInfo grant = MustAcquire(Params("m"));
    EXPECT_GT(grant.fencing_token, last);
    last = grant.fencing_token;
    ASSERT_TRUE(locks_.Release(Lease(grant)).ok());
  }
  // Across delete and re-creation too.
  ASSERT_TRUE(locks_.Delete("m").ok());
  EXPECT_GT(MustAcquire(Params("m")).fencing_token, last);
}

TEST_F(LockTableTest, CheckFenceHoldsOnlyForTheCurrentGrant) {
  GrantInfo first = MustAcquire(Params("m"));
  EXPECT_TRUE(locks_.CheckFence("m", first.fencing_token).ok());
  ASSERT_TRUE(locks_.Release(Lease(first)).ok());
  absl::Status stale = locks_.CheckFence("m", first.fencing_token);
  EXPECT_TRUE(absl::IsAborted(stale)) << stale;
  EXPECT_THAT(std::string(stale.message()), HasSubstr("'m'"));

  GrantInfo second = MustAcquire(Params("m"));
  EXPECT_TRUE(locks_.CheckFence("m", second.fencing_token).ok());
  EXPECT_TRUE(absl::IsAborted(locks_.CheckFence("m", first.fencing_token)));
  EXPECT_TRUE(absl::IsAborted(locks_.CheckFence("other", second.fencing_token)));
  // A lease past its expiry no longer fences, even before its timer removes the grant.
  timers_.Advance(kDefaultLeaseTtl);
  EXPECT_TRUE(absl::IsAborted(locks_.CheckFence("m", second.fencing_token)));

  EXPECT_TRUE(absl::IsInvalidArgument(locks_.CheckFence("m", 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(locks_.CheckFence("bad name", 1)));
}

TEST_F(LockTableTest, MaxWaitRunningOutAnswersNotAcquired) {
  MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.max_wait = absl::Seconds(1);
  auto waiter = Start(params);
  timers_.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(waiter->result.done());
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(waiter->result.done());
  ASSERT_TRUE(waiter->result.value().ok());
  EXPECT_FALSE(waiter->result.value()->acquired);
  EXPECT_EQ(locks_.Stats().waiters, 0);
}

TEST_F(LockTableTest, DeadlinePassingAnswersDeadlineExceededAndRemovesTheWaiter) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.deadline = timers_.Now() + absl::Seconds(2);
  auto waiter = Start(params);
  timers_.Advance(absl::Seconds(2));
  EXPECT_EQ(waiter->result.status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  EXPECT_EQ(locks_.Describe("m", 0)->info.holders, 0);
}

TEST_F(LockTableTest, CancelledWaiterIsNeverGranted) {
  GrantInfo holder = MustAcquire(Params("m"));
  auto cancelled = Start(Params("m"));
  auto next = Start(Params("m"));
  EXPECT_TRUE(locks_.Cancel(cancelled->handle));
  EXPECT_FALSE(locks_.Cancel(cancelled->handle));
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  EXPECT_EQ(cancelled->result.calls(), 0);
  ASSERT_TRUE(next->result.done());
  EXPECT_TRUE(next->result.value()->acquired);
  EXPECT_FALSE(locks_.Cancel(next->handle));  // already granted
}

TEST_F(LockTableTest, ReentrantLockCountsHolds) {
  AcquireParams params = Params("r");
  params.kind = LockKind::kReentrant;
  params.owner = "t1";
  GrantInfo first = MustAcquire(params);
  GrantInfo second = MustAcquire(params);
  EXPECT_EQ(second.lease_id, first.lease_id);
  EXPECT_EQ(second.fencing_token, first.fencing_token);
  EXPECT_EQ(second.held_count, 2);
  AcquireParams other = params;
  other.owner = "t2";
  other.wait = false;
  auto blocked = Start(other);
  EXPECT_FALSE(blocked->result.value()->acquired);
  auto released = locks_.Release(Lease(first));
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->remaining, 1);
  released = locks_.Release(Lease(first));
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->remaining, 0);
  EXPECT_EQ(Reason(locks_.Release(Lease(first)).status()), "LOCK_NOT_HELD");
}

TEST_F(LockTableTest, ReentrantWithoutOwnerIsInvalid) {
  AcquireParams params = Params("r");
  params.kind = LockKind::kReentrant;
  auto pending = Start(params);
  EXPECT_EQ(pending->result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(pending->result.status()), "OWNER_REQUIRED");
}

TEST_F(LockTableTest, SemaphoreLargeRequestAtTheHeadBlocksSmallerOnes) {
  AcquireParams params = Params("s");
  params.kind = LockKind::kSemaphore;
  params.config.permits = 3;
  params.permits = 2;
  GrantInfo two = MustAcquire(params);
  params.permits = 3;
  auto big = Start(params);
  EXPECT_FALSE(big->result.done());
  params.permits = 1;
  auto small = Start(params);
  EXPECT_FALSE(small->result.done()) << "a small request must queue behind the large one";
  ASSERT_TRUE(locks_.Release(Lease(two)).ok());
  ASSERT_TRUE(big->result.done());
  EXPECT_EQ(big->result.value()->grant.permits, 3);
  EXPECT_FALSE(small->result.done());
  ASSERT_TRUE(locks_.Release(Lease(big->result.value()->grant)).ok());
  EXPECT_TRUE(small->result.done());
}

TEST_F(LockTableTest, SemaphorePermitsBeyondTotalAreInvalid) {
  AcquireParams params = Params("s");
  params.kind = LockKind::kSemaphore;
  params.config.permits = 2;
  params.permits = 3;
  auto pending = Start(params);
  EXPECT_EQ(pending->result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(pending->result.status().message(), HasSubstr("permits 3"));
}

TEST_F(LockTableTest, UnboundedSemaphoreAcceptsLeaselessReleaseBoundedDoesNot) {
  AcquireParams params = Params("s", /*wait=*/false);
  params.kind = LockKind::kSemaphore;
  params.config.permits = 1;
  MustAcquire(params);
  ReleaseParams add;
  add.name = "s";
  add.count = 2;
  auto added = locks_.Release(add);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->available_permits, 2);
  MustAcquire(params);
  MustAcquire(params);

  ASSERT_TRUE(locks_.Create("b", LockKind::kSemaphore, {.permits = 1, .bounded = true}, {}).ok());
  add.name = "b";
  EXPECT_EQ(Reason(locks_.Release(add).status()), "SEMAPHORE_BOUNDED");
  add.name = "nope";
  EXPECT_EQ(Reason(locks_.Release(add).status()), "LOCK_NOT_FOUND");
}

TEST_F(LockTableTest, SemaphoreReleaseOfSomePermits) {
  GrantInfo grant = WholeSemaphore("s", 4);
  ReleaseParams release = Lease(grant);
  release.count = 3;
  auto released = locks_.Release(release);
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->remaining, 1);
  EXPECT_EQ(released->available_permits, 3);
  release.count = 2;
  EXPECT_EQ(Reason(locks_.Release(release).status()), "LOCK_NOT_HELD");
}

TEST_F(LockTableTest, RwLockSharesReadersAndPrefersWriters) {
  AcquireParams reader = Params("rw");
  reader.kind = LockKind::kRwLock;
  reader.mode = LockMode::kShared;
  GrantInfo r1 = MustAcquire(reader);
  GrantInfo r2 = MustAcquire(reader);
  AcquireParams writer = reader;
  writer.mode = LockMode::kExclusive;
  auto w = Start(writer);
  EXPECT_FALSE(w->result.done());
  auto r3 = Start(reader);
  EXPECT_FALSE(r3->result.done()) << "a new reader queues behind a waiting writer";
  ASSERT_TRUE(locks_.Release(Lease(r1)).ok());
  EXPECT_FALSE(w->result.done());
  ASSERT_TRUE(locks_.Release(Lease(r2)).ok());
  ASSERT_TRUE(w->result.done());
  EXPECT_EQ(w->result.value()->grant.mode, LockMode::kExclusive);
  ASSERT_TRUE(locks_.Release(Lease(w->result.value()->grant)).ok());
  EXPECT_TRUE(r3->result.done());
}

TEST_F(LockTableTest, LeaseExpiryReleasesAndGrantsTheNextWaiter) {
  AcquireParams params = Params("m");
  params.lease_ttl = absl::Seconds(1);
  GrantInfo holder = MustAcquire(params);
  auto next = Start(Params("m"));
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(next->result.done());
  EXPECT_GT(next->result.value()->grant.fencing_token, holder.fencing_token);
  absl::Status late = locks_.Release(Lease(holder)).status();
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(late), "LEASE_EXPIRED");
}

TEST_F(LockTableTest, RefreshLeaseExtendsTheGrant) {
  AcquireParams params = Params("m");
  params.lease_ttl = absl::Seconds(1);
  GrantInfo holder = MustAcquire(params);
  timers_.Advance(absl::Milliseconds(900));
  auto expiry = locks_.RefreshLease(holder.lease_id, absl::ZeroDuration());
  ASSERT_TRUE(expiry.ok());
  EXPECT_EQ(*expiry, timers_.Now() + absl::Seconds(1));
  timers_.Advance(absl::Milliseconds(900));
  EXPECT_TRUE(locks_.Release(Lease(holder)).ok());
}

TEST_F(LockTableTest, ReleaseErrorsNameTheLease) {
  ReleaseParams params;
  params.lease_id = "unknown";
  EXPECT_EQ(Reason(locks_.Release(params).status()), "LEASE_NOT_FOUND");
  GrantInfo grant = MustAcquire(Params("m"));
  ASSERT_TRUE(locks_.Release(Lease(grant)).ok());
  absl::Status twice = locks_.Release(Lease(grant)).status();
  EXPECT_EQ(twice.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(twice), "LOCK_NOT_HELD");
  EXPECT_THAT(twice.message(), HasSubstr(grant.lease_id));
}

TEST_F(LockTableTest, BadInputGetsInvalidArgument) {
  AcquireParams bad = Params("a b");
  EXPECT_EQ(Reason(Start(bad)->result.status()), "INVALID_NAME");
  bad = Params("m");
  bad.lease_ttl = absl::Milliseconds(-5);
  EXPECT_EQ(Reason(Start(bad)->result.status()), "INVALID_TTL");
  bad = Params("m");
  bad.permits = -1;
  EXPECT_EQ(Start(bad)->result.status().code(), absl::StatusCode::kInvalidArgument);
  bad = Params("m");
  bad.kind = LockKind::kEvent;
  EXPECT_EQ(Start(bad)->result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(locks_.Create("z", LockKind::kSemaphore, {.permits = -1}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LockTableTest, KindMismatchIsFailedPrecondition) {
  ASSERT_TRUE(locks_.SetEvent("e").ok());
  auto pending = Start(Params("e"));
  EXPECT_EQ(Reason(pending->result.status()), "KIND_MISMATCH");
}

TEST_F(LockTableTest, SessionEndReleasesGrantsAndReportsLockLost) {
  std::string session = NewSession(absl::Seconds(2));
  std::vector<SessionEvent> events;
  ASSERT_TRUE(
      sessions_.Subscribe(session, 0, [&](const SessionEvent& e) { events.push_back(e); }).ok());
  AcquireParams params = Params("m");
  params.session_id = session;
  GrantInfo held = MustAcquire(params);
  EXPECT_EQ(held.expire_time, timers_.Now() + absl::Seconds(2));
  EXPECT_EQ(sessions_.Get(session)->held_locks, 1);
  auto next = Start(Params("m"));
  timers_.Advance(absl::Seconds(2));
  ASSERT_TRUE(next->result.done());
  EXPECT_TRUE(next->result.value()->acquired);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[events.size() - 2].type, SessionEvent::Type::kLockLost);
  EXPECT_EQ(events[events.size() - 2].cause, GrantEnd::kSessionEnded);
  EXPECT_EQ(events[events.size() - 2].fencing_token, held.fencing_token);
  EXPECT_EQ(events.back().type, SessionEvent::Type::kEnded);
  EXPECT_EQ(events.back().released_locks, 1);
  EXPECT_EQ(Reason(locks_.Release(Lease(held)).status()), "SESSION_EXPIRED");
}

TEST_F(LockTableTest, WaiterOfAnEndedSessionFailsAndIsNotGranted) {
  GrantInfo holder = MustAcquire(Params("m"));
  std::string session = NewSession();
  AcquireParams params = Params("m");
  params.session_id = session;
  auto waiter = Start(params);
  ASSERT_TRUE(sessions_.Close(session).ok());
  ASSERT_TRUE(waiter->result.done());
  EXPECT_EQ(Reason(waiter->result.status()), "SESSION_CLOSED");
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  EXPECT_EQ(locks_.Describe("m", 0)->info.holders, 0);
}

TEST_F(LockTableTest, LeaseTtlOnASessionGrantReportsLeaseExpired) {
  std::string session = NewSession(absl::Seconds(60));
  std::vector<SessionEvent> events;
  ASSERT_TRUE(
      sessions_.Subscribe(session, 0, [&](const SessionEvent& e) { events.push_back(e); }).ok());
  AcquireParams params = Params("m");
  params.session_id = session;
  params.lease_ttl = absl::Seconds(1);
  MustAcquire(params);
  timers_.Advance(absl::Seconds(1));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].cause, GrantEnd::kLeaseExpired);
  EXPECT_TRUE(sessions_.CheckAlive(session).ok());
}

TEST_F(LockTableTest, RevokeEndsTheGrantAndTellsTheSession) {
  std::string session = NewSession();
  std::vector<SessionEvent> events;
  ASSERT_TRUE(
      sessions_.Subscribe(session, 0, [&](const SessionEvent& e) { events.push_back(e); }).ok());
  AcquireParams params = Params("m");
  params.session_id = session;
  GrantInfo held = MustAcquire(params);
  auto revoked = locks_.Revoke("m", held.fencing_token, "maintenance");
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->first, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].cause, GrantEnd::kRevoked);
  EXPECT_EQ(events[0].message, "maintenance");
  EXPECT_EQ(Reason(locks_.Release(Lease(held)).status()), "LEASE_REVOKED");
  EXPECT_EQ(Reason(locks_.Revoke("m", 12345, "").status()), "HOLDER_NOT_FOUND");
}

TEST_F(LockTableTest, DeadlockAcrossTwoLocksIsAbortedNamingTheCycle) {
  std::string s1 = NewSession();
  std::string s2 = NewSession();
  AcquireParams a = Params("x");
  a.session_id = s1;
  a.owner = "a";
  MustAcquire(a);
  AcquireParams b = Params("y");
  b.session_id = s2;
  b.owner = "b";
  MustAcquire(b);
  b.name = "x";
  auto b_waits = Start(b);
  EXPECT_FALSE(b_waits->result.done());
  a.name = "y";
  auto a_waits = Start(a);
  ASSERT_TRUE(a_waits->result.done());
  absl::Status status = a_waits->result.status();
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(status), "DEADLOCK");
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(s1, "/a waits for y held by ", s2, "/b")));
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(s2, "/b waits for x held by ", s1, "/a")));
  EXPECT_FALSE(b_waits->result.done()) << "the other member keeps waiting";
}

TEST_F(LockTableTest, WaitingForAMutexYouHoldIsADeadlock) {
  AcquireParams params = Params("m");
  params.owner = "me";
  MustAcquire(params);
  auto again = Start(params);
  EXPECT_EQ(Reason(again->result.status()), "DEADLOCK");
  // A cycle of one carries the same payloads as a longer one.
  auto cycle = again->result.status().GetPayload("spindle.dev/cycle");
  ASSERT_TRUE(cycle.has_value());
  EXPECT_THAT(std::string(*cycle), HasSubstr("waits for m held by"));
  auto locks = again->result.status().GetPayload("spindle.dev/locks");
  ASSERT_TRUE(locks.has_value());
  EXPECT_EQ(std::string(*locks), "m");
}

TEST_F(LockTableTest, EventWakesEveryWaiter) {
  Capture<bool> a, b;
  WaitEventParams params{.name = "e", .wait = true};
  locks_.WaitEvent(params, a.Callback());
  locks_.WaitEvent(params, b.Callback());
  EXPECT_FALSE(a.done());
  auto set = locks_.SetEvent("e");
  ASSERT_TRUE(set.ok());
  EXPECT_FALSE(set->first);
  EXPECT_EQ(set->second, 2);
  EXPECT_TRUE(*a.value());
  EXPECT_TRUE(*b.value());
  EXPECT_TRUE(*locks_.ClearEvent("e"));
  Capture<bool> read;
  locks_.WaitEvent({.name = "e"}, read.Callback());
  EXPECT_FALSE(*read.value());
}

TEST_F(LockTableTest, BarrierTripsWithDistinctArrivalIndexes) {
  Capture<BarrierResult> a, b, c;
  WaitBarrierParams params{.name = "b", .parties = 3};
  locks_.WaitBarrier(params, a.Callback());
  locks_.WaitBarrier(params, b.Callback());
  EXPECT_FALSE(a.done());
  locks_.WaitBarrier(params, c.Callback());
  ASSERT_TRUE(a.done() && b.done() && c.done());
  EXPECT_EQ(a.value()->arrival_index, 0);
  EXPECT_EQ(b.value()->arrival_index, 1);
  EXPECT_EQ(c.value()->arrival_index, 2);
  EXPECT_TRUE(a.value()->tripped);
  EXPECT_EQ(locks_.Describe("b", 0)->info.barrier_generation, 1);
}

TEST_F(LockTableTest, BarrierBreaksForEveryoneOnOneTimeout) {
  Capture<BarrierResult> patient, impatient, late;
  locks_.WaitBarrier({.name = "b", .parties = 3}, patient.Callback());
  locks_.WaitBarrier({.name = "b", .parties = 3, .max_wait = absl::Seconds(1)},
                     impatient.Callback());
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(impatient.value().ok());
  EXPECT_FALSE(impatient.value()->tripped);
  EXPECT_EQ(Reason(patient.status()), "BARRIER_BROKEN");
  locks_.WaitBarrier({.name = "b"}, late.Callback());
  EXPECT_EQ(Reason(late.status()), "BARRIER_BROKEN");
  auto reset = locks_.ResetBarrier("b");
  ASSERT_TRUE(reset.ok());
  EXPECT_EQ(reset->first, 0);
  Capture<BarrierResult> fresh;
  locks_.WaitBarrier({.name = "b"}, fresh.Callback());
  EXPECT_FALSE(fresh.done());
}

TEST_F(LockTableTest, CancelledBarrierWaiterBreaksTheBarrier) {
  Capture<BarrierResult> a, b;
  WaitHandle handle = locks_.WaitBarrier({.name = "b", .parties = 3}, a.Callback());
  locks_.WaitBarrier({.name = "b", .parties = 3}, b.Callback());
  EXPECT_TRUE(locks_.Cancel(handle));
  EXPECT_EQ(a.calls(), 0);
  EXPECT_EQ(Reason(b.status()), "BARRIER_BROKEN");
}

TEST_F(LockTableTest, BarrierPartiesRules) {
  Capture<BarrierResult> none, mismatch;
  locks_.WaitBarrier({.name = "b"}, none.Callback());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  Capture<BarrierResult> first;
  locks_.WaitBarrier({.name = "b", .parties = 2}, first.Callback());
  locks_.WaitBarrier({.name = "b", .parties = 3}, mismatch.Callback());
  EXPECT_EQ(Reason(mismatch.status()), "PARTIES_MISMATCH");
}

TEST_F(LockTableTest, ConditionWaitReleasesTheLockAndNotifyReacquiresIt) {
  AcquireParams params = Params("m");
  params.owner = "w";
  GrantInfo held = MustAcquire(params);
  Capture<ConditionResult> waited;
  locks_.WaitCondition({.name = "c", .lease_id = held.lease_id}, waited.Callback());
  EXPECT_FALSE(waited.done());
  // The lock is free now: a notifier takes it.
  AcquireParams notifier = Params("m");
  notifier.owner = "n";
  GrantInfo n = MustAcquire(notifier);
  auto woken = locks_.NotifyCondition("c", 1, false, n.lease_id);
  ASSERT_TRUE(woken.ok()) << woken.status();
  EXPECT_EQ(*woken, 1);
  EXPECT_FALSE(waited.done()) << "the waiter re-acquires only after the notifier releases";
  ASSERT_TRUE(locks_.Release(Lease(n)).ok());
  ASSERT_TRUE(waited.done());
  ASSERT_TRUE(waited.value().ok()) << waited.status();
  EXPECT_TRUE(waited.value()->notified);
  EXPECT_NE(waited.value()->grant.lease_id, held.lease_id);
  EXPECT_GT(waited.value()->grant.fencing_token, n.fencing_token);
  EXPECT_EQ(Reason(locks_.Release(Lease(held)).status()), "LOCK_NOT_HELD");
}

TEST_F(LockTableTest, ConditionWaitRetryGetsTheGrantItReacquired) {
  GrantInfo held = MustAcquire(Params("m"));
  WaitConditionParams wait{.name = "c", .lease_id = held.lease_id, .request_id = "cond-1"};
  Capture<ConditionResult> waited, retry, late;
  locks_.WaitCondition(wait, waited.Callback());
  GrantInfo n = MustAcquire(Params("m"));
  ASSERT_TRUE(locks_.NotifyCondition("c", 1, false, n.lease_id).ok());
  ASSERT_TRUE(locks_.Release(Lease(n)).ok());
  ASSERT_TRUE(waited.done());
  ASSERT_TRUE(waited.value().ok()) << waited.status();
  const GrantInfo reacquired = waited.value()->grant;

  // The answer was lost: the retry names the lease the first call released.
  locks_.WaitCondition(wait, retry.Callback());
  ASSERT_TRUE(retry.done());
  ASSERT_TRUE(retry.value().ok()) << retry.status();
  EXPECT_TRUE(retry.value()->notified);
  EXPECT_EQ(retry.value()->grant.lease_id, reacquired.lease_id);
  EXPECT_EQ(retry.value()->grant.fencing_token, reacquired.fencing_token);
  EXPECT_EQ(locks_.Stats().grants, 1);
  EXPECT_EQ(locks_.Stats().waiters, 0);  // not a second wait

  // Without the id the released lease is simply gone; once the new grant ends, so is the replay.
  Capture<ConditionResult> plain;
  locks_.WaitCondition({.name = "c", .lease_id = held.lease_id}, plain.Callback());
  EXPECT_EQ(Reason(plain.status()), "LOCK_NOT_HELD");
  ASSERT_TRUE(locks_.Release(Lease(reacquired)).ok());
  locks_.WaitCondition(wait, late.Callback());
  EXPECT_EQ(Reason(late.status()), "LOCK_NOT_HELD");
  EXPECT_THAT(late.status().message(), HasSubstr("the grant of request_id 'cond-1' has ended"));

  WaitConditionParams bad = wait;
  bad.request_id = std::string(65, 'x');
  Capture<ConditionResult> refused;
  locks_.WaitCondition(bad, refused.Callback());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LockTableTest, ConditionWaitRetryWhileItWaitsForANotifyTakesTheWaitOver) {
  GrantInfo held = MustAcquire(Params("m"));
  WaitConditionParams wait{.name = "c",
                           .lease_id = held.lease_id,
                           .max_wait = absl::Seconds(10),
                           .request_id = "cond-2"};
  Capture<ConditionResult> first, retry;
  WaitHandle first_handle = locks_.WaitCondition(wait, first.Callback());
  ASSERT_FALSE(first.done());

  // The first call's connection is gone but the server has not noticed yet: the retry takes the
  // wait over, with its own max_wait (counted from now), and the first call is told so.
  timers_.Advance(absl::Seconds(5));
  wait.max_wait = absl::Seconds(2);
  WaitHandle retry_handle = locks_.WaitCondition(wait, retry.Callback());
  ASSERT_TRUE(first.done());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(retry.done());
  EXPECT_EQ(locks_.Stats().waiters, 1);
  EXPECT_FALSE(locks_.Cancel(first_handle));  // the first call's handle no longer withdraws it

  timers_.Advance(absl::Seconds(2));  // the retry's max_wait, not the first call's
  ASSERT_TRUE(retry.done());
  ASSERT_TRUE(retry.value().ok()) << retry.status();
  EXPECT_FALSE(retry.value()->notified);
  EXPECT_EQ(locks_.Describe("m", 0)->info.holders, 1);
  EXPECT_FALSE(locks_.Cancel(retry_handle));

  // Answered: one more retry gets the same grant, not a third wait.
  Capture<ConditionResult> again;
  locks_.WaitCondition(wait, again.Callback());
  ASSERT_TRUE(again.done());
  ASSERT_TRUE(again.value().ok()) << again.status();
  EXPECT_EQ(again.value()->grant.lease_id, retry.value()->grant.lease_id);
  EXPECT_EQ(locks_.Stats().waiters, 0);
}

TEST_F(LockTableTest, ConditionWaitRetryWhileItReacquiresTheLockTakesTheWaitOver) {
  GrantInfo held = MustAcquire(Params("m"));
  WaitConditionParams wait{.name = "c", .lease_id = held.lease_id, .request_id = "cond-3"};
  Capture<ConditionResult> first, retry;
  locks_.WaitCondition(wait, first.Callback());
  GrantInfo n = MustAcquire(Params("m"));
  ASSERT_EQ(*locks_.NotifyCondition("c", 1, false, n.lease_id), 1);
  ASSERT_FALSE(first.done());  // notified, now waiting for `n` to release the lock

  WaitHandle retry_handle = locks_.WaitCondition(wait, retry.Callback());
  ASSERT_TRUE(first.done());
  EXPECT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(retry.done());
  EXPECT_EQ(locks_.Stats().waiters, 1);

  ASSERT_TRUE(locks_.Release(Lease(n)).ok());
  ASSERT_TRUE(retry.done());
  ASSERT_TRUE(retry.value().ok()) << retry.status();
  EXPECT_TRUE(retry.value()->notified);
  EXPECT_EQ(locks_.Stats().grants, 1);
  EXPECT_GT(retry.value()->grant.fencing_token, n.fencing_token);
}

TEST_F(LockTableTest, ConditionWaitRetryThatTookTheWaitOverCanBeCancelled) {
  GrantInfo held = MustAcquire(Params("m"));
  WaitConditionParams wait{.name = "c", .lease_id = held.lease_id, .request_id = "cond-4"};
  Capture<ConditionResult> first, retry, fresh;
  locks_.WaitCondition(wait, first.Callback());
  WaitHandle retry_handle = locks_.WaitCondition(wait, retry.Callback());
  ASSERT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED");
  EXPECT_TRUE(locks_.Cancel(retry_handle));
  EXPECT_EQ(locks_.Stats().waiters, 0);
  // A withdrawn wait is not remembered: its lease is gone, so a retry now is refused plainly.
  locks_.WaitCondition(wait, fresh.Callback());
  EXPECT_EQ(Reason(fresh.status()), "LOCK_NOT_HELD");
  EXPECT_EQ(locks_.Stats().waiters, 0);
}

TEST_F(LockTableTest, ConditionMaxWaitStillReacquires) {
  GrantInfo held = MustAcquire(Params("m"));
  Capture<ConditionResult> waited;
  locks_.WaitCondition({.name = "c", .lease_id = held.lease_id, .max_wait = absl::Seconds(1)},
                       waited.Callback());
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(waited.done());
  ASSERT_TRUE(waited.value().ok());
  EXPECT_FALSE(waited.value()->notified);
  EXPECT_EQ(locks_.Describe("m", 0)->info.holders, 1);
}

TEST_F(LockTableTest, DescribeShowsHoldersAndWaitersInOrder) {
  AcquireParams params = Params("m");
  params.owner = "h";
  GrantInfo held = MustAcquire(params);
  params.owner = "w1";
  auto w1 = Start(params);
  params.owner = "w2";
  auto w2 = Start(params);
  auto description = locks_.Describe("m", 0);
  ASSERT_TRUE(description.ok());
  ASSERT_EQ(description->holders.size(), 1u);
  EXPECT_EQ(description->holders[0].owner, "h");
  EXPECT_EQ(description->holders[0].fencing_token, held.fencing_token);
  ASSERT_EQ(description->waiters.size(), 2u);
  EXPECT_EQ(description->waiters[0].owner, "w1");
  EXPECT_EQ(description->waiters[1].position, 1);
  EXPECT_EQ(Reason(locks_.Describe("nope", 0).status()), "LOCK_NOT_FOUND");
  EXPECT_EQ(Reason(locks_.Delete("m")), "LOCK_IN_USE");
}

TEST_F(LockTableTest, ListPagesByPrefixInNameOrder) {
  for (int i = 0; i < 7; ++i) {
    MustAcquire(Params(absl::StrCat("jobs/", i)));
  }
  MustAcquire(Params("other"));
  std::vector<std::string> names;
  std::string token;
  do {
    auto page = locks_.List(3, token, "jobs/", LockKind::kUnspecified, {});
    ASSERT_TRUE(page.ok());
    for (const auto& lock : page->locks) {
      names.push_back(lock.name);
    }
    token = page->next_page_token;
  } while (!token.empty());
  EXPECT_THAT(names,
              ElementsAre("jobs/0", "jobs/1", "jobs/2", "jobs/3", "jobs/4", "jobs/5", "jobs/6"));
}

// Cancel and grant race from two threads: the waiter is either granted (Cancel false) or never
// (Cancel true, callback never runs), never both.
TEST_F(LockTableTest, CancelRacingAGrantHasExactlyOneOutcome) {
  for (int round = 0; round < 300; ++round) {
    GrantInfo holder = MustAcquire(Params("race"));
    auto waiter = Start(Params("race"));
    std::atomic<bool> cancelled{false};
    std::thread canceller([&] { cancelled = locks_.Cancel(waiter->handle); });
    ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
    canceller.join();
    if (cancelled) {
      EXPECT_EQ(waiter->result.calls(), 0);
    } else {
      ASSERT_EQ(waiter->result.calls(), 1);
      ASSERT_TRUE(locks_.Release(Lease(waiter->result.value()->grant)).ok());
    }
    ASSERT_EQ(locks_.Describe("race", 0)->info.holders, 0) << round;
  }
}

// A WaitCondition retry races the notify that decides the first call: the retry either takes the
// wait over (the first call ends REQUEST_SUPERSEDED) or gets the answer the first call got; one
// grant either way, and no second wait.
TEST_F(LockTableTest, ConditionWaitRetryRacingItsNotifyHasOneOutcome) {
  for (int round = 0; round < 300; ++round) {
    GrantInfo held = MustAcquire(Params("m"));
    WaitConditionParams wait{
        .name = "c", .lease_id = held.lease_id, .request_id = absl::StrCat("race-", round)};
    Capture<ConditionResult> first, retry;
    locks_.WaitCondition(wait, first.Callback());
    std::thread retrier([&] { locks_.WaitCondition(wait, retry.Callback()); });
    ASSERT_TRUE(locks_.NotifyCondition("c", 1, true, "").ok());
    retrier.join();
    ASSERT_EQ(first.calls(), 1) << round;
    absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (!retry.done() && absl::Now() < give_up) {  // a retry that took over waits for a notify
      ASSERT_TRUE(locks_.NotifyCondition("c", 1, true, "").ok());
      std::this_thread::yield();
    }
    ASSERT_EQ(retry.calls(), 1) << round;
    ASSERT_TRUE(retry.value().ok()) << retry.status();
    if (first.value().ok()) {
      EXPECT_EQ(first.value()->grant.lease_id, retry.value()->grant.lease_id) << round;
    } else {
      EXPECT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED") << round;
    }
    ASSERT_EQ(locks_.Stats().grants, 1) << round;
    ASSERT_EQ(locks_.Stats().waiters, 0) << round;
    ASSERT_TRUE(locks_.Release(Lease(retry.value()->grant)).ok());
  }
}

// A WaitCondition retry races the cancel of the first call: it takes the wait over (the cancel
// then finds nothing to withdraw) or finds it withdrawn (and the released lease); never stuck.
TEST_F(LockTableTest, ConditionWaitRetryRacingACancelHasOneOutcome) {
  for (int round = 0; round < 300; ++round) {
    GrantInfo held = MustAcquire(Params("m"));
    WaitConditionParams wait{
        .name = "c", .lease_id = held.lease_id, .request_id = absl::StrCat("cancel-", round)};
    Capture<ConditionResult> first, retry;
    WaitHandle handle = locks_.WaitCondition(wait, first.Callback());
    std::atomic<bool> cancelled{false};
    std::thread canceller([&] { cancelled = locks_.Cancel(handle); });
    WaitHandle retry_handle = locks_.WaitCondition(wait, retry.Callback());
    canceller.join();
    if (cancelled) {
      EXPECT_EQ(first.calls(), 0) << round;
      if (retry.done()) {
        EXPECT_EQ(Reason(retry.status()), "LOCK_NOT_HELD") << round;
      } else {
        EXPECT_TRUE(locks_.Cancel(retry_handle)) << round;  // took the wait over, then it went
      }
    } else {
      EXPECT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED") << round;
      EXPECT_FALSE(retry.done()) << round;
      EXPECT_TRUE(locks_.Cancel(retry_handle)) << round;
    }
    ASSERT_EQ(locks_.Stats().waiters, 0) << round;
    ASSERT_EQ(locks_.Stats().grants, 0) << round;
  }
}

// A lease expiring while its holder releases: exactly one of them ends the grant.
TEST_F(LockTableTest, ExpiryRacingAReleaseEndsTheGrantOnce) {
  for (int round = 0; round < 200; ++round) {
    AcquireParams params = Params("race");
    params.lease_ttl = absl::Milliseconds(100);
    GrantInfo holder = MustAcquire(params);
    auto next = Start(Params("race"));
    absl::Status released;
    std::thread releaser([&] { released = locks_.Release(Lease(holder)).status(); });
    timers_.Advance(absl::Milliseconds(100));
    releaser.join();
    EXPECT_TRUE(released.ok() || Reason(released) == "LEASE_EXPIRED") << released;
    ASSERT_EQ(next->result.calls(), 1);
    ASSERT_TRUE(locks_.Release(Lease(next->result.value()->grant)).ok());
  }
}

// Many threads hammer a few mutexes and a semaphore: mutual exclusion holds and nothing leaks.
TEST_F(LockTableTest, ManyThreadsKeepMutualExclusion) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 400;
  std::array<std::atomic<int>, 3> inside{};
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      absl::BitGen gen;
      for (int i = 0; i < kRounds; ++i) {
        int which = absl::Uniform(gen, 0, 3);
        AcquireParams params = Params(absl::StrCat("stress/", which));
        params.owner = absl::StrCat("t", t);
        Capture<AcquireResult> result;
        WaitHandle handle = locks_.Acquire(params, result.Callback());
        if (absl::Bernoulli(gen, 0.1) && locks_.Cancel(handle)) {
          continue;
        }
        // Bounded wait for the grant: every holder releases promptly.
        absl::Time give_up = absl::Now() + absl::Seconds(20);
        while (!result.done() && absl::Now() < give_up) {
          std::this_thread::yield();
        }
        ASSERT_TRUE(result.done());
        auto value = result.value();
        ASSERT_TRUE(value.ok()) << value.status();
        if (inside[which].fetch_add(1) != 0) {
          ++violations;
        }
        inside[which].fetch_sub(1);
        ReleaseParams release;
        release.lease_id = value->grant.lease_id;
        ASSERT_TRUE(locks_.Release(release).ok());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(locks_.Stats().grants, 0);
  EXPECT_EQ(locks_.Stats().waiters, 0);
}

// --- request ids (common.proto's idempotency) ---

TEST_F(LockTableTest, AcquireRetryWithTheSameRequestIdGetsTheOriginalGrant) {
  AcquireParams params = Params("m");
  params.request_id = "req-1";
  GrantInfo first = MustAcquire(params);
  GrantInfo retry = MustAcquire(params);
  EXPECT_EQ(retry.lease_id, first.lease_id);
  EXPECT_EQ(retry.fencing_token, first.fencing_token);
  EXPECT_EQ(locks_.Stats().grants, 1);
  EXPECT_EQ(locks_.Stats().waiters, 0);  // the retry did not queue behind its own grant

  ASSERT_TRUE(locks_.Release(Lease(first)).ok());
  auto after_release = Start(params);
  EXPECT_EQ(Reason(after_release->result.status()), "LOCK_NOT_HELD");
  EXPECT_THAT(std::string(after_release->result.status().message()),
              HasSubstr("request_id 'req-1'"));
  EXPECT_EQ(locks_.Stats().grants, 0);

  params.request_id = "req-2";
  EXPECT_GT(MustAcquire(params).fencing_token, first.fencing_token);
}

TEST_F(LockTableTest, RequestIdsAreScopedToTheLockName) {
  AcquireParams params = Params("a");
  params.request_id = "same";
  GrantInfo a = MustAcquire(params);
  params.name = "b";
  GrantInfo b = MustAcquire(params);
  EXPECT_NE(a.lease_id, b.lease_id);
  EXPECT_EQ(b.name, "b");
}

TEST_F(LockTableTest, AnotherOwnersRequestIdIsNeverReplayedToIt) {
  std::string session = NewSession();
  AcquireParams mine = Params("m");
  mine.session_id = session;
  mine.owner = "a";
  mine.request_id = "shared-id";
  GrantInfo grant = MustAcquire(mine);
  AcquireParams theirs = mine;
  theirs.owner = "b";
  theirs.wait = false;
  auto other = Start(theirs);
  ASSERT_TRUE(other->result.value().ok()) << other->result.status();
  EXPECT_FALSE(other->result.value()->acquired);  // a try of its own, not a's lease
  EXPECT_EQ(MustAcquire(mine).lease_id, grant.lease_id);
}

TEST_F(LockTableTest, ReentrantRetryDoesNotAddAHold) {
  AcquireParams params = Params("r");
  params.kind = LockKind::kReentrant;
  params.owner = "t1";
  params.request_id = "hold-1";
  EXPECT_EQ(MustAcquire(params).held_count, 1);
  EXPECT_EQ(MustAcquire(params).held_count, 1);
  params.request_id = "hold-2";
  EXPECT_EQ(MustAcquire(params).held_count, 2);
  EXPECT_EQ(MustAcquire(params).held_count, 2);
}

TEST_F(LockTableTest, RetryOfAWaitingAcquireTakesOverItsPlaceInLine) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.request_id = "w";
  auto original = Start(params);
  auto behind = Start(Params("m"));
  ASSERT_FALSE(original->result.done());
  auto retry = Start(params);
  ASSERT_TRUE(original->result.done());
  EXPECT_EQ(original->result.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(original->result.status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(retry->result.done());
  EXPECT_EQ(locks_.Stats().waiters, 2);
  // The first call's handle no longer withdraws the wait its retry now owns.
  EXPECT_FALSE(locks_.Cancel(original->handle));
  EXPECT_EQ(locks_.Stats().waiters, 2);

  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  ASSERT_TRUE(retry->result.done());  // first in line, ahead of the waiter that came later
  ASSERT_TRUE(retry->result.value().ok()) << retry->result.status();
  EXPECT_TRUE(retry->result.value()->acquired);
  EXPECT_FALSE(behind->result.done());
  EXPECT_EQ(original->result.calls(), 1);
  GrantInfo replayed = MustAcquire(params);
  EXPECT_EQ(replayed.lease_id, retry->result.value()->grant.lease_id);
  EXPECT_EQ(locks_.Stats().grants, 1);
}

TEST_F(LockTableTest, ARetryThatTakesOverAWaitBringsItsOwnBounds) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.request_id = "w";
  params.max_wait = absl::Seconds(10);
  auto original = Start(params);
  params.max_wait = absl::Seconds(1);
  timers_.Advance(absl::Milliseconds(500));
  auto retry = Start(params);
  ASSERT_TRUE(original->result.done());
  timers_.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(retry->result.done());
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(retry->result.done());  // its own second, not what was left of the first's ten
  ASSERT_TRUE(retry->result.value().ok()) << retry->result.status();
  EXPECT_FALSE(retry->result.value()->acquired);
  EXPECT_EQ(locks_.Stats().waiters, 0);
  // The wait ran out: nothing is remembered, a further retry waits afresh.
  auto again = Start(params);
  EXPECT_FALSE(again->result.done());
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  ASSERT_TRUE(again->result.done());
  EXPECT_TRUE(again->result.value()->acquired);
}

TEST_F(LockTableTest, RetryOfAWaitAfterItsFirstCallIsCancelledStillWaits) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.request_id = "w";
  auto original = Start(params);
  auto retry = Start(params);
  auto third = Start(params);  // a retry of the retry takes over again
  EXPECT_EQ(Reason(retry->result.status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(locks_.Cancel(retry->handle));
  EXPECT_FALSE(third->result.done());
  ASSERT_TRUE(locks_.Cancel(third->handle));  // the owner of the wait withdraws it
  EXPECT_EQ(locks_.Stats().waiters, 0);
  EXPECT_EQ(third->result.calls(), 0);
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  EXPECT_EQ(locks_.Stats().grants, 0);
}

TEST_F(LockTableTest, RetryAfterAWithdrawnWaitActsAfresh) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m");
  params.request_id = "w";
  auto original = Start(params);
  ASSERT_TRUE(locks_.Cancel(original->handle));
  auto retry = Start(params);
  EXPECT_FALSE(retry->result.done());  // waits again: the first wait left nothing behind
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  ASSERT_TRUE(retry->result.done());
  EXPECT_TRUE(retry->result.value()->acquired);
  EXPECT_EQ(original->result.calls(), 0);
}

TEST_F(LockTableTest, AFailedTryIsNotRememberedSoItsRetryActsAfresh) {
  GrantInfo holder = MustAcquire(Params("m"));
  AcquireParams params = Params("m", /*wait=*/false);
  params.request_id = "try";
  EXPECT_FALSE(Start(params)->result.value()->acquired);
  ASSERT_TRUE(locks_.Release(Lease(holder)).ok());
  EXPECT_TRUE(Start(params)->result.value()->acquired);
}

TEST_F(LockTableTest, AbandonedGrantForgetsItsRequestId) {
  AcquireParams params = Params("m");
  params.request_id = "lost-reply";
  GrantInfo first = MustAcquire(params);
  ReleaseParams give_back = Lease(first);
  give_back.abandoned_request_id = "lost-reply";
  ASSERT_TRUE(locks_.Release(give_back).ok());
  GrantInfo retry = MustAcquire(params);
  EXPECT_NE(retry.lease_id, first.lease_id);
  EXPECT_GT(retry.fencing_token, first.fencing_token);
}

TEST_F(LockTableTest, ReleaseRetryGivesBackNothingMore) {
  GrantInfo grant = WholeSemaphore("s", 3);
  ReleaseParams release = Lease(grant);
  release.count = 1;
  release.request_id = "give-1";
  auto first = locks_.Release(release);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->remaining, 2);
  auto retry = locks_.Release(release);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->remaining, 2);
  EXPECT_EQ(retry->available_permits, 1);
  EXPECT_EQ(locks_.Describe("s", 0)->info.available_permits, 1);
  release.request_id = "give-2";
  EXPECT_EQ(locks_.Release(release)->remaining, 1);

  // A mutex release retried after it ended the grant answers as the first time.
  GrantInfo mutex = MustAcquire(Params("m"));
  ReleaseParams end = Lease(mutex);
  end.request_id = "end";
  ASSERT_TRUE(locks_.Release(end).ok());
  EXPECT_TRUE(locks_.Release(end).ok());
  end.request_id.clear();
  EXPECT_EQ(Reason(locks_.Release(end).status()), "LOCK_NOT_HELD");
}

TEST_F(LockTableTest, LeaselessReleaseRetryAddsPermitsOnce) {
  ASSERT_TRUE(locks_.Create("u", LockKind::kSemaphore, {.permits = 1}, {}).ok());
  ReleaseParams add;
  add.name = "u";
  add.count = 5;
  add.request_id = "add";
  EXPECT_EQ(locks_.Release(add)->available_permits, 6);
  EXPECT_EQ(locks_.Release(add)->available_permits, 6);
  EXPECT_EQ(locks_.Describe("u", 0)->info.available_permits, 6);
}

TEST_F(LockTableTest, BarrierRetryIsNotCountedTwice) {
  Capture<BarrierResult> original, early, other, late;
  WaitBarrierParams params{.name = "b", .parties = 2, .request_id = "arrive"};
  locks_.WaitBarrier(params, original.Callback());
  locks_.WaitBarrier(params, early.Callback());  // takes over the first call's arrival
  EXPECT_EQ(Reason(original.status()), "REQUEST_SUPERSEDED");
  EXPECT_EQ(locks_.Describe("b", 0)->info.barrier_waiting, 1);
  EXPECT_FALSE(early.done());

  locks_.WaitBarrier({.name = "b", .parties = 2}, other.Callback());
  ASSERT_TRUE(early.done() && other.done());
  ASSERT_TRUE(early.value().ok()) << early.status();
  EXPECT_EQ(early.value()->arrival_index, 0);
  EXPECT_EQ(original.calls(), 1);
  locks_.WaitBarrier(params, late.Callback());
  ASSERT_TRUE(late.value().ok()) << late.status();
  EXPECT_TRUE(late.value()->tripped);
  EXPECT_EQ(late.value()->arrival_index, early.value()->arrival_index);
  EXPECT_EQ(late.value()->generation, 0);
  EXPECT_EQ(locks_.Describe("b", 0)->info.barrier_waiting, 0);  // not an arrival in generation 1
}

TEST_F(LockTableTest, OneShotCallsAnswerTheirRetryAsTheFirstTime) {
  auto set = locks_.SetEvent("e", "set");
  ASSERT_TRUE(set.ok());
  EXPECT_FALSE(set->first);
  ASSERT_TRUE(locks_.ClearEvent("e").ok());
  EXPECT_FALSE(locks_.SetEvent("e", "set")->first);       // the original answer
  EXPECT_FALSE(locks_.Describe("e", 0)->info.event_set);  // and no second set
  ASSERT_TRUE(locks_.SetEvent("e").ok());
  EXPECT_TRUE(*locks_.ClearEvent("e", "clear"));
  EXPECT_TRUE(*locks_.ClearEvent("e", "clear"));

  GrantInfo holder = MustAcquire(Params("m"));
  auto revoked = locks_.Revoke("m", 0, "maintenance", "revoke");
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->first, 1);
  MustAcquire(Params("m"));
  EXPECT_EQ(locks_.Revoke("m", 0, "maintenance", "revoke")->first, 1);
  EXPECT_EQ(locks_.Describe("m", 0)->info.holders, 1);  // the new holder was not revoked

  ASSERT_TRUE(locks_.Create("gone", LockKind::kMutex, {}, {}).ok());
  ASSERT_TRUE(locks_.Delete("gone", "del").ok());
  EXPECT_TRUE(locks_.Delete("gone", "del").ok());
  EXPECT_EQ(Reason(locks_.Delete("gone")), "LOCK_NOT_FOUND");

  ASSERT_TRUE(locks_.Create("bar", LockKind::kBarrier, {.parties = 2}, {}).ok());
  EXPECT_EQ(locks_.ResetBarrier("bar", "reset")->second, 1);
  EXPECT_EQ(locks_.ResetBarrier("bar", "reset")->second, 1);
  EXPECT_EQ(locks_.Describe("bar", 0)->info.barrier_generation, 1);
  (void)holder;
}

TEST_F(LockTableTest, RequestIdsAreForgottenAfterTenMinutes) {
  AcquireParams params = Params("m");
  params.request_id = "old";
  GrantInfo first = MustAcquire(params);
  ASSERT_TRUE(locks_.Release(Lease(first)).ok());
  timers_.Advance(absl::Minutes(10));
  GrantInfo again = MustAcquire(params);
  EXPECT_NE(again.lease_id, first.lease_id);
}

TEST_F(LockTableTest, BadRequestIdsAreInvalid) {
  AcquireParams params = Params("m");
  params.request_id = std::string(65, 'x');
  auto long_id = Start(params);
  EXPECT_EQ(long_id->result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(long_id->result.status().message()), HasSubstr("request_id"));
  params.request_id = "tab\there";
  EXPECT_EQ(Start(params)->result.status().code(), absl::StatusCode::kInvalidArgument);
  ReleaseParams release;
  release.lease_id = "l0";
  release.request_id = std::string(65, 'x');
  EXPECT_EQ(locks_.Release(release).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(locks_.SetEvent("e", "\x01").status().code(), absl::StatusCode::kInvalidArgument);
  Capture<BarrierResult> barrier;
  locks_.WaitBarrier({.name = "b", .parties = 2, .request_id = std::string(65, 'b')},
                     barrier.Callback());
  EXPECT_EQ(barrier.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(locks_.Stats().locks, 0);  // nothing was created by a rejected call
}

}  // namespace
}  // namespace spindle::sync
