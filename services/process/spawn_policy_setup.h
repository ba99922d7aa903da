// The spawn policy as spindled sets it up: read from --spawn-policy at start, checked against the
// user spindled runs as, logged, and counted in spindle_rejections_total{reason="SPAWN_POLICY"}.
// The rules themselves live in the engine (lib/spindle/process/spawn_policy.h).
//
// Thread-safety: free functions; LoadSpawnPolicy is called once, before serving.
#ifndef SPINDLE_SERVICES_PROCESS_SPAWN_POLICY_SETUP_H_
#define SPINDLE_SERVICES_PROCESS_SPAWN_POLICY_SETUP_H_

#include <prometheus/metric_family.h>

#include <vector>

#include "absl/status/status.h"
#include "services/server/config.h"

namespace spindle::process {
class SpawnPolicy;
}  // namespace spindle::process

namespace spindle::services {

// Reads config.spawn_policy_file into config.spawn_policy unless that is already set (tests may
// build one) or the file is empty. INVALID_ARGUMENT (reason INVALID_SPAWN_POLICY) naming
// --spawn-policy, the file and what is wrong in it; also when the policy names a default run_as
// user or group but spindled does not run as root (every spawn would fail). Logs
// `event=spawn_policy file=... <summary>`.
absl::Status LoadSpawnPolicy(ServerConfig& config);

// spindle_rejections_total{reason="SPAWN_POLICY"}: spawns refused by `policy` (0 without one).
std::vector<prometheus::MetricFamily> CollectRejections(const process::SpawnPolicy* policy);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_SPAWN_POLICY_SETUP_H_
