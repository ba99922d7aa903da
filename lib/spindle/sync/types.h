// Plain engine types of sessions and locks: kinds, modes, grants, session events.
//
// These mirror spindle.v1 (session.proto, lock.proto) without any protobuf dependency; services/
// converts between the two in one place (services/sync/convert.h).
//
// Thread-safety: value types, thread-compatible.
#ifndef SPINDLE_SYNC_TYPES_H_
#define SPINDLE_SYNC_TYPES_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/time/time.h"

namespace spindle::sync {

// Kind of a named primitive (LockKind in lock.proto, same numbers).
enum class LockKind : int {
  kUnspecified = 0,
  kMutex = 1,
  kReentrant = 2,
  kSemaphore = 3,
  kRwLock = 4,
  kEvent = 5,
  kBarrier = 6,
  kCondition = 7,
};

// Lower-case name for metrics labels and logs: "mutex", "reentrant", ...
const char* LockKindName(LockKind kind);

// Mode of a grant (LockMode in lock.proto).
enum class LockMode : int {
  kUnspecified = 0,
  kShared = 1,
  kExclusive = 2,
};

// What a waiter waits for (LockWaiter.WaitFor).
enum class WaitFor : int {
  kGrant = 1,
  kEvent = 2,
  kBarrier = 3,
  kNotify = 4,
};

// Lifecycle of a session (SessionState).
enum class SessionState : int {
  kActive = 1,
  kExpired = 2,
  kClosed = 3,
};

// Why a grant ended. kReleased is a normal Release; the others are losses the holder learns of.
enum class GrantEnd : int {
  kReleased = 0,
  kLeaseExpired = 1,
  kRevoked = 2,
  kSessionEnded = 3,
};

using Labels = std::map<std::string, std::string>;

// Settings fixed when a lock is created; zero = not given (see LockConfig in lock.proto).
struct LockConfig {
  int32_t permits = 0;
  bool bounded = false;
  int32_t parties = 0;
  std::string lock_name;
};

// A grant as Acquire / WaitCondition hand it out.
struct GrantInfo {
  std::string name;
  LockKind kind = LockKind::kUnspecified;
  std::string lease_id;
  int64_t fencing_token = 0;
  // Own lease expiry, or the session's expiry for a session grant without its own TTL.
  absl::Time expire_time = absl::InfiniteFuture();
  // True when the grant has its own lease TTL (lease_expire_time in SessionLockGrant).
  bool has_lease_ttl = false;
  int32_t held_count = 1;
  int32_t permits = 1;
  LockMode mode = LockMode::kExclusive;
  std::string session_id;
  std::string owner;
  absl::Time acquire_time;
};

// One event of a session, as the KeepAlive stream carries it.
struct SessionEvent {
  enum class Type { kLockLost, kExpiring, kEnded };
  Type type = Type::kLockLost;
  int64_t seq = 0;
  absl::Time time;
  // kLockLost
  std::string lock_name;
  LockKind lock_kind = LockKind::kUnspecified;
  int64_t fencing_token = 0;
  std::string lease_id;
  GrantEnd cause = GrantEnd::kLeaseExpired;
  std::string message;
  int32_t permits = 0;
  // kExpiring
  absl::Time expire_time;
  absl::Duration remaining;
  // kEnded
  SessionState end_state = SessionState::kExpired;
  int32_t released_locks = 0;
  int32_t released_permits = 0;
};

}  // namespace spindle::sync

#endif  // SPINDLE_SYNC_TYPES_H_
