// Which role may call which gRPC method: the one table every call is checked against.
//
// Methods are full gRPC paths ("/spindle.v1.LockService/Acquire"). Health and reflection are open
// (no token); ServerService and an explicit list of reading methods (Get*, List*, Describe*,
// Watch*, except QueueService/GetItems, which takes items off a queue) are read-only; the rest of
// a spindle service needs its group's role (sync or exec); anything unknown needs admin.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_AUTH_METHOD_ACCESS_H_
#define SPINDLE_SERVICES_AUTH_METHOD_ACCESS_H_

#include "absl/strings/string_view.h"
#include "services/auth/tokens.h"

namespace spindle::services::auth {

// What a method asks of its caller.
enum class Access {
  kOpen,   // no token: health checks and reflection
  kRead,   // any role
  kSync,   // sync or admin
  kExec,   // exec or admin
  kAdmin,  // admin only
};

Access RequiredAccess(absl::string_view method);

// Whether `role` may call a method that asks for `access`.
bool RoleAllows(Role role, Access access);

// The roles that may call a method with `access`, for messages: "sync or admin".
absl::string_view AllowedRoles(Access access);

}  // namespace spindle::services::auth

#endif  // SPINDLE_SERVICES_AUTH_METHOD_ACCESS_H_
