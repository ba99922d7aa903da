#include "services/scheduler/scheduler_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/coro_call.h"
#include "services/common/status_convert.h"
#include "services/metrics/function_collector.h"
#include "services/scheduler/trigger_convert.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr int64_t kMaxSleepMs = 86'400'000;
// FetchUrls calls in progress at once on one server (TOO_MANY_FETCHES beyond).
constexpr int kMaxFetchCalls = 64;

coro::Task<absl::Status> SleepCall(coro::Executor* executor, int64_t duration_ms,
                                   v1::SleepResponse* response, coro::CancellationToken token) {
  const absl::Time start = absl::Now();
  SPINDLE_CO_RETURN_IF_ERROR(co_await executor->SleepFor(absl::Milliseconds(duration_ms), token));
  const absl::Time woke = absl::Now();
  response->set_slept_ms(absl::ToInt64Milliseconds(woke - start));
  const int64_t micros = absl::ToUnixMicros(woke);
  response->mutable_woke_at()->set_seconds(micros / 1'000'000);
  response->mutable_woke_at()->set_nanos(static_cast<int32_t>(micros % 1'000'000) * 1000);
  co_return absl::OkStatus();
}

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status TriggersUnavailable() {
  return Error(absl::StatusCode::kUnimplemented, "NOT_IMPLEMENTED",
               "triggers are not available on this server");
}

// Reads context.sessions at each call, so capability order does not matter.
class LateSessionHooks final : public SessionHooks {
 public:
  explicit LateSessionHooks(SessionHooks* const& target) : target_(target) {}
  absl::Status CheckAlive(absl::string_view session_id) const override {
    if (target_ == nullptr) return Unavailable();
    return target_->CheckAlive(session_id);
  }
  absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                               absl::AnyInvocable<void() &&> on_end) override {
    if (target_ == nullptr) return Unavailable();
    return target_->OnEnd(session_id, std::move(on_end));
  }
  void RemoveHook(absl::string_view session_id, HookId hook) override {
    if (target_ != nullptr) target_->RemoveHook(session_id, hook);
  }

 private:
  static absl::Status Unavailable() {
    return FailedPrecondition("SESSIONS_UNAVAILABLE",
                              "spec.session_id: this server has no session service");
  }
  SessionHooks* const& target_;
};

class MetricsObserver final : public trigger::TriggerObserver {
 public:
  explicit MetricsObserver(SchedulerMetrics& metrics) : metrics_(metrics) {}
  void OnRunFinal(trigger::RunState state) override { metrics_.OnRunFinal(state); }

 private:
  SchedulerMetrics& metrics_;
};

class SchedulerCapability final : public Capability {
 public:
  explicit SchedulerCapability(CapabilityContext& context)
      : metrics_(context.registry),
        observer_(metrics_),
        sessions_(context.sessions),
        runner_(context.processes, context.pools),
        table_(trigger::TriggerTableOptions{}, context.timers, runner_, &sessions_, &observer_),
        limiter_(kMaxFetchCalls),
        service_(context.executor, &limiter_, &metrics_, &table_, &runner_, &watches_,
                 context.caller_identity) {}

  ~SchedulerCapability() override { table_.Shutdown(); }

  std::vector<ServiceEntry> Services() override {
    return {{v1::SchedulerService::service_full_name(), &service_}};
  }

  void FillStats(v1::GetStatsResponse& stats) override {
    const trigger::TriggerTableStats table = table_.Stats();
    stats.mutable_tables()->set_triggers(table.active + table.paused + table.completed);
  }

  std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() override {
    trigger::TriggerTable* table = &table_;
    return {std::make_shared<FunctionCollector>(
        [table]() { return SchedulerMetrics::CollectTriggers(table->Stats()); })};
  }

  void BeginShutdown() override {
    watches_.Shutdown();
    table_.Shutdown();
  }

 private:
  SchedulerMetrics metrics_;
  MetricsObserver observer_;
  LateSessionHooks sessions_;
  SchedulerActionRunner runner_;
  trigger::TriggerTable table_;
  FetchLimiter limiter_;
  WatchRegistry watches_;
  SchedulerServiceImpl service_;
};

}  // namespace

grpc::ServerUnaryReactor* SchedulerServiceImpl::Sleep(grpc::CallbackServerContext* context,
                                                      const v1::SleepRequest* request,
                                                      v1::SleepResponse* response) {
  if (request->duration_ms() < 0 || request->duration_ms() > kMaxSleepMs) {
    return FinishWith(context, InvalidArgument("INVALID_DURATION",
                                               absl::StrCat("duration_ms ", request->duration_ms(),
                                                            " is out of range 0..", kMaxSleepMs)));
  }
  return StartUnary(context, executor_, [&](coro::CancellationToken token) {
    return SleepCall(&executor_, request->duration_ms(), response, std::move(token));
  });
}

