#include "spindle/sync/lock_table.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "spindle/common/names.h"
#include "spindle/common/request_log.h"
#include "spindle/common/status.h"
#include "spindle/sync/validate.h"

namespace spindle::sync {

const char* LockKindName(LockKind kind) {
  switch (kind) {
    case LockKind::kMutex:
      return "mutex";
    case LockKind::kReentrant:
      return "reentrant";
    case LockKind::kSemaphore:
      return "semaphore";
    case LockKind::kRwLock:
      return "rw_lock";
    case LockKind::kEvent:
      return "event";
    case LockKind::kBarrier:
      return "barrier";
    case LockKind::kCondition:
      return "condition";
    case LockKind::kUnspecified:
      break;
  }
  return "unspecified";
}

const char* AcquireOutcomeName(AcquireOutcome outcome) {
  switch (outcome) {
    case AcquireOutcome::kAcquired:
      return "acquired";
    case AcquireOutcome::kNotAcquired:
      return "not_acquired";
    case AcquireOutcome::kDeadline:
      return "deadline_exceeded";
    case AcquireOutcome::kCancelled:
      return "cancelled";
    case AcquireOutcome::kDeadlock:
      return "deadlock";
    case AcquireOutcome::kError:
      break;
  }
  return "error";
}

struct WaitHandle::Token {
  // Id of the waiter record now representing this wait; 0 while it moves between locks.
  std::atomic<uint64_t> waiter_id{0};
  // Set once the outcome is decided (the callback is due or ran).
  std::atomic<bool> done{false};
};

struct LockTable::Grant {
  std::string lease_id;
  int64_t token = 0;
  std::string session_id;
  std::string owner;
  int32_t held_count = 1;
  int32_t permits = 1;
  LockMode mode = LockMode::kExclusive;
  absl::Time acquire_time;
  absl::Duration lease_ttl = absl::ZeroDuration();  // zero: none (a session grant)
  absl::Time lease_expire = absl::InfiniteFuture();
  TimerService::TimerId timer = 0;
  absl::Time timer_at = absl::InfiniteFuture();
  SessionHooks::HookId hook = 0;
  Lock* lock = nullptr;
};

struct LockTable::Waiter {
  uint64_t id = 0;
  WaitFor what = WaitFor::kGrant;
  LockKind kind = LockKind::kUnspecified;
  std::string name;
  std::string session_id;
  std::string owner;
  int32_t permits = 1;
  LockMode mode = LockMode::kExclusive;
  absl::Time start;
  absl::Time max_wait_at = absl::InfiniteFuture();
  absl::Time deadline = absl::InfiniteFuture();
  TimerService::TimerId timer = 0;
  SessionHooks::HookId hook = 0;
  absl::Duration lease_ttl = absl::ZeroDuration();
  int32_t held_count = 1;
  bool in_graph = false;
  std::shared_ptr<WaitHandle::Token> token;
  AcquireCallback on_grant;
  EventCallback on_event;
  BarrierCallback on_barrier;
  ConditionCallback on_condition;
  int32_t arrival_index = 0;
  int64_t generation = 0;
  std::string cond_lock_name;
  // Key of the request_id this wait answers (empty: none).
  std::string request_key;
  // A WaitCondition given a request_id: its record (in another shard).
  std::shared_ptr<ConditionCall> condition;
};

struct LockTable::Lock {
  std::string name;
  LockKind kind = LockKind::kUnspecified;
  LockConfig config;
  Labels labels;
  absl::Time create_time;
  int64_t last_token = 0;
  std::list<Grant> grants;
  // Grant waiters in FIFO order.
  std::list<std::unique_ptr<Waiter>> waiters;
  // Event, barrier and notify waiters in arrival order.
  std::list<std::unique_ptr<Waiter>> others;
  int64_t available = 0;
  bool event_set = false;
  int32_t barrier_arrived = 0;
  int64_t generation = 0;
  bool broken = false;
  std::string broken_cause;

  bool Idle() const { return grants.empty() && waiters.empty() && others.empty(); }
};

// A WaitCondition given a request_id, not answered yet. Its wait moves between waiter records
// (the condition's, then the lock's), so a retry finds it by its token; the service's callback
// sits here so that a retry taking the wait over can put its own in its place.
struct LockTable::ConditionCall {
  // Where the call is recorded: its lease's shard, under `key`.
  Shard* lease_shard = nullptr;
  std::string key;
  internal::Mutex mu;
  std::shared_ptr<WaitHandle::Token> token ABSL_GUARDED_BY(mu);
  ConditionCallback done ABSL_GUARDED_BY(mu);
};

// What a call given a request_id answered (see "Request ids" in the header).
struct LockTable::Answered {
  // A wait (Acquire, WaitBarrier) not decided yet: its waiter. 0 once answered.
  uint64_t waiter_id = 0;
  // A WaitCondition not decided yet (kept in its lease's shard, not its waiter's).
  std::shared_ptr<ConditionCall> condition;
  std::variant<std::monostate, AcquireResult, ReleaseResult, std::pair<bool, int32_t>, bool,
               BarrierResult, std::pair<int32_t, int64_t>, int32_t, std::pair<int32_t, int32_t>,
               ConditionResult>
      answer;
};

inline constexpr size_t kRequestIdsPerShard = 8192;

struct LockTable::Shard {
  struct WaiterRef {
    Lock* lock;
    std::list<std::unique_ptr<Waiter>>::iterator it;
    bool other;
  };
  struct EndedLease {
    GrantEnd cause;
    std::string name;
  };
  internal::Mutex mu;
  absl::btree_map<std::string, std::unique_ptr<Lock>> locks ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::list<Grant>::iterator> leases ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, WaiterRef> waiters ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, EndedLease> ended ABSL_GUARDED_BY(mu);
  std::deque<std::pair<absl::Time, std::string>> ended_order ABSL_GUARDED_BY(mu);
  RequestLog<Answered> requests ABSL_GUARDED_BY(mu){kRequestIdRetention, kRequestIdsPerShard};
};

// Work collected under a shard lock and done after it is released.
struct LockTable::Deferred {
  std::vector<absl::AnyInvocable<void() &&>> calls;
  std::vector<std::pair<std::string, SessionEvent>> events;
  std::vector<std::pair<std::string, SessionHooks::HookId>> remove_hooks;
  std::vector<std::pair<LockKind, absl::Duration>> held;
  std::vector<std::tuple<LockKind, AcquireOutcome, absl::Duration>> acquired;
};

namespace {

constexpr absl::string_view kLockPageTokenPrefix = "n:";

std::string Identity(absl::string_view session_id, absl::string_view owner) {
  if (session_id.empty() && owner.empty()) {
    return "";
  }
  return absl::StrCat(session_id, "/", owner);
}

AcquireOutcome OutcomeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      return AcquireOutcome::kDeadline;
    case absl::StatusCode::kCancelled:
      return AcquireOutcome::kCancelled;
    default:
      return Reason(status) == "DEADLOCK" ? AcquireOutcome::kDeadlock : AcquireOutcome::kError;
  }
}

absl::Status KindMismatch(absl::string_view name, LockKind have, LockKind want) {
  return FailedPrecondition(
      "KIND_MISMATCH",
      absl::StrCat("lock '", name, "' is a ", LockKindName(have), ", not a ", LockKindName(want)));
}

absl::Status LockNotFound(absl::string_view name) {
  return NotFound("LOCK_NOT_FOUND", absl::StrCat("lock ", QuoteValue(name), " does not exist"));
}

// The key of a request_id for operation `op` on `target` (a name or a lease id) by `identity`
// (Acquire's session/owner: a grant's lease id is a capability, never replayed to another
// owner); empty without a request_id. NUL separates the parts, which hold none.
std::string RequestKey(char op, absl::string_view target, absl::string_view request_id,
                       absl::string_view identity = {}) {
  if (request_id.empty()) {
    return "";
  }
  constexpr absl::string_view kSep("\0", 1);
  return absl::StrCat(absl::string_view(&op, 1), kSep, target, kSep, identity, kSep, request_id);
}

}  // namespace

LockTable::LockTable(TimerService& timers, SessionTable* sessions, LockTableOptions options,
                     LockObserver* observer)
    : timers_(timers),
      sessions_(sessions),
      options_(options),
      observer_(observer),
      lease_salt_(absl::Uniform<uint64_t>(absl::BitGen())),
      next_token_(absl::ToUnixMicros(timers.Now())) {
  for (auto& shard : shards_) {
    shard = std::make_unique<Shard>();
  }
}

LockTable::~LockTable() {
  destroying_ = true;
  for (auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    for (auto& [name, l] : shard->locks) {
      for (Grant& grant : l->grants) {
        if (grant.timer != 0) {
          timers_.Cancel(grant.timer);
        }
      }
      for (auto* list : {&l->waiters, &l->others}) {
        for (auto& waiter : *list) {
          if (waiter->timer != 0) {
            timers_.Cancel(waiter->timer);
          }
        }
      }
    }
  }
}

int LockTable::ShardIndex(absl::string_view name) const {
  return static_cast<int>(absl::Hash<absl::string_view>()(name) % kShards);
}

LockTable::Shard& LockTable::ShardFor(absl::string_view name) const {
  return *shards_[ShardIndex(name)];
}

LockTable::Shard* LockTable::ShardOfId(absl::string_view id) const {
  // Lease ids: "l" + one hex digit (the shard) + 28 hex digits.
  if (id.size() != 30 || id[0] != 'l') {
    return nullptr;
  }
  char c = id[1];
  int index = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
  if (index < 0 || index >= kShards) {
    return nullptr;
  }
  return shards_[index].get();
}

void LockTable::Run(Deferred& deferred) {
  if (sessions_ != nullptr) {
    for (auto& [session, hook] : deferred.remove_hooks) {
      sessions_->RemoveHook(session, hook);
    }
    for (auto& [session, event] : deferred.events) {
      sessions_->Emit(session, std::move(event));
    }
  }
  if (observer_ != nullptr) {
    for (auto& [kind, outcome, waited] : deferred.acquired) {
      observer_->OnAcquire(kind, outcome, waited);
    }
    for (auto& [kind, held] : deferred.held) {
      observer_->OnGrantEnd(kind, held);
    }
  }
  for (auto& call : deferred.calls) {
    std::move(call)();
  }
}

absl::StatusOr<LockTable::Lock*> LockTable::FindOrCreate(Shard& shard, absl::string_view name,
                                                         LockKind kind, LockKind default_kind,
                                                         const LockConfig& config,
                                                         const Labels& labels, bool* created) {
  auto it = shard.locks.find(name);
  if (it != shard.locks.end()) {
    Lock& lock = *it->second;
    if (kind != LockKind::kUnspecified && kind != lock.kind) {
      return KindMismatch(name, lock.kind, kind);
    }
    if (created != nullptr) {
      *created = false;
    }
    return &lock;
  }
  if (locks_.fetch_add(1) >= options_.max_locks) {
    locks_.fetch_sub(1);
    return ResourceExhausted("TOO_MANY_LOCKS", absl::StrCat("the server holds ", options_.max_locks,
                                                            " locks, its limit (--max-names)"));
  }
  auto lock = std::make_unique<Lock>();
  lock->name = std::string(name);
  lock->kind = kind == LockKind::kUnspecified ? default_kind : kind;
  lock->config = config;
  if (lock->kind == LockKind::kSemaphore && lock->config.permits == 0) {
    lock->config.permits = 1;
  }
  lock->available = lock->config.permits;
  lock->labels = labels;
  lock->create_time = timers_.Now();
  Lock* raw = lock.get();
  shard.locks.emplace(std::string(name), std::move(lock));
  if (created != nullptr) {
    *created = true;
  }
  return raw;
}

