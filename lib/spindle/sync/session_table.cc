#include "spindle/sync/session_table.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spindle/common/status.h"
#include "spindle/sync/validate.h"

namespace spindle::sync {
namespace {

constexpr absl::string_view kPageTokenPrefix = "s:";

std::string NewSessionId() {
  thread_local absl::BitGen gen;
  return absl::StrFormat("s%016x%016x", absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen));
}

}  // namespace

SessionTable::SessionTable(TimerService& timers, SessionTableOptions options)
    : timers_(timers), options_(options) {}

SessionTable::~SessionTable() {
  destroying_ = true;
  for (Shard& shard : shards_) {
    internal::MutexLock lock(&shard.mu);
    for (auto& [id, session] : shard.sessions) {
      if (session->timer != 0) {
        timers_.Cancel(session->timer);
      }
    }
  }
}

SessionTable::Shard& SessionTable::ShardFor(absl::string_view session_id) const {
  return shards_[absl::Hash<absl::string_view>()(session_id) % kShards];
}

absl::Status SessionTable::EndedStatus(const Session& session) {
  if (session.info.state == SessionState::kExpired) {
    return Aborted("SESSION_EXPIRED",
                   absl::StrCat("session '", session.info.session_id, "' expired"));
  }
  return Aborted("SESSION_CLOSED",
                 absl::StrCat("session '", session.info.session_id, "' was closed"));
}

absl::Status SessionTable::CheckDuration(absl::Duration ttl) const {
  return ValidateDurationMs("ttl_ms", ttl, kMinSessionTtl, kMaxSessionTtl, "INVALID_TTL");
}

namespace {
absl::Status NotFoundStatus(absl::string_view session_id) {
  return NotFound("SESSION_NOT_FOUND",
                  absl::StrCat("session ", QuoteValue(session_id), " does not exist"));
}
}  // namespace

absl::StatusOr<SessionInfo> SessionTable::Create(CreateSessionParams params) {
  if (params.ttl == absl::ZeroDuration()) {
    params.ttl = kDefaultSessionTtl;
  }
  SPINDLE_RETURN_IF_ERROR(CheckDuration(params.ttl));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("client_name", params.client_name, 128));
  SPINDLE_RETURN_IF_ERROR(ValidateLabels("labels", params.labels));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", params.request_id, 64));

  if (!params.request_id.empty()) {
    // Request ids are kept in shard 0 so a retry finds its session whatever id it got.
    Shard& ids = shards_[0];
    std::string existing;
    {
      internal::MutexLock lock(&ids.mu);
      auto it = ids.request_ids.find(params.request_id);
      if (it != ids.request_ids.end()) {
        existing = it->second;
      }
    }
    if (!existing.empty()) {
      auto info = Get(existing);
      if (info.ok()) {
        return info;
      }
    }
  }

  if (live_.fetch_add(1) >= options_.max_sessions) {
    live_.fetch_sub(1);
    return ResourceExhausted("TOO_MANY_SESSIONS",
                             absl::StrCat("the server holds ", options_.max_sessions,
                                          " sessions, its limit (--max-sessions)"));
  }
  auto session = std::make_unique<Session>();
  SessionInfo& info = session->info;
  info.session_id = NewSessionId();
  info.client_name = std::move(params.client_name);
  info.labels = std::move(params.labels);
  info.ttl = params.ttl;
  info.create_time = timers_.Now();
  info.refresh_time = info.create_time;
  info.expire_time = info.create_time + info.ttl;
  info.peer = std::move(params.peer);
  SessionInfo copy = info;
  Shard& shard = ShardFor(info.session_id);
  {
    internal::MutexLock lock(&shard.mu);
    Session& ref = *session;
    shard.sessions.emplace(info.session_id, std::move(session));
    ArmTimer(shard, ref);
  }
  if (!params.request_id.empty()) {
    internal::MutexLock lock(&shards_[0].mu);
    shards_[0].request_ids.emplace(params.request_id, copy.session_id);
  }
  return copy;
}

