#include "spindle/sync/session_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "spindle/common/status.h"
#include "tests/lib/sync/manual_timers.h"

namespace spindle::sync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SessionTableTest : public ::testing::Test {
 protected:
  SessionInfo MustCreate(absl::Duration ttl = absl::Seconds(10), std::string name = "c") {
    CreateSessionParams params;
    params.ttl = ttl;
    params.client_name = std::move(name);
    auto info = table_.Create(std::move(params));
    EXPECT_TRUE(info.ok()) << info.status();
    return *info;
  }

  ManualTimers timers_;
  SessionTable table_{timers_};
};

// Records events a sink received.
class Events {
 public:
  SessionTable::Sink Sink() {
    return [this](const SessionEvent& event) {
      std::lock_guard lock(mu_);
      events_.push_back(event);
    };
  }
  std::vector<SessionEvent::Type> types() const {
    std::lock_guard lock(mu_);
    std::vector<SessionEvent::Type> types;
    for (const auto& event : events_) {
      types.push_back(event.type);
    }
    return types;
  }
  std::vector<SessionEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<SessionEvent> events_;
};

TEST_F(SessionTableTest, CreateAppliesTheDefaultTtl) {
  SessionInfo info = MustCreate(absl::ZeroDuration());
  EXPECT_EQ(info.ttl, absl::Seconds(30));
  EXPECT_EQ(info.expire_time, timers_.Now() + absl::Seconds(30));
  EXPECT_EQ(info.state, SessionState::kActive);
  EXPECT_FALSE(info.session_id.empty());
}

TEST_F(SessionTableTest, TtlOutOfBoundsIsInvalid) {
  for (absl::Duration ttl : {absl::Milliseconds(-1), absl::Milliseconds(999), absl::Hours(2)}) {
    CreateSessionParams params;
    params.ttl = ttl;
    auto info = table_.Create(params);
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Reason(info.status()), "INVALID_TTL");
    EXPECT_THAT(info.status().message(), HasSubstr("ttl_ms"));
  }
}

TEST_F(SessionTableTest, BadLabelsAreInvalid) {
  CreateSessionParams params;
  params.labels = {{"Bad Key", "v"}};
  auto info = table_.Create(params);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(info.status().message(), HasSubstr("Bad Key"));
}

TEST_F(SessionTableTest, ExpiresExactlyAtItsTtl) {
  SessionInfo info = MustCreate(absl::Seconds(3));
  timers_.Advance(absl::Seconds(3) - absl::Milliseconds(1));
  EXPECT_TRUE(table_.CheckAlive(info.session_id).ok());
  timers_.Advance(absl::Milliseconds(1));
  absl::Status alive = table_.CheckAlive(info.session_id);
  EXPECT_EQ(alive.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(alive), "SESSION_EXPIRED");
  EXPECT_EQ(table_.Stats().expirations, 1);
  EXPECT_EQ(table_.Stats().sessions, 0);
}

TEST_F(SessionTableTest, RefreshMovesTheExpiry) {
  SessionInfo info = MustCreate(absl::Seconds(3));
  timers_.Advance(absl::Seconds(2));
  ASSERT_TRUE(table_.Refresh(info.session_id, absl::ZeroDuration()).ok());
  timers_.Advance(absl::Seconds(2));
  EXPECT_TRUE(table_.CheckAlive(info.session_id).ok());
  timers_.Advance(absl::Seconds(1));
  EXPECT_FALSE(table_.CheckAlive(info.session_id).ok());
  auto late = table_.Refresh(info.session_id, absl::ZeroDuration());
  EXPECT_EQ(Reason(late.status()), "SESSION_EXPIRED");
}

TEST_F(SessionTableTest, RefreshToAShorterTtlExpiresSooner) {
  SessionInfo info = MustCreate(absl::Seconds(60));
  ASSERT_TRUE(table_.Refresh(info.session_id, absl::Seconds(2)).ok());
  timers_.Advance(absl::Seconds(2));
  EXPECT_FALSE(table_.CheckAlive(info.session_id).ok());
}

TEST_F(SessionTableTest, UnknownSessionIsNotFound) {
  absl::Status status = table_.CheckAlive("nope");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Reason(status), "SESSION_NOT_FOUND");
  EXPECT_EQ(table_.Close("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SessionTableTest, CloseRunsHooksOnceThenTheSessionIsClosed) {
  SessionInfo info = MustCreate();
  int ran = 0;
  ASSERT_TRUE(table_.OnEnd(info.session_id, [&ran] { ++ran; }).ok());
  auto removed = table_.OnEnd(info.session_id, [&ran] { ran += 100; });
  ASSERT_TRUE(removed.ok());
  table_.RemoveHook(info.session_id, *removed);
  ASSERT_TRUE(table_.Close(info.session_id).ok());
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(Reason(table_.CheckAlive(info.session_id)), "SESSION_CLOSED");
  // Idempotent.
  auto again = table_.Close(info.session_id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->released_locks, 0);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(Reason(table_.OnEnd(info.session_id, [] {}).status()), "SESSION_CLOSED");
}

TEST_F(SessionTableTest, EndedIsTheLastEventAfterLockLostFromHooks) {
  SessionInfo info = MustCreate();
  Events events;
  ASSERT_TRUE(table_.Subscribe(info.session_id, 0, events.Sink()).ok());
  ASSERT_TRUE(table_
                  .OnEnd(info.session_id,
                         [&] {
                           SessionEvent lost;
                           lost.type = SessionEvent::Type::kLockLost;
                           lost.cause = GrantEnd::kSessionEnded;
                           lost.permits = 2;
                           table_.Emit(info.session_id, lost);
                         })
                  .ok());
  auto closed = table_.Close(info.session_id);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->released_locks, 1);
  EXPECT_EQ(closed->released_permits, 2);
  EXPECT_THAT(events.types(),
              ElementsAre(SessionEvent::Type::kLockLost, SessionEvent::Type::kEnded));
  EXPECT_EQ(events.events()[1].seq, 2);
  EXPECT_EQ(events.events()[1].released_locks, 1);
}