absl::StatusOr<std::pair<LockInfo, bool>> LockTable::Create(absl::string_view name, LockKind kind,
                                                            const LockConfig& config,
                                                            const Labels& labels) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidateLabels("labels", labels));
  if (kind == LockKind::kUnspecified || static_cast<int>(kind) > 7) {
    return InvalidArgument("INVALID_KIND",
                           "kind must be given (MUTEX, REENTRANT, SEMAPHORE, "
                           "RW_LOCK, EVENT, BARRIER or CONDITION)");
  }
  if (config.permits < 0 || config.permits > 1000000) {
    return InvalidArgument("INVALID_PERMITS", absl::StrCat("config.permits ", config.permits,
                                                           " is out of bounds 1..1000000"));
  }
  if (kind != LockKind::kSemaphore && (config.permits != 0 || config.bounded)) {
    return InvalidArgument("INVALID_PERMITS",
                           "config.permits and config.bounded apply to a SEMAPHORE only");
  }
  if (kind == LockKind::kBarrier && (config.parties < 1 || config.parties > 100000)) {
    return InvalidArgument("INVALID_PARTIES", absl::StrCat("config.parties ", config.parties,
                                                           " is out of bounds 1..100000"));
  }
  if (kind != LockKind::kBarrier && config.parties != 0) {
    return InvalidArgument("INVALID_PARTIES", "config.parties applies to a BARRIER only");
  }
  if (!config.lock_name.empty()) {
    if (kind != LockKind::kCondition) {
      return InvalidArgument("INVALID_ARGUMENT", "config.lock_name applies to a CONDITION only");
    }
    SPINDLE_RETURN_IF_ERROR(ValidateName("config.lock_name", config.lock_name));
  }
  Shard& shard = ShardFor(name);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.locks.find(name);
  if (it != shard.locks.end()) {
    const Lock& l = *it->second;
    LockConfig want = config;
    if (kind == LockKind::kSemaphore && want.permits == 0) {
      want.permits = 1;
    }
    bool same = l.kind == kind && l.config.permits == want.permits &&
                l.config.bounded == want.bounded && l.config.parties == want.parties &&
                (want.lock_name.empty() || want.lock_name == l.config.lock_name);
    if (!same) {
      return AlreadyExists("LOCK_EXISTS",
                           absl::StrCat("lock '", name, "' exists as a ", LockKindName(l.kind),
                                        " with other settings"));
    }
    return std::make_pair(InfoOf(l), false);
  }
  bool created = false;
  SPINDLE_ASSIGN_OR_RETURN(Lock * l,
                           FindOrCreate(shard, name, kind, kind, config, labels, &created));
  return std::make_pair(InfoOf(*l), created);
}

absl::Status LockTable::ValidateAcquire(const AcquireParams& params) const {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", params.name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", params.request_id, 64));
  switch (params.kind) {
    case LockKind::kUnspecified:
    case LockKind::kMutex:
    case LockKind::kReentrant:
    case LockKind::kSemaphore:
    case LockKind::kRwLock:
      break;
    default:
      return InvalidArgument("INVALID_KIND",
                             absl::StrCat("kind ", LockKindName(params.kind),
                                          " cannot be acquired (use MUTEX, REENTRANT, SEMAPHORE "
                                          "or RW_LOCK)"));
  }
  if (params.permits < 0) {
    return InvalidArgument("INVALID_PERMITS",
                           absl::StrCat("permits ", params.permits, " must not be negative"));
  }
  if (params.config.permits < 0 || params.config.permits > 1000000) {
    return InvalidArgument("INVALID_PERMITS", absl::StrCat("config.permits ", params.config.permits,
                                                           " is out of bounds 1..1000000"));
  }
  if (params.lease_ttl < absl::ZeroDuration()) {
    return InvalidArgument(
        "INVALID_TTL", absl::StrCat("lease_ttl_ms ", absl::ToInt64Milliseconds(params.lease_ttl),
                                    " must not be negative"));
  }
  if (params.lease_ttl != absl::ZeroDuration()) {
    SPINDLE_RETURN_IF_ERROR(ValidateDurationMs("lease_ttl_ms", params.lease_ttl, kMinLeaseTtl,
                                               kMaxLeaseTtl, "INVALID_TTL"));
  }
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("owner", params.owner, 128));
  if (params.kind == LockKind::kReentrant && params.owner.empty()) {
    return InvalidArgument("OWNER_REQUIRED", "owner is required for a REENTRANT lock");
  }
  if (static_cast<int>(params.mode) < 0 || static_cast<int>(params.mode) > 2) {
    return InvalidArgument("INVALID_MODE", "mode is not a LockMode");
  }
  SPINDLE_RETURN_IF_ERROR(ValidateDurationMs("max_wait_ms", params.max_wait, absl::ZeroDuration(),
                                             kMaxWait, "INVALID_ARGUMENT"));
  if (!params.session_id.empty()) {
    SPINDLE_RETURN_IF_ERROR(ValidatePrintable("session_id", params.session_id, 64));
    if (sessions_ == nullptr) {
      return NotFound("SESSION_NOT_FOUND",
                      absl::StrCat("session '", params.session_id, "' does not exist"));
    }
  }
  return absl::OkStatus();
}

bool LockTable::CanGrant(const Lock& lock, const Waiter& waiter) const {
  switch (lock.kind) {
    case LockKind::kSemaphore:
      return lock.available >= waiter.permits;
    case LockKind::kRwLock:
      if (waiter.mode == LockMode::kShared) {
        return std::none_of(lock.grants.begin(), lock.grants.end(),
                            [](const Grant& g) { return g.mode == LockMode::kExclusive; });
      }
      return lock.grants.empty();
    default:
      return lock.grants.empty();
  }
}

GrantInfo LockTable::InfoOf(const Lock& lock, const Grant& grant) const {
  GrantInfo info;
  info.name = lock.name;
  info.kind = lock.kind;
  info.lease_id = grant.lease_id;
  info.fencing_token = grant.token;
  info.has_lease_ttl = grant.lease_ttl != absl::ZeroDuration();
  info.expire_time = grant.lease_expire;
  if (!info.has_lease_ttl && sessions_ != nullptr) {
    auto expiry = sessions_->ExpireTime(grant.session_id);
    if (expiry.ok()) {
      info.expire_time = *expiry;
    }
  }
  info.held_count = grant.held_count;
  info.permits = grant.permits;
  info.mode = grant.mode;
  info.session_id = grant.session_id;
  info.owner = grant.owner;
  info.acquire_time = grant.acquire_time;
  return info;
}

LockInfo LockTable::InfoOf(const Lock& lock) const {
  LockInfo info;
  info.name = lock.name;
  info.kind = lock.kind;
  info.config = lock.config;
  info.labels = lock.labels;
  info.create_time = lock.create_time;
  info.last_fencing_token = lock.last_token;
  info.holders = static_cast<int32_t>(lock.grants.size());
  info.waiters = static_cast<int32_t>(lock.waiters.size() + lock.others.size());
  info.available_permits =
      lock.kind == LockKind::kSemaphore ? static_cast<int32_t>(lock.available) : 0;
  info.event_set = lock.event_set;
  info.barrier_waiting = lock.barrier_arrived;
  info.barrier_generation = lock.generation;
  info.barrier_broken = lock.broken;
  return info;
}

absl::StatusOr<GrantInfo> LockTable::MakeGrant(Shard& shard, Lock& lock, Waiter& waiter,
                                               Deferred& deferred) {
  SessionHooks::HookId hook = 0;
  int shard_index = ShardIndex(lock.name);
  uint64_t serial = ++next_id_;
  thread_local absl::BitGen gen;
  std::string lease_id = absl::StrFormat("l%x%012x%016x", shard_index, serial & 0xffffffffffffULL,
                                         absl::Uniform<uint64_t>(gen) ^ lease_salt_);
  if (!waiter.session_id.empty()) {
    auto registered = sessions_->OnEnd(
        waiter.session_id, [this, lease_id]() mutable { OnGrantSessionEnd(std::move(lease_id)); });
    if (!registered.ok()) {
      return registered.status();
    }
    hook = *registered;
  }
  absl::Time now = timers_.Now();
  Grant grant;
  grant.lease_id = lease_id;
  grant.token = next_token_.fetch_add(1) + 1;
  lock.last_token = grant.token;
  grant.session_id = waiter.session_id;
  grant.owner = waiter.owner;
  grant.held_count = waiter.held_count;
  grant.permits = waiter.permits;
  grant.mode = waiter.mode;
  grant.acquire_time = now;
  grant.lease_ttl = waiter.lease_ttl;
  if (waiter.session_id.empty() && grant.lease_ttl == absl::ZeroDuration()) {
    grant.lease_ttl = kDefaultLeaseTtl;
  }
  grant.hook = hook;
  grant.lock = &lock;
  if (grant.lease_ttl != absl::ZeroDuration()) {
    grant.lease_expire = now + grant.lease_ttl;
    grant.timer_at = grant.lease_expire;
    grant.timer = timers_.Schedule(
        grant.lease_expire, [this, lease_id]() mutable { OnLeaseTimer(std::move(lease_id)); });
  }
  if (lock.kind == LockKind::kSemaphore) {
    lock.available -= grant.permits;
  }
  lock.grants.push_back(std::move(grant));
  auto it = std::prev(lock.grants.end());
  shard.leases.emplace(lease_id, it);
  grants_.fetch_add(1);
  if (!waiter.session_id.empty()) {
    sessions_->AddHeld(waiter.session_id, 1, it->permits);
  }
  deferred.acquired.emplace_back(lock.kind, AcquireOutcome::kAcquired, now - waiter.start);
  return InfoOf(lock, *it);
}

int32_t LockTable::Pump(Shard& shard, Lock& lock, Deferred& deferred) {
  int32_t granted = 0;
  while (!lock.waiters.empty()) {
    Waiter& head = *lock.waiters.front();
    if (!CanGrant(lock, head)) {
      break;
    }
    std::unique_ptr<Waiter> waiter = TakeWaiter(shard, head.id, deferred);
    waiter->token->done = true;
    absl::StatusOr<GrantInfo> grant = MakeGrant(shard, lock, *waiter, deferred);
    absl::Duration waited = timers_.Now() - waiter->start;
    if (grant.ok()) {
      ++granted;
      AcquireResult result{true, *std::move(grant), lock.kind, waited};
      Record(shard, waiter->request_key, result);
      deferred.calls.push_back([cb = std::move(waiter->on_grant), result]() mutable {
        std::move(cb)(std::move(result));
      });
    } else {
      deferred.acquired.emplace_back(lock.kind, AcquireOutcome::kError, waited);
      deferred.calls.push_back([cb = std::move(waiter->on_grant),
                                status = grant.status()]() mutable { std::move(cb)(status); });
    }
  }
  return granted;
}