void SessionTable::ArmTimer(Shard& shard, Session& session) {
  const SessionInfo& info = session.info;
  absl::Time next = info.expire_time;
  absl::Time expiring_at = info.expire_time - info.ttl / 3;
  if (!session.expiring_sent && expiring_at < next) {
    next = expiring_at;
  }
  if (session.timer != 0 && session.timer_at <= next) {
    return;  // the timer fires first and re-arms then
  }
  if (session.timer != 0) {
    timers_.Cancel(session.timer);
  }
  session.timer_at = next;
  session.timer =
      timers_.Schedule(next, [this, id = info.session_id]() mutable { OnTimer(std::move(id)); });
}

void SessionTable::OnTimer(std::string session_id) {
  if (destroying_) {
    return;
  }
  Shard& shard = ShardFor(session_id);
  std::vector<std::shared_ptr<SinkEntry>> sinks;
  SessionEvent event;
  bool expire = false;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.sessions.find(session_id);
    if (it == shard.sessions.end()) {
      return;
    }
    Session& session = *it->second;
    session.timer = 0;
    if (session.info.state != SessionState::kActive || session.ending) {
      return;
    }
    absl::Time now = timers_.Now();
    if (now >= session.info.expire_time) {
      expire = true;
    } else {
      if (!session.expiring_sent && now >= session.info.expire_time - session.info.ttl / 3) {
        session.expiring_sent = true;
        event.type = SessionEvent::Type::kExpiring;
        event.expire_time = session.info.expire_time;
        event.remaining = session.info.expire_time - now;
        sinks = AppendEvent(session, event);
      }
      ArmTimer(shard, session);
    }
  }
  if (expire) {
    End(session_id, SessionState::kExpired);
    return;
  }
  if (event.seq != 0) {
    Deliver(sinks, event);
  }
}

std::vector<std::shared_ptr<SessionTable::SinkEntry>> SessionTable::AppendEvent(
    Session& session, SessionEvent& event) {
  event.seq = ++session.info.last_event_seq;
  event.time = timers_.Now();
  session.events.push_back(event);
  while (session.events.size() > options_.max_events) {
    session.dropped_through = session.events.front().seq;
    session.events.pop_front();
  }
  std::vector<std::shared_ptr<SinkEntry>> sinks;
  sinks.reserve(session.sinks.size());
  for (auto& [id, entry] : session.sinks) {
    sinks.push_back(entry);
  }
  return sinks;
}

void SessionTable::Deliver(const std::vector<std::shared_ptr<SinkEntry>>& sinks,
                           const SessionEvent& event) {
  for (const auto& entry : sinks) {
    internal::ReaderMutexLock lock(&entry->running);
    if (!entry->removed) {
      entry->sink(event);
    }
  }
}

absl::StatusOr<SessionInfo> SessionTable::Refresh(absl::string_view session_id,
                                                  absl::Duration ttl) {
  if (ttl != absl::ZeroDuration()) {
    SPINDLE_RETURN_IF_ERROR(CheckDuration(ttl));
  }
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it == shard.sessions.end()) {
    return NotFoundStatus(session_id);
  }
  Session& session = *it->second;
  if (session.info.state != SessionState::kActive) {
    return EndedStatus(session);
  }
  if (ttl != absl::ZeroDuration()) {
    session.info.ttl = ttl;
  }
  session.info.refresh_time = timers_.Now();
  session.info.expire_time = session.info.refresh_time + session.info.ttl;
  session.expiring_sent = false;
  ArmTimer(shard, session);
  return session.info;
}

absl::StatusOr<CloseResult> SessionTable::Close(absl::string_view session_id) {
  {
    Shard& shard = ShardFor(session_id);
    internal::MutexLock lock(&shard.mu);
    if (!shard.sessions.contains(session_id)) {
      return NotFoundStatus(session_id);
    }
  }
  return End(session_id, SessionState::kClosed);
}

