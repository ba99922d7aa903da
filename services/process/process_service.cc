#include "services/process/process_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/process/attach_reactor.h"
#include "services/process/convert.h"
#include "services/process/read_output_reactor.h"
#include "services/process/unary_call.h"
#include "services/process/watch_reactor.h"
#include "services/process/write_stdin_reactor.h"
#include "spindle/common/status.h"
#include "spindle/process/signals.h"

namespace spindle::services {
namespace {

using process::ProcessView;

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const absl::Status& s) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

absl::Status RequireId(absl::string_view id) {
  if (id.empty()) return InvalidArgument("INVALID_ARGUMENT", "process_id: must not be empty");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<absl::Duration>> GraceFromProto(bool has, int64_t grace_ms) {
  if (!has) return std::optional<absl::Duration>();
  if (grace_ms < 0 || grace_ms > 3600000) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("grace_ms: ", grace_ms, " must be 0..3600000"));
  }
  return std::optional<absl::Duration>(absl::Milliseconds(grace_ms));
}

// Fills a RunResponse from a final process.
void FillRun(process::ProcessTable& table, const ProcessView& view, v1::RunResponse* response) {
  ToProto(view, response->mutable_process());
  for (auto [stream, out] :
       {std::pair{process::OutputStream::kStdout, response->mutable_stdout_data()},
        std::pair{process::OutputStream::kStderr, response->mutable_stderr_data()}}) {
    int64_t offset = 0;
    while (true) {
      auto chunk = table.ReadOutput(view.id, stream, offset, 1 << 22);
      if (!chunk.ok() || !chunk->has_value()) break;
      if ((*chunk)->is_gap()) {
        offset += (*chunk)->dropped_bytes;
        continue;
      }
      out->append((*chunk)->data);
      offset += static_cast<int64_t>((*chunk)->data.size());
    }
  }
}

}  // namespace

grpc::ServerUnaryReactor* ProcessServiceImpl::Spawn(grpc::CallbackServerContext* context,
                                                    const v1::SpawnRequest* request,
                                                    v1::SpawnResponse* response) {
  if (!request->has_spec()) {
    return Answer(context, InvalidArgument("INVALID_ARGUMENT", "spec: required"));
  }
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return Answer(context, spec.status());
  auto view = table_.Spawn(*std::move(spec), request->request_id(), IdentityOf(*context));
  if (view.ok()) ToProto(*view, response->mutable_process());
  return Answer(context, view.status());
}

grpc::ServerUnaryReactor* ProcessServiceImpl::Run(grpc::CallbackServerContext* context,
                                                  const v1::RunRequest* request,
                                                  v1::RunResponse* response) {
  if (!request->has_spec()) {
    return Answer(context, InvalidArgument("INVALID_ARGUMENT", "spec: required"));
  }
  auto spec = FromProto(request->spec());
  if (!spec.ok()) return Answer(context, spec.status());
  absl::Status valid = table_.ValidateAndDefault(*spec, /*for_run=*/true, max_run_output_bytes_);
  if (!valid.ok()) return Answer(context, valid);
  auto started = table_.Spawn(*std::move(spec), "", IdentityOf(*context));
  if (!started.ok()) return Answer(context, started.status());
  std::string id = started->id;
  auto* call = new UnaryCall(context);
  auto handle = call->handle();
  process::ProcessTable* table = &table_;
  // The caller leaving (cancel, deadline, disconnect) kills the whole tree.
  call->SetOnCancel([table, id]() {
    (void)table->Terminate(id, 0, std::nullopt, process::ExitReason::kCallerGone);
  });
  auto wait =
      table_.Wait(id, process::WaitCondition::kFinal, [handle, table, response](ProcessView view) {
        handle->Finish(grpc::Status::OK, [&]() { FillRun(*table, view, response); });
      });
  if (!wait.ok()) handle->Finish(ToGrpcStatus(wait.status()));
  return call;
}

grpc::ServerUnaryReactor* ProcessServiceImpl::GetProcess(grpc::CallbackServerContext* context,
                                                         const v1::GetProcessRequest* request,
                                                         v1::GetProcessResponse* response) {
  absl::Status id = RequireId(request->process_id());
  if (!id.ok()) return Answer(context, id);
  auto view = table_.Get(request->process_id());
  if (view.ok()) ToProto(*view, response->mutable_process());
  return Answer(context, view.status());
}

