#include "services/interceptors/metrics_interceptor.h"

#include <chrono>

#include "absl/strings/string_view.h"

namespace spindle::services {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::ServerRpcInfo;

const char* TypeLabel(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unary";
}

// Splits "/spindle.v1.QueueService/Put" into service and method; anything else is kept whole.
std::pair<std::string, std::string> SplitMethod(absl::string_view full) {
  if (!full.empty() && full.front() == '/') {
    full.remove_prefix(1);
  }
  auto slash = full.find('/');
  if (slash == absl::string_view::npos) {
    return {"unknown", std::string(full)};
  }
  return {std::string(full.substr(0, slash)), std::string(full.substr(slash + 1))};
}

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics& metrics, GrpcServerMetrics::Method& method)
      : metrics_(metrics), method_(method), start_(std::chrono::steady_clock::now()) {
    method_.started->Increment();
    metrics_.inflight().Increment();
  }

  ~MetricsInterceptor() override {
    // A call that ended without sending a status was cancelled (client gone or deadline).
    if (!status_seen_) {
      Record(static_cast<int>(grpc::StatusCode::CANCELLED));
    }
    metrics_.inflight().Decrement();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      method_.received->Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      method_.sent->Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      status_seen_ = true;
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(int code) {
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_.Handled(method_, code, elapsed.count());
  }

  GrpcServerMetrics& metrics_;
  GrpcServerMetrics::Method& method_;
  const std::chrono::steady_clock::time_point start_;
  bool status_seen_ = false;
};

}  // namespace

const char* GrpcCodeLabel(int code) {
  static constexpr const char* kLabels[GrpcServerMetrics::kCodes] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  if (code < 0 || code >= GrpcServerMetrics::kCodes) {
    return "Unknown";
  }
  return kLabels[code];
}

GrpcServerMetrics::GrpcServerMetrics(prometheus::Registry& registry)
    : started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("Total number of RPCs started on the server.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("Total number of RPCs completed on the server, regardless of success or "
                         "failure.")
                   .Register(registry)),
      handling_(prometheus::BuildHistogram()
                    .Name("grpc_server_handling_seconds")
                    .Help("Histogram of response latency (seconds) of gRPC that had been "
                          "application-level handled by the server.")
                    .Register(registry)),
      received_(prometheus::BuildCounter()
                    .Name("grpc_server_msg_received_total")
                    .Help("Total number of RPC stream messages received on the server.")
                    .Register(registry)),
      sent_(prometheus::BuildCounter()
                .Name("grpc_server_msg_sent_total")
                .Help("Total number of gRPC stream messages sent by the server.")
                .Register(registry)),
      inflight_(&prometheus::BuildGauge()
                     .Name("spindle_grpc_inflight_calls")
                     .Help("gRPC calls in flight on the server.")
                     .Register(registry)
                     .Add({})) {}

GrpcServerMetrics::Method& GrpcServerMetrics::ForMethod(const char* method,
                                                        ServerRpcInfo::Type type) {
  absl::string_view key = method == nullptr ? absl::string_view("unknown") : method;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = methods_.find(key);
    if (it != methods_.end()) {
      return it->second;
    }
  }
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = methods_.try_emplace(std::string(key));
  Method& m = it->second;
  if (inserted) {
    auto [service, name] = SplitMethod(key);
    m.labels = {{"grpc_service", service}, {"grpc_method", name}, {"grpc_type", TypeLabel(type)}};
    m.started = &started_.Add(m.labels);
    m.received = &received_.Add(m.labels);
    m.sent = &sent_.Add(m.labels);
    m.handling = &handling_.Add(m.labels, prometheus::Histogram::BucketBoundaries{
                                              0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                              0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  }
  return m;
}

void GrpcServerMetrics::Handled(Method& m, int code, double seconds) {
  if (code < 0 || code >= kCodes) {
    code = static_cast<int>(grpc::StatusCode::UNKNOWN);
  }
  prometheus::Counter* counter = m.handled[code].load(std::memory_order_acquire);
  if (counter == nullptr) {
    auto labels = m.labels;
    labels.emplace("grpc_code", GrpcCodeLabel(code));
    counter = &handled_.Add(labels);  // Family::Add is idempotent and thread-safe.
    m.handled[code].store(counter, std::memory_order_release);
  }
  counter->Increment();
  m.handling->Observe(seconds);
}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    ServerRpcInfo* info) {
  return new MetricsInterceptor(*metrics_, metrics_->ForMethod(info->method(), info->type()));
}

}  // namespace spindle::services