int32_t LockTable::EndGrant(Shard& shard, Lock& lock, Grant& grant, GrantEnd cause,
                            absl::string_view message, Deferred& deferred) {
  absl::Time now = timers_.Now();
  if (lock.kind == LockKind::kSemaphore) {
    lock.available += grant.permits;
  }
  if (grant.timer != 0) {
    timers_.Cancel(grant.timer);
  }
  if (!grant.session_id.empty()) {
    if (cause != GrantEnd::kSessionEnded) {
      deferred.remove_hooks.emplace_back(grant.session_id, grant.hook);
    }
    sessions_->AddHeld(grant.session_id, -1, -grant.permits);
    if (cause != GrantEnd::kReleased) {
      SessionEvent event;
      event.type = SessionEvent::Type::kLockLost;
      event.lock_name = lock.name;
      event.lock_kind = lock.kind;
      event.fencing_token = grant.token;
      event.lease_id = grant.lease_id;
      event.cause = cause;
      event.message = std::string(message);
      event.permits = grant.permits;
      deferred.events.emplace_back(grant.session_id, std::move(event));
    }
  }
  deferred.held.emplace_back(lock.kind, now - grant.acquire_time);
  shard.ended.insert_or_assign(grant.lease_id, Shard::EndedLease{cause, lock.name});
  shard.ended_order.emplace_back(now, grant.lease_id);
  while (!shard.ended_order.empty() &&
         (shard.ended_order.size() > options_.max_ended_leases_per_shard ||
          shard.ended_order.front().first + options_.lease_retention < now)) {
    shard.ended.erase(shard.ended_order.front().second);
    shard.ended_order.pop_front();
  }
  auto it = shard.leases.find(grant.lease_id);
  auto grant_it = it->second;
  shard.leases.erase(it);
  lock.grants.erase(grant_it);
  grants_.fetch_sub(1);
  return Pump(shard, lock, deferred);
}

std::unique_ptr<LockTable::Waiter> LockTable::TakeWaiter(Shard& shard, uint64_t waiter_id,
                                                         Deferred& deferred) {
  auto ref = shard.waiters.find(waiter_id);
  if (ref == shard.waiters.end()) {
    return nullptr;
  }
  auto& list = ref->second.other ? ref->second.lock->others : ref->second.lock->waiters;
  std::unique_ptr<Waiter> waiter = std::move(*ref->second.it);
  list.erase(ref->second.it);
  shard.waiters.erase(ref);
  waiters_.fetch_sub(1);
  if (waiter->timer != 0) {
    timers_.Cancel(waiter->timer);
    waiter->timer = 0;
  }
  if (waiter->hook != 0) {
    deferred.remove_hooks.emplace_back(waiter->session_id, waiter->hook);
    waiter->hook = 0;
  }
  if (waiter->in_graph) {
    GraphRemove(*waiter);
    waiter->in_graph = false;
  }
  if (Answered* answered = Recorded(shard, waiter->request_key);
      answered != nullptr && answered->waiter_id == waiter->id) {
    // Undecided until now; an answer that changed state is recorded again by the caller.
    shard.requests.Forget(waiter->request_key);
  }
  return waiter;
}

std::shared_ptr<WaitHandle::Token> LockTable::Supersede(Shard& shard, uint64_t waiter_id,
                                                        absl::Duration max_wait,
                                                        absl::Time deadline,
                                                        absl::string_view request_id,
                                                        Deferred& deferred) {
  Waiter& w = **shard.waiters.at(waiter_id).it;
  absl::Status superseded =
      Aborted("REQUEST_SUPERSEDED", absl::StrCat("a retry with request_id ", QuoteValue(request_id),
                                                 " took over this wait on '", w.name, "'"));
  w.token->done = true;
  if (w.what == WaitFor::kGrant) {
    deferred.acquired.emplace_back(w.kind, AcquireOutcome::kCancelled, absl::ZeroDuration());
    deferred.calls.push_back(
        [cb = std::move(w.on_grant), superseded]() mutable { std::move(cb)(superseded); });
  } else {
    deferred.calls.push_back(
        [cb = std::move(w.on_barrier), superseded]() mutable { std::move(cb)(superseded); });
  }
  w.token = std::make_shared<WaitHandle::Token>();
  w.token->waiter_id = w.id;
  Rebound(shard, w,
          max_wait != absl::ZeroDuration() ? timers_.Now() + max_wait : absl::InfiniteFuture(),
          deadline);
  return w.token;
}

void LockTable::Rebound(Shard& /*shard*/, Waiter& w, absl::Time max_wait_at, absl::Time deadline) {
  w.max_wait_at = max_wait_at;
  w.deadline = deadline;
  if (w.timer != 0) {
    timers_.Cancel(w.timer);
    w.timer = 0;
  }
  if (absl::Time when = std::min(w.max_wait_at, w.deadline); when != absl::InfiniteFuture()) {
    w.timer = timers_.Schedule(when, [this, id = w.id] { OnWaiterTimer(id); });
  }
}

std::optional<WaitHandle> LockTable::TakeOverCondition(ConditionCall& call, absl::Duration max_wait,
                                                       absl::Time deadline,
                                                       absl::string_view request_id,
                                                       ConditionCallback& done) {
  for (;;) {
    std::shared_ptr<WaitHandle::Token> token;
    {
      internal::MutexLock lock(&call.mu);
      token = call.token;
    }
    if (token->done) {
      return std::nullopt;  // decided: its answer is on its way to the record
    }
    const uint64_t id = token->waiter_id;
    if (id == 0) {
      std::this_thread::yield();  // moving from the condition to its lock
      continue;
    }
    Shard& shard = *shards_[id & (kShards - 1)];
    ConditionCallback first;
    std::shared_ptr<WaitHandle::Token> mine;
    {
      internal::MutexLock lock(&shard.mu);
      if (token->done) {
        return std::nullopt;
      }
      auto ref = shard.waiters.find(id);
      if (token->waiter_id != id || ref == shard.waiters.end()) {
        continue;
      }
      Waiter& w = **ref->second.it;
      token->done = true;  // the first call's handle no longer withdraws the wait
      mine = std::make_shared<WaitHandle::Token>();
      mine->waiter_id = id;
      w.token = mine;
      // Waiting for a notify, max_wait bounds the wait; re-acquiring the lock, only the deadline.
      Rebound(shard, w,
              w.what == WaitFor::kNotify && max_wait != absl::ZeroDuration()
                  ? timers_.Now() + max_wait
                  : absl::InfiniteFuture(),
              deadline);
      internal::MutexLock swap(&call.mu);
      call.token = mine;
      first = std::exchange(call.done, std::move(done));
    }
    std::move(first)(Aborted("REQUEST_SUPERSEDED",
                             absl::StrCat("a retry with request_id ", QuoteValue(request_id),
                                          " took over this condition wait")));
    return WaitHandle(std::move(mine));
  }
}

absl::Status LockTable::AddWaiter(Shard& shard, Lock& lock, std::unique_ptr<Waiter>& waiter,
                                  Deferred& deferred) {
  if (waiters_.fetch_add(1) >= options_.max_waiters) {
    waiters_.fetch_sub(1);
    return ResourceExhausted("TOO_MANY_WAITERS",
                             absl::StrCat("the server holds ", options_.max_waiters,
                                          " waiters, its limit (--max-waiters)"));
  }
  if (!waiter->session_id.empty()) {
    uint64_t id = waiter->id;
    auto registered =
        sessions_->OnEnd(waiter->session_id, [this, id, session = waiter->session_id]() mutable {
          OnWaiterSessionEnd(id, std::move(session));
        });
    if (!registered.ok()) {
      waiters_.fetch_sub(1);
      return registered.status();
    }
    waiter->hook = *registered;
  }
  absl::Time when = std::min(waiter->max_wait_at, waiter->deadline);
  if (when != absl::InfiniteFuture()) {
    uint64_t id = waiter->id;
    waiter->timer = timers_.Schedule(when, [this, id] { OnWaiterTimer(id); });
  }
  if (waiter->what == WaitFor::kGrant && !Identity(waiter->session_id, waiter->owner).empty()) {
    GraphAdd(*waiter);
    waiter->in_graph = true;
  }
  waiter->token->waiter_id = waiter->id;
  bool other = waiter->what != WaitFor::kGrant;
  auto& list = other ? lock.others : lock.waiters;
  uint64_t id = waiter->id;
  list.push_back(std::move(waiter));
  shard.waiters.emplace(id, Shard::WaiterRef{&lock, std::prev(list.end()), other});
  return absl::OkStatus();
}