grpc::ServerWriteReactor<v1::FetchUrlsResponse>* SchedulerServiceImpl::FetchUrls(
    grpc::CallbackServerContext* context, const v1::FetchUrlsRequest* request) {
  if (limiter_ == nullptr || metrics_ == nullptr) {
    class Unimplemented final : public grpc::ServerWriteReactor<v1::FetchUrlsResponse> {
     public:
      Unimplemented() { Finish(ToGrpcStatus(TriggersUnavailable())); }
      void OnDone() override { delete this; }
    };
    return new Unimplemented();
  }
  return NewFetchReactor(context, *request, executor_, *limiter_, *metrics_);
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::CreateTrigger(
    grpc::CallbackServerContext* context, const v1::CreateTriggerRequest* request,
    v1::CreateTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::Status status = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    if (!request->has_spec()) {
      return InvalidArgument("INVALID_ARGUMENT", "spec is required");
    }
    SPINDLE_ASSIGN_OR_RETURN(trigger::TriggerSpec spec, SpecFromProto(request->spec()));
    spec.action.identity =
        caller_identity_ ? caller_identity_(*context) : auth::CallerIdentity(*context, nullptr);
    SPINDLE_RETURN_IF_ERROR(trigger::TriggerTable::ValidateAndDefault(spec));
    SPINDLE_RETURN_IF_ERROR(runner_->Check(spec.action));
    SPINDLE_ASSIGN_OR_RETURN(
        trigger::TriggerTable::Created created,
        table_->Create(request->name(), std::move(spec), request->request_id()));
    ToProto(created.trigger, response->mutable_trigger());
    response->set_created(created.created);
    return absl::OkStatus();
  }();
  return FinishWith(context, status);
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::GetTrigger(grpc::CallbackServerContext* context,
                                                           const v1::GetTriggerRequest* request,
                                                           v1::GetTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::StatusOr<trigger::TriggerView> view = table_->Get(request->name());
  if (view.ok()) ToProto(*view, response->mutable_trigger());
  return FinishWith(context, view.status());
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::ListTriggers(grpc::CallbackServerContext* context,
                                                             const v1::ListTriggersRequest* request,
                                                             v1::ListTriggersResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::Status status = [&]() -> absl::Status {
    trigger::TriggerFilter filter;
    SPINDLE_ASSIGN_OR_RETURN(filter.states, StatesFromProto(request->states()));
    filter.label_selector = request->label_selector();
    filter.name_prefix = request->name_prefix();
    SPINDLE_ASSIGN_OR_RETURN(trigger::TriggerTable::Page page,
                             table_->List(filter, request->page_size(), request->page_token()));
    for (const trigger::TriggerView& view : page.triggers) {
      ToProto(view, response->add_triggers());
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  }();
  return FinishWith(context, status);
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::PauseTrigger(grpc::CallbackServerContext* context,
                                                             const v1::PauseTriggerRequest* request,
                                                             v1::PauseTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::StatusOr<trigger::TriggerView> view = table_->Pause(request->name());
  if (view.ok()) ToProto(*view, response->mutable_trigger());
  return FinishWith(context, view.status());
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::ResumeTrigger(
    grpc::CallbackServerContext* context, const v1::ResumeTriggerRequest* request,
    v1::ResumeTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::StatusOr<trigger::TriggerView> view = table_->Resume(request->name());
  if (view.ok()) ToProto(*view, response->mutable_trigger());
  return FinishWith(context, view.status());
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::FireTrigger(grpc::CallbackServerContext* context,
                                                            const v1::FireTriggerRequest* request,
                                                            v1::FireTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::StatusOr<trigger::RunView> run = table_->Fire(request->name(), request->request_id());
  if (run.ok()) ToProto(*run, response->mutable_run());
  return FinishWith(context, run.status());
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::DeleteTrigger(
    grpc::CallbackServerContext* context, const v1::DeleteTriggerRequest* request,
    v1::DeleteTriggerResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  return FinishWith(
      context, table_->Delete(request->name(), request->cancel_running(), request->request_id()));
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::ListTriggerRuns(
    grpc::CallbackServerContext* context, const v1::ListTriggerRunsRequest* request,
    v1::ListTriggerRunsResponse* response) {
  if (table_ == nullptr) return FinishWith(context, TriggersUnavailable());
  absl::Status status = [&]() -> absl::Status {
    SPINDLE_ASSIGN_OR_RETURN(std::vector<trigger::RunState> states,
                             RunStatesFromProto(request->states()));
    SPINDLE_ASSIGN_OR_RETURN(
        trigger::TriggerTable::RunPage page,
        table_->ListRuns(request->name(), states, request->page_size(), request->page_token()));
    for (const trigger::RunView& run : page.runs) {
      ToProto(run, response->add_runs());
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  }();
  return FinishWith(context, status);
}

grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse>* SchedulerServiceImpl::WatchTriggerRuns(
    grpc::CallbackServerContext* context, const v1::WatchTriggerRunsRequest* request) {
  if (table_ == nullptr || watches_ == nullptr) {
    class Unimplemented final : public grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse> {
     public:
      Unimplemented() { Finish(ToGrpcStatus(TriggersUnavailable())); }
      void OnDone() override { delete this; }
    };
    return new Unimplemented();
  }
  return NewWatchRunsReactor(*request, *table_, *watches_);
}

std::unique_ptr<Capability> MakeSchedulerCapability(CapabilityContext& context) {
  return std::make_unique<SchedulerCapability>(context);
}

}  // namespace spindle::services
