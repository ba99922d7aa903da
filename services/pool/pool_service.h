// PoolService: the gRPC face of lib/spindle/pool (protos/spindle/v1/pool.proto is the contract).
// Validates, converts, calls the PoolTable, converts the status. Waiting calls use
// PoolWaitReactor; Map and WatchTasks have their own reactors.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_POOL_POOL_SERVICE_H_
#define SPINDLE_SERVICES_POOL_POOL_SERVICE_H_

#include <cstdint>

#include "services/auth/caller_identity.h"
#include "services/common/stream_set.h"
#include "spindle/pool/pool_table.h"
#include "spindle/v1/pool.grpc.pb.h"

namespace spindle::services {

class PoolServiceImpl final : public v1::PoolService::CallbackService {
 public:
  // `caller_identity` names who a call comes from, for the spawn policy (empty: certificate or
  // peer address).
  PoolServiceImpl(pool::PoolTable& table, StreamSet& streams, int64_t max_message_bytes,
                  auth::CallerIdentityFn caller_identity = {})
      : table_(table),
        streams_(streams),
        max_message_bytes_(max_message_bytes),
        caller_identity_(std::move(caller_identity)) {}

  grpc::ServerUnaryReactor* CreatePool(grpc::CallbackServerContext* context,
                                       const v1::CreatePoolRequest* request,
                                       v1::CreatePoolResponse* response) override;
  grpc::ServerUnaryReactor* GetPool(grpc::CallbackServerContext* context,
                                    const v1::GetPoolRequest* request,
                                    v1::GetPoolResponse* response) override;
  grpc::ServerUnaryReactor* ListPools(grpc::CallbackServerContext* context,
                                      const v1::ListPoolsRequest* request,
                                      v1::ListPoolsResponse* response) override;
  grpc::ServerUnaryReactor* ResizePool(grpc::CallbackServerContext* context,
                                       const v1::ResizePoolRequest* request,
                                       v1::ResizePoolResponse* response) override;
  grpc::ServerUnaryReactor* ClosePool(grpc::CallbackServerContext* context,
                                      const v1::ClosePoolRequest* request,
                                      v1::ClosePoolResponse* response) override;
  grpc::ServerUnaryReactor* JoinPool(grpc::CallbackServerContext* context,
                                     const v1::JoinPoolRequest* request,
                                     v1::JoinPoolResponse* response) override;
  grpc::ServerUnaryReactor* TerminatePool(grpc::CallbackServerContext* context,
                                          const v1::TerminatePoolRequest* request,
                                          v1::TerminatePoolResponse* response) override;
  grpc::ServerUnaryReactor* DeletePool(grpc::CallbackServerContext* context,
                                       const v1::DeletePoolRequest* request,
                                       v1::DeletePoolResponse* response) override;
  grpc::ServerUnaryReactor* SubmitTask(grpc::CallbackServerContext* context,
                                       const v1::SubmitTaskRequest* request,
                                       v1::SubmitTaskResponse* response) override;
  grpc::ServerUnaryReactor* SubmitTasks(grpc::CallbackServerContext* context,
                                        const v1::SubmitTasksRequest* request,
                                        v1::SubmitTasksResponse* response) override;
  grpc::ServerBidiReactor<v1::MapRequest, v1::MapResponse>* Map(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* context,
                                    const v1::GetTaskRequest* request,
                                    v1::GetTaskResponse* response) override;
  grpc::ServerUnaryReactor* WaitTask(grpc::CallbackServerContext* context,
                                     const v1::WaitTaskRequest* request,
                                     v1::WaitTaskResponse* response) override;
  grpc::ServerUnaryReactor* CancelTask(grpc::CallbackServerContext* context,
                                       const v1::CancelTaskRequest* request,
                                       v1::CancelTaskResponse* response) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* context,
                                      const v1::ListTasksRequest* request,
                                      v1::ListTasksResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchTasksResponse>* WatchTasks(
      grpc::CallbackServerContext* context, const v1::WatchTasksRequest* request) override;

 private:
  pool::PoolTable& table_;
  StreamSet& streams_;
  const int64_t max_message_bytes_;
  const auth::CallerIdentityFn caller_identity_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_POOL_SERVICE_H_
