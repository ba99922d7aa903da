// Cgroup v2 as spindled sets it up: --cgroups (auto, off, required) decides whether every spawned
// process is born in a cgroup of its own so its tree can be killed without escapes
// (lib/spindle/process/cgroup.h). Probed once at start; the answer is logged and exported as the
// gauge spindle_process_cgroups_enabled.
//
// Thread-safety: free functions; SetUpCgroups is called once, before serving.
#ifndef SPINDLE_SERVICES_PROCESS_CGROUP_SETUP_H_
#define SPINDLE_SERVICES_PROCESS_CGROUP_SETUP_H_

#include <prometheus/metric_family.h>

#include <vector>

#include "absl/status/status.h"
#include "services/server/config.h"

namespace spindle::services {

// Fills config.cgroup_tree from config.cgroups unless it is already set (tests may build one).
// INVALID_ARGUMENT (INVALID_FLAG) for a mode other than auto, off, required; FAILED_PRECONDITION
// (CGROUPS_UNAVAILABLE) saying why when the mode is required and cgroup v2 is not usable. With
// auto, an unusable host only logs `event=cgroups enabled=false reason=...` once.
absl::Status SetUpCgroups(ServerConfig& config);

// spindle_process_cgroups_enabled: 1 when processes get cgroups, else 0.
std::vector<prometheus::MetricFamily> CollectCgroupsEnabled(bool enabled);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_CGROUP_SETUP_H_
