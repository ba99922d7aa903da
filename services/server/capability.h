// A capability of the server (sessions+locks, queues+values, processes, pools, scheduler) as the
// assembly in SpindleServer sees it: the gRPC services it implements, its metrics, its share of
// the statistics, and a hook to end long-lived streams on shutdown.
//
// Each capability lives in services/<name>/ with a factory `MakeXCapability(CapabilityContext&)`;
// SpindleServer calls the factories in a fixed order, so a later capability may use what an
// earlier one put in the context (the session table, for instance).
//
// Thread-safety: implementations are thread-safe after construction.
#ifndef SPINDLE_SERVICES_SERVER_CAPABILITY_H_
#define SPINDLE_SERVICES_SERVER_CAPABILITY_H_

#include <grpcpp/impl/service_type.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/server/config.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/v1/server.pb.h"

namespace grpc {
class ServerContextBase;
}  // namespace grpc
namespace spindle::coro {
class Executor;
}  // namespace spindle::coro
namespace spindle::process {
class ProcessTable;
}  // namespace spindle::process
namespace spindle::pool {
class PoolTable;
}  // namespace spindle::pool

namespace spindle::services {

// What the server gives every capability. Outlives every capability.
struct CapabilityContext {
  const ServerConfig& config;
  // Timers on the executor's reactor; the clock every engine table uses.
  TimerService& timers;
  // The coroutine executor every blocking wait runs on.
  coro::Executor& executor;
  // The metrics registry served on /metrics; register families here (no metric globals).
  prometheus::Registry& registry;
  // Set by the sessions capability (first in order); null before it. Others bind to sessions here.
  SessionHooks* sessions = nullptr;
  process::ProcessTable* processes = nullptr;  // Set by the processes capability; null before.
  pool::PoolTable* pools = nullptr;            // Set by the pools capability; null before.
  // Who a call comes from ("token:ci", "cert:CN=x", "peer:10.0.0.7"; services/auth/
  // caller_identity.h), for the spawn policy's per-identity limits. Set by the server; empty:
  // services fall back to certificate or peer address.
  std::function<std::string(const grpc::ServerContextBase&)> caller_identity;
  // Set by the sessions+locks capability: OK while the grant with `fencing_token` on lock
  // `lock_name` is held, else ABORTED (STALE_FENCING_TOKEN). Callable under other tables' locks.
  // Empty before (and on servers without locks): fenced writes are FENCING_UNAVAILABLE.
  std::function<absl::Status(absl::string_view lock_name, int64_t fencing_token)> check_fence;
};

// One gRPC service of a capability, by its full name ("spindle.v1.LockService").
struct ServiceEntry {
  std::string name;
  grpc::Service* service;
};

class Capability {
 public:
  virtual ~Capability() = default;

  // The gRPC services this capability implements; owned by it, registered by the server.
  virtual std::vector<ServiceEntry> Services() = 0;

  // Adds this capability's table sizes to a GetStats answer.
  virtual void FillStats(v1::GetStatsResponse& stats) {}

  // Collectors read at every scrape (e.g. gauges computed from engine stats); kept alive by the
  // server for its lifetime.
  virtual std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() { return {}; }

  // Called when draining starts, before in-flight calls get their grace period: end server streams
  // that would otherwise run forever (watches, follows) with UNAVAILABLE, stop timers.
  virtual void BeginShutdown() {}
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_CAPABILITY_H_