CloseResult SessionTable::End(absl::string_view session_id, SessionState state) {
  Shard& shard = ShardFor(session_id);
  std::map<HookId, absl::AnyInvocable<void() &&>> hooks;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.sessions.find(session_id);
    if (it == shard.sessions.end() || it->second->info.state != SessionState::kActive) {
      return {};
    }
    Session& session = *it->second;
    session.info.state = state;
    session.ending = true;
    session.info.expire_time = timers_.Now();
    if (session.timer != 0) {
      timers_.Cancel(session.timer);
      session.timer = 0;
    }
    hooks = std::move(session.hooks);
    session.hooks.clear();
  }
  live_.fetch_sub(1);
  (state == SessionState::kExpired ? expirations_ : closes_).fetch_add(1);

  for (auto& [id, hook] : hooks) {
    std::move(hook)();
  }

  CloseResult result;
  SessionEvent event;
  std::vector<std::shared_ptr<SinkEntry>> sinks;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.sessions.find(session_id);
    if (it == shard.sessions.end()) {
      return result;
    }
    Session& session = *it->second;
    session.ending = false;
    result.released_locks = session.end_released_locks;
    result.released_permits = session.end_released_permits;
    event.type = SessionEvent::Type::kEnded;
    event.end_state = state;
    event.released_locks = result.released_locks;
    event.released_permits = result.released_permits;
    sinks = AppendEvent(session, event);
    if (!destroying_) {
      session.timer = timers_.Schedule(
          timers_.Now() + options_.retention,
          [this, id = std::string(session_id)]() mutable { Forget(std::move(id)); });
    }
  }
  Deliver(sinks, event);
  return result;
}

void SessionTable::Forget(std::string session_id) {
  if (destroying_) {
    return;
  }
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  shard.sessions.erase(session_id);
}

absl::StatusOr<SessionInfo> SessionTable::Get(absl::string_view session_id) const {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it == shard.sessions.end()) {
    return NotFoundStatus(session_id);
  }
  SessionInfo info = it->second->info;
  info.keepalive_streams = static_cast<int32_t>(it->second->sinks.size());
  return info;
}

absl::StatusOr<SessionPage> SessionTable::List(int32_t page_size, absl::string_view page_token,
                                               absl::string_view client_name_prefix,
                                               const Labels& labels) const {
  if (page_size < 0 || page_size > 1000) {
    return InvalidArgument("INVALID_PAGE_SIZE",
                           absl::StrCat("page_size ", page_size, " is out of bounds 0..1000"));
  }
  if (page_size == 0) {
    page_size = 100;
  }
  std::string after;
  if (!page_token.empty()) {
    if (!absl::StartsWith(page_token, kPageTokenPrefix)) {
      return InvalidArgument("INVALID_PAGE_TOKEN",
                             absl::StrCat("page_token ", QuoteValue(page_token), " is not valid"));
    }
    after = std::string(page_token.substr(kPageTokenPrefix.size()));
  }
  std::vector<SessionInfo> found;
  for (const Shard& shard : shards_) {
    internal::MutexLock lock(&shard.mu);
    int taken = 0;
    for (auto it = shard.sessions.upper_bound(after);
         it != shard.sessions.end() && taken <= page_size; ++it) {
      const Session& session = *it->second;
      if (session.info.state != SessionState::kActive ||
          !absl::StartsWith(session.info.client_name, client_name_prefix) ||
          !LabelsMatch(session.info.labels, labels)) {
        continue;
      }
      SessionInfo info = session.info;
      info.keepalive_streams = static_cast<int32_t>(session.sinks.size());
      found.push_back(std::move(info));
      ++taken;
    }
  }
  std::sort(found.begin(), found.end(),
            [](const SessionInfo& a, const SessionInfo& b) { return a.session_id < b.session_id; });
  SessionPage page;
  if (found.size() > static_cast<size_t>(page_size)) {
    found.resize(page_size);
    page.next_page_token = absl::StrCat(kPageTokenPrefix, found.back().session_id);
  }
  page.sessions = std::move(found);
  return page;
}

