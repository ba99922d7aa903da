// SchedulerService: the coroutine executor's remote face (protos/spindle/v1/scheduler.proto).
//  - Sleep: a wait that costs the server no thread (a coroutine suspended on the reactor's timer).
//  - FetchUrls: concurrent HTTP GETs driven by the reactor (lib/spindle/http), streamed back.
//  - Triggers: CreateTrigger ... WatchTriggerRuns over lib/spindle/trigger's TriggerTable; runs
//    spawn processes through the process engine (SchedulerActionRunner).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
#define SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_

#include <memory>

#include "services/auth/caller_identity.h"
#include "services/scheduler/action_runner.h"
#include "services/scheduler/fetch_reactor.h"
#include "services/scheduler/scheduler_metrics.h"
#include "services/scheduler/watch_runs_reactor.h"
#include "services/server/capability.h"
#include "spindle/coro/executor.h"
#include "spindle/trigger/trigger_table.h"
#include "spindle/v1/scheduler.grpc.pb.h"

namespace spindle::services {

class SchedulerServiceImpl final : public v1::SchedulerService::CallbackService {
 public:
  // `table` and `runner` may be null (then the trigger RPCs answer UNIMPLEMENTED).
  // `caller_identity` names who a call comes from (caller_identity.h): the spawns of a trigger's
  // runs count against its creator in the spawn policy.
  SchedulerServiceImpl(coro::Executor& executor, FetchLimiter* limiter, SchedulerMetrics* metrics,
                       trigger::TriggerTable* table, SchedulerActionRunner* runner,
                       WatchRegistry* watches, auth::CallerIdentityFn caller_identity = {})
      : executor_(executor),
        limiter_(limiter),
        metrics_(metrics),
        table_(table),
        runner_(runner),
        watches_(watches),
        caller_identity_(std::move(caller_identity)) {}
  explicit SchedulerServiceImpl(coro::Executor& executor)
      : SchedulerServiceImpl(executor, nullptr, nullptr, nullptr, nullptr, nullptr) {}

  grpc::ServerUnaryReactor* Sleep(grpc::CallbackServerContext* context,
                                  const v1::SleepRequest* request,
                                  v1::SleepResponse* response) override;
  grpc::ServerWriteReactor<v1::FetchUrlsResponse>* FetchUrls(
      grpc::CallbackServerContext* context, const v1::FetchUrlsRequest* request) override;
  grpc::ServerUnaryReactor* CreateTrigger(grpc::CallbackServerContext* context,
                                          const v1::CreateTriggerRequest* request,
                                          v1::CreateTriggerResponse* response) override;
  grpc::ServerUnaryReactor* GetTrigger(grpc::CallbackServerContext* context,
                                       const v1::GetTriggerRequest* request,
                                       v1::GetTriggerResponse* response) override;
  grpc::ServerUnaryReactor* ListTriggers(grpc::CallbackServerContext* context,
                                         const v1::ListTriggersRequest* request,
                                         v1::ListTriggersResponse* response) override;
  grpc::ServerUnaryReactor* PauseTrigger(grpc::CallbackServerContext* context,
                                         const v1::PauseTriggerRequest* request,
                                         v1::PauseTriggerResponse* response) override;
  grpc::ServerUnaryReactor* ResumeTrigger(grpc::CallbackServerContext* context,
                                          const v1::ResumeTriggerRequest* request,
                                          v1::ResumeTriggerResponse* response) override;
  grpc::ServerUnaryReactor* FireTrigger(grpc::CallbackServerContext* context,
                                        const v1::FireTriggerRequest* request,
                                        v1::FireTriggerResponse* response) override;
  grpc::ServerUnaryReactor* DeleteTrigger(grpc::CallbackServerContext* context,
                                          const v1::DeleteTriggerRequest* request,
                                          v1::DeleteTriggerResponse* response) override;
  grpc::ServerUnaryReactor* ListTriggerRuns(grpc::CallbackServerContext* context,
                                            const v1::ListTriggerRunsRequest* request,
                                            v1::ListTriggerRunsResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse>* WatchTriggerRuns(
      grpc::CallbackServerContext* context, const v1::WatchTriggerRunsRequest* request) override;

 private:
  coro::Executor& executor_;
  FetchLimiter* const limiter_;
  SchedulerMetrics* const metrics_;
  trigger::TriggerTable* const table_;
  SchedulerActionRunner* const runner_;
  WatchRegistry* const watches_;
  const auth::CallerIdentityFn caller_identity_;
};

// The scheduler capability: SchedulerService, its trigger table and metrics. Spawn actions use
// `context.processes` (read at each call; set by the processes capability).
std::unique_ptr<Capability> MakeSchedulerCapability(CapabilityContext& context);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