WaitHandle LockTable::Acquire(AcquireParams params, AcquireCallback done) {
  Deferred deferred;
  // Answers at once: records the outcome and runs `done` after every deferred action.
  auto finish = [&](absl::StatusOr<AcquireResult> result) {
    if (!result.ok()) {
      deferred.acquired.emplace_back(params.kind, OutcomeOf(result.status()), absl::ZeroDuration());
    } else if (!result->acquired) {
      deferred.acquired.emplace_back(result->kind, AcquireOutcome::kNotAcquired,
                                     absl::ZeroDuration());
    }
    deferred.calls.push_back(
        [cb = std::move(done), r = std::move(result)]() mutable { std::move(cb)(std::move(r)); });
    Run(deferred);
    return WaitHandle();
  };
  if (absl::Status valid = ValidateAcquire(params); !valid.ok()) {
    return finish(valid);
  }
  if (!params.session_id.empty()) {
    if (absl::Status alive = sessions_->CheckAlive(params.session_id); !alive.ok()) {
      return finish(alive);
    }
  }
  const std::string identity = Identity(params.session_id, params.owner);
  const std::string key = RequestKey('A', params.name, params.request_id, identity);
  Shard& shard = ShardFor(params.name);
  std::shared_ptr<WaitHandle::Token> token;
  uint64_t waiter_id = 0;
  bool superseding = false;  // a retry taking over the wait of its first call
  std::optional<absl::StatusOr<AcquireResult>> immediate;
  {
    internal::MutexLock lock(&shard.mu);
    immediate = [&]() -> std::optional<absl::StatusOr<AcquireResult>> {
      if (Answered* answered = Recorded(shard, key)) {
        if (answered->waiter_id != 0) {
          waiter_id = answered->waiter_id;
          superseding = true;
          token = Supersede(shard, waiter_id, params.max_wait, params.deadline, params.request_id,
                            deferred);
          return std::nullopt;
        }
        return Replay(shard, params.request_id, std::get<AcquireResult>(answered->answer));
      }
      absl::StatusOr<Lock*> found = FindOrCreate(shard, params.name, params.kind, LockKind::kMutex,
                                                 params.config, {}, nullptr);
      if (!found.ok()) {
        return found.status();
      }
      Lock& l = **found;
      if (l.kind != LockKind::kMutex && l.kind != LockKind::kReentrant &&
          l.kind != LockKind::kSemaphore && l.kind != LockKind::kRwLock) {
        return KindMismatch(l.name, l.kind,
                            params.kind == LockKind::kUnspecified ? LockKind::kMutex : params.kind);
      }
      if ((params.config.permits != 0 && params.config.permits != l.config.permits) ||
          (params.config.bounded && !l.config.bounded)) {
        return FailedPrecondition(
            "CONFIG_MISMATCH",
            absl::StrCat("lock '", l.name, "' has permits=", l.config.permits,
                         " bounded=", l.config.bounded, "; the request's config differs"));
      }
      if (l.kind == LockKind::kSemaphore && params.permits > l.config.permits) {
        return InvalidArgument(
            "INVALID_PERMITS",
            absl::StrCat("permits ", params.permits, " exceed the ", l.config.permits,
                         " permits of semaphore '", l.name, "'"));
      }
      if (l.kind != LockKind::kSemaphore && params.permits > 1) {
        return InvalidArgument(
            "INVALID_PERMITS",
            absl::StrCat("permits ", params.permits, " apply to a SEMAPHORE only; '", l.name,
                         "' is a ", LockKindName(l.kind)));
      }
      if (l.kind != LockKind::kRwLock && params.mode == LockMode::kShared) {
        return InvalidArgument("INVALID_MODE",
                               absl::StrCat("mode SHARED applies to a RW_LOCK only; '", l.name,
                                            "' is a ", LockKindName(l.kind)));
      }
      if (l.kind == LockKind::kReentrant && params.owner.empty()) {
        return InvalidArgument("OWNER_REQUIRED", "owner is required for a REENTRANT lock");
      }
      params.kind = l.kind;
      if (l.kind == LockKind::kReentrant) {
        for (Grant& g : l.grants) {
          if (g.session_id == params.session_id && g.owner == params.owner) {
            ++g.held_count;
            deferred.acquired.emplace_back(l.kind, AcquireOutcome::kAcquired, absl::ZeroDuration());
            AcquireResult result{true, InfoOf(l, g), l.kind, absl::ZeroDuration()};
            Record(shard, key, result);
            return result;
          }
        }
      }
      auto waiter = std::make_unique<Waiter>();
      waiter->id = (++next_id_ << 4) | static_cast<uint64_t>(ShardIndex(params.name));
      waiter->what = WaitFor::kGrant;
      waiter->kind = l.kind;
      waiter->name = l.name;
      waiter->session_id = params.session_id;
      waiter->owner = params.owner;
      waiter->permits = std::max(params.permits, 1);
      waiter->mode = params.mode == LockMode::kShared ? LockMode::kShared : LockMode::kExclusive;
      waiter->start = timers_.Now();
      waiter->lease_ttl = params.lease_ttl;
      if (l.waiters.empty() && CanGrant(l, *waiter)) {
        SPINDLE_ASSIGN_OR_RETURN(GrantInfo grant, MakeGrant(shard, l, *waiter, deferred));
        AcquireResult result{true, std::move(grant), l.kind, absl::ZeroDuration()};
        Record(shard, key, result);
        return result;
      }
      if (!params.wait) {
        return AcquireResult{false, {}, l.kind, absl::ZeroDuration()};
      }
      // Waiting for a MUTEX or RW_LOCK one holds oneself is a cycle of one.
      if (!identity.empty() && (l.kind == LockKind::kMutex || l.kind == LockKind::kRwLock) &&
          std::any_of(l.grants.begin(), l.grants.end(), [&](const Grant& g) {
            return Identity(g.session_id, g.owner) == identity;
          })) {
        const std::string cycle =
            absl::StrCat(identity, " waits for ", l.name, " held by ", identity, " (itself)");
        absl::Status status = Aborted("DEADLOCK", absl::StrCat("deadlock: ", cycle));
        status.SetPayload("spindle.dev/cycle", absl::Cord(cycle));
        status.SetPayload("spindle.dev/locks", absl::Cord(l.name));
        return status;
      }
      if (params.max_wait != absl::ZeroDuration()) {
        waiter->max_wait_at = waiter->start + params.max_wait;
      }
      waiter->deadline = params.deadline;
      token = std::make_shared<WaitHandle::Token>();
      waiter->token = token;
      waiter->request_key = key;
      waiter_id = waiter->id;
      SPINDLE_RETURN_IF_ERROR(AddWaiter(shard, l, waiter, deferred));
      if (!key.empty()) {
        shard.requests.Record(key, Answered{waiter_id, {}}, timers_.Now());
      }
      return std::nullopt;
    }();
    if (!immediate.has_value()) {
      // Registered: `done` belongs to the waiter from now on.
      auto ref = shard.waiters.find(waiter_id);
      ref->second.it->get()->on_grant = std::move(done);
    }
  }
  if (immediate.has_value()) {
    return finish(*std::move(immediate));
  }
  Run(deferred);
  // Deadlock detection runs after the waiter is registered, without the shard lock: of two
  // waits that close a cycle together, the later check sees the earlier one. (A wait taken over
  // by its retry was checked when it began.)
  if (!identity.empty() && !superseding) {
    std::vector<std::string> locks;
    std::string cycle = FindCycle(identity, params.name, &locks);
    if (!cycle.empty()) {
      Deferred d;
      std::unique_ptr<Waiter> waiter;
      {
        internal::MutexLock lock(&shard.mu);
        if (!token->done) {
          waiter = TakeWaiter(shard, waiter_id, d);
          if (waiter != nullptr) {
            token->done = true;
          }
        }
      }
      if (waiter != nullptr) {
        absl::Status status = Aborted("DEADLOCK", absl::StrCat("deadlock: ", cycle));
        status.SetPayload("spindle.dev/cycle", absl::Cord(cycle));
        status.SetPayload("spindle.dev/locks", absl::Cord(absl::StrJoin(locks, ",")));
        d.acquired.emplace_back(waiter->kind, AcquireOutcome::kDeadlock,
                                timers_.Now() - waiter->start);
        d.calls.push_back(
            [cb = std::move(waiter->on_grant), status]() mutable { std::move(cb)(status); });
        Run(d);
        return WaitHandle();
      }
      Run(d);
    }
  }
  return WaitHandle(std::move(token));
}

bool LockTable::Cancel(const WaitHandle& handle) {
  const std::shared_ptr<WaitHandle::Token>& token = handle.token_;
  if (token == nullptr) {
    return false;
  }
  for (;;) {
    if (token->done) {
      return false;
    }
    uint64_t id = token->waiter_id;
    if (id == 0) {
      std::this_thread::yield();  // moving between locks (a woken condition waiter)
      continue;
    }
    Shard& shard = *shards_[id & (kShards - 1)];
    Deferred deferred;
    std::unique_ptr<Waiter> waiter;
    {
      internal::MutexLock lock(&shard.mu);
      if (token->done) {
        return false;
      }
      if (token->waiter_id != id) {
        continue;
      }
      auto ref = shard.waiters.find(id);
      if (ref == shard.waiters.end()) {
        continue;
      }
      Lock& l = *ref->second.lock;
      waiter = TakeWaiter(shard, id, deferred);
      token->done = true;
      if (waiter->what == WaitFor::kGrant) {
        deferred.acquired.emplace_back(waiter->kind, AcquireOutcome::kCancelled,
                                       timers_.Now() - waiter->start);
        // A cancelled head may have blocked smaller requests (semaphore) or readers (rw-lock).
        Pump(shard, l, deferred);
      } else if (waiter->what == WaitFor::kBarrier) {
        BreakBarrier(shard, l, "cancelled", deferred);
      }
    }
    Run(deferred);
    if (const std::shared_ptr<ConditionCall>& call = waiter->condition; call != nullptr) {
      // Its callback never runs, so the record of the withdrawn wait is forgotten here: a retry
      // then acts afresh (and finds the lease it names released).
      internal::MutexLock lock(&call->lease_shard->mu);
      if (Answered* answered = Recorded(*call->lease_shard, call->key);
          answered != nullptr && answered->condition == call) {
        call->lease_shard->requests.Forget(call->key);
      }
    }
    return true;
  }
}

void LockTable::OnWaiterTimer(uint64_t waiter_id) {
  if (destroying_) {
    return;
  }
  Shard& shard = *shards_[waiter_id & (kShards - 1)];
  Deferred deferred;
  std::unique_ptr<Waiter> requeue;
  bool notified = false;
  {
    internal::MutexLock lock(&shard.mu);
    auto ref = shard.waiters.find(waiter_id);
    if (ref == shard.waiters.end()) {
      return;
    }
    Lock& l = *ref->second.lock;
    ref->second.it->get()->timer = 0;
    std::unique_ptr<Waiter> waiter = TakeWaiter(shard, waiter_id, deferred);
    absl::Time now = timers_.Now();
    bool deadline = now >= waiter->deadline;
    absl::Status expired =
        DeadlineExceeded(absl::StrCat("deadline passed while waiting on '", waiter->name, "'"));
    if (waiter->what == WaitFor::kNotify && !deadline) {
      // max_wait ran out: re-acquire the lock anyway, notified = false.
      waiter->token->waiter_id = 0;
      requeue = std::move(waiter);
      notified = false;
    } else {
      waiter->token->done = true;
      absl::Duration waited = now - waiter->start;
      switch (waiter->what) {
        case WaitFor::kGrant:
          if (deadline) {
            deferred.acquired.emplace_back(waiter->kind, AcquireOutcome::kDeadline, waited);
            deferred.calls.push_back(
                [cb = std::move(waiter->on_grant), expired]() mutable { std::move(cb)(expired); });
          } else {
            deferred.acquired.emplace_back(waiter->kind, AcquireOutcome::kNotAcquired, waited);
            AcquireResult result{false, {}, waiter->kind, waited};
            deferred.calls.push_back([cb = std::move(waiter->on_grant), result]() mutable {
              std::move(cb)(std::move(result));
            });
          }
          Pump(shard, l, deferred);
          break;
        case WaitFor::kEvent:
          deferred.calls.push_back([cb = std::move(waiter->on_event), deadline, expired]() mutable {
            if (deadline) {
              std::move(cb)(expired);
            } else {
              std::move(cb)(false);
            }
          });
          break;
        case WaitFor::kBarrier: {
          BreakBarrier(shard, l, "timeout", deferred);
          BarrierResult result{false, waiter->generation, waiter->arrival_index};
          deferred.calls.push_back(
              [cb = std::move(waiter->on_barrier), deadline, expired, result]() mutable {
                if (deadline) {
                  std::move(cb)(expired);
                } else {
                  std::move(cb)(result);
                }
              });
          break;
        }
        case WaitFor::kNotify:
          deferred.calls.push_back([cb = std::move(waiter->on_condition), expired]() mutable {
            std::move(cb)(expired);
          });
          break;
      }
    }
  }
  Run(deferred);
  if (requeue != nullptr) {
    RequeueConditionWaiter(std::move(requeue), notified);
  }
}

void LockTable::OnWaiterSessionEnd(uint64_t waiter_id, std::string session_id) {
  if (destroying_) {
    return;
  }
  absl::Status status = sessions_->CheckAlive(session_id);
  if (status.ok()) {
    status = Aborted("SESSION_CLOSED", absl::StrCat("session '", session_id, "' ended"));
  }
  Shard& shard = *shards_[waiter_id & (kShards - 1)];
  Deferred deferred;
  {
    internal::MutexLock lock(&shard.mu);
    auto ref = shard.waiters.find(waiter_id);
    if (ref == shard.waiters.end()) {
      return;
    }
    Lock& l = *ref->second.lock;
    ref->second.it->get()->hook = 0;  // the hook is running: nothing to remove
    std::unique_ptr<Waiter> waiter = TakeWaiter(shard, waiter_id, deferred);
    waiter->token->done = true;
    if (waiter->what == WaitFor::kGrant) {
      deferred.acquired.emplace_back(waiter->kind, AcquireOutcome::kError,
                                     timers_.Now() - waiter->start);
      deferred.calls.push_back(
          [cb = std::move(waiter->on_grant), status]() mutable { std::move(cb)(status); });
      Pump(shard, l, deferred);
    } else if (waiter->what == WaitFor::kNotify) {
      deferred.calls.push_back(
          [cb = std::move(waiter->on_condition), status]() mutable { std::move(cb)(status); });
    }
  }
  Run(deferred);
}