absl::StatusOr<SessionTable::Subscription> SessionTable::Subscribe(absl::string_view session_id,
                                                                   int64_t after_seq, Sink sink) {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it == shard.sessions.end()) {
    return NotFoundStatus(session_id);
  }
  Session& session = *it->second;
  if (session.info.state != SessionState::kActive) {
    return EndedStatus(session);
  }
  Subscription sub;
  sub.id = ++next_subscription_;
  for (const SessionEvent& event : session.events) {
    if (event.seq > after_seq) {
      sub.replay.push_back(event);
    }
  }
  sub.missed = std::max<int64_t>(0, session.dropped_through - std::max<int64_t>(after_seq, 0));
  sub.next_seq = session.info.last_event_seq + 1;
  auto entry = std::make_shared<SinkEntry>();
  entry->sink = std::move(sink);
  session.sinks.emplace(sub.id, std::move(entry));
  return sub;
}

void SessionTable::Unsubscribe(absl::string_view session_id, SubscriptionId id) {
  std::shared_ptr<SinkEntry> entry;
  {
    Shard& shard = ShardFor(session_id);
    internal::MutexLock lock(&shard.mu);
    auto it = shard.sessions.find(session_id);
    if (it == shard.sessions.end()) {
      return;
    }
    auto sink = it->second->sinks.find(id);
    if (sink == it->second->sinks.end()) {
      return;
    }
    entry = std::move(sink->second);
    it->second->sinks.erase(sink);
  }
  internal::MutexLock lock(&entry->running);
  entry->removed = true;
}

void SessionTable::Emit(absl::string_view session_id, SessionEvent event) {
  Shard& shard = ShardFor(session_id);
  std::vector<std::shared_ptr<SinkEntry>> sinks;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.sessions.find(session_id);
    if (it == shard.sessions.end()) {
      return;
    }
    Session& session = *it->second;
    if (session.info.state != SessionState::kActive && !session.ending) {
      return;
    }
    if (session.ending && event.type == SessionEvent::Type::kLockLost &&
        event.cause == GrantEnd::kSessionEnded) {
      ++session.end_released_locks;
      session.end_released_permits += event.permits;
    }
    sinks = AppendEvent(session, event);
  }
  Deliver(sinks, event);
}

void SessionTable::AddHeld(absl::string_view session_id, int32_t locks, int32_t permits) {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it != shard.sessions.end()) {
    it->second->info.held_locks += locks;
    it->second->info.held_permits += permits;
  }
}

absl::StatusOr<absl::Time> SessionTable::ExpireTime(absl::string_view session_id) const {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it == shard.sessions.end()) {
    return NotFoundStatus(session_id);
  }
  if (it->second->info.state != SessionState::kActive) {
    return EndedStatus(*it->second);
  }
  return it->second->info.expire_time;
}

SessionTableStats SessionTable::Stats() const {
  return {live_.load(), expirations_.load(), closes_.load()};
}

absl::Status SessionTable::CheckAlive(absl::string_view session_id) const {
  return ExpireTime(session_id).status();
}

absl::StatusOr<SessionHooks::HookId> SessionTable::OnEnd(absl::string_view session_id,
                                                         absl::AnyInvocable<void() &&> on_end) {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it == shard.sessions.end()) {
    return NotFoundStatus(session_id);
  }
  if (it->second->info.state != SessionState::kActive) {
    return EndedStatus(*it->second);
  }
  HookId id = ++next_hook_;
  it->second->hooks.emplace(id, std::move(on_end));
  return id;
}

void SessionTable::RemoveHook(absl::string_view session_id, HookId hook) {
  Shard& shard = ShardFor(session_id);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.sessions.find(session_id);
  if (it != shard.sessions.end()) {
    it->second->hooks.erase(hook);
  }
}

}  // namespace spindle::sync
