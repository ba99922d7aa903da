#include "services/server/server_service.h"

#include <unistd.h>

#include <climits>

#include "services/common/build_info.h"
#include "spindle/common/names.h"
#include "spindle/process/spawn_policy.h"

namespace spindle::services {
namespace {

std::string Hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) {
    return "";
  }
  return name;
}

}  // namespace

ServerServiceImpl::ServerServiceImpl(ServerConfig config, std::vector<std::string> services,
                                     std::vector<StatsFiller> stats)
    : config_(std::move(config)),
      services_(std::move(services)),
      stats_(std::move(stats)),
      start_time_(absl::Now()) {}

void ServerServiceImpl::SetListenAddresses(std::string listen, std::string metrics) {
  absl::MutexLock lock(&mu_);
  listen_address_ = std::move(listen);
  metrics_address_ = std::move(metrics);
}

grpc::ServerUnaryReactor* ServerServiceImpl::GetServerInfo(grpc::CallbackServerContext* context,
                                                           const v1::GetServerInfoRequest*,
                                                           v1::GetServerInfoResponse* response) {
  response->set_version(kVersion);
  response->set_api_version(kApiVersion);
  response->set_build_type(kBuildType);
  response->set_compiler(kCompiler);
  const int64_t start_us = absl::ToUnixMicros(start_time_);
  response->mutable_start_time()->set_seconds(start_us / 1000000);
  response->mutable_start_time()->set_nanos(static_cast<int32_t>(start_us % 1000000) * 1000);
  response->set_uptime_ms(absl::ToInt64Milliseconds(absl::Now() - start_time_));
  response->set_hostname(Hostname());
  response->set_pid(getpid());
  {
    absl::MutexLock lock(&mu_);
    response->set_listen_address(listen_address_);
    response->set_metrics_address(metrics_address_);
  }
  for (const auto& service : services_) {
    response->add_services(service);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ServerServiceImpl::GetLimits(grpc::CallbackServerContext* context,
                                                       const v1::GetLimitsRequest*,
                                                       v1::GetLimitsResponse* response) {
  response->set_max_message_bytes(config_.max_message_bytes);
  response->set_max_processes(config_.max_processes);
  response->set_max_names(config_.max_names);
  response->set_max_name_bytes(static_cast<int64_t>(kMaxNameLength));
  response->set_default_output_buffer_bytes(config_.default_output_buffer_bytes);
  response->set_max_output_buffer_bytes(config_.max_output_buffer_bytes);
  response->set_max_sessions(config_.max_sessions);
  response->set_max_waiters(config_.max_waiters);
  if (config_.spawn_policy != nullptr) {
    response->set_spawn_policy_file(config_.spawn_policy_file);
    const auto& identities = config_.spawn_policy->rules().identities;
    if (identities.has_value() && identities->max_live_processes.has_value()) {
      response->set_max_live_processes_per_identity(*identities->max_live_processes);
    }
  }
  response->set_process_cgroups(config_.cgroup_tree != nullptr);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ServerServiceImpl::GetStats(grpc::CallbackServerContext* context,
                                                      const v1::GetStatsRequest*,
                                                      v1::GetStatsResponse* response) {
  for (const auto& fill : stats_) {
    fill(*response);
  }
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace spindle::services