grpc::ServerUnaryReactor* ProcessServiceImpl::ListProcesses(grpc::CallbackServerContext* context,
                                                            const v1::ListProcessesRequest* request,
                                                            v1::ListProcessesResponse* response) {
  auto filter = FilterFromProto(request->states(), request->label_selector(),
                                request->name_prefix(), request->session_id());
  if (!filter.ok()) return Answer(context, filter.status());
  auto page = table_.List(*filter, request->page_size(), request->page_token());
  if (page.ok()) {
    for (const auto& view : page->processes) ToProto(view, response->add_processes());
    response->set_next_page_token(page->next_page_token);
  }
  return Answer(context, page.status());
}

grpc::ServerWriteReactor<v1::WatchProcessesResponse>* ProcessServiceImpl::WatchProcesses(
    grpc::CallbackServerContext* context, const v1::WatchProcessesRequest* request) {
  return StartWatch(context, *request, table_, streams_);
}

grpc::ServerUnaryReactor* ProcessServiceImpl::WaitProcess(grpc::CallbackServerContext* context,
                                                          const v1::WaitProcessRequest* request,
                                                          v1::WaitProcessResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  if (request->max_wait_ms() < 0) {
    return Answer(context, InvalidArgument("INVALID_ARGUMENT",
                                           absl::StrCat("max_wait_ms: ", request->max_wait_ms(),
                                                        " must be >= 0")));
  }
  if (request->until() < 0 || request->until() > 2) {
    return Answer(context,
                  InvalidArgument("INVALID_ARGUMENT",
                                  absl::StrCat("until: unknown enum value ", request->until())));
  }
  std::string id = request->process_id();
  auto* call = new UnaryCall(context);
  auto handle = call->handle();
  process::ProcessTable* table = &table_;
  TimerService* timers = &timers_;
  auto timer = std::make_shared<std::atomic<TimerService::TimerId>>(0);
  auto wait = table_.Wait(id, static_cast<process::WaitCondition>(request->until()),
                          [handle, response, timer, timers](ProcessView view) {
                            if (TimerService::TimerId t = timer->exchange(0); t != 0) {
                              timers->Cancel(t);
                            }
                            handle->Finish(grpc::Status::OK, [&]() {
                              response->set_reached(true);
                              ToProto(view, response->mutable_process());
                            });
                          });
  if (!wait.ok()) {
    handle->Finish(ToGrpcStatus(wait.status()));
    return call;
  }
  process::ProcessTable::WaitId wait_id = *wait;
  if (wait_id == 0) return call;  // Answered already.
  if (request->max_wait_ms() > 0) {
    timer->store(timers_.Schedule(timers_.Now() + absl::Milliseconds(request->max_wait_ms()),
                                  [handle, response, table, id, wait_id, timer]() {
                                    timer->store(0);
                                    if (!table->CancelWait(id, wait_id))
                                      return;  // Reached meanwhile.
                                    auto view = table->Get(id);
                                    handle->Finish(ToGrpcStatus(view.status()), [&]() {
                                      response->set_reached(false);
                                      ToProto(*view, response->mutable_process());
                                    });
                                  }));
  }
  // Cancelling or timing out a Wait leaves the process running: only the waiter goes.
  call->SetOnCancel([table, id, wait_id, timer, timers]() {
    table->CancelWait(id, wait_id);
    if (TimerService::TimerId t = timer->exchange(0); t != 0) timers->Cancel(t);
  });
  return call;
}

