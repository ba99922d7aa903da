// Records the standard gRPC server metrics, spelled as the grpc-ecosystem exporters spell them so
// the dashboards people already have work:
//
//   grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}        (histogram)
//   grpc_server_msg_received_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_msg_sent_total{grpc_service,grpc_method,grpc_type}
//
// grpc_type is unary / client_stream / server_stream / bidi_stream; grpc_code is OK, Canceled,
// DeadlineExceeded, ... Label values are bounded by the registered methods and the 17 codes.
//
// Thread-safety: the factory and the metrics are thread-safe; one interceptor per call.
#ifndef SPINDLE_SERVICES_INTERCEPTORS_METRICS_INTERCEPTOR_H_
#define SPINDLE_SERVICES_INTERCEPTORS_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

// The grpc-ecosystem spelling of a status code ("OK", "Canceled", "DeadlineExceeded", ...).
const char* GrpcCodeLabel(int code);

// The metric families and a per-method cache of their children.
class GrpcServerMetrics {
 public:
  static constexpr int kCodes = 17;

  // The children of every family for one method.
  struct Method {
    prometheus::Counter* started = nullptr;
    prometheus::Counter* received = nullptr;
    prometheus::Counter* sent = nullptr;
    prometheus::Histogram* handling = nullptr;
    std::array<std::atomic<prometheus::Counter*>, kCodes> handled{};
    std::map<std::string, std::string> labels;
  };

  explicit GrpcServerMetrics(prometheus::Registry& registry);

  // The cached children for `method` ("/pkg.Service/Method") of call type `type`.
  Method& ForMethod(const char* method, grpc::experimental::ServerRpcInfo::Type type);

  // Counts a call of `m` that ended with `code` after `seconds`.
  void Handled(Method& m, int code, double seconds);

  // Calls in flight right now.
  prometheus::Gauge& inflight() { return *inflight_; }
  int64_t InflightCalls() const { return static_cast<int64_t>(inflight_->Value()); }

 private:
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_;
  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& sent_;
  prometheus::Gauge* inflight_;

  absl::Mutex mu_;
  // node_hash_map: Method addresses stay valid while the map grows.
  absl::node_hash_map<std::string, Method> methods_ ABSL_GUARDED_BY(mu_);
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(std::shared_ptr<GrpcServerMetrics> metrics)
      : metrics_(std::move(metrics)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  std::shared_ptr<GrpcServerMetrics> metrics_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_INTERCEPTORS_METRICS_INTERCEPTOR_H_