TEST_F(SessionTableTest, ExpiringIsSentWhenAThirdOfTheTtlIsLeft) {
  SessionInfo info = MustCreate(absl::Seconds(3));
  Events events;
  ASSERT_TRUE(table_.Subscribe(info.session_id, 0, events.Sink()).ok());
  timers_.Advance(absl::Seconds(2) - absl::Milliseconds(1));
  EXPECT_TRUE(events.types().empty());
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_THAT(events.types(), ElementsAre(SessionEvent::Type::kExpiring));
  EXPECT_EQ(events.events()[0].remaining, absl::Seconds(1));
  timers_.Advance(absl::Seconds(1));
  EXPECT_THAT(events.types(),
              ElementsAre(SessionEvent::Type::kExpiring, SessionEvent::Type::kEnded));
}

TEST_F(SessionTableTest, SubscribeReplaysKeptEventsAfterTheGivenSeq) {
  SessionInfo info = MustCreate();
  for (int i = 0; i < 3; ++i) {
    SessionEvent lost;
    lost.type = SessionEvent::Type::kLockLost;
    lost.lock_name = "l" + std::to_string(i);
    table_.Emit(info.session_id, lost);
  }
  Events events;
  auto sub = table_.Subscribe(info.session_id, 1, events.Sink());
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(sub->replay.size(), 2u);
  EXPECT_EQ(sub->replay[0].seq, 2);
  EXPECT_EQ(sub->missed, 0);
  EXPECT_EQ(sub->next_seq, 4);
  EXPECT_EQ(table_.Get(info.session_id)->keepalive_streams, 1);
  table_.Unsubscribe(info.session_id, sub->id);
  EXPECT_EQ(table_.Get(info.session_id)->keepalive_streams, 0);
}

TEST_F(SessionTableTest, BacklogKeepsTheLastEventsAndCountsTheMissed) {
  SessionTable small(timers_, SessionTableOptions{.max_events = 2});
  CreateSessionParams params;
  auto info = small.Create(params);
  ASSERT_TRUE(info.ok());
  for (int i = 0; i < 5; ++i) {
    small.Emit(info->session_id, SessionEvent{});
  }
  Events events;
  auto sub = small.Subscribe(info->session_id, 0, events.Sink());
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->replay.size(), 2u);
  EXPECT_EQ(sub->missed, 3);
}

TEST_F(SessionTableTest, ListPagesInIdOrderAndFilters) {
  for (int i = 0; i < 5; ++i) {
    MustCreate(absl::Seconds(10), i % 2 == 0 ? "even" : "odd");
  }
  auto page = table_.List(2, "", "", {});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->sessions.size(), 2u);
  EXPECT_LT(page->sessions[0].session_id, page->sessions[1].session_id);
  std::vector<std::string> all;
  std::string token;
  do {
    auto p = table_.List(2, token, "", {});
    ASSERT_TRUE(p.ok());
    for (const auto& s : p->sessions) {
      all.push_back(s.session_id);
    }
    token = p->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(all.size(), 5u);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_EQ(table_.List(100, "", "ev", {})->sessions.size(), 3u);
  EXPECT_EQ(table_.List(100, "bogus", "", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_.List(5000, "", "", {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SessionTableTest, TooManySessionsIsResourceExhausted) {
  SessionTable small(timers_, SessionTableOptions{.max_sessions = 1});
  ASSERT_TRUE(small.Create({}).ok());
  auto second = small.Create({});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(second.status()), "TOO_MANY_SESSIONS");
}

TEST_F(SessionTableTest, RetriedCreateWithTheSameRequestIdReturnsTheOriginal) {
  CreateSessionParams params;
  params.request_id = "r1";
  auto first = table_.Create(params);
  auto second = table_.Create(params);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->session_id, second->session_id);
}

TEST_F(SessionTableTest, EndedSessionIsForgottenAfterRetention) {
  SessionInfo info = MustCreate();
  ASSERT_TRUE(table_.Close(info.session_id).ok());
  EXPECT_EQ(table_.Get(info.session_id)->state, SessionState::kClosed);
  timers_.Advance(absl::Minutes(10));
  EXPECT_EQ(table_.Get(info.session_id).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace spindle::sync
