#include "services/scheduler/action_runner.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "spindle/common/labels.h"
#include "spindle/common/status.h"
#include "spindle/v1/process.pb.h"

#ifdef SPINDLE_SCHEDULER_WITH_PROCESS_SERVICE
#include "services/process/convert.h"
#endif
#ifdef SPINDLE_SCHEDULER_WITH_POOL_SERVICE
#include "services/pool/convert.h"
#include "spindle/v1/pool.pb.h"
#include "spindle/v1/scheduler.pb.h"
#endif

namespace spindle::services {
namespace {

constexpr char kTriggerLabel[] = "spindle.dev/trigger";

absl::Status PoolsUnavailable() {
  return FailedPrecondition("POOLS_UNAVAILABLE",
                            "spec.action.pool_task: this server has no pool service");
}

absl::Status ProcessesUnavailable() {
  return FailedPrecondition("PROCESSES_UNAVAILABLE",
                            "spec.action.spawn: this server has no process service");
}

absl::StatusOr<process::ProcessSpec> DecodeSpawn(const trigger::Action& action) {
  v1::ProcessSpec proto;
  if (!proto.ParseFromString(action.encoded)) {
    return absl::InternalError("a stored spawn action does not parse");
  }
#ifdef SPINDLE_SCHEDULER_WITH_PROCESS_SERVICE
  absl::StatusOr<process::ProcessSpec> spec = FromProto(proto);
  if (!spec.ok()) {
    return Annotate(spec.status(), "spec.action.spawn");
  }
  return spec;
#else
  return ProcessesUnavailable();
#endif
}

// How a final process view ends the run.
trigger::RunOutcome OutcomeOf(const process::ProcessView& view) {
  trigger::RunOutcome outcome;
  v1::ProcessExit exit;
  if (!view.status.exit.has_value()) {
    outcome.state = trigger::RunState::kFailed;
    outcome.error = "the process ended without an exit status";
    return outcome;
  }
  const process::ProcessExit& e = *view.status.exit;
  exit.set_reason(static_cast<v1::ProcessExitReason>(e.reason));
  exit.set_exit_code(e.exit_code);
  exit.set_signal_number(e.signal_number);
  exit.set_core_dumped(e.core_dumped);
  exit.set_message(e.message);
  outcome.detail = exit.SerializeAsString();
  const std::vector<int32_t>& success = view.spec.restart.success_exit_codes;
  switch (e.reason) {
    case process::ExitReason::kExited:
      if (e.exit_code == 0 ||
          std::find(success.begin(), success.end(), e.exit_code) != success.end()) {
        outcome.state = trigger::RunState::kSucceeded;
      } else {
        outcome.state = trigger::RunState::kFailed;
        outcome.error = absl::StrCat("exit code ", e.exit_code);
      }
      break;
    case process::ExitReason::kTimedOut:
      outcome.state = trigger::RunState::kTimedOut;
      outcome.error = "the process hit its timeout";
      break;
    case process::ExitReason::kTerminated:
    case process::ExitReason::kCallerGone:
    case process::ExitReason::kSessionEnded:
      outcome.state = trigger::RunState::kCancelled;
      outcome.error = e.message.empty() ? "the process was terminated" : e.message;
      break;
    case process::ExitReason::kSignaled:
      outcome.state = trigger::RunState::kFailed;
      outcome.error = absl::StrCat("killed by signal ", e.signal_number);
      break;
    default:
      outcome.state = trigger::RunState::kFailed;
      outcome.error = e.message.empty() ? "the process failed to start" : e.message;
      break;
  }
  return outcome;
}

#ifdef SPINDLE_SCHEDULER_WITH_POOL_SERVICE
struct DecodedPoolTask {
  std::string pool;
  pool::TaskSpec task;
};

absl::StatusOr<DecodedPoolTask> DecodePoolTask(const trigger::Action& action) {
  v1::TriggerPoolTask proto;
  if (!proto.ParseFromString(action.encoded)) {
    return absl::InternalError("a stored pool_task action does not parse");
  }
  DecodedPoolTask decoded;
  decoded.pool = proto.pool();
  SPINDLE_ASSIGN_OR_RETURN(decoded.task, FromProto("spec.action.pool_task.task", proto.task()));
  return decoded;
}

// How a final task ends the run; the detail is the TaskResult without its bulk bytes.
trigger::RunOutcome OutcomeOf(const pool::TaskView& view) {
  trigger::RunOutcome outcome;
  switch (view.state) {
    case pool::TaskState::kSucceeded:
      outcome.state = trigger::RunState::kSucceeded;
      break;
    case pool::TaskState::kCancelled:
      outcome.state = trigger::RunState::kCancelled;
      break;
    case pool::TaskState::kTimedOut:
      outcome.state = trigger::RunState::kTimedOut;
      break;
    default:
      outcome.state = trigger::RunState::kFailed;
      break;
  }
  if (view.result.has_value()) {
    v1::TaskResult result;
    ToProto(*view.result, &result);
    result.clear_stdout_data();
    result.clear_stderr_data();
    result.clear_output();
    outcome.detail = result.SerializeAsString();
    if (outcome.state != trigger::RunState::kSucceeded) {
      outcome.error = view.result->error.empty() ? view.last_error : view.result->error;
    }
  } else if (outcome.state != trigger::RunState::kSucceeded) {
    outcome.error = view.last_error;
  }
  if (outcome.state != trigger::RunState::kSucceeded && outcome.error.empty()) {
    outcome.error = absl::StrCat("task '", view.id, "' did not succeed");
  }
  return outcome;
}
#endif  // SPINDLE_SCHEDULER_WITH_POOL_SERVICE

}  // namespace

absl::Status SchedulerActionRunner::Check(const trigger::Action& action) const {
  if (action.kind == trigger::Action::Kind::kPoolTask) {
#ifdef SPINDLE_SCHEDULER_WITH_POOL_SERVICE
    pool::PoolTable* pools = pools_;
    if (pools == nullptr) {
      return PoolsUnavailable();
    }
    SPINDLE_ASSIGN_OR_RETURN(DecodedPoolTask decoded, DecodePoolTask(action));
    SPINDLE_RETURN_IF_ERROR(
        ValidateLabels("spec.action.pool_task.task.labels", decoded.task.labels));
    absl::Status valid =
        pools->ValidateTask(decoded.pool, "spec.action.pool_task.task", decoded.task);
    if (absl::IsNotFound(valid)) {
      return Annotate(valid, "spec.action.pool_task.pool");
    }
    return valid;
#else
    return PoolsUnavailable();
#endif
  }
  process::ProcessTable* table = processes_;
  if (table == nullptr) {
    return ProcessesUnavailable();
  }
  SPINDLE_ASSIGN_OR_RETURN(process::ProcessSpec spec, DecodeSpawn(action));
  absl::Status valid = table->ValidateAndDefault(spec, /*for_run=*/false, 0);
  if (!valid.ok()) {
    return Annotate(valid, "spec.action.spawn");
  }
  return absl::OkStatus();
}

absl::StatusOr<trigger::ActionRunner::Started> SchedulerActionRunner::Start(
    const std::string& trigger, int64_t number, const trigger::Action& action, Done done) {
  if (action.kind == trigger::Action::Kind::kPoolTask) {
    return StartPoolTask(trigger, action, std::move(done));
  }
  process::ProcessTable* table = processes_;
  if (table == nullptr) {
    return ProcessesUnavailable();
  }
  SPINDLE_ASSIGN_OR_RETURN(process::ProcessSpec spec, DecodeSpawn(action));
  spec.labels[kTriggerLabel] = trigger;
  SPINDLE_ASSIGN_OR_RETURN(process::ProcessView view,
                           table->Spawn(std::move(spec), /*request_id=*/"", action.identity));
  // `done` must run exactly once: through the wait, or here if the wait cannot be registered.
  auto holder = std::make_shared<Done>(std::move(done));
  absl::StatusOr<process::ProcessTable::WaitId> wait =
      table->Wait(view.id, process::WaitCondition::kFinal,
                  [holder](process::ProcessView final) { std::move (*holder)(OutcomeOf(final)); });
  if (!wait.ok()) {
    std::move (*holder)(trigger::RunOutcome{
        trigger::RunState::kFailed,
        absl::StrCat("lost track of process '", view.id, "': ", wait.status().message()), ""});
  }
  return Started{view.id, ""};
}

void SchedulerActionRunner::Stop(const trigger::Action& action, const Started& started) {
  if (action.kind == trigger::Action::Kind::kPoolTask) {
    pool::PoolTable* pools = pools_;
    if (pools != nullptr && !started.task_id.empty()) {
      (void)pools->CancelTask(started.task_id, std::nullopt, "CANCELLED",
                              "cancelled: its trigger run was stopped");
    }
    return;
  }
  process::ProcessTable* table = processes_;
  if (table == nullptr || started.process_id.empty()) {
    return;
  }
  (void)table->Terminate(started.process_id, 0, std::nullopt, process::ExitReason::kTerminated);
}

absl::StatusOr<trigger::ActionRunner::Started> SchedulerActionRunner::StartPoolTask(
    const std::string& trigger, const trigger::Action& action, Done done) {
#ifdef SPINDLE_SCHEDULER_WITH_POOL_SERVICE
  pool::PoolTable* pools = pools_;
  if (pools == nullptr) {
    return PoolsUnavailable();
  }
  SPINDLE_ASSIGN_OR_RETURN(DecodedPoolTask decoded, DecodePoolTask(action));
  decoded.task.labels[kTriggerLabel] = trigger;
  // `done` must run exactly once: from on_final once the task was accepted. A refused submission
  // (queue full, pool closed or gone) fails the run through the returned error instead.
  auto holder = std::make_shared<Done>(std::move(done));
  pool::PoolTable::SubmitOptions options;
  options.wait = false;  // Queue full: the run FAILED, no waiting.
  options.fields = {"spec.action.pool_task.task"};
  options.on_final = [holder](size_t, const pool::TaskView& view) {
    std::move (*holder)(OutcomeOf(view));
  };
  std::vector<pool::TaskSpec> specs;
  specs.push_back(std::move(decoded.task));
  absl::StatusOr<pool::PoolTable::SubmitResult> submitted =
      absl::InternalError("the pool answered nothing");
  // Without waiting for room, the pool answers before Submit returns.
  pools->Submit(decoded.pool, std::move(specs), std::move(options),
                [&submitted](absl::StatusOr<pool::PoolTable::SubmitResult> result) {
                  submitted = std::move(result);
                });
  if (!submitted.ok()) {
    return Annotate(submitted.status(), "spec.action.pool_task");
  }
  if (!submitted->submitted || submitted->tasks.empty()) {
    return ResourceExhausted(
        "POOL_QUEUE_FULL",
        absl::StrCat("spec.action.pool_task: pool '", decoded.pool, "' did not accept the task"));
  }
  return Started{"", submitted->tasks.front().id};
#else
  (void)trigger;
  (void)action;
  (void)done;
  return PoolsUnavailable();
#endif
}

}  // namespace spindle::services
