#include "services/auth/method_access.h"

#include <algorithm>

namespace spindle::services::auth {
namespace {

struct ServiceAccess {
  absl::string_view service;
  Access access;  // of every method not in kReadMethods
};

constexpr ServiceAccess kServices[] = {
    {"grpc.health.v1.Health", Access::kOpen},
    {"grpc.reflection.v1alpha.ServerReflection", Access::kOpen},
    {"grpc.reflection.v1.ServerReflection", Access::kOpen},
    {"spindle.v1.ServerService", Access::kRead},
    {"spindle.v1.SessionService", Access::kSync},
    {"spindle.v1.LockService", Access::kSync},
    {"spindle.v1.QueueService", Access::kSync},
    {"spindle.v1.ValueService", Access::kSync},
    {"spindle.v1.ProcessService", Access::kExec},
    {"spindle.v1.PoolService", Access::kExec},
    {"spindle.v1.SchedulerService", Access::kExec},
};

// Methods that only read, by exact path: a new method is not read-only until it is listed here.
// tests/integration/auth_test.cc checks this list against the protos.
constexpr absl::string_view kReadMethods[] = {
    "/spindle.v1.SessionService/GetSession",
    "/spindle.v1.SessionService/ListSessions",
    "/spindle.v1.LockService/DescribeLock",
    "/spindle.v1.LockService/ListLocks",
    "/spindle.v1.QueueService/DescribeQueue",
    "/spindle.v1.QueueService/ListQueues",
    "/spindle.v1.ValueService/GetValue",
    "/spindle.v1.ValueService/ListValues",
    "/spindle.v1.ValueService/WatchValues",
    "/spindle.v1.ProcessService/GetProcess",
    "/spindle.v1.ProcessService/ListProcesses",
    "/spindle.v1.ProcessService/WatchProcesses",
    "/spindle.v1.PoolService/GetPool",
    "/spindle.v1.PoolService/ListPools",
    "/spindle.v1.PoolService/GetTask",
    "/spindle.v1.PoolService/ListTasks",
    "/spindle.v1.PoolService/WatchTasks",
    "/spindle.v1.SchedulerService/GetTrigger",
    "/spindle.v1.SchedulerService/ListTriggers",
    "/spindle.v1.SchedulerService/ListTriggerRuns",
    "/spindle.v1.SchedulerService/WatchTriggerRuns",
};

}  // namespace

Access RequiredAccess(absl::string_view method) {
  if (std::find(std::begin(kReadMethods), std::end(kReadMethods), method) !=
      std::end(kReadMethods)) {
    return Access::kRead;
  }
  // "/service/Method": the service is between the first and the second slash.
  if (method.size() < 2 || method.front() != '/') {
    return Access::kAdmin;
  }
  const auto slash = method.find('/', 1);
  if (slash == absl::string_view::npos) {
    return Access::kAdmin;
  }
  const absl::string_view service = method.substr(1, slash - 1);
  for (const ServiceAccess& entry : kServices) {
    if (entry.service == service) {
      return entry.access;
    }
  }
  return Access::kAdmin;
}

bool RoleAllows(Role role, Access access) {
  switch (access) {
    case Access::kOpen:
    case Access::kRead:
      return true;
    case Access::kSync:
      return role == Role::kSync || role == Role::kAdmin;
    case Access::kExec:
      return role == Role::kExec || role == Role::kAdmin;
    case Access::kAdmin:
      return role == Role::kAdmin;
  }
  return false;
}

absl::string_view AllowedRoles(Access access) {
  switch (access) {
    case Access::kOpen:
      return "anyone";
    case Access::kRead:
      return "any role";
    case Access::kSync:
      return "sync or admin";
    case Access::kExec:
      return "exec or admin";
    case Access::kAdmin:
      return "admin";
  }
  return "admin";
}

}  // namespace spindle::services::auth
