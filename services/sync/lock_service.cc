#include "services/sync/lock_service.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "services/common/coro_call.h"
#include "services/common/status_convert.h"
#include "services/sync/convert.h"
#include "services/sync/lock_stream_reactor.h"
#include "services/sync/waiting_call.h"
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

absl::Status NonNegative(absl::string_view field, int64_t value) {
  if (value < 0) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat(field, " ", value, " must not be negative"));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* LockServiceImpl::CreateLock(grpc::CallbackServerContext* context,
                                                      const v1::CreateLockRequest* request,
                                                      v1::CreateLockResponse* response) {
  sync::LockKind kind;
  if (absl::Status s = FromProto("kind", request->kind(), &kind); !s.ok()) {
    return Answer(context, s);
  }
  auto created = locks_.Create(request->name(), kind, FromProto(request->config()),
                               FromProto(request->labels()));
  if (created.ok()) {
    ToProto(created->first, response->mutable_lock());
    response->set_created(created->second);
  }
  return Answer(context, created.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::Acquire(grpc::CallbackServerContext* context,
                                                   const v1::AcquireRequest* request,
                                                   v1::AcquireResponse* response) {
  auto* call = new WaitingCall(context, locks_);
  sync::AcquireParams params;
  if (absl::Status s = FromProto(*request, CallDeadline(*context), &params); !s.ok()) {
    call->FinishNow(ToGrpcStatus(s));
    return call;
  }
  sync::LockTable* locks = &locks_;
  std::string request_id = params.request_id;
  sync::WaitHandle handle =
      locks_.Acquire(std::move(params), [call, response, locks, request_id = std::move(request_id)](
                                            absl::StatusOr<sync::AcquireResult> result) {
        if (!result.ok()) {
          call->Complete(result.status(), nullptr, nullptr);
          return;
        }
        std::string lease = result->acquired ? result->grant.lease_id : "";
        call->Complete(
            absl::OkStatus(), [&] { ToProto(*result, response); },
            [locks, lease, &request_id] {
              if (!lease.empty()) {
                sync::ReleaseParams release;
                release.lease_id = lease;
                release.abandoned_request_id = request_id;
                (void)locks->Release(release);
              }
            });
      });
  call->Started(handle);
  return call;
}

grpc::ServerUnaryReactor* LockServiceImpl::Release(grpc::CallbackServerContext* context,
                                                   const v1::ReleaseRequest* request,
                                                   v1::ReleaseResponse* response) {
  auto released = locks_.Release(FromProto(*request));
  if (released.ok()) {
    ToProto(*released, response);
  }
  return Answer(context, released.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::RefreshLease(grpc::CallbackServerContext* context,
                                                        const v1::RefreshLeaseRequest* request,
                                                        v1::RefreshLeaseResponse* response) {
  if (absl::Status s = NonNegative("lease_ttl_ms", request->lease_ttl_ms()); !s.ok()) {
    return Answer(context, s);
  }
  auto expiry = locks_.RefreshLease(request->lease_id(), Ms(request->lease_ttl_ms()));
  if (expiry.ok()) {
    ToProto(*expiry, response->mutable_expire_time());
  }
  return Answer(context, expiry.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::SetEvent(grpc::CallbackServerContext* context,
                                                    const v1::SetEventRequest* request,
                                                    v1::SetEventResponse* response) {
  auto set = locks_.SetEvent(request->name(), request->request_id());
  if (set.ok()) {
    response->set_was_set(set->first);
    response->set_woken(set->second);
  }
  return Answer(context, set.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::ClearEvent(grpc::CallbackServerContext* context,
                                                      const v1::ClearEventRequest* request,
                                                      v1::ClearEventResponse* response) {
  auto cleared = locks_.ClearEvent(request->name(), request->request_id());
  if (cleared.ok()) {
    response->set_was_set(*cleared);
  }
  return Answer(context, cleared.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::WaitEvent(grpc::CallbackServerContext* context,
                                                     const v1::WaitEventRequest* request,
                                                     v1::WaitEventResponse* response) {
  auto* call = new WaitingCall(context, locks_);
  if (absl::Status s = NonNegative("max_wait_ms", request->max_wait_ms()); !s.ok()) {
    call->FinishNow(ToGrpcStatus(s));
    return call;
  }
  sync::WaitEventParams params;
  params.name = request->name();
  params.wait = request->wait();
  params.max_wait = Ms(request->max_wait_ms());
  params.deadline = CallDeadline(*context);
  params.owner = request->owner();
  call->Started(locks_.WaitEvent(std::move(params), [call, response](absl::StatusOr<bool> set) {
    call->Complete(
        set.status(), [&] { response->set_set(*set); }, nullptr);
  }));
  return call;
}

grpc::ServerUnaryReactor* LockServiceImpl::WaitBarrier(grpc::CallbackServerContext* context,
                                                       const v1::WaitBarrierRequest* request,
                                                       v1::WaitBarrierResponse* response) {
  auto* call = new WaitingCall(context, locks_);
  if (absl::Status s = NonNegative("max_wait_ms", request->max_wait_ms()); !s.ok()) {
    call->FinishNow(ToGrpcStatus(s));
    return call;
  }
  sync::WaitBarrierParams params;
  params.name = request->name();
  params.parties = request->parties();
  params.max_wait = Ms(request->max_wait_ms());
  params.deadline = CallDeadline(*context);
  params.owner = request->owner();
  params.request_id = request->request_id();
  call->Started(locks_.WaitBarrier(std::move(params),
                                   [call, response](absl::StatusOr<sync::BarrierResult> result) {
                                     call->Complete(
                                         result.status(),
                                         [&] {
                                           response->set_tripped(result->tripped);
                                           response->set_generation(result->generation);
                                           response->set_arrival_index(result->arrival_index);
                                         },
                                         nullptr);
                                   }));
  return call;
}

grpc::ServerUnaryReactor* LockServiceImpl::ResetBarrier(grpc::CallbackServerContext* context,
                                                        const v1::ResetBarrierRequest* request,
                                                        v1::ResetBarrierResponse* response) {
  auto reset = locks_.ResetBarrier(request->name(), request->request_id());
  if (reset.ok()) {
    response->set_broken_waiters(reset->first);
    response->set_generation(reset->second);
  }
  return Answer(context, reset.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::AbortBarrier(grpc::CallbackServerContext* context,
                                                        const v1::AbortBarrierRequest* request,
                                                        v1::AbortBarrierResponse* response) {
  auto broken = locks_.AbortBarrier(request->name(), request->request_id());
  if (broken.ok()) {
    response->set_broken_waiters(*broken);
  }
  return Answer(context, broken.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::WaitCondition(grpc::CallbackServerContext* context,
                                                         const v1::WaitConditionRequest* request,
                                                         v1::WaitConditionResponse* response) {
  auto* call = new WaitingCall(context, locks_);
  if (absl::Status s = NonNegative("max_wait_ms", request->max_wait_ms()); !s.ok()) {
    call->FinishNow(ToGrpcStatus(s));
    return call;
  }
  sync::WaitConditionParams params;
  params.name = request->name();
  params.lease_id = request->lease_id();
  params.max_wait = Ms(request->max_wait_ms());
  params.deadline = CallDeadline(*context);
  params.request_id = request->request_id();
  sync::LockTable* locks = &locks_;
  call->Started(locks_.WaitCondition(
      std::move(params), [call, response, locks](absl::StatusOr<sync::ConditionResult> result) {
        std::string lease = result.ok() ? result->grant.lease_id : "";
        call->Complete(
            result.status(),
            [&] {
              response->set_notified(result->notified);
              ToProto(result->grant, response->mutable_grant());
            },
            [locks, lease] {
              sync::ReleaseParams release;
              release.lease_id = lease;
              release.all = true;
              (void)locks->Release(release);
            });
      }));
  return call;
}

grpc::ServerUnaryReactor* LockServiceImpl::NotifyCondition(
    grpc::CallbackServerContext* context, const v1::NotifyConditionRequest* request,
    v1::NotifyConditionResponse* response) {
  auto woken = locks_.NotifyCondition(request->name(), request->count(), request->all(),
                                      request->lease_id(), request->request_id());
  if (woken.ok()) {
    response->set_woken(*woken);
  }
  return Answer(context, woken.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::DescribeLock(grpc::CallbackServerContext* context,
                                                        const v1::DescribeLockRequest* request,
                                                        v1::DescribeLockResponse* response) {
  auto description = locks_.Describe(request->name(), request->max_waiters());
  if (description.ok()) {
    ToProto(*description, response);
  }
  return Answer(context, description.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::ListLocks(grpc::CallbackServerContext* context,
                                                     const v1::ListLocksRequest* request,
                                                     v1::ListLocksResponse* response) {
  sync::LockKind kind;
  if (absl::Status s = FromProto("kind", request->kind(), &kind); !s.ok()) {
    return Answer(context, s);
  }
  auto page = locks_.List(request->page_size(), request->page_token(), request->prefix(), kind,
                          FromProto(request->labels()));
  if (page.ok()) {
    for (const auto& info : page->locks) {
      ToProto(info, response->add_locks());
    }
    response->set_next_page_token(page->next_page_token);
  }
  return Answer(context, page.status());
}

grpc::ServerUnaryReactor* LockServiceImpl::DeleteLock(grpc::CallbackServerContext* context,
                                                      const v1::DeleteLockRequest* request,
                                                      v1::DeleteLockResponse* response) {
  return Answer(context, locks_.Delete(request->name(), request->request_id()));
}

grpc::ServerUnaryReactor* LockServiceImpl::RevokeLock(grpc::CallbackServerContext* context,
                                                      const v1::RevokeLockRequest* request,
                                                      v1::RevokeLockResponse* response) {
  if (absl::Status s = NonNegative("fencing_token", request->fencing_token()); !s.ok()) {
    return Answer(context, s);
  }
  auto revoked = locks_.Revoke(request->name(), request->fencing_token(), request->message(),
                               request->request_id());
  if (revoked.ok()) {
    response->set_revoked(revoked->first);
    response->set_granted_waiters(revoked->second);
  }
  return Answer(context, revoked.status());
}

grpc::ServerBidiReactor<v1::LockStreamRequest, v1::LockStreamResponse>* LockServiceImpl::LockStream(
    grpc::CallbackServerContext* context) {
  return new LockStreamReactor(context, locks_);
}

}  // namespace spindle::services
