#include "services/server/spindle_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/auth/caller_identity.h"
#include "services/auth/credentials.h"
#include "services/interceptors/errors_interceptor.h"
#include "services/interceptors/metrics_interceptor.h"
#include "services/metrics/function_collector.h"
#include "services/metrics/process_metrics.h"
#include "services/pool/pool_capability.h"
#include "services/process/cgroup_setup.h"
#include "services/process/process_capability.h"
#include "services/process/spawn_policy_setup.h"
#include "services/queue/queue_capability.h"
#include "services/scheduler/scheduler_service.h"
#include "services/server/capability.h"
#include "services/server/executor_metrics.h"
#include "services/server/executor_timer_service.h"
#include "services/server/server_service.h"
#include "services/sync/sync_capability.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/pool.grpc.pb.h"
#include "spindle/v1/process.grpc.pb.h"
#include "spindle/v1/queue.grpc.pb.h"
#include "spindle/v1/scheduler.grpc.pb.h"
#include "spindle/v1/session.grpc.pb.h"
#include "spindle/v1/value.grpc.pb.h"

namespace spindle::services {
namespace {

struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> SplitHostPort(absl::string_view flag, absl::string_view address) {
  auto bad = [&](absl::string_view why) {
    return InvalidArgument("INVALID_FLAG",
                           absl::StrCat(flag, " '", address, "' is not host:port (", why, ")"));
  };
  auto colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return bad("missing host or port");
  }
  absl::string_view host = address.substr(0, colon);
  if (absl::StrContains(host, ':') && !(host.front() == '[' && host.back() == ']')) {
    return bad("put an IPv6 host in brackets, e.g. [::1]:50051");
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return bad("port must be 0..65535");
  }
  return HostPort{std::string(host), port};
}

}  // namespace

void SpindleServer::AddUnbuiltServices(std::vector<grpc::Service*>& services,
                                       std::vector<std::string>& implemented) {
  auto add = [&](const char* name, std::unique_ptr<grpc::Service> base) {
    if (std::find(implemented.begin(), implemented.end(), name) == implemented.end()) {
      services.push_back(base.get());
      unbuilt_services_.push_back(std::move(base));
    }
  };
  add(v1::ProcessService::service_full_name(),
      std::make_unique<v1::ProcessService::CallbackService>());
  add(v1::PoolService::service_full_name(), std::make_unique<v1::PoolService::CallbackService>());
  add(v1::SessionService::service_full_name(),
      std::make_unique<v1::SessionService::CallbackService>());
  add(v1::LockService::service_full_name(), std::make_unique<v1::LockService::CallbackService>());
  add(v1::QueueService::service_full_name(), std::make_unique<v1::QueueService::CallbackService>());
  add(v1::ValueService::service_full_name(), std::make_unique<v1::ValueService::CallbackService>());
  add(v1::SchedulerService::service_full_name(),
      std::make_unique<v1::SchedulerService::CallbackService>());
}

absl::Status ValidateListenAddress(absl::string_view flag, absl::string_view address) {
  return SplitHostPort(flag, address).status();
}

SpindleServer::SpindleServer(ServerConfig config) : config_(std::move(config)) {}

SpindleServer::~SpindleServer() {
  Shutdown(absl::ZeroDuration());
  // The gRPC server holds the capabilities' services; then capabilities go in reverse order of
  // making, so none outlives one whose engine it uses (the scheduler uses the process table).
  server_.reset();
  while (!capabilities_.empty()) {
    capabilities_.pop_back();
  }
}

absl::StatusOr<std::unique_ptr<SpindleServer>> SpindleServer::Start(const ServerConfig& config) {
  // The spawn policy is read once, here: a bad file stops the start (docs/SECURITY.md).
  ServerConfig loaded = config;
  SPINDLE_RETURN_IF_ERROR(LoadSpawnPolicy(loaded));
  SPINDLE_RETURN_IF_ERROR(SetUpCgroups(loaded));
  std::unique_ptr<SpindleServer> server(new SpindleServer(std::move(loaded)));
  SPINDLE_RETURN_IF_ERROR(server->Init());
  return server;
}