void LockTable::OnLeaseTimer(std::string lease_id) {
  if (destroying_) {
    return;
  }
  Shard* shard = ShardOfId(lease_id);
  Deferred deferred;
  {
    internal::MutexLock lock(&shard->mu);
    auto it = shard->leases.find(lease_id);
    if (it == shard->leases.end()) {
      return;
    }
    Grant& grant = *it->second;
    grant.timer = 0;
    absl::Time now = timers_.Now();
    if (now >= grant.lease_expire) {
      EndGrant(*shard, *grant.lock, grant, GrantEnd::kLeaseExpired, "", deferred);
    } else {
      grant.timer_at = grant.lease_expire;
      grant.timer = timers_.Schedule(
          grant.lease_expire, [this, lease_id]() mutable { OnLeaseTimer(std::move(lease_id)); });
    }
  }
  Run(deferred);
}

void LockTable::OnGrantSessionEnd(std::string lease_id) {
  if (destroying_) {
    return;
  }
  Shard* shard = ShardOfId(lease_id);
  Deferred deferred;
  {
    internal::MutexLock lock(&shard->mu);
    auto it = shard->leases.find(lease_id);
    if (it == shard->leases.end()) {
      return;
    }
    Grant& grant = *it->second;
    grant.hook = 0;
    EndGrant(*shard, *grant.lock, grant, GrantEnd::kSessionEnded, "", deferred);
  }
  Run(deferred);
}

absl::Status LockTable::LeaseGone(Shard& shard, absl::string_view lease_id) const {
  auto it = shard.ended.find(lease_id);
  if (it == shard.ended.end()) {
    return NotFound("LEASE_NOT_FOUND", absl::StrCat("lease ", QuoteValue(lease_id),
                                                    " was never issued or ended long ago"));
  }
  const std::string& name = it->second.name;
  switch (it->second.cause) {
    case GrantEnd::kReleased:
      return FailedPrecondition("LOCK_NOT_HELD", absl::StrCat("lease '", lease_id, "' on '", name,
                                                              "' was already released"));
    case GrantEnd::kLeaseExpired:
      return Aborted("LEASE_EXPIRED", absl::StrCat("lease '", lease_id, "' on '", name,
                                                   "' expired before this call"));
    case GrantEnd::kRevoked:
      return Aborted("LEASE_REVOKED", absl::StrCat("lease '", lease_id, "' on '", name,
                                                   "' was revoked by an admin"));
    case GrantEnd::kSessionEnded:
      return Aborted("SESSION_EXPIRED",
                     absl::StrCat("lease '", lease_id, "' on '", name, "' ended with its session"));
  }
  return absl::OkStatus();
}

LockTable::Answered* LockTable::Recorded(Shard& shard, absl::string_view key) {
  return key.empty() ? nullptr : shard.requests.Find(key, timers_.Now());
}

template <typename T>
void LockTable::Record(Shard& shard, const std::string& key, T answer) {
  if (!key.empty()) {
    shard.requests.Record(key, Answered{0, nullptr, std::move(answer)}, timers_.Now());
  }
}

absl::StatusOr<AcquireResult> LockTable::Replay(Shard& shard, absl::string_view request_id,
                                                const AcquireResult& original) {
  auto it = shard.leases.find(original.grant.lease_id);
  if (it == shard.leases.end()) {
    absl::Status gone = LeaseGone(shard, original.grant.lease_id);
    absl::Status status(gone.code(),
                        absl::StrCat("the grant of request_id ", QuoteValue(request_id),
                                     " has ended: ", gone.message()));
    gone.ForEachPayload([&status](absl::string_view url, const absl::Cord& payload) {
      status.SetPayload(url, payload);
    });
    return status;
  }
  AcquireResult result = original;
  result.grant = InfoOf(*it->second->lock, *it->second);
  return result;
}

absl::StatusOr<ReleaseResult> LockTable::Release(const ReleaseParams& params) {
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", params.request_id, 64));
  if (params.count < 0) {
    return InvalidArgument("INVALID_COUNT",
                           absl::StrCat("count ", params.count, " must not be negative"));
  }
  Deferred deferred;
  ReleaseResult result;
  if (params.lease_id.empty()) {
    if (params.name.empty()) {
      return InvalidArgument("INVALID_ARGUMENT",
                             "lease_id is required (or name, for a lease-less semaphore release)");
    }
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", params.name));
    int32_t count = params.count == 0 ? 1 : params.count;
    if (count > 1000000) {
      return InvalidArgument("INVALID_COUNT",
                             absl::StrCat("count ", count, " is out of bounds 1..1000000"));
    }
    Shard& shard = ShardFor(params.name);
    const std::string key = RequestKey('R', params.name, params.request_id);
    {
      internal::MutexLock lock(&shard.mu);
      if (Answered* answered = Recorded(shard, key)) {
        return std::get<ReleaseResult>(answered->answer);
      }
      auto it = shard.locks.find(params.name);
      if (it == shard.locks.end()) {
        return LockNotFound(params.name);
      }
      Lock& l = *it->second;
      if (l.kind != LockKind::kSemaphore) {
        return KindMismatch(l.name, l.kind, LockKind::kSemaphore);
      }
      if (l.config.bounded) {
        return FailedPrecondition(
            "SEMAPHORE_BOUNDED",
            absl::StrCat("semaphore '", l.name,
                         "' is bounded: permits come back only by releasing grants"));
      }
      l.available += count;
      result.granted_waiters = Pump(shard, l, deferred);
      result.available_permits = static_cast<int32_t>(l.available);
      Record(shard, key, result);
    }
    Run(deferred);
    return result;
  }
  if (!params.name.empty()) {
    return InvalidArgument("INVALID_ARGUMENT", "name must be empty when lease_id is given");
  }
  Shard* shard = ShardOfId(params.lease_id);
  if (shard == nullptr) {
    return NotFound("LEASE_NOT_FOUND",
                    absl::StrCat("lease ", QuoteValue(params.lease_id), " was never issued"));
  }
  const std::string key = RequestKey('R', params.lease_id, params.request_id);
  {
    internal::MutexLock lock(&shard->mu);
    if (Answered* answered = Recorded(*shard, key)) {
      return std::get<ReleaseResult>(answered->answer);
    }
    auto it = shard->leases.find(params.lease_id);
    if (it == shard->leases.end()) {
      return LeaseGone(*shard, params.lease_id);
    }
    Grant& grant = *it->second;
    Lock& l = *grant.lock;
    if (!params.abandoned_request_id.empty()) {
      shard->requests.Forget(RequestKey('A', l.name, params.abandoned_request_id,
                                        Identity(grant.session_id, grant.owner)));
    }
    bool end = params.all;
    if (!end) {
      switch (l.kind) {
        case LockKind::kReentrant: {
          int32_t n = params.count == 0 ? 1 : params.count;
          if (n > grant.held_count) {
            return FailedPrecondition("LOCK_NOT_HELD",
                                      absl::StrCat("count ", n, " exceeds the ", grant.held_count,
                                                   " holds of lease '", params.lease_id, "'"));
          }
          grant.held_count -= n;
          end = grant.held_count == 0;
          result.remaining = grant.held_count;
          break;
        }
        case LockKind::kSemaphore:
          if (params.count == 0) {
            end = true;
          } else if (params.count > grant.permits) {
            return FailedPrecondition(
                "LOCK_NOT_HELD",
                absl::StrCat("count ", params.count, " exceeds the ", grant.permits,
                             " permits of lease '", params.lease_id, "'"));
          } else {
            grant.permits -= params.count;
            l.available += params.count;
            if (!grant.session_id.empty()) {
              sessions_->AddHeld(grant.session_id, 0, -params.count);
            }
            end = grant.permits == 0;
            result.remaining = grant.permits;
            if (!end) {
              result.granted_waiters = Pump(*shard, l, deferred);
            }
          }
          break;
        default:
          if (params.count > 1) {
            return FailedPrecondition("LOCK_NOT_HELD", absl::StrCat("count ", params.count,
                                                                    " exceeds the 1 hold of "
                                                                    "lease '",
                                                                    params.lease_id, "'"));
          }
          end = true;
          break;
      }
    }
    if (end) {
      result.remaining = 0;
      result.granted_waiters += EndGrant(*shard, l, grant, GrantEnd::kReleased, "", deferred);
    }
    result.available_permits =
        l.kind == LockKind::kSemaphore ? static_cast<int32_t>(l.available) : 0;
    Record(*shard, key, result);
  }
  Run(deferred);
  return result;
}

absl::StatusOr<absl::Time> LockTable::RefreshLease(absl::string_view lease_id, absl::Duration ttl) {
  if (ttl != absl::ZeroDuration()) {
    SPINDLE_RETURN_IF_ERROR(
        ValidateDurationMs("lease_ttl_ms", ttl, kMinLeaseTtl, kMaxLeaseTtl, "INVALID_TTL"));
  }
  if (lease_id.empty()) {
    return InvalidArgument("INVALID_ARGUMENT", "lease_id is required");
  }
  Shard* shard = ShardOfId(lease_id);
  if (shard == nullptr) {
    return NotFound("LEASE_NOT_FOUND",
                    absl::StrCat("lease ", QuoteValue(lease_id), " was never issued"));
  }
  internal::MutexLock lock(&shard->mu);
  auto it = shard->leases.find(lease_id);
  if (it == shard->leases.end()) {
    return LeaseGone(*shard, lease_id);
  }
  Grant& grant = *it->second;
  if (grant.lease_ttl == absl::ZeroDuration()) {
    return FailedPrecondition(
        "LEASE_HAS_NO_TTL",
        absl::StrCat("lease '", lease_id, "' lives as long as its session: refresh the session"));
  }
  if (ttl != absl::ZeroDuration()) {
    grant.lease_ttl = ttl;
  }
  grant.lease_expire = timers_.Now() + grant.lease_ttl;
  if (grant.timer == 0 || grant.timer_at > grant.lease_expire) {
    if (grant.timer != 0) {
      timers_.Cancel(grant.timer);
    }
    grant.timer_at = grant.lease_expire;
    grant.timer = timers_.Schedule(
        grant.lease_expire,
        [this, id = std::string(lease_id)]() mutable { OnLeaseTimer(std::move(id)); });
  }
  return grant.lease_expire;
}

absl::StatusOr<std::pair<bool, int32_t>> LockTable::SetEvent(absl::string_view name,
                                                             absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('S', name, request_id);
  Deferred deferred;
  std::pair<bool, int32_t> result{false, 0};
  {
    internal::MutexLock lock(&shard.mu);
    if (Answered* answered = Recorded(shard, key)) {
      return std::get<std::pair<bool, int32_t>>(answered->answer);
    }
    SPINDLE_ASSIGN_OR_RETURN(
        Lock * l, FindOrCreate(shard, name, LockKind::kEvent, LockKind::kEvent, {}, {}, nullptr));
    result.first = l->event_set;
    l->event_set = true;
    std::vector<uint64_t> ids;
    for (auto& waiter : l->others) {
      ids.push_back(waiter->id);
    }
    for (uint64_t id : ids) {
      std::unique_ptr<Waiter> waiter = TakeWaiter(shard, id, deferred);
      waiter->token->done = true;
      deferred.calls.push_back(
          [cb = std::move(waiter->on_event)]() mutable { std::move(cb)(true); });
      ++result.second;
    }
    Record(shard, key, result);
  }
  Run(deferred);
  return result;
}

