#include "services/process/spawn_policy_setup.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/metrics/function_collector.h"
#include "spindle/common/status.h"
#include "spindle/process/spawn_policy.h"

namespace spindle::services {

absl::Status LoadSpawnPolicy(ServerConfig& config) {
  if (config.spawn_policy == nullptr) {
    if (config.spawn_policy_file.empty()) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<process::SpawnPolicy>> policy =
        process::SpawnPolicy::Load(config.spawn_policy_file);
    if (!policy.ok()) {
      return Annotate(policy.status(), "--spawn-policy");
    }
    config.spawn_policy = std::move(*policy);
  }
  const auto& run_as = config.spawn_policy->rules().run_as;
  if (run_as.has_value() &&
      (run_as->default_user.has_value() || run_as->default_group.has_value()) && ::geteuid() != 0) {
    return InvalidArgument(
        process::kInvalidSpawnPolicyReason,
        absl::StrCat("--spawn-policy: spawn policy '", config.spawn_policy_file,
                     "': run_as.default_user/default_group need spindled to run as root (it runs "
                     "as uid ",
                     ::geteuid(), "), or every spawn would be refused"));
  }
  spdlog::info("event=spawn_policy file={} {}",
               config.spawn_policy_file.empty() ? "(built in)" : config.spawn_policy_file,
               config.spawn_policy->Summary());
  return absl::OkStatus();
}

std::vector<prometheus::MetricFamily> CollectRejections(const process::SpawnPolicy* policy) {
  const double rejections =
      policy == nullptr ? 0.0 : static_cast<double>(policy->GetStats().rejections);
  std::vector<prometheus::MetricFamily> families;
  families.push_back(
      CounterFamily("spindle_rejections_total",
                    "Requests refused by a server-side rule, by reason (SPAWN_POLICY: "
                    "a spawn outside the spawn policy or over an identity's "
                    "live-process limit).",
                    rejections, {{"reason", std::string(process::kSpawnPolicyReason)}}));
  return families;
}

}  // namespace spindle::services
