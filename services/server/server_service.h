// ServerService: version, limits and live statistics of this spindled (protos/.../server.proto).
//
// Thread-safety: thread-safe. Facts that are only known once the server listens (bound ports) are
// set with SetListenAddresses() after start; calls before that see them empty.
#ifndef SPINDLE_SERVICES_SERVER_SERVER_SERVICE_H_
#define SPINDLE_SERVICES_SERVER_SERVER_SERVICE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/server/config.h"
#include "spindle/v1/server.grpc.pb.h"

namespace spindle::services {

class ServerServiceImpl final : public v1::ServerService::CallbackService {
 public:
  // Fills the parts of a GetStatsResponse one component knows about.
  using StatsFiller = std::function<void(v1::GetStatsResponse&)>;

  ServerServiceImpl(ServerConfig config, std::vector<std::string> services,
                    std::vector<StatsFiller> stats);

  void SetListenAddresses(std::string listen, std::string metrics);

  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::GetServerInfoResponse* response) override;
  grpc::ServerUnaryReactor* GetLimits(grpc::CallbackServerContext* context,
                                      const v1::GetLimitsRequest* request,
                                      v1::GetLimitsResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::GetStatsResponse* response) override;

 private:
  // Constant after construction.
  const ServerConfig config_;
  const std::vector<std::string> services_;
  const std::vector<StatsFiller> stats_;
  const absl::Time start_time_;

  absl::Mutex mu_;
  std::string listen_address_ ABSL_GUARDED_BY(mu_);
  std::string metrics_address_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_SERVER_SERVICE_H_