absl::StatusOr<bool> LockTable::ClearEvent(absl::string_view name, absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('C', name, request_id);
  internal::MutexLock lock(&shard.mu);
  if (Answered* answered = Recorded(shard, key)) {
    return std::get<bool>(answered->answer);
  }
  SPINDLE_ASSIGN_OR_RETURN(
      Lock * l, FindOrCreate(shard, name, LockKind::kEvent, LockKind::kEvent, {}, {}, nullptr));
  bool was_set = l->event_set;
  l->event_set = false;
  Record(shard, key, was_set);
  return was_set;
}

WaitHandle LockTable::WaitEvent(WaitEventParams params, EventCallback done) {
  absl::Status valid = ValidateName("name", params.name);
  if (valid.ok()) {
    valid = ValidateDurationMs("max_wait_ms", params.max_wait, absl::ZeroDuration(), kMaxWait,
                               "INVALID_ARGUMENT");
  }
  if (valid.ok()) {
    valid = ValidatePrintable("owner", params.owner, 128);
  }
  if (!valid.ok()) {
    std::move(done)(valid);
    return WaitHandle();
  }
  Shard& shard = ShardFor(params.name);
  Deferred deferred;
  std::shared_ptr<WaitHandle::Token> token;
  uint64_t waiter_id = 0;
  absl::StatusOr<bool> immediate = false;
  {
    internal::MutexLock lock(&shard.mu);
    absl::StatusOr<Lock*> found =
        FindOrCreate(shard, params.name, LockKind::kEvent, LockKind::kEvent, {}, {}, nullptr);
    if (!found.ok()) {
      immediate = found.status();
    } else if ((*found)->event_set || !params.wait) {
      immediate = (*found)->event_set;
    } else {
      auto waiter = std::make_unique<Waiter>();
      waiter->id = (++next_id_ << 4) | static_cast<uint64_t>(ShardIndex(params.name));
      waiter->what = WaitFor::kEvent;
      waiter->kind = LockKind::kEvent;
      waiter->name = params.name;
      waiter->owner = params.owner;
      waiter->start = timers_.Now();
      if (params.max_wait != absl::ZeroDuration()) {
        waiter->max_wait_at = waiter->start + params.max_wait;
      }
      waiter->deadline = params.deadline;
      token = std::make_shared<WaitHandle::Token>();
      waiter->token = token;
      waiter_id = waiter->id;
      absl::Status added = AddWaiter(shard, **found, waiter, deferred);
      if (!added.ok()) {
        token.reset();
        immediate = added;
      } else {
        shard.waiters.find(waiter_id)->second.it->get()->on_event = std::move(done);
      }
    }
  }
  Run(deferred);
  if (token == nullptr) {
    std::move(done)(immediate);
  }
  return WaitHandle(std::move(token));
}

int32_t LockTable::BreakBarrier(Shard& shard, Lock& lock, absl::string_view cause,
                                Deferred& deferred) {
  lock.broken = true;
  lock.broken_cause = std::string(cause);
  lock.barrier_arrived = 0;
  std::vector<uint64_t> ids;
  for (auto& waiter : lock.others) {
    ids.push_back(waiter->id);
  }
  absl::Status broken = FailedPrecondition(
      "BARRIER_BROKEN", absl::StrCat("barrier '", lock.name, "' is broken (cause ", cause, ")"));
  broken.SetPayload("spindle.dev/cause", absl::Cord(std::string(cause)));
  for (uint64_t id : ids) {
    std::unique_ptr<Waiter> waiter = TakeWaiter(shard, id, deferred);
    waiter->token->done = true;
    deferred.calls.push_back(
        [cb = std::move(waiter->on_barrier), broken]() mutable { std::move(cb)(broken); });
  }
  return static_cast<int32_t>(ids.size());
}

WaitHandle LockTable::WaitBarrier(WaitBarrierParams params, BarrierCallback done) {
  absl::Status valid = ValidateName("name", params.name);
  if (valid.ok() && (params.parties < 0 || params.parties > 100000)) {
    valid = InvalidArgument(
        "INVALID_PARTIES", absl::StrCat("parties ", params.parties, " is out of bounds 1..100000"));
  }
  if (valid.ok()) {
    valid = ValidateDurationMs("max_wait_ms", params.max_wait, absl::ZeroDuration(), kMaxWait,
                               "INVALID_ARGUMENT");
  }
  if (valid.ok()) {
    valid = ValidatePrintable("owner", params.owner, 128);
  }
  if (valid.ok()) {
    valid = ValidatePrintable("request_id", params.request_id, 64);
  }
  if (!valid.ok()) {
    std::move(done)(valid);
    return WaitHandle();
  }
  Shard& shard = ShardFor(params.name);
  const std::string key = RequestKey('B', params.name, params.request_id);
  Deferred deferred;
  std::shared_ptr<WaitHandle::Token> token;
  std::optional<absl::StatusOr<BarrierResult>> immediate;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.locks.find(params.name);
    if (Answered* answered = Recorded(shard, key)) {
      if (answered->waiter_id != 0) {
        const uint64_t waiter_id = answered->waiter_id;
        token = Supersede(shard, waiter_id, params.max_wait, params.deadline, params.request_id,
                          deferred);
        shard.waiters.at(waiter_id).it->get()->on_barrier = std::move(done);
      } else {
        immediate = std::get<BarrierResult>(answered->answer);
      }
    } else if (it == shard.locks.end() && params.parties == 0) {
      immediate = InvalidArgument(
          "INVALID_PARTIES",
          absl::StrCat("parties is required (1..100000) for the new barrier '", params.name, "'"));
    } else {
      LockConfig config;
      config.parties = params.parties;
      absl::StatusOr<Lock*> found = FindOrCreate(shard, params.name, LockKind::kBarrier,
                                                 LockKind::kBarrier, config, {}, nullptr);
      if (!found.ok()) {
        immediate = found.status();
      } else {
        Lock& l = **found;
        if (params.parties != 0 && params.parties != l.config.parties) {
          immediate = FailedPrecondition(
              "PARTIES_MISMATCH", absl::StrCat("barrier '", l.name, "' has ", l.config.parties,
                                               " parties, not ", params.parties));
        } else if (l.broken) {
          absl::Status broken = FailedPrecondition(
              "BARRIER_BROKEN",
              absl::StrCat("barrier '", l.name, "' is broken (cause ", l.broken_cause, ")"));
          broken.SetPayload("spindle.dev/cause", absl::Cord(l.broken_cause));
          immediate = broken;
        } else {
          int32_t index = l.barrier_arrived++;
          int64_t generation = l.generation;
          if (l.barrier_arrived >= l.config.parties) {
            std::vector<uint64_t> ids;
            for (auto& waiter : l.others) {
              ids.push_back(waiter->id);
            }
            for (uint64_t id : ids) {
              std::unique_ptr<Waiter> waiter = TakeWaiter(shard, id, deferred);
              waiter->token->done = true;
              BarrierResult result{true, waiter->generation, waiter->arrival_index};
              Record(shard, waiter->request_key, result);
              deferred.calls.push_back([cb = std::move(waiter->on_barrier), result]() mutable {
                std::move(cb)(result);
              });
            }
            l.barrier_arrived = 0;
            ++l.generation;
            immediate = BarrierResult{true, generation, index};
            Record(shard, key, BarrierResult{true, generation, index});
          } else {
            auto waiter = std::make_unique<Waiter>();
            waiter->id = (++next_id_ << 4) | static_cast<uint64_t>(ShardIndex(params.name));
            waiter->what = WaitFor::kBarrier;
            waiter->kind = LockKind::kBarrier;
            waiter->name = params.name;
            waiter->owner = params.owner;
            waiter->start = timers_.Now();
            if (params.max_wait != absl::ZeroDuration()) {
              waiter->max_wait_at = waiter->start + params.max_wait;
            }
            waiter->deadline = params.deadline;
            waiter->arrival_index = index;
            waiter->generation = generation;
            token = std::make_shared<WaitHandle::Token>();
            waiter->token = token;
            waiter->request_key = key;
            uint64_t waiter_id = waiter->id;
            absl::Status added = AddWaiter(shard, l, waiter, deferred);
            if (!added.ok()) {
              token.reset();
              --l.barrier_arrived;
              immediate = added;
            } else {
              shard.waiters.find(waiter_id)->second.it->get()->on_barrier = std::move(done);
              if (!key.empty()) {
                shard.requests.Record(key, Answered{waiter_id, {}}, timers_.Now());
              }
            }
          }
        }
      }
    }
  }
  Run(deferred);
  if (immediate.has_value()) {
    std::move(done)(*std::move(immediate));
    return WaitHandle();
  }
  return WaitHandle(std::move(token));
}

absl::StatusOr<std::pair<int32_t, int64_t>> LockTable::ResetBarrier(absl::string_view name,
                                                                    absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('Z', name, request_id);
  Deferred deferred;
  std::pair<int32_t, int64_t> result;
  {
    internal::MutexLock lock(&shard.mu);
    if (Answered* answered = Recorded(shard, key)) {
      return std::get<std::pair<int32_t, int64_t>>(answered->answer);
    }
    auto it = shard.locks.find(name);
    if (it == shard.locks.end()) {
      return LockNotFound(name);
    }
    Lock& l = *it->second;
    if (l.kind != LockKind::kBarrier) {
      return KindMismatch(name, l.kind, LockKind::kBarrier);
    }
    result.first = BreakBarrier(shard, l, "reset", deferred);
    l.broken = false;
    l.broken_cause.clear();
    result.second = ++l.generation;
    Record(shard, key, result);
  }
  Run(deferred);
  return result;
}

absl::StatusOr<int32_t> LockTable::AbortBarrier(absl::string_view name,
                                                absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('X', name, request_id);
  Deferred deferred;
  int32_t broken = 0;
  {
    internal::MutexLock lock(&shard.mu);
    if (Answered* answered = Recorded(shard, key)) {
      return std::get<int32_t>(answered->answer);
    }
    auto it = shard.locks.find(name);
    if (it == shard.locks.end()) {
      return LockNotFound(name);
    }
    Lock& l = *it->second;
    if (l.kind != LockKind::kBarrier) {
      return KindMismatch(name, l.kind, LockKind::kBarrier);
    }
    broken = BreakBarrier(shard, l, "aborted", deferred);
    Record(shard, key, broken);
  }
  Run(deferred);
  return broken;
}

