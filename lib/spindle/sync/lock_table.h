// LockTable: named synchronisation primitives with leases and fencing tokens — mutex, reentrant
// lock, semaphore (k of N), read-write lock, event, barrier, condition.
//
// Names are created on first use and keep their kind until Delete. Every grant has a lease id (a
// bearer capability), a fencing token from one table-wide counter (it only grows) and lives under
// a session (until Release or the session ends, optionally also bounded by its own TTL) or under
// its own lease TTL. Waiters are served strictly FIFO per name.
//
// Waiting costs no thread: a wait is a continuation. Acquire/WaitEvent/WaitBarrier/WaitCondition
// take a `done` callback that runs exactly once with the outcome — inline, before the call
// returns, when the answer is immediate; otherwise later, on the thread that caused the outcome
// (a Release, a timer, a session end), never with a table lock held. The returned WaitHandle
// cancels the wait: Cancel() returns true when it removed the waiter (then `done` never runs and
// nothing is granted); false when the outcome was already decided (then `done` runs or ran with
// it). A waiter's own deadline and max_wait are timers on the TimerService.
//
// Deadlock detection: an Acquire with an identity (session_id, owner) that has to wait checks the
// waits-for graph between identities; closing a cycle fails it with ABORTED reason DEADLOCK and a
// message naming the cycle.
//
// Request ids (common.proto's idempotency): a call given a request_id is remembered for 10 minutes
// (at most 8,192 per shard, the oldest forgotten first), scoped to its operation and target (the
// lock name; the lease id for Release) and, for Acquire, to the caller's session and owner. A retry
// gets the original answer instead of acting twice: an Acquire retry gets its grant as it is now
// (or the status of that lease if it has ended since: LOCK_NOT_HELD, LEASE_EXPIRED, ...), never a
// second grant; a Release retry gets the original remaining count and gives back nothing more. Only
// what changed state is remembered: a failed call, a try that did not acquire, a wait that ran out
// are not, so their retry acts afresh. A retry that arrives while the original call still waits
// takes that wait over (Supersede): its place in line, the retry's bounds; the original call
// ends ABORTED reason REQUEST_SUPERSEDED. A WaitCondition is remembered by the lease it named
// (which it released): its retry takes over the wait while it waits for a notify or to re-acquire
// the lock, and gets the new grant once it re-acquired.
//
// Thread-safety: thread-safe. Sharded by name; a grant and its lease id live in the shard of
// their lock. No lock is held while a callback, a session hook or a session sink runs.
#ifndef SPINDLE_SYNC_LOCK_TABLE_H_
#define SPINDLE_SYNC_LOCK_TABLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
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
#include "spindle/common/timer.h"
#include "spindle/sync/internal/mutex.h"
#include "spindle/sync/session_table.h"
#include "spindle/sync/types.h"

