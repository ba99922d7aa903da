#include "services/process/process_capability.h"

#include <sys/prctl.h>
#include <unistd.h>

#include "services/metrics/function_collector.h"
#include "services/process/cgroup_setup.h"
#include "services/process/process_metrics.h"
#include "services/process/process_service.h"
#include "services/process/spawn_policy_setup.h"
#include "spindle/common/status.h"
#include "spindle/process/process_table.h"
#include "spindle/process/spawner.h"

namespace spindle::services {
namespace {

// Reads context.sessions at each call, so the order in which capabilities are made does not
// matter: a server without a sessions capability answers SESSIONS_UNAVAILABLE.
class LateSessionHooks final : public SessionHooks {
 public:
  explicit LateSessionHooks(SessionHooks* const& target) : target_(target) {}
  absl::Status CheckAlive(absl::string_view session_id) const override {
    if (target_ == nullptr) return Unavailable();
    return target_->CheckAlive(session_id);
  }
  absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                               absl::AnyInvocable<void() &&> on_end) override {
    if (target_ == nullptr) return Unavailable();
    return target_->OnEnd(session_id, std::move(on_end));
  }
  void RemoveHook(absl::string_view session_id, HookId hook) override {
    if (target_ != nullptr) target_->RemoveHook(session_id, hook);
  }

 private:
  static absl::Status Unavailable() {
    return FailedPrecondition("SESSIONS_UNAVAILABLE",
                              "spec.session_id: this server has no session service");
  }
  SessionHooks* const& target_;
};

class ProcessCapability final : public Capability {
 public:
  explicit ProcessCapability(CapabilityContext& context)
      : policy_(context.config.spawn_policy),
        cgroups_enabled_(context.config.cgroup_tree != nullptr),
        metrics_(context.registry),
        sessions_(context.sessions),
        table_(Options(context.config), process::MakeLinuxSpawner(), context.executor,
               context.timers, &sessions_, &metrics_),
        service_(table_, context.timers, context.config.max_message_bytes - (64 << 10),
                 context.caller_identity) {
    // Capabilities made after this one (the scheduler's spawn triggers) use the table.
    context.processes = &table_;
  }

  ~ProcessCapability() override { table_.Shutdown(); }

  std::vector<ServiceEntry> Services() override {
    return {{v1::ProcessService::service_full_name(), &service_}};
  }

  void FillStats(v1::GetStatsResponse& stats) override {
    stats.mutable_tables()->set_processes(table_.Stats().total);
  }

  std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() override {
    process::ProcessTable* table = &table_;
    std::shared_ptr<process::SpawnPolicy> policy = policy_;
    bool cgroups = cgroups_enabled_;
    return {
        std::make_shared<FunctionCollector>(
            [table]() { return ProcessMetrics::CollectStates(table->Stats()); }),
        std::make_shared<FunctionCollector>([policy]() { return CollectRejections(policy.get()); }),
        std::make_shared<FunctionCollector>(
            [cgroups]() { return CollectCgroupsEnabled(cgroups); })};
  }

  void BeginShutdown() override { service_.BeginShutdown(); }

 private:
  static process::ProcessTableOptions Options(const ServerConfig& config) {
    process::ProcessTableOptions options;
    options.max_processes = config.max_processes;
    options.default_output_buffer_bytes = config.default_output_buffer_bytes;
    options.max_output_buffer_bytes = config.max_output_buffer_bytes;
    int subreaper = 0;
    options.reap_orphans = ::prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper != 0;
    options.allow_run_as = ::geteuid() == 0;
    options.spawn_policy = config.spawn_policy;
    options.cgroups = config.cgroup_tree;
    return options;
  }

  // Shared with the pools (they read it from the config too); counted in spindle_rejections_total.
  const std::shared_ptr<process::SpawnPolicy> policy_;
  const bool cgroups_enabled_;
  ProcessMetrics metrics_;
  LateSessionHooks sessions_;
  process::ProcessTable table_;
  ProcessServiceImpl service_;
};

}  // namespace

std::unique_ptr<Capability> MakeProcessCapability(CapabilityContext& context) {
  return std::make_unique<ProcessCapability>(context);
}

}  // namespace spindle::services