grpc::ServerUnaryReactor* ProcessServiceImpl::SignalProcess(grpc::CallbackServerContext* context,
                                                            const v1::SignalProcessRequest* request,
                                                            v1::SignalProcessResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  auto spec = SignalFromProto("signal", request->signal());
  if (!spec.ok()) return Answer(context, spec.status());
  auto number = process::ResolveSignal("signal", *spec);
  if (!number.ok()) return Answer(context, number.status());
  if (request->target() < 0 || request->target() > 3) {
    return Answer(context,
                  InvalidArgument("INVALID_ARGUMENT",
                                  absl::StrCat("target: unknown enum value ", request->target())));
  }
  auto delivered = table_.Signal(request->process_id(), *number,
                                 static_cast<process::SignalTarget>(request->target()));
  if (!delivered.ok()) return Answer(context, delivered.status());
  response->set_delivered(*delivered);
  auto view = table_.Get(request->process_id());
  if (view.ok()) ToProto(*view, response->mutable_process());
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ProcessServiceImpl::TerminateProcess(
    grpc::CallbackServerContext* context, const v1::TerminateProcessRequest* request,
    v1::TerminateProcessResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  auto grace = GraceFromProto(request->has_grace_ms(), request->grace_ms());
  if (!grace.ok()) return Answer(context, grace.status());
  int signal = 0;
  if (request->has_signal()) {
    auto spec = SignalFromProto("signal", request->signal());
    if (!spec.ok()) return Answer(context, spec.status());
    auto number = process::ResolveSignal("signal", *spec);
    if (!number.ok()) return Answer(context, number.status());
    signal = *number;
  }
  if (!request->wait()) {
    auto view =
        table_.Terminate(request->process_id(), signal, *grace, process::ExitReason::kTerminated);
    if (view.ok()) ToProto(*view, response->mutable_process());
    return Answer(context, view.status());
  }
  auto* call = new UnaryCall(context);
  auto handle = call->handle();
  auto view = table_.Terminate(
      request->process_id(), signal, *grace, process::ExitReason::kTerminated,
      [handle, response](ProcessView final_view) {
        handle->Finish(grpc::Status::OK,
                       [&]() { ToProto(final_view, response->mutable_process()); });
      });
  if (!view.ok()) handle->Finish(ToGrpcStatus(view.status()));
  return call;
}

grpc::ServerUnaryReactor* ProcessServiceImpl::RestartProcess(
    grpc::CallbackServerContext* context, const v1::RestartProcessRequest* request,
    v1::RestartProcessResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  auto grace = GraceFromProto(request->has_grace_ms(), request->grace_ms());
  if (!grace.ok()) return Answer(context, grace.status());
  auto* call = new UnaryCall(context);
  auto handle = call->handle();
  table_.Restart(
      request->process_id(), *grace, [handle, response](absl::StatusOr<ProcessView> view) {
        if (!view.ok()) {
          handle->Finish(ToGrpcStatus(view.status()));
          return;
        }
        handle->Finish(grpc::Status::OK, [&]() { ToProto(*view, response->mutable_process()); });
      });
  return call;
}

grpc::ServerUnaryReactor* ProcessServiceImpl::DeleteProcess(grpc::CallbackServerContext* context,
                                                            const v1::DeleteProcessRequest* request,
                                                            v1::DeleteProcessResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  auto* call = new UnaryCall(context);
  auto handle = call->handle();
  table_.Delete(request->process_id(), request->force(),
                [handle](absl::Status s) { handle->Finish(ToGrpcStatus(s)); });
  return call;
}

grpc::ServerWriteReactor<v1::ReadOutputResponse>* ProcessServiceImpl::ReadOutput(
    grpc::CallbackServerContext* context, const v1::ReadOutputRequest* request) {
  return StartReadOutput(context, *request, table_, streams_);
}

grpc::ServerReadReactor<v1::WriteStdinRequest>* ProcessServiceImpl::WriteStdin(
    grpc::CallbackServerContext* context, v1::WriteStdinResponse* response) {
  return StartWriteStdin(context, response, table_);
}

grpc::ServerUnaryReactor* ProcessServiceImpl::CloseStdin(grpc::CallbackServerContext* context,
                                                         const v1::CloseStdinRequest* request,
                                                         v1::CloseStdinResponse* response) {
  absl::Status id_ok = RequireId(request->process_id());
  if (!id_ok.ok()) return Answer(context, id_ok);
  auto view = table_.CloseStdin(request->process_id(), 0);
  if (view.ok()) ToProto(*view, response->mutable_process());
  return Answer(context, view.status());
}

grpc::ServerBidiReactor<v1::AttachRequest, v1::AttachResponse>* ProcessServiceImpl::Attach(
    grpc::CallbackServerContext* context) {
  return StartAttach(context, table_, streams_, IdentityOf(*context));
}

}  // namespace spindle::services
