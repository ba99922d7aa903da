// The scheduler's trigger::ActionRunner: starts a trigger's run through the process engine
// (spawn actions) and reports how it ended. Pool actions answer FAILED_PRECONDITION
// (POOLS_UNAVAILABLE): the pool engine is not reachable from this capability yet.
//
// The process table is read from the capability context at each call (`context.processes`), so
// the order in which capabilities are made does not matter; while it is null, spawn actions are
// FAILED_PRECONDITION (PROCESSES_UNAVAILABLE).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_
#define SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_

#include "spindle/process/process_table.h"
#include "spindle/trigger/trigger_table.h"

namespace spindle::services {

class SchedulerActionRunner final : public trigger::ActionRunner {
 public:
  explicit SchedulerActionRunner(process::ProcessTable* const& processes) : processes_(processes) {}

  // Checks an action at create time: PROCESSES_UNAVAILABLE / POOLS_UNAVAILABLE, and the process
  // spec's own rules (INVALID_ARGUMENT naming spec.action.spawn.<field>).
  absl::Status Check(const trigger::Action& action) const;

  absl::StatusOr<Started> Start(const std::string& trigger, int64_t number,
                                const trigger::Action& action, Done done) override;
  void Stop(const trigger::Action& action, const Started& started) override;

 private:
  process::ProcessTable* const& processes_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_