namespace spindle::sync {

struct LockTableOptions {
  // Most names at once (RESOURCE_EXHAUSTED reason TOO_MANY_LOCKS).
  int64_t max_locks = 100000;
  // Most waiters at once over the table (RESOURCE_EXHAUSTED reason TOO_MANY_WAITERS).
  int64_t max_waiters = 1000000;
  // How long an ended lease id is remembered (its Release answers LOCK_NOT_HELD / LEASE_EXPIRED
  // rather than LEASE_NOT_FOUND).
  absl::Duration lease_retention = absl::Minutes(10);
  // At most this many ended leases are remembered per shard (oldest forgotten first).
  size_t max_ended_leases_per_shard = 16384;
};

inline constexpr absl::Duration kDefaultLeaseTtl = absl::Seconds(30);
inline constexpr absl::Duration kMinLeaseTtl = absl::Milliseconds(100);
inline constexpr absl::Duration kMaxLeaseTtl = absl::Hours(24);
inline constexpr absl::Duration kMaxWait = absl::Hours(24);

// How an acquire ended, for metrics.
enum class AcquireOutcome { kAcquired, kNotAcquired, kDeadline, kCancelled, kDeadlock, kError };
const char* AcquireOutcomeName(AcquireOutcome outcome);

// Receives acquisition and hold measurements (services/ binds it to metrics). Called without
// table locks held; must be thread-safe and must not block.
class LockObserver {
 public:
  virtual ~LockObserver() = default;
  virtual void OnAcquire(LockKind kind, AcquireOutcome outcome, absl::Duration waited) = 0;
  virtual void OnGrantEnd(LockKind kind, absl::Duration held) = 0;
};

struct AcquireParams {
  std::string name;
  LockKind kind = LockKind::kUnspecified;
  LockConfig config;
  std::string session_id;
  // Zero: default (lease-only) or "as long as the session" (with a session).
  absl::Duration lease_ttl = absl::ZeroDuration();
  std::string owner;
  int32_t permits = 0;
  LockMode mode = LockMode::kUnspecified;
  bool wait = false;
  // Own bound on the wait; running out answers acquired = false. Zero: none.
  absl::Duration max_wait = absl::ZeroDuration();
  // The call's deadline; passing it answers DEADLINE_EXCEEDED. InfiniteFuture: none.
  absl::Time deadline = absl::InfiniteFuture();
  // Idempotency key, 0..64 printable bytes, scoped to the lock name (see the file comment).
  std::string request_id;
};

struct AcquireResult {
  bool acquired = false;
  GrantInfo grant;
  LockKind kind = LockKind::kUnspecified;
  absl::Duration waited;
};

struct ReleaseParams {
  std::string lease_id;
  int32_t count = 0;
  bool all = false;
  std::string name;
  // Idempotency key, scoped to the lease id (or the name of a lease-less release).
  std::string request_id;
  // Set by a caller giving back a grant nobody received (its Acquire's call was gone): the
  // request_id of that Acquire, forgotten with the grant so a retry acquires afresh.
  std::string abandoned_request_id;
};

struct ReleaseResult {
  int32_t remaining = 0;
  int32_t granted_waiters = 0;
  int32_t available_permits = 0;
};

struct LockInfo {
  std::string name;
  LockKind kind = LockKind::kUnspecified;
  LockConfig config;
  Labels labels;
  absl::Time create_time;
  int64_t last_fencing_token = 0;
  int32_t holders = 0;
  int32_t waiters = 0;
  int32_t available_permits = 0;
  bool event_set = false;
  int32_t barrier_waiting = 0;
  int64_t barrier_generation = 0;
  bool barrier_broken = false;
};

struct HolderInfo {
  std::string owner;
  std::string session_id;
  absl::Time acquire_time;
  int64_t fencing_token = 0;
  int32_t held_count = 1;
  int32_t permits = 1;
  LockMode mode = LockMode::kExclusive;
  absl::Time expire_time = absl::InfiniteFuture();
};

struct WaiterInfo {
  std::string owner;
  std::string session_id;
  absl::Time wait_start_time;
  WaitFor wait_for = WaitFor::kGrant;
  int32_t permits = 1;
  LockMode mode = LockMode::kExclusive;
  int32_t position = 0;
};

struct LockDescription {
  LockInfo info;
  std::vector<HolderInfo> holders;
  std::vector<WaiterInfo> waiters;
};

struct LockPage {
  std::vector<LockInfo> locks;
  std::string next_page_token;
};

struct BarrierResult {
  bool tripped = false;
  int64_t generation = 0;
  int32_t arrival_index = 0;
};

struct ConditionResult {
  bool notified = false;
  GrantInfo grant;
};

struct WaitEventParams {
  std::string name;
  bool wait = false;
  absl::Duration max_wait = absl::ZeroDuration();
  absl::Time deadline = absl::InfiniteFuture();
  std::string owner;
};

struct WaitBarrierParams {
  std::string name;
  int32_t parties = 0;
  absl::Duration max_wait = absl::ZeroDuration();
  absl::Time deadline = absl::InfiniteFuture();
  std::string owner;
  // Idempotency key: a retried arrival is not counted twice.
  std::string request_id;
};

struct WaitConditionParams {
  std::string name;
  std::string lease_id;
  absl::Duration max_wait = absl::ZeroDuration();
  absl::Time deadline = absl::InfiniteFuture();
  // Scoped to lease_id: a retry after the answer was lost gets the re-acquired grant as it is
  // now (or the status of its end), not LOCK_NOT_HELD for the lease the first call released.
  std::string request_id;
};

struct LockTableStats {
  int64_t locks = 0;
  int64_t waiters = 0;
  int64_t grants = 0;
};

// Cancels a pending wait; empty when the outcome was immediate.
class WaitHandle {
 public:
  WaitHandle() = default;
  bool pending() const { return token_ != nullptr; }

 private:
  friend class LockTable;
  struct Token;
  explicit WaitHandle(std::shared_ptr<Token> token) : token_(std::move(token)) {}
  std::shared_ptr<Token> token_;
};

class LockTable {
 public:
  using AcquireCallback = absl::AnyInvocable<void(absl::StatusOr<AcquireResult>) &&>;
  using EventCallback = absl::AnyInvocable<void(absl::StatusOr<bool>) &&>;
  using BarrierCallback = absl::AnyInvocable<void(absl::StatusOr<BarrierResult>) &&>;
  using ConditionCallback = absl::AnyInvocable<void(absl::StatusOr<ConditionResult>) &&>;

