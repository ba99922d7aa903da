#include "services/sync/session_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/sync/convert.h"
#include "services/sync/keepalive_reactor.h"
#include "spindle/common/status.h"

namespace spindle::services {

using sync_convert::FromProto;
using sync_convert::Ms;
using sync_convert::ToProto;

namespace {

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status CheckTtl(int64_t ttl_ms) {
  if (ttl_ms < 0) {
    return InvalidArgument(
        "INVALID_TTL", absl::StrCat("ttl_ms ", ttl_ms, " must not be negative (1000..3600000)"));
  }
  return absl::OkStatus();
}

absl::Status CheckId(const std::string& session_id) {
  if (session_id.empty()) {
    return InvalidArgument("INVALID_ARGUMENT", "session_id is required");
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* SessionServiceImpl::CreateSession(grpc::CallbackServerContext* context,
                                                            const v1::CreateSessionRequest* request,
                                                            v1::CreateSessionResponse* response) {
  if (absl::Status s = CheckTtl(request->ttl_ms()); !s.ok()) {
    return Answer(context, s);
  }
  sync::CreateSessionParams params;
  params.ttl = Ms(request->ttl_ms());
  params.client_name = request->client_name();
  params.labels = FromProto(request->labels());
  params.peer = context->peer();
  params.request_id = request->request_id();
  auto info = sessions_.Create(std::move(params));
  if (info.ok()) {
    ToProto(*info, response->mutable_session());
  }
  return Answer(context, info.status());
}

grpc::ServerBidiReactor<v1::KeepAliveRequest, v1::KeepAliveResponse>* SessionServiceImpl::KeepAlive(
    grpc::CallbackServerContext* context) {
  return new KeepAliveReactor(context, sessions_);
}

grpc::ServerUnaryReactor* SessionServiceImpl::RefreshSession(
    grpc::CallbackServerContext* context, const v1::RefreshSessionRequest* request,
    v1::RefreshSessionResponse* response) {
  if (absl::Status s = CheckTtl(request->ttl_ms()); !s.ok()) {
    return Answer(context, s);
  }
  if (absl::Status s = CheckId(request->session_id()); !s.ok()) {
    return Answer(context, s);
  }
  auto info = sessions_.Refresh(request->session_id(), Ms(request->ttl_ms()));
  if (info.ok()) {
    ToProto(info->expire_time, response->mutable_expire_time());
    response->set_ttl_ms(absl::ToInt64Milliseconds(info->ttl));
  }
  return Answer(context, info.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::GetSession(grpc::CallbackServerContext* context,
                                                         const v1::GetSessionRequest* request,
                                                         v1::GetSessionResponse* response) {
  if (absl::Status s = CheckId(request->session_id()); !s.ok()) {
    return Answer(context, s);
  }
  auto info = sessions_.Get(request->session_id());
  if (info.ok()) {
    ToProto(*info, response->mutable_session());
    if (request->include_locks()) {
      bool truncated = false;
      for (const auto& grant : locks_.GrantsOfSession(request->session_id(), 1000, &truncated)) {
        ToProto(grant, response->add_locks());
      }
      response->set_locks_truncated(truncated);
    }
  }
  return Answer(context, info.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::ListSessions(grpc::CallbackServerContext* context,
                                                           const v1::ListSessionsRequest* request,
                                                           v1::ListSessionsResponse* response) {
  auto page = sessions_.List(request->page_size(), request->page_token(),
                             request->client_name_prefix(), FromProto(request->labels()));
  if (page.ok()) {
    for (const auto& info : page->sessions) {
      ToProto(info, response->add_sessions());
    }
    response->set_next_page_token(page->next_page_token);
  }
  return Answer(context, page.status());
}

grpc::ServerUnaryReactor* SessionServiceImpl::CloseSession(grpc::CallbackServerContext* context,
                                                           const v1::CloseSessionRequest* request,
                                                           v1::CloseSessionResponse* response) {
  if (absl::Status s = CheckId(request->session_id()); !s.ok()) {
    return Answer(context, s);
  }
  auto closed = sessions_.Close(request->session_id());
  if (closed.ok()) {
    response->set_released_locks(closed->released_locks);
    response->set_released_permits(closed->released_permits);
  }
  return Answer(context, closed.status());
}

}  // namespace spindle::services
