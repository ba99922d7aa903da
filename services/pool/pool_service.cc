#include "services/pool/pool_service.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/auth/caller_identity.h"
#include "services/common/status_convert.h"
#include "services/pool/convert.h"
#include "services/pool/map_reactor.h"
#include "services/pool/wait_reactor.h"
#include "services/pool/watch_reactor.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Time WaitDeadline(int64_t max_wait_ms) {
  return max_wait_ms > 0 ? absl::Now() + absl::Milliseconds(max_wait_ms) : absl::InfiniteFuture();
}

absl::Status CheckMaxWait(int64_t max_wait_ms) {
  if (max_wait_ms < 0) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("max_wait_ms: ", max_wait_ms, " is negative"));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* PoolServiceImpl::CreatePool(grpc::CallbackServerContext* context,
                                                      const v1::CreatePoolRequest* request,
                                                      v1::CreatePoolResponse* response) {
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return FinishWith(context, spec.status());
  auto result = table_.CreatePool(
      request->name(), *std::move(spec), request->request_id(),
      caller_identity_ ? caller_identity_(*context) : auth::CallerIdentity(*context, nullptr));
  if (!result.ok()) return FinishWith(context, result.status());
  ToProto(result->pool, response->mutable_pool());
  response->set_created(result->created);
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::GetPool(grpc::CallbackServerContext* context,
                                                   const v1::GetPoolRequest* request,
                                                   v1::GetPoolResponse* response) {
  auto view = table_.GetPool(request->name(), request->include_workers());
  if (!view.ok()) return FinishWith(context, view.status());
  ToProto(*view, response->mutable_pool());
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::ListPools(grpc::CallbackServerContext* context,
                                                     const v1::ListPoolsRequest* request,
                                                     v1::ListPoolsResponse* response) {
  auto states = PoolStatesFromProto(request->states());
  if (!states.ok()) return FinishWith(context, states.status());
  auto page = table_.ListPools(*states, request->label_selector(), request->name_prefix(),
                               request->page_size(), request->page_token());
  if (!page.ok()) return FinishWith(context, page.status());
  for (const auto& pool : page->pools) ToProto(pool, response->add_pools());
  response->set_next_page_token(page->next_page_token);
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::ResizePool(grpc::CallbackServerContext* context,
                                                      const v1::ResizePoolRequest* request,
                                                      v1::ResizePoolResponse* response) {
  auto view = table_.ResizePool(request->name(), request->size());
  if (!view.ok()) return FinishWith(context, view.status());
  ToProto(*view, response->mutable_pool());
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::ClosePool(grpc::CallbackServerContext* context,
                                                     const v1::ClosePoolRequest* request,
                                                     v1::ClosePoolResponse* response) {
  auto view = table_.ClosePool(request->name());
  if (!view.ok()) return FinishWith(context, view.status());
  ToProto(*view, response->mutable_pool());
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::JoinPool(grpc::CallbackServerContext* context,
                                                    const v1::JoinPoolRequest* request,
                                                    v1::JoinPoolResponse* response) {
  if (absl::Status s = CheckMaxWait(request->max_wait_ms()); !s.ok()) {
    return FinishWith(context, s);
  }
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(
      table_.JoinPool(request->name(), WaitDeadline(request->max_wait_ms()),
                      [reactor, response](absl::StatusOr<pool::PoolView> view, bool joined) {
                        if (!view.ok()) return reactor->Complete(ToGrpcStatus(view.status()));
                        response->set_joined(joined);
                        ToProto(*view, response->mutable_pool());
                        reactor->Complete(grpc::Status::OK);
                      }));
  return reactor;
}

grpc::ServerUnaryReactor* PoolServiceImpl::TerminatePool(grpc::CallbackServerContext* context,
                                                         const v1::TerminatePoolRequest* request,
                                                         v1::TerminatePoolResponse* response) {
  std::optional<int64_t> grace;
  if (request->has_grace_ms()) grace = request->grace_ms();
  auto view = table_.TerminatePool(request->name(), grace);
  if (!view.ok()) return FinishWith(context, view.status());
  if (!request->wait() || pool::IsFinal(view->state)) {
    ToProto(*view, response->mutable_pool());
    return FinishWith(context, absl::OkStatus());
  }
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(table_.JoinPool(request->name(), absl::InfiniteFuture(),
                                     [reactor, response](absl::StatusOr<pool::PoolView> v, bool) {
                                       if (!v.ok())
                                         return reactor->Complete(ToGrpcStatus(v.status()));
                                       ToProto(*v, response->mutable_pool());
                                       reactor->Complete(grpc::Status::OK);
                                     }));
  return reactor;
}

grpc::ServerUnaryReactor* PoolServiceImpl::DeletePool(grpc::CallbackServerContext* context,
                                                      const v1::DeletePoolRequest* request,
                                                      v1::DeletePoolResponse* response) {
  absl::Status status = table_.DeletePool(request->name(), request->force());
  if (absl::IsNotFound(status) && !request->request_id().empty()) {
    // A retry after success with the same request_id (common.proto): OK. The engine forgets a
    // deleted pool, so any not-found with a request_id is treated as that retry.
    status = absl::OkStatus();
  }
  return FinishWith(context, status);
}

grpc::ServerUnaryReactor* PoolServiceImpl::SubmitTask(grpc::CallbackServerContext* context,
                                                      const v1::SubmitTaskRequest* request,
                                                      v1::SubmitTaskResponse* response) {
  if (absl::Status s = CheckMaxWait(request->max_wait_ms()); !s.ok()) {
    return FinishWith(context, s);
  }
  if (!request->has_task()) {
    return FinishWith(context, InvalidArgument("INVALID_ARGUMENT", "task: required"));
  }
  auto spec = FromProto("task", request->task());
  if (!spec.ok()) return FinishWith(context, spec.status());
  pool::PoolTable::SubmitOptions options;
  options.request_id = request->request_id();
  options.session_id = request->session_id();
  options.wait = request->wait();
  options.deadline = WaitDeadline(request->max_wait_ms());
  std::vector<pool::TaskSpec> specs;
  specs.push_back(*std::move(spec));
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(
      table_.Submit(request->pool(), std::move(specs), std::move(options),
                    [reactor, response](absl::StatusOr<pool::PoolTable::SubmitResult> result) {
                      if (!result.ok()) return reactor->Complete(ToGrpcStatus(result.status()));
                      response->set_submitted(result->submitted);
                      if (result->submitted && !result->tasks.empty()) {
                        ToProto(result->tasks[0], response->mutable_task());
                      }
                      reactor->Complete(grpc::Status::OK);
                    }));
  return reactor;
}

grpc::ServerUnaryReactor* PoolServiceImpl::SubmitTasks(grpc::CallbackServerContext* context,
                                                       const v1::SubmitTasksRequest* request,
                                                       v1::SubmitTasksResponse* response) {
  if (absl::Status s = CheckMaxWait(request->max_wait_ms()); !s.ok()) {
    return FinishWith(context, s);
  }
  if (request->tasks_size() == 0 || request->tasks_size() > 1000) {
    return FinishWith(
        context, InvalidArgument("INVALID_ARGUMENT", absl::StrCat("tasks: ", request->tasks_size(),
                                                                  " tasks, expected 1..1000")));
  }
  std::vector<pool::TaskSpec> specs;
  for (int i = 0; i < request->tasks_size(); ++i) {
    auto spec = FromProto(absl::StrCat("tasks[", i, "]"), request->tasks(i));
    if (!spec.ok()) return FinishWith(context, spec.status());
    specs.push_back(*std::move(spec));
  }
  pool::PoolTable::SubmitOptions options;
  options.request_id = request->request_id();
  options.session_id = request->session_id();
  options.wait = request->wait();
  options.deadline = WaitDeadline(request->max_wait_ms());
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(
      table_.Submit(request->pool(), std::move(specs), std::move(options),
                    [reactor, response](absl::StatusOr<pool::PoolTable::SubmitResult> result) {
                      if (!result.ok()) return reactor->Complete(ToGrpcStatus(result.status()));
                      response->set_submitted(result->submitted);
                      for (const auto& task : result->tasks) response->add_task_ids(task.id);
                      reactor->Complete(grpc::Status::OK);
                    }));
  return reactor;
}

grpc::ServerBidiReactor<v1::MapRequest, v1::MapResponse>* PoolServiceImpl::Map(
    grpc::CallbackServerContext* context) {
  return StartMapReactor(context, table_, streams_, max_message_bytes_);
}

grpc::ServerUnaryReactor* PoolServiceImpl::GetTask(grpc::CallbackServerContext* context,
                                                   const v1::GetTaskRequest* request,
                                                   v1::GetTaskResponse* response) {
  auto view = table_.GetTask(request->task_id(), request->include_input());
  if (!view.ok()) return FinishWith(context, view.status());
  ToProto(*view, response->mutable_task());
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PoolServiceImpl::WaitTask(grpc::CallbackServerContext* context,
                                                    const v1::WaitTaskRequest* request,
                                                    v1::WaitTaskResponse* response) {
  if (absl::Status s = CheckMaxWait(request->max_wait_ms()); !s.ok()) {
    return FinishWith(context, s);
  }
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(
      table_.WaitTask(request->task_id(), WaitDeadline(request->max_wait_ms()),
                      [reactor, response](absl::StatusOr<pool::TaskView> view, bool done) {
                        if (!view.ok()) return reactor->Complete(ToGrpcStatus(view.status()));
                        response->set_done(done);
                        ToProto(*view, response->mutable_task());
                        reactor->Complete(grpc::Status::OK);
                      }));
  return reactor;
}

grpc::ServerUnaryReactor* PoolServiceImpl::CancelTask(grpc::CallbackServerContext* context,
                                                      const v1::CancelTaskRequest* request,
                                                      v1::CancelTaskResponse* response) {
  std::optional<int64_t> grace;
  if (request->has_grace_ms()) grace = request->grace_ms();
  auto view = table_.CancelTask(request->task_id(), grace);
  if (!view.ok()) return FinishWith(context, view.status());
  if (!request->wait() || pool::IsFinal(view->state)) {
    ToProto(*view, response->mutable_task());
    return FinishWith(context, absl::OkStatus());
  }
  auto* reactor = new PoolWaitReactor(context, table_);
  reactor->SetWaiter(table_.WaitTask(request->task_id(), absl::InfiniteFuture(),
                                     [reactor, response](absl::StatusOr<pool::TaskView> v, bool) {
                                       if (!v.ok())
                                         return reactor->Complete(ToGrpcStatus(v.status()));
                                       ToProto(*v, response->mutable_task());
                                       reactor->Complete(grpc::Status::OK);
                                     }));
  return reactor;
}

grpc::ServerUnaryReactor* PoolServiceImpl::ListTasks(grpc::CallbackServerContext* context,
                                                     const v1::ListTasksRequest* request,
                                                     v1::ListTasksResponse* response) {
  auto filter = TaskFilterFromProto(*request);
  if (!filter.ok()) return FinishWith(context, filter.status());
  auto page = table_.ListTasks(request->pool(), *filter, request->page_size(),
                               request->page_token(), request->include_output());
  if (!page.ok()) return FinishWith(context, page.status());
  // Stay under the max message size: stop early and hand out a token.
  const int64_t budget = max_message_bytes_ - (64 << 10);
  int64_t used = 0;
  for (size_t i = 0; i < page->tasks.size(); ++i) {
    v1::Task task;
    ToProto(page->tasks[i], &task);
    used += static_cast<int64_t>(task.ByteSizeLong());
    if (used > budget && i > 0) {
      response->set_next_page_token(
          page->tasks[i - 1].id.substr(page->tasks[i - 1].id.find('-') + 1));
      return FinishWith(context, absl::OkStatus());
    }
    *response->add_tasks() = std::move(task);
  }
  response->set_next_page_token(page->next_page_token);
  return FinishWith(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::WatchTasksResponse>* PoolServiceImpl::WatchTasks(
    grpc::CallbackServerContext* context, const v1::WatchTasksRequest* request) {
  return StartWatchReactor(context, request, table_, streams_);
}

}  // namespace spindle::services
