// What engine parts other than sessions need to know of sessions: is one alive, and tell me when
// it ends. Locks, queues (unacknowledged deliveries), values (ephemeral values), pools and
// processes (bound to a session) hold things on behalf of a session and free them when it ends.
//
// lib/spindle/sync's session table implements it; tests may use a fake.
//
// Thread-safety: implementations are thread-safe. `on_end` callbacks run once, on the thread that
// ended the session (a CloseSession call or the expiry timer), without engine locks held by the
// session table; they must not block.
#ifndef SPINDLE_COMMON_SESSION_HOOKS_H_
#define SPINDLE_COMMON_SESSION_HOOKS_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spindle {

class SessionHooks {
 public:
  using HookId = uint64_t;

  virtual ~SessionHooks() = default;

  // OK when `session_id` names a live session. NOT_FOUND (reason SESSION_NOT_FOUND) for an unknown
  // id; ABORTED (SESSION_EXPIRED / SESSION_CLOSED) for one that ended.
  virtual absl::Status CheckAlive(absl::string_view session_id) const = 0;

  // Registers `on_end` to run once when the session ends. Errors as CheckAlive (then `on_end` is
  // dropped without running).
  virtual absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                                       absl::AnyInvocable<void() &&> on_end) = 0;

  // Drops a hook that has not run (e.g. the lock was released normally). No-op otherwise.
  virtual void RemoveHook(absl::string_view session_id, HookId hook) = 0;
};

}  // namespace spindle

#endif  // SPINDLE_COMMON_SESSION_HOOKS_H_