WaitHandle LockTable::WaitCondition(WaitConditionParams params, ConditionCallback done) {
  auto fail = [&](absl::Status status) {
    std::move(done)(std::move(status));
    return WaitHandle();
  };
  if (absl::Status valid = ValidateName("name", params.name); !valid.ok()) {
    return fail(valid);
  }
  if (absl::Status valid = ValidateDurationMs("max_wait_ms", params.max_wait, absl::ZeroDuration(),
                                              kMaxWait, "INVALID_ARGUMENT");
      !valid.ok()) {
    return fail(valid);
  }
  if (absl::Status valid = ValidatePrintable("request_id", params.request_id, 64); !valid.ok()) {
    return fail(valid);
  }
  if (params.lease_id.empty()) {
    return fail(InvalidArgument("INVALID_ARGUMENT", "lease_id is required"));
  }
  Shard* lease_shard = ShardOfId(params.lease_id);
  if (lease_shard == nullptr) {
    return fail(NotFound("LEASE_NOT_FOUND",
                         absl::StrCat("lease ", QuoteValue(params.lease_id), " was never issued")));
  }
  // 0. A retry: of a wait that was answered, the grant it re-acquired, as it is now; of a wait
  // still going on, that wait, taken over. Both are kept in the shard of the lease the wait
  // released (the one both calls name).
  const std::string key = RequestKey('W', params.lease_id, params.request_id);
  auto token = std::make_shared<WaitHandle::Token>();
  std::shared_ptr<ConditionCall> call;
  while (!key.empty()) {
    std::optional<ConditionResult> original;
    std::shared_ptr<ConditionCall> ongoing;
    {
      internal::MutexLock lock(&lease_shard->mu);
      if (Answered* answered = Recorded(*lease_shard, key)) {
        if (answered->condition != nullptr) {
          ongoing = answered->condition;
        } else {
          original = std::get<ConditionResult>(answered->answer);
        }
      } else {
        // The first call: recorded before it waits, so a retry finds it wherever it is.
        call = std::make_shared<ConditionCall>();
        call->lease_shard = lease_shard;
        call->key = key;
        {
          internal::MutexLock hold(&call->mu);
          call->token = token;
        }
        lease_shard->requests.Record(key, Answered{0, call, {}}, timers_.Now());
      }
    }
    if (ongoing != nullptr) {
      std::optional<WaitHandle> handle =
          TakeOverCondition(*ongoing, params.max_wait, params.deadline, params.request_id, done);
      if (handle.has_value()) {
        return *std::move(handle);
      }
      std::this_thread::yield();  // decided meanwhile: its answer is being recorded
      continue;
    }
    if (original.has_value()) {
      Shard& grant_shard = *ShardOfId(original->grant.lease_id);
      absl::StatusOr<AcquireResult> now;
      {
        internal::MutexLock lock(&grant_shard.mu);
        now = Replay(grant_shard, params.request_id,
                     AcquireResult{true, original->grant, LockKind::kMutex, absl::ZeroDuration()});
      }
      if (!now.ok()) {
        return fail(now.status());
      }
      std::move(done)(ConditionResult{original->notified, std::move(now->grant)});
      return WaitHandle();
    }
    // Only a wait that re-acquired the lock stays remembered (then the first call's lease is gone
    // and its retry could not tell what it holds); a failed one is forgotten, so its retry acts
    // afresh. The service's callback is kept in `call`, where a retry can take its place.
    {
      internal::MutexLock lock(&call->mu);
      call->done = std::move(done);
    }
    done = [this, lease_shard, key, call, token](absl::StatusOr<ConditionResult> result) mutable {
      token->done = true;  // also when it failed before it waited: a retry then stops looking
      {
        internal::MutexLock lock(&lease_shard->mu);
        if (result.ok()) {
          Record(*lease_shard, key, *result);
        } else if (Answered* answered = Recorded(*lease_shard, key);
                   answered != nullptr && answered->condition == call) {
          lease_shard->requests.Forget(key);
        }
      }
      ConditionCallback answer;
      {
        internal::MutexLock lock(&call->mu);
        answer = std::move(call->done);
      }
      std::move(answer)(std::move(result));
    };
    break;
  }
  // 1. The held grant: which lock, whose.
  std::string lock_name, session_id, owner;
  int32_t held_count = 1;
  absl::Duration lease_ttl;
  absl::Status refused;
  {
    internal::MutexLock lock(&lease_shard->mu);
    auto it = lease_shard->leases.find(params.lease_id);
    if (it == lease_shard->leases.end()) {
      refused = LeaseGone(*lease_shard, params.lease_id);
    } else {
      const Grant& grant = *it->second;
      const Lock& l = *grant.lock;
      if (l.kind != LockKind::kMutex && l.kind != LockKind::kReentrant) {
        refused = FailedPrecondition(
            "KIND_MISMATCH", absl::StrCat("a condition needs a MUTEX or REENTRANT lock; '", l.name,
                                          "' is a ", LockKindName(l.kind)));
      }
      lock_name = l.name;
      session_id = grant.session_id;
      owner = grant.owner;
      held_count = grant.held_count;
      lease_ttl = grant.lease_ttl;
    }
  }
  if (!refused.ok()) {
    return fail(refused);
  }
  // 2. Register as a notify waiter on the condition (before the lock is released, as Python).
  Shard& shard = ShardFor(params.name);
  Deferred deferred;
  uint64_t waiter_id = 0;
  {
    internal::MutexLock lock(&shard.mu);
    absl::StatusOr<Lock*> found = FindOrCreate(shard, params.name, LockKind::kCondition,
                                               LockKind::kCondition, {}, {}, nullptr);
    if (!found.ok()) {
      refused = found.status();
    } else if ((*found)->config.lock_name.empty()) {
      (*found)->config.lock_name = lock_name;
    } else if ((*found)->config.lock_name != lock_name) {
      refused =
          FailedPrecondition("CONDITION_LOCK_MISMATCH",
                             absl::StrCat("condition '", params.name, "' is bound to lock '",
                                          (*found)->config.lock_name, "', not '", lock_name, "'"));
    }
    if (refused.ok()) {
      auto waiter = std::make_unique<Waiter>();
      waiter->id = (++next_id_ << 4) | static_cast<uint64_t>(ShardIndex(params.name));
      waiter_id = waiter->id;
      waiter->what = WaitFor::kNotify;
      waiter->kind = LockKind::kCondition;
      waiter->name = params.name;
      waiter->session_id = session_id;
      waiter->owner = owner;
      waiter->start = timers_.Now();
      if (params.max_wait != absl::ZeroDuration()) {
        waiter->max_wait_at = waiter->start + params.max_wait;
      }
      waiter->deadline = params.deadline;
      waiter->lease_ttl = lease_ttl;
      waiter->held_count = held_count;
      waiter->cond_lock_name = lock_name;
      waiter->token = token;
      waiter->condition = call;
      refused = AddWaiter(shard, **found, waiter, deferred);
      if (refused.ok()) {
        shard.waiters.find(waiter_id)->second.it->get()->on_condition = std::move(done);
      }
    }
  }
  Run(deferred);
  if (!refused.ok()) {
    return fail(refused);
  }
  // 3. Release the grant; the next waiter on the lock is granted.
  Deferred released;
  absl::Status gone;
  {
    internal::MutexLock lock(&lease_shard->mu);
    auto it = lease_shard->leases.find(params.lease_id);
    if (it == lease_shard->leases.end()) {
      gone = LeaseGone(*lease_shard, params.lease_id);
    } else {
      Grant& grant = *it->second;
      EndGrant(*lease_shard, *grant.lock, grant, GrantEnd::kReleased, "", released);
    }
  }
  Run(released);
  if (!gone.ok()) {
    // Released behind our back: withdraw the wait and report it.
    Deferred d;
    std::unique_ptr<Waiter> waiter;
    {
      internal::MutexLock lock(&shard.mu);
      if (!token->done && token->waiter_id == waiter_id) {
        waiter = TakeWaiter(shard, waiter_id, d);
        if (waiter != nullptr) {
          token->done = true;
        }
      }
    }
    Run(d);
    if (waiter != nullptr) {
      std::move(waiter->on_condition)(gone);
      return WaitHandle();
    }
  }
  return WaitHandle(std::move(token));
}

void LockTable::RequeueConditionWaiter(std::unique_ptr<Waiter> old, bool notified) {
  auto waiter = std::make_unique<Waiter>();
  waiter->id = (++next_id_ << 4) | static_cast<uint64_t>(ShardIndex(old->cond_lock_name));
  waiter->what = WaitFor::kGrant;
  waiter->name = old->cond_lock_name;
  waiter->session_id = old->session_id;
  waiter->owner = old->owner;
  waiter->start = timers_.Now();
  waiter->deadline = old->deadline;
  waiter->lease_ttl = old->lease_ttl;
  waiter->held_count = old->held_count;
  waiter->token = old->token;
  waiter->condition = std::move(old->condition);
  waiter->on_grant = [cb = std::move(old->on_condition),
                      notified](absl::StatusOr<AcquireResult> result) mutable {
    if (!result.ok()) {
      std::move(cb)(result.status());
    } else {
      std::move(cb)(ConditionResult{notified, std::move(result->grant)});
    }
  };
  Shard& shard = ShardFor(waiter->name);
  Deferred deferred;
  {
    internal::MutexLock lock(&shard.mu);
    auto it = shard.locks.find(waiter->name);
    absl::Status problem;
    if (it == shard.locks.end()) {
      problem = LockNotFound(waiter->name);
    } else {
      Lock& l = *it->second;
      waiter->kind = l.kind;
      if (timers_.Now() >= waiter->deadline) {
        problem = DeadlineExceeded(absl::StrCat("deadline passed while waiting on '", l.name, "'"));
      } else if (l.waiters.empty() && CanGrant(l, *waiter)) {
        waiter->token->done = true;
        absl::StatusOr<GrantInfo> grant = MakeGrant(shard, l, *waiter, deferred);
        if (grant.ok()) {
          AcquireResult result{true, *std::move(grant), l.kind, absl::ZeroDuration()};
          deferred.calls.push_back([cb = std::move(waiter->on_grant), result]() mutable {
            std::move(cb)(std::move(result));
          });
        } else {
          problem = grant.status();
        }
      } else {
        problem = AddWaiter(shard, l, waiter, deferred);
      }
    }
    if (!problem.ok() && waiter != nullptr) {
      waiter->token->done = true;
      deferred.calls.push_back(
          [cb = std::move(waiter->on_grant), problem]() mutable { std::move(cb)(problem); });
    }
  }
  Run(deferred);
}

absl::StatusOr<int32_t> LockTable::NotifyCondition(absl::string_view name, int32_t count, bool all,
                                                   absl::string_view lease_id,
                                                   absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  const std::string key = RequestKey('N', name, request_id);
  {
    // A retry is answered before its lease is checked: the notify may have ended in the caller
    // releasing the lock since.
    Shard& shard = ShardFor(name);
    internal::MutexLock lock(&shard.mu);
    if (Answered* answered = Recorded(shard, key)) {
      return std::get<int32_t>(answered->answer);
    }
  }
  if (count < 0 || count > 1000000) {
    return InvalidArgument("INVALID_COUNT",
                           absl::StrCat("count ", count, " is out of bounds 0..1000000"));
  }
  if (count == 0) {
    count = 1;
  }
  std::string lease_lock;
  if (!lease_id.empty()) {
    Shard* lease_shard = ShardOfId(lease_id);
    if (lease_shard == nullptr) {
      return NotFound("LEASE_NOT_FOUND",
                      absl::StrCat("lease ", QuoteValue(lease_id), " was never issued"));
    }
    internal::MutexLock lock(&lease_shard->mu);
    auto it = lease_shard->leases.find(lease_id);
    if (it == lease_shard->leases.end()) {
      return LeaseGone(*lease_shard, lease_id);
    }
    lease_lock = it->second->lock->name;
  }
  Shard& shard = ShardFor(name);
  Deferred deferred;
  std::vector<std::unique_ptr<Waiter>> woken;
  {
    internal::MutexLock lock(&shard.mu);
    SPINDLE_ASSIGN_OR_RETURN(Lock * c, FindOrCreate(shard, name, LockKind::kCondition,
                                                    LockKind::kCondition, {}, {}, nullptr));
    if (!lease_lock.empty() && !c->config.lock_name.empty() && c->config.lock_name != lease_lock) {
      return FailedPrecondition("CONDITION_LOCK_MISMATCH",
                                absl::StrCat("condition '", c->name, "' is bound to lock '",
                                             c->config.lock_name, "', not '", lease_lock, "'"));
    }
    while (!c->others.empty() && (all || static_cast<int32_t>(woken.size()) < count)) {
      std::unique_ptr<Waiter> waiter = TakeWaiter(shard, c->others.front()->id, deferred);
      waiter->token->waiter_id = 0;
      woken.push_back(std::move(waiter));
    }
    Record(shard, key, static_cast<int32_t>(woken.size()));
  }
  Run(deferred);
  for (auto& waiter : woken) {
    RequeueConditionWaiter(std::move(waiter), true);
  }
  return static_cast<int32_t>(woken.size());
}

