#include "services/interceptors/errors_interceptor.h"

#include <grpcpp/server_context.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/interceptors/metrics_interceptor.h"

namespace spindle::services {
namespace {

using grpc::experimental::InterceptionHookPoints;

absl::string_view ServiceOf(absl::string_view method) {
  if (!method.empty() && method.front() == '/') {
    method.remove_prefix(1);
  }
  return method.substr(0, method.find('/'));
}

class ErrorsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ErrorsInterceptor(grpc::experimental::ServerRpcInfo* info)
      : info_(info), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      OnStatus(methods);
    }
    methods->Proceed();
  }

 private:
  void OnStatus(grpc::experimental::InterceptorBatchMethods* methods) {
    grpc::Status status = methods->GetSendStatus();
    const absl::string_view method = info_->method() == nullptr ? "" : info_->method();
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty()) {
      absl::string_view service = ServiceOf(method);
      absl::string_view capability = CapabilityOf(service);
      status = GrpcError(
          grpc::StatusCode::UNIMPLEMENTED, "NOT_IMPLEMENTED",
          capability.empty()
              ? absl::StrCat("method '", method, "' is not implemented by this server")
              : absl::StrCat("method '", method, "' is not implemented by this server yet (",
                             capability, " capability)"));
      methods->ModifySendStatus(status);
    }
    std::string reason;
    if (!status.ok()) {
      reason = ReasonOf(status);
      if (!reason.empty()) {
        methods->GetSendTrailingMetadata()->emplace(std::string(kReasonTrailer), reason);
      }
    }
    Log(method, status, reason);
  }

  void Log(absl::string_view method, const grpc::Status& status, const std::string& reason) {
    const auto code = status.error_code();
    spdlog::level::level_enum level = spdlog::level::trace;
    if (code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNKNOWN ||
        code == grpc::StatusCode::DATA_LOSS) {
      level = spdlog::level::err;
    } else if (code != grpc::StatusCode::OK) {
      level = spdlog::level::debug;
    }
    if (!spdlog::should_log(level)) {
      return;
    }
    std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - start_;
    spdlog::log(level, "event=rpc method={} code={} ms={:.3f} peer={} reason={} message=\"{}\"",
                std::string_view(method.data(), method.size()), GrpcCodeLabel(code), ms.count(),
                info_->server_context() ? info_->server_context()->peer() : "", reason,
                status.error_message());
  }

  grpc::experimental::ServerRpcInfo* info_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

absl::string_view CapabilityOf(absl::string_view service) {
  struct Entry {
    absl::string_view service;
    absl::string_view capability;
  };
  static constexpr Entry kCapabilities[] = {
      {"spindle.v1.ProcessService", "processes"},
      {"spindle.v1.PoolService", "worker pools"},
      {"spindle.v1.SessionService", "sessions and locks"},
      {"spindle.v1.LockService", "sessions and locks"},
      {"spindle.v1.QueueService", "queues and values"},
      {"spindle.v1.ValueService", "queues and values"},
      {"spindle.v1.SchedulerService", "coroutine executor"},
      {"spindle.v1.ServerService", "server"},
  };
  for (const Entry& entry : kCapabilities) {
    if (entry.service == service) {
      return entry.capability;
    }
  }
  return "";
}

grpc::experimental::Interceptor* ErrorsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new ErrorsInterceptor(info);
}

}  // namespace spindle::services
