// SessionTable: client sessions with a TTL, the owners of everything that must not outlive a
// client (lock grants, queue deliveries, bound processes, ephemeral values).
//
// A session stays alive while it is refreshed (Refresh, or a KeepAlive stream's pings). Its expiry
// is exact to the timer: one timer per session, re-armed lazily when a refresh moved the expiry.
// When a session ends (expiry or Close) the table, in order: marks it ended (CheckAlive fails from
// then on, new hooks are refused), runs every OnEnd hook once on the ending thread (the lock table
// releases grants there and reports one `lock_lost` per grant through Emit), then emits `ended`,
// always the session's last event. Ended sessions are kept for `retention` so GetSession can still
// report their end and late calls get SESSION_EXPIRED / SESSION_CLOSED rather than NOT_FOUND.
//
// Events: each session keeps its last `max_events` events with a per-session sequence number.
// Subscribe() returns the kept events after a given seq and registers a sink that receives every
// later event. Sinks run on the thread that made the event, without table locks held; concurrent
// events of one session may reach a sink out of order (the seq lets the sink restore the order).
//
// Thread-safety: thread-safe. Sharded by session id; no lock is held while hooks or sinks run.
#ifndef SPINDLE_SYNC_SESSION_TABLE_H_
#define SPINDLE_SYNC_SESSION_TABLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/sync/internal/mutex.h"
#include "spindle/sync/types.h"

namespace spindle::sync {

struct SessionTableOptions {
  // Most live sessions at once (RESOURCE_EXHAUSTED reason TOO_MANY_SESSIONS beyond).
  int64_t max_sessions = 100000;
  // How long an ended session stays visible.
  absl::Duration retention = absl::Minutes(10);
  // Events kept per session for replay.
  size_t max_events = 256;
};

inline constexpr absl::Duration kDefaultSessionTtl = absl::Seconds(30);
inline constexpr absl::Duration kMinSessionTtl = absl::Seconds(1);
inline constexpr absl::Duration kMaxSessionTtl = absl::Hours(1);

struct CreateSessionParams {
  // Zero = kDefaultSessionTtl; otherwise kMinSessionTtl..kMaxSessionTtl.
  absl::Duration ttl = absl::ZeroDuration();
  std::string client_name;
  Labels labels;
  std::string peer;
  // Idempotency key: a retry returns the original session.
  std::string request_id;
};

struct SessionInfo {
  std::string session_id;
  std::string client_name;
  Labels labels;
  absl::Duration ttl;
  absl::Time create_time;
  // Expiry; for an ended session, when it ended.
  absl::Time expire_time;
  absl::Time refresh_time;
  SessionState state = SessionState::kActive;
  std::string peer;
  int32_t held_locks = 0;
  int32_t held_permits = 0;
  int32_t keepalive_streams = 0;
  int64_t last_event_seq = 0;
};

struct SessionPage {
  std::vector<SessionInfo> sessions;
  std::string next_page_token;
};

struct CloseResult {
  int32_t released_locks = 0;
  int32_t released_permits = 0;
};

struct SessionTableStats {
  int64_t sessions = 0;  // live
  int64_t expirations = 0;
  int64_t closes = 0;
};

class SessionTable final : public SessionHooks {
 public:
  using Sink = std::function<void(const SessionEvent&)>;
  using SubscriptionId = uint64_t;

  struct Subscription {
    SubscriptionId id = 0;
    // Kept events with seq > after_seq, oldest first.
    std::vector<SessionEvent> replay;
    // Events with seq > after_seq that were dropped from the buffer.
    int64_t missed = 0;
    // The seq the next live event will carry.
    int64_t next_seq = 1;
  };

  SessionTable(TimerService& timers, SessionTableOptions options = {});
  // Cancels the table's timers. REQUIRES: no call in flight and no timer callback running.
  ~SessionTable() override;

  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // INVALID_ARGUMENT reason INVALID_TTL (ttl out of bounds), INVALID_ARGUMENT for a bad
  // client_name or labels; RESOURCE_EXHAUSTED reason TOO_MANY_SESSIONS.
  absl::StatusOr<SessionInfo> Create(CreateSessionParams params);

  // Expiry becomes now + ttl (zero ttl keeps the current one). NOT_FOUND SESSION_NOT_FOUND;
  // ABORTED SESSION_EXPIRED / SESSION_CLOSED; INVALID_ARGUMENT INVALID_TTL.
  absl::StatusOr<SessionInfo> Refresh(absl::string_view session_id, absl::Duration ttl);

