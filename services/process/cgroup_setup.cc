#include "services/process/cgroup_setup.h"

#include <spdlog/spdlog.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "services/metrics/function_collector.h"
#include "spindle/common/status.h"
#include "spindle/process/cgroup.h"

namespace spindle::services {

absl::Status SetUpCgroups(ServerConfig& config) {
  if (config.cgroup_tree != nullptr) {
    return absl::OkStatus();
  }
  SPINDLE_ASSIGN_OR_RETURN(process::CgroupMode mode,
                           process::ParseCgroupMode("--cgroups", config.cgroups));
  if (mode == process::CgroupMode::kOff) {
    spdlog::info("event=cgroups enabled=false reason=\"--cgroups=off\"");
    return absl::OkStatus();
  }
  bool required = mode == process::CgroupMode::kRequired;
  auto tree = process::CgroupTree::Create(required);
  if (!tree.ok()) {
    if (required) {
      return Annotate(tree.status(), "--cgroups=required: cgroup v2 is not usable");
    }
    spdlog::warn(
        "event=cgroups enabled=false reason=\"{}\" (process trees are found through /proc only; "
        "a descendant that leaves the tree and clears its environment can escape a kill)",
        std::string(tree.status().message()));
    return absl::OkStatus();
  }
  config.cgroup_tree = *std::move(tree);
  spdlog::info("event=cgroups enabled=true mode={} dir={}",
               std::string(process::CgroupModeName(mode)), config.cgroup_tree->dir());
  return absl::OkStatus();
}

std::vector<prometheus::MetricFamily> CollectCgroupsEnabled(bool enabled) {
  return {GaugeFamily("spindle_process_cgroups_enabled",
                      "Whether every spawned process gets a cgroup v2 of its own (--cgroups), so "
                      "killing its tree reaches every descendant: 1 yes, 0 no.",
                      enabled ? 1.0 : 0.0)};
}

}  // namespace spindle::services
