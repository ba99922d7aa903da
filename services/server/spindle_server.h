// SpindleServer: the whole of spindled in one object — the engine, the gRPC services on it, the
// interceptors, health, reflection and the /metrics endpoint — assembled in one readable place.
//
// spindled's main() and the in-process integration tests both start one. Start() binds both
// ports (port 0 picks free ones) and serves; Shutdown() drains: health turns NOT_SERVING, new
// calls get UNAVAILABLE, in-flight calls have `grace` to finish and are then cancelled.
//
// Thread-safety: Start/Shutdown/Wait are thread-compatible (call Shutdown once, from any thread);
// the accessors are thread-safe.
#ifndef SPINDLE_SERVICES_SERVER_SPINDLE_SERVER_H_
#define SPINDLE_SERVICES_SERVER_SPINDLE_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/server/config.h"

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace spindle {
class TimerService;
namespace coro {
class Executor;
}  // namespace coro
}  // namespace spindle

namespace spindle::services {

class Capability;
struct CapabilityContext;
class GrpcServerMetrics;
class ServerServiceImpl;

class SpindleServer {
 public:
  // Builds everything and starts serving. FAILED_PRECONDITION naming the address when a port
  // cannot be bound; INVALID_ARGUMENT for a malformed address or limit.
  static absl::StatusOr<std::unique_ptr<SpindleServer>> Start(const ServerConfig& config);

  ~SpindleServer();
  SpindleServer(const SpindleServer&) = delete;
  SpindleServer& operator=(const SpindleServer&) = delete;

  // host:port actually bound for gRPC, e.g. "127.0.0.1:41234".
  const std::string& listen_address() const { return listen_address_; }
  int port() const { return port_; }
  // host:port actually bound for /metrics; empty when metrics are off.
  const std::string& metrics_address() const { return metrics_address_; }

  // Drains and stops; returns when every call has ended. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  explicit SpindleServer(ServerConfig config);
  absl::Status Init();
  // Registers the generated base class (UNIMPLEMENTED everywhere) of every Spindle service not in
  // `implemented`.
  void AddUnbuiltServices(std::vector<grpc::Service*>& services,
                          std::vector<std::string>& implemented);

  const ServerConfig config_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors_;
  std::shared_ptr<GrpcServerMetrics> grpc_metrics_;
  // Declared in dependency order: destroyed from the bottom up.
  std::unique_ptr<coro::Executor> executor_;
  std::unique_ptr<TimerService> timers_;
  std::unique_ptr<CapabilityContext> context_;
  std::vector<std::unique_ptr<Capability>> capabilities_;
  std::unique_ptr<ServerServiceImpl> server_service_;
  // Services whose engine part is not built yet: they answer UNIMPLEMENTED (NOT_IMPLEMENTED).
  std::vector<std::unique_ptr<grpc::Service>> unbuilt_services_;
  std::unique_ptr<grpc::Server> server_;
  std::string listen_address_;
  std::string metrics_address_;
  int port_ = 0;
  bool shut_down_ = false;
};

// Splits "host:port" / "[v6]:port"; INVALID_ARGUMENT naming `flag` when malformed.
absl::Status ValidateListenAddress(absl::string_view flag, absl::string_view address);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_SPINDLE_SERVER_H_