absl::Status SpindleServer::Init() {
  SPINDLE_ASSIGN_OR_RETURN(HostPort listen, SplitHostPort("--listen", config_.listen));
  if (config_.max_message_bytes <= 0 || config_.max_message_bytes > (1 << 30)) {
    return InvalidArgument("INVALID_FLAG",
                           absl::StrCat("--max-message-bytes ", config_.max_message_bytes,
                                        " must be in 1..1073741824"));
  }

  // Metrics first: the interceptors record into the registry.
  registry_ = std::make_shared<prometheus::Registry>();
  grpc_metrics_ = std::make_shared<GrpcServerMetrics>(*registry_);
  SPINDLE_ASSIGN_OR_RETURN(auth::ServerSecurity security,
                           auth::MakeServerSecurity(config_, listen.host, registry_));
  if (!config_.metrics_listen.empty()) {
    SPINDLE_ASSIGN_OR_RETURN(HostPort metrics,
                             SplitHostPort("--metrics-listen", config_.metrics_listen));
    try {
      exposer_ = std::make_unique<prometheus::Exposer>(config_.metrics_listen);
    } catch (const std::exception& e) {
      return FailedPrecondition(
          "ADDRESS_IN_USE",
          absl::StrCat("cannot serve metrics on --metrics-listen '", config_.metrics_listen,
                       "': ", e.what(), " (address in use or not local?)"));
    }
    auth::ProtectMetrics(config_, security, *exposer_);
    auto ports = exposer_->GetListeningPorts();
    metrics_address_ =
        absl::StrCat(metrics.host, ":", ports.empty() ? metrics.port : ports.front());
    // The exposer keeps weak pointers: the collectors live in this object.
    collectors_.push_back(registry_);
    collectors_.push_back(std::make_shared<FunctionCollector>(&CollectProcessMetrics));
    collectors_.push_back(std::make_shared<FunctionCollector>(&CollectBuildInfo));
    for (const auto& collector : collectors_) {
      exposer_->RegisterCollectable(collector);
    }
  }

  // The executor every wait runs on, and timers on its reactor.
  coro::Executor::Options executor_options;
  executor_options.threads = config_.executor_threads;
  executor_options.name = "spindle";
  SPINDLE_ASSIGN_OR_RETURN(executor_, coro::Executor::Create(executor_options));
  timers_ = std::make_unique<ExecutorTimerService>(*executor_);

  // The capabilities, in order: a later one may use what an earlier one put in the context.
  context_ = std::make_unique<CapabilityContext>(
      CapabilityContext{config_, *timers_, *executor_, *registry_, nullptr});
  context_->caller_identity = auth::MakeCallerIdentity(security.authorizer);
  // ---- capabilities (one line each) ----
  capabilities_.push_back(MakeSyncCapability(*context_));
  capabilities_.push_back(MakeQueueCapability(*context_));
  capabilities_.push_back(MakeProcessCapability(*context_));
  capabilities_.push_back(MakePoolCapability(*context_));
  // Last: triggers use the process and pool engines the capabilities above put in the context.
  capabilities_.push_back(MakeSchedulerCapability(*context_));
  // ---- end of capabilities ----

  // Services no capability implements yet answer UNIMPLEMENTED (NOT_IMPLEMENTED).
  std::vector<std::string> implemented = {v1::ServerService::service_full_name()};
  std::vector<grpc::Service*> services;
  for (auto& capability : capabilities_) {
    for (const auto& entry : capability->Services()) {
      services.push_back(entry.service);
      implemented.push_back(entry.name);
    }
    for (auto& collector : capability->Collectors()) {
      collectors_.push_back(collector);
      if (exposer_ != nullptr) {
        exposer_->RegisterCollectable(collector);
      }
    }
  }
  AddUnbuiltServices(services, implemented);

  std::vector<ServerServiceImpl::StatsFiller> stats;
  std::shared_ptr<GrpcServerMetrics> grpc_metrics = grpc_metrics_;
  coro::Executor* executor = executor_.get();
  stats.push_back([grpc_metrics, executor](v1::GetStatsResponse& response) {
    response.set_inflight_calls(grpc_metrics->InflightCalls());
    FillExecutorStats(executor->Stats(), *response.mutable_executor());
  });
  for (auto& capability : capabilities_) {
    Capability* c = capability.get();
    stats.push_back([c](v1::GetStatsResponse& response) { c->FillStats(response); });
  }
  server_service_ =
      std::make_unique<ServerServiceImpl>(config_, std::move(implemented), std::move(stats));
  if (exposer_ != nullptr) {
    collectors_.push_back(std::make_shared<FunctionCollector>(
        [executor] { return CollectExecutorMetrics(executor->Stats()); }));
    exposer_->RegisterCollectable(collectors_.back());
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.listen, security.credentials, &port_);
  // Without this a second server could bind the same port (SO_REUSEPORT) and split the traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.RegisterService(server_service_.get());
  for (grpc::Service* service : services) {
    builder.RegisterService(service);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<MetricsInterceptorFactory>(grpc_metrics_));
  creators.push_back(std::make_unique<ErrorsInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(creators));

  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return FailedPrecondition("ADDRESS_IN_USE",
                              absl::StrCat("cannot listen on --listen '", config_.listen,
                                           "' (address in use or not local?)"));
  }
  listen_address_ = absl::StrCat(listen.host, ":", port_);
  server_service_->SetListenAddresses(listen_address_, metrics_address_);
  server_->GetHealthCheckService()->SetServingStatus(true);
  spdlog::info("event=listening address={} metrics_address={}", listen_address_,
               metrics_address_.empty() ? "off" : metrics_address_);
  return absl::OkStatus();
}

void SpindleServer::Shutdown(absl::Duration grace) {
  if (shut_down_) {
    return;
  }
  shut_down_ = true;
  if (server_ != nullptr) {
    spdlog::info("event=draining grace_ms={}", absl::ToInt64Milliseconds(grace));
    // Health first, so load balancers stop sending before calls start to fail.
    server_->GetHealthCheckService()->Shutdown();
    for (auto& capability : capabilities_) {
      capability->BeginShutdown();
    }
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  // No call is left; stop the executor before the engines it may still run timers for go away.
  if (executor_ != nullptr) {
    executor_->Shutdown();
  }
  if (server_ != nullptr) {
    spdlog::info("event=stopped");
  }
  exposer_.reset();
}

}  // namespace spindle::services
