// SessionService over the sync engine's SessionTable (protos/spindle/v1/session.proto). The
// KeepAlive stream has its own reactor (keepalive_reactor.h).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SYNC_SESSION_SERVICE_H_
#define SPINDLE_SERVICES_SYNC_SESSION_SERVICE_H_

#include "spindle/sync/lock_table.h"
#include "spindle/sync/session_table.h"
#include "spindle/v1/session.grpc.pb.h"

namespace spindle::services {

class SessionServiceImpl final : public v1::SessionService::CallbackService {
 public:
  SessionServiceImpl(sync::SessionTable& sessions, sync::LockTable& locks)
      : sessions_(sessions), locks_(locks) {}

  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const v1::CreateSessionRequest* request,
                                          v1::CreateSessionResponse* response) override;
  grpc::ServerBidiReactor<v1::KeepAliveRequest, v1::KeepAliveResponse>* KeepAlive(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* RefreshSession(grpc::CallbackServerContext* context,
                                           const v1::RefreshSessionRequest* request,
                                           v1::RefreshSessionResponse* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::GetSessionRequest* request,
                                       v1::GetSessionResponse* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseSessionRequest* request,
                                         v1::CloseSessionResponse* response) override;

 private:
  sync::SessionTable& sessions_;
  sync::LockTable& locks_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_SESSION_SERVICE_H_
