#include "services/scheduler/action_runner.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/v1/process.pb.h"

#ifdef SPINDLE_SCHEDULER_WITH_PROCESS_SERVICE
#include "services/process/convert.h"
#endif

namespace spindle::services {
namespace {

constexpr char kTriggerLabel[] = "spindle.dev/trigger";

absl::Status PoolsUnavailable() {
  return FailedPrecondition("POOLS_UNAVAILABLE",
                            "spec.action.pool_task: pool actions are not available on this server");
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

}  // namespace

absl::Status SchedulerActionRunner::Check(const trigger::Action& action) const {
  if (action.kind == trigger::Action::Kind::kPoolTask) {
    return PoolsUnavailable();
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
    return PoolsUnavailable();
  }
  process::ProcessTable* table = processes_;
  if (table == nullptr) {
    return ProcessesUnavailable();
  }
  SPINDLE_ASSIGN_OR_RETURN(process::ProcessSpec spec, DecodeSpawn(action));
  spec.labels[kTriggerLabel] = trigger;
  SPINDLE_ASSIGN_OR_RETURN(process::ProcessView view, table->Spawn(std::move(spec)));
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
  process::ProcessTable* table = processes_;
  if (table == nullptr || started.process_id.empty()) {
    return;
  }
  (void)table->Terminate(started.process_id, 0, std::nullopt, process::ExitReason::kTerminated);
}

}  // namespace spindle::services