  // `sessions` may be null: then every call naming a session fails SESSION_NOT_FOUND.
  // `observer` may be null.
  LockTable(TimerService& timers, SessionTable* sessions, LockTableOptions options = {},
            LockObserver* observer = nullptr);
  // REQUIRES: no call in flight, no timer callback running, and `sessions` will not run hooks of
  // this table any more (it is destroyed first, or its timers have stopped).
  ~LockTable();

  LockTable(const LockTable&) = delete;
  LockTable& operator=(const LockTable&) = delete;

  // Creates a name with explicit settings. Returns the lock and whether this call created it.
  // ALREADY_EXISTS LOCK_EXISTS (other kind or settings); INVALID_ARGUMENT for bad settings.
  absl::StatusOr<std::pair<LockInfo, bool>> Create(absl::string_view name, LockKind kind,
                                                   const LockConfig& config, const Labels& labels);

  // See lock.proto Acquire for the codes. `done` runs exactly once (see the file comment).
  WaitHandle Acquire(AcquireParams params, AcquireCallback done);

  // Removes a pending waiter. True: removed, its callback never runs. False: already decided.
  bool Cancel(const WaitHandle& handle);

  absl::StatusOr<ReleaseResult> Release(const ReleaseParams& params);
  // New expiry of the grant's own lease. Zero ttl = the TTL the grant was made with.
  absl::StatusOr<absl::Time> RefreshLease(absl::string_view lease_id, absl::Duration ttl);

  // Returns {was_set, woken}.
  absl::StatusOr<std::pair<bool, int32_t>> SetEvent(absl::string_view name,
                                                    absl::string_view request_id = {});
  // Returns was_set.
  absl::StatusOr<bool> ClearEvent(absl::string_view name, absl::string_view request_id = {});
  WaitHandle WaitEvent(WaitEventParams params, EventCallback done);

  WaitHandle WaitBarrier(WaitBarrierParams params, BarrierCallback done);
  // Returns {broken_waiters, generation}.
  absl::StatusOr<std::pair<int32_t, int64_t>> ResetBarrier(absl::string_view name,
                                                           absl::string_view request_id = {});
  // Returns broken_waiters.
  absl::StatusOr<int32_t> AbortBarrier(absl::string_view name, absl::string_view request_id = {});

  WaitHandle WaitCondition(WaitConditionParams params, ConditionCallback done);
  // Returns woken.
  absl::StatusOr<int32_t> NotifyCondition(absl::string_view name, int32_t count, bool all,
                                          absl::string_view lease_id,
                                          absl::string_view request_id = {});

  absl::StatusOr<LockDescription> Describe(absl::string_view name, int32_t max_waiters) const;
  // OK while a grant with `fencing_token` on lock `name` is held (not released, revoked or past
  // its lease); else ABORTED (STALE_FENCING_TOKEN) naming the lock and token. Takes only the
  // lock's shard mutex, so other tables may call it under their own locks (ValueService's fenced
  // writes check it with the value's shard held, so no grant can end between check and write).
  absl::Status CheckFence(absl::string_view name, int64_t fencing_token) const;
  absl::StatusOr<LockPage> List(int32_t page_size, absl::string_view page_token,
                                absl::string_view prefix, LockKind kind,
                                const Labels& labels) const;
  absl::Status Delete(absl::string_view name, absl::string_view request_id = {});
  // Returns {revoked, granted_waiters}. fencing_token 0 = every holder.
  absl::StatusOr<std::pair<int32_t, int32_t>> Revoke(absl::string_view name, int64_t fencing_token,
                                                     absl::string_view message,
                                                     absl::string_view request_id = {});

  // Grants held under a session, by name, at most `limit`; `truncated` set when cut short.
  std::vector<GrantInfo> GrantsOfSession(absl::string_view session_id, size_t limit,
                                         bool* truncated) const;

  LockTableStats Stats() const;

 private:
  struct Lock;
  struct Grant;
  struct Waiter;
  struct Shard;
  struct Deferred;
  struct Answered;
  struct ConditionCall;

  static constexpr int kShards = 16;

  Shard& ShardFor(absl::string_view name) const;
  Shard* ShardOfId(absl::string_view id) const;
  int ShardIndex(absl::string_view name) const;