absl::StatusOr<LockDescription> LockTable::Describe(absl::string_view name,
                                                    int32_t max_waiters) const {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  if (max_waiters < 0 || max_waiters > 1000) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("max_waiters ", max_waiters, " is out of bounds 0..1000"));
  }
  if (max_waiters == 0) {
    max_waiters = 100;
  }
  Shard& shard = ShardFor(name);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.locks.find(name);
  if (it == shard.locks.end()) {
    return LockNotFound(name);
  }
  const Lock& l = *it->second;
  LockDescription description;
  description.info = InfoOf(l);
  for (const Grant& grant : l.grants) {
    GrantInfo info = InfoOf(l, grant);
    description.holders.push_back(HolderInfo{grant.owner, grant.session_id, grant.acquire_time,
                                             grant.token, grant.held_count, grant.permits,
                                             grant.mode, info.expire_time});
  }
  int32_t position = 0;
  for (const auto* list : {&l.waiters, &l.others}) {
    for (const auto& waiter : *list) {
      if (position >= max_waiters) {
        break;
      }
      description.waiters.push_back(WaiterInfo{waiter->owner, waiter->session_id, waiter->start,
                                               waiter->what, waiter->permits, waiter->mode,
                                               position});
      ++position;
    }
  }
  return description;
}

absl::Status LockTable::CheckFence(absl::string_view name, int64_t fencing_token) const {
  SPINDLE_RETURN_IF_ERROR(ValidateName("fence.lock_name", name));
  if (fencing_token <= 0) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("fence.fencing_token ", fencing_token, " must be > 0"));
  }
  const absl::Time now = timers_.Now();
  {
    Shard& shard = ShardFor(name);
    internal::MutexLock lock(&shard.mu);
    auto it = shard.locks.find(name);
    if (it != shard.locks.end()) {
      for (const Grant& grant : it->second->grants) {
        if (grant.token != fencing_token) {
          continue;
        }
        if (grant.lease_ttl != absl::ZeroDuration() && grant.lease_expire <= now) {
          break;  // Its lease ran out; the expiry timer has not removed it yet.
        }
        return absl::OkStatus();
      }
    }
  }
  return Aborted("STALE_FENCING_TOKEN",
                 absl::StrCat("fence: fencing token ", fencing_token, " on lock '", name,
                              "' is not held (released, expired, revoked or never granted)"));
}

absl::StatusOr<LockPage> LockTable::List(int32_t page_size, absl::string_view page_token,
                                         absl::string_view prefix, LockKind kind,
                                         const Labels& labels) const {
  if (page_size < 0 || page_size > 1000) {
    return InvalidArgument("INVALID_PAGE_SIZE",
                           absl::StrCat("page_size ", page_size, " is out of bounds 0..1000"));
  }
  if (page_size == 0) {
    page_size = 100;
  }
  SPINDLE_RETURN_IF_ERROR(ValidatePrefix("prefix", prefix));
  std::string after;
  if (!page_token.empty()) {
    if (!absl::StartsWith(page_token, kLockPageTokenPrefix)) {
      return InvalidArgument("INVALID_PAGE_TOKEN",
                             absl::StrCat("page_token ", QuoteValue(page_token), " is not valid"));
    }
    after = std::string(page_token.substr(kLockPageTokenPrefix.size()));
  }
  std::string start = std::max(after, std::string(prefix));
  std::vector<LockInfo> found;
  for (const auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    int taken = 0;
    for (auto it = shard->locks.lower_bound(start); it != shard->locks.end() && taken <= page_size;
         ++it) {
      if (!absl::StartsWith(it->first, prefix)) {
        break;
      }
      if (it->first == after) {
        continue;
      }
      const Lock& l = *it->second;
      if ((kind != LockKind::kUnspecified && l.kind != kind) || !LabelsMatch(l.labels, labels)) {
        continue;
      }
      found.push_back(InfoOf(l));
      ++taken;
    }
  }
  std::sort(found.begin(), found.end(),
            [](const LockInfo& a, const LockInfo& b) { return a.name < b.name; });
  LockPage page;
  if (found.size() > static_cast<size_t>(page_size)) {
    found.resize(page_size);
    page.next_page_token = absl::StrCat(kLockPageTokenPrefix, found.back().name);
  }
  page.locks = std::move(found);
  return page;
}

absl::Status LockTable::Delete(absl::string_view name, absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('D', name, request_id);
  internal::MutexLock lock(&shard.mu);
  if (Recorded(shard, key) != nullptr) {
    return absl::OkStatus();
  }
  auto it = shard.locks.find(name);
  if (it == shard.locks.end()) {
    return LockNotFound(name);
  }
  const Lock& l = *it->second;
  if (!l.Idle()) {
    return FailedPrecondition(
        "LOCK_IN_USE", absl::StrCat("lock '", name, "' has ", l.grants.size(), " holders and ",
                                    l.waiters.size() + l.others.size(), " waiters"));
  }
  shard.locks.erase(it);
  locks_.fetch_sub(1);
  Record(shard, key, std::monostate{});
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int32_t, int32_t>> LockTable::Revoke(absl::string_view name,
                                                              int64_t fencing_token,
                                                              absl::string_view message,
                                                              absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("message", message, 256));
  SPINDLE_RETURN_IF_ERROR(ValidatePrintable("request_id", request_id, 64));
  Shard& shard = ShardFor(name);
  const std::string key = RequestKey('V', name, request_id);
  Deferred deferred;
  std::pair<int32_t, int32_t> result{0, 0};
  {
    internal::MutexLock lock(&shard.mu);
    if (Answered* answered = Recorded(shard, key)) {
      return std::get<std::pair<int32_t, int32_t>>(answered->answer);
    }
    auto it = shard.locks.find(name);
    if (it == shard.locks.end()) {
      return LockNotFound(name);
    }
    Lock& l = *it->second;
    std::vector<std::string> leases;
    for (const Grant& grant : l.grants) {
      if (fencing_token == 0 || grant.token == fencing_token) {
        leases.push_back(grant.lease_id);
      }
    }
    if (leases.empty() && fencing_token != 0) {
      return NotFound(
          "HOLDER_NOT_FOUND",
          absl::StrCat("lock '", name, "' has no grant with fencing token ", fencing_token));
    }
    for (const std::string& lease : leases) {
      auto found = shard.leases.find(lease);
      if (found == shard.leases.end()) {
        continue;
      }
      ++result.first;
      result.second += EndGrant(shard, l, *found->second, GrantEnd::kRevoked, message, deferred);
    }
    Record(shard, key, result);
  }
  Run(deferred);
  return result;
}

std::vector<GrantInfo> LockTable::GrantsOfSession(absl::string_view session_id, size_t limit,
                                                  bool* truncated) const {
  std::vector<GrantInfo> grants;
  *truncated = false;
  for (const auto& shard : shards_) {
    internal::MutexLock lock(&shard->mu);
    for (const auto& [name, l] : shard->locks) {
      for (const Grant& grant : l->grants) {
        if (grant.session_id != session_id) {
          continue;
        }
        if (grants.size() >= limit) {
          *truncated = true;
          continue;
        }
        grants.push_back(InfoOf(*l, grant));
      }
    }
  }
  std::sort(grants.begin(), grants.end(),
            [](const GrantInfo& a, const GrantInfo& b) { return a.name < b.name; });
  return grants;
}

LockTableStats LockTable::Stats() const { return {locks_.load(), waiters_.load(), grants_.load()}; }

void LockTable::GraphAdd(const Waiter& waiter) {
  internal::MutexLock lock(&graph_mu_);
  ++waits_[Identity(waiter.session_id, waiter.owner)][waiter.name];
}

void LockTable::GraphRemove(const Waiter& waiter) {
  internal::MutexLock lock(&graph_mu_);
  auto it = waits_.find(Identity(waiter.session_id, waiter.owner));
  if (it == waits_.end()) {
    return;
  }
  auto name = it->second.find(waiter.name);
  if (name != it->second.end() && --name->second <= 0) {
    it->second.erase(name);
  }
  if (it->second.empty()) {
    waits_.erase(it);
  }
}

std::vector<std::string> LockTable::HolderIdentities(absl::string_view name) const {
  std::vector<std::string> holders;
  Shard& shard = ShardFor(name);
  internal::MutexLock lock(&shard.mu);
  auto it = shard.locks.find(name);
  if (it == shard.locks.end()) {
    return holders;
  }
  for (const Grant& grant : it->second->grants) {
    std::string id = Identity(grant.session_id, grant.owner);
    if (!id.empty()) {
      holders.push_back(std::move(id));
    }
  }
  return holders;
}

std::string LockTable::FindCycle(const std::string& self, const std::string& lock_name,
                                 std::vector<std::string>* locks) const {
  constexpr size_t kMaxVisited = 10000;
  struct Edge {
    std::string from;
    std::string lock;
  };
  absl::flat_hash_map<std::string, Edge> parent;  // identity -> (who waits, on which lock)
  std::deque<std::string> queue;
  for (std::string& holder : HolderIdentities(lock_name)) {
    if (holder == self || parent.contains(holder)) {
      continue;
    }
    parent.emplace(holder, Edge{self, lock_name});
    queue.push_back(std::move(holder));
  }
  while (!queue.empty() && parent.size() < kMaxVisited) {
    std::string node = std::move(queue.front());
    queue.pop_front();
    std::vector<std::string> waited;
    {
      internal::MutexLock lock(&graph_mu_);
      auto it = waits_.find(node);
      if (it == waits_.end()) {
        continue;
      }
      for (const auto& [name, count] : it->second) {
        waited.push_back(name);
      }
    }
    for (const std::string& name : waited) {
      for (std::string& holder : HolderIdentities(name)) {
        if (holder == node) {
          continue;
        }
        if (holder == self) {
          // Found: self -> ... -> node -> (name) -> self.
          std::vector<std::string> parts;
          parts.push_back(absl::StrCat(node, " waits for ", name, " held by ", self));
          locks->push_back(name);
          std::string at = node;
          while (at != self) {
            const Edge& edge = parent.at(at);
            parts.push_back(absl::StrCat(edge.from, " waits for ", edge.lock, " held by ", at));
            locks->push_back(edge.lock);
            at = edge.from;
          }
          std::reverse(parts.begin(), parts.end());
          std::reverse(locks->begin(), locks->end());
          return absl::StrJoin(parts, "; ");
        }
        if (!parent.contains(holder)) {
          parent.emplace(holder, Edge{node, name});
          queue.push_back(std::move(holder));
        }
      }
    }
  }
  return "";
}

}  // namespace spindle::sync
