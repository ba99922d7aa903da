// LockService over the sync engine's LockTable (protos/spindle/v1/lock.proto): validate, convert,
// call the engine, convert the status, finish. Waiting calls return a WaitingCall reactor that
// the engine completes; LockStream has its own reactor (lock_stream_reactor.h).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SYNC_LOCK_SERVICE_H_
#define SPINDLE_SERVICES_SYNC_LOCK_SERVICE_H_

#include "spindle/sync/lock_table.h"
#include "spindle/v1/lock.grpc.pb.h"

namespace spindle::services {

class LockServiceImpl final : public v1::LockService::CallbackService {
 public:
  explicit LockServiceImpl(sync::LockTable& locks) : locks_(locks) {}

  grpc::ServerUnaryReactor* CreateLock(grpc::CallbackServerContext* context,
                                       const v1::CreateLockRequest* request,
                                       v1::CreateLockResponse* response) override;
  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* context,
                                    const v1::AcquireRequest* request,
                                    v1::AcquireResponse* response) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* context,
                                    const v1::ReleaseRequest* request,
                                    v1::ReleaseResponse* response) override;
  grpc::ServerUnaryReactor* RefreshLease(grpc::CallbackServerContext* context,
                                         const v1::RefreshLeaseRequest* request,
                                         v1::RefreshLeaseResponse* response) override;
  grpc::ServerUnaryReactor* SetEvent(grpc::CallbackServerContext* context,
                                     const v1::SetEventRequest* request,
                                     v1::SetEventResponse* response) override;
  grpc::ServerUnaryReactor* ClearEvent(grpc::CallbackServerContext* context,
                                       const v1::ClearEventRequest* request,
                                       v1::ClearEventResponse* response) override;
  grpc::ServerUnaryReactor* WaitEvent(grpc::CallbackServerContext* context,
                                      const v1::WaitEventRequest* request,
                                      v1::WaitEventResponse* response) override;
  grpc::ServerUnaryReactor* WaitBarrier(grpc::CallbackServerContext* context,
                                        const v1::WaitBarrierRequest* request,
                                        v1::WaitBarrierResponse* response) override;
  grpc::ServerUnaryReactor* ResetBarrier(grpc::CallbackServerContext* context,
                                         const v1::ResetBarrierRequest* request,
                                         v1::ResetBarrierResponse* response) override;
  grpc::ServerUnaryReactor* AbortBarrier(grpc::CallbackServerContext* context,
                                         const v1::AbortBarrierRequest* request,
                                         v1::AbortBarrierResponse* response) override;
  grpc::ServerUnaryReactor* WaitCondition(grpc::CallbackServerContext* context,
                                          const v1::WaitConditionRequest* request,
                                          v1::WaitConditionResponse* response) override;
  grpc::ServerUnaryReactor* NotifyCondition(grpc::CallbackServerContext* context,
                                            const v1::NotifyConditionRequest* request,
                                            v1::NotifyConditionResponse* response) override;
  grpc::ServerUnaryReactor* DescribeLock(grpc::CallbackServerContext* context,
                                         const v1::DescribeLockRequest* request,
                                         v1::DescribeLockResponse* response) override;
  grpc::ServerUnaryReactor* ListLocks(grpc::CallbackServerContext* context,
                                      const v1::ListLocksRequest* request,
                                      v1::ListLocksResponse* response) override;
  grpc::ServerUnaryReactor* DeleteLock(grpc::CallbackServerContext* context,
                                       const v1::DeleteLockRequest* request,
                                       v1::DeleteLockResponse* response) override;
  grpc::ServerUnaryReactor* RevokeLock(grpc::CallbackServerContext* context,
                                       const v1::RevokeLockRequest* request,
                                       v1::RevokeLockResponse* response) override;
  grpc::ServerBidiReactor<v1::LockStreamRequest, v1::LockStreamResponse>* LockStream(
      grpc::CallbackServerContext* context) override;

 private:
  sync::LockTable& locks_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_LOCK_SERVICE_H_