  // Ends the session now (state CLOSED). Idempotent: an ended session answers zeros.
  // NOT_FOUND SESSION_NOT_FOUND.
  absl::StatusOr<CloseResult> Close(absl::string_view session_id);

  // A live or recently ended session. NOT_FOUND SESSION_NOT_FOUND.
  absl::StatusOr<SessionInfo> Get(absl::string_view session_id) const;

  // Live sessions in id order. INVALID_ARGUMENT for a bad page_size or page_token.
  absl::StatusOr<SessionPage> List(int32_t page_size, absl::string_view page_token,
                                   absl::string_view client_name_prefix,
                                   const Labels& labels) const;

  // Registers `sink` for the session's events after `after_seq` (see the file comment). Errors as
  // CheckAlive. The sink must not block and must not call Unsubscribe.
  absl::StatusOr<Subscription> Subscribe(absl::string_view session_id, int64_t after_seq,
                                         Sink sink);
  // Stops delivery to a sink; once this returns the sink is not running and will not run.
  void Unsubscribe(absl::string_view session_id, SubscriptionId id);

  // Adds an event (type kLockLost) to a live or ending session; ignored for unknown or ended ones.
  void Emit(absl::string_view session_id, SessionEvent event);

  // Adjusts the held grant / permit counts shown by Get (the lock table calls it).
  void AddHeld(absl::string_view session_id, int32_t locks, int32_t permits);

  // The session's current expiry. Errors as CheckAlive.
  absl::StatusOr<absl::Time> ExpireTime(absl::string_view session_id) const;

  SessionTableStats Stats() const;

  // SessionHooks.
  absl::Status CheckAlive(absl::string_view session_id) const override;
  absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                               absl::AnyInvocable<void() &&> on_end) override;
  void RemoveHook(absl::string_view session_id, HookId hook) override;

 private:
  struct SinkEntry {
    Sink sink;
    // Held (shared) while the sink runs; Unsubscribe takes it exclusively to wait it out.
    internal::Mutex running;
    bool removed ABSL_GUARDED_BY(running) = false;
  };

  struct Session {
    SessionInfo info;
    bool ending = false;
    bool expiring_sent = false;
    TimerService::TimerId timer = 0;
    absl::Time timer_at;
    std::map<HookId, absl::AnyInvocable<void() &&>> hooks;
    std::deque<SessionEvent> events;
    int64_t dropped_through = 0;  // highest seq dropped from `events`
    std::map<SubscriptionId, std::shared_ptr<SinkEntry>> sinks;
    int32_t end_released_locks = 0;
    int32_t end_released_permits = 0;
  };

  static constexpr int kShards = 16;
  struct Shard {
    mutable internal::Mutex mu;
    absl::btree_map<std::string, std::unique_ptr<Session>> sessions ABSL_GUARDED_BY(mu);
    absl::flat_hash_map<std::string, std::string> request_ids ABSL_GUARDED_BY(mu);
  };

  Shard& ShardFor(absl::string_view session_id) const;
  static absl::Status EndedStatus(const Session& session);
  absl::Status CheckDuration(absl::Duration ttl) const;
  // Arms the session's timer for its next deadline (expiring notice or expiry).
  void ArmTimer(Shard& shard, Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void OnTimer(std::string session_id);
  // Appends an event; returns the sinks to deliver it to (after unlocking).
  std::vector<std::shared_ptr<SinkEntry>> AppendEvent(Session& session, SessionEvent& event);
  static void Deliver(const std::vector<std::shared_ptr<SinkEntry>>& sinks,
                      const SessionEvent& event);
  // Ends a session: hooks, then `ended`. Returns the counts; zeros if it had already ended.
  CloseResult End(absl::string_view session_id, SessionState state);
  void Forget(std::string session_id);

  // Constant after construction.
  TimerService& timers_;
  const SessionTableOptions options_;

  mutable std::array<Shard, kShards> shards_;
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> expirations_{0};
  std::atomic<int64_t> closes_{0};
  std::atomic<uint64_t> next_hook_{0};
  std::atomic<uint64_t> next_subscription_{0};
  std::atomic<bool> destroying_{false};
};

}  // namespace spindle::sync

#endif  // SPINDLE_SYNC_SESSION_TABLE_H_