  // Finds or creates `name` with `kind` (unspecified: existing kind or `default_kind`).
  absl::StatusOr<Lock*> FindOrCreate(Shard& shard, absl::string_view name, LockKind kind,
                                     LockKind default_kind, const LockConfig& config,
                                     const Labels& labels, bool* created)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  // True when `waiter` (a grant waiter, or a fresh request) can be granted now on `lock`.
  bool CanGrant(const Lock& lock, const Waiter& waiter) const;
  // Makes a grant for `waiter` and returns it; errors when its session ended.
  absl::StatusOr<GrantInfo> MakeGrant(Shard& shard, Lock& lock, Waiter& waiter, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Grants waiters at the head of the queue while they fit.
  int32_t Pump(Shard& shard, Lock& lock, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Ends a grant and pumps. Returns waiters granted.
  int32_t EndGrant(Shard& shard, Lock& lock, Grant& grant, GrantEnd cause,
                   absl::string_view message, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes a waiter from its lock and the indexes; returns it.
  std::unique_ptr<Waiter> TakeWaiter(Shard& shard, uint64_t waiter_id, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // A retry (the same request id) of the call waiter `waiter_id` answers takes the wait over:
  // the first call is answered ABORTED REQUEST_SUPERSEDED and its handle no longer cancels the
  // wait, which keeps its place in line and takes the retry's bounds (max_wait counted from
  // now). Returns the retry's token; the caller gives the waiter the retry's callback.
  std::shared_ptr<WaitHandle::Token> Supersede(Shard& shard, uint64_t waiter_id,
                                               absl::Duration max_wait, absl::Time deadline,
                                               absl::string_view request_id, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Gives a waiter new bounds (timer rearmed): the max_wait of a notify wait, and the deadline.
  void Rebound(Shard& shard, Waiter& waiter, absl::Time max_wait_at, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // A WaitCondition retry takes over `call`, the wait of its first call, wherever the wait is now
  // (waiting for a notify, or to re-acquire the lock): as Supersede, with `done` in place of the
  // first call's callback. Returns the retry's handle, or nothing when the wait was decided
  // meanwhile (its answer is then recorded, or its failure forgotten, at once: look again).
  std::optional<WaitHandle> TakeOverCondition(ConditionCall& call, absl::Duration max_wait,
                                              absl::Time deadline, absl::string_view request_id,
                                              ConditionCallback& done);
  // Adds a waiter to its lock; arms its timer and session hook. On success `waiter` is moved
  // from; on failure it is left with the caller (who answers through its callback).
  absl::Status AddWaiter(Shard& shard, Lock& lock, std::unique_ptr<Waiter>& waiter,
                         Deferred& deferred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Completes a waiter whose timer fired (max_wait or deadline).
  void OnWaiterTimer(uint64_t waiter_id);
  // Completes a waiter whose session ended.
  void OnWaiterSessionEnd(uint64_t waiter_id, std::string session_id);
  void OnLeaseTimer(std::string lease_id);
  void OnGrantSessionEnd(std::string lease_id);
  // Fails every barrier waiter with BARRIER_BROKEN `cause`.
  int32_t BreakBarrier(Shard& shard, Lock& lock, absl::string_view cause, Deferred& deferred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Moves a woken condition waiter to the queue of its lock (another shard).
  void RequeueConditionWaiter(std::unique_ptr<Waiter> waiter, bool notified);
  // Finds a waits-for cycle through `self` (who waits on `lock_name`); empty when none.
  std::string FindCycle(const std::string& self, const std::string& lock_name,
                        std::vector<std::string>* locks) const;
  void GraphAdd(const Waiter& waiter);
  void GraphRemove(const Waiter& waiter);
  std::vector<std::string> HolderIdentities(absl::string_view name) const;
  absl::Status LeaseGone(Shard& shard, absl::string_view lease_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // The answer recorded for `key` (empty key: none).
  Answered* Recorded(Shard& shard, absl::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Records an answer for `key` (empty key: nothing).
  template <typename T>
  void Record(Shard& shard, const std::string& key, T answer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // An Acquire retry's answer: its grant as it is now, or the status of its ended lease.
  absl::StatusOr<AcquireResult> Replay(Shard& shard, absl::string_view request_id,
                                       const AcquireResult& original)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void Run(Deferred& deferred);
  GrantInfo InfoOf(const Lock& lock, const Grant& grant) const;
  LockInfo InfoOf(const Lock& lock) const;
  absl::Status ValidateAcquire(const AcquireParams& params) const;

  // Constant after construction.
  TimerService& timers_;
  SessionTable* const sessions_;
  const LockTableOptions options_;
  LockObserver* const observer_;
  const uint64_t lease_salt_;

  mutable std::array<std::unique_ptr<Shard>, kShards> shards_;
  std::atomic<int64_t> next_token_;
  std::atomic<uint64_t> next_id_{0};
  std::atomic<int64_t> locks_{0};
  std::atomic<int64_t> waiters_{0};
  std::atomic<int64_t> grants_{0};
  std::atomic<bool> destroying_{false};

  // The waits-for graph: identity -> lock names it waits on (count per name).
  mutable internal::Mutex graph_mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int>> waits_
      ABSL_GUARDED_BY(graph_mu_);
};

}  // namespace spindle::sync

#endif  // SPINDLE_SYNC_LOCK_TABLE_H_
