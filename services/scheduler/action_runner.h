// The scheduler's trigger::ActionRunner: starts a trigger's run through the process engine
// (spawn actions) or the pool engine (pool_task actions) and reports how it ended.
//
// The tables are read from the capability context at each call (`context.processes`,
// `context.pools`), so the order in which capabilities are made does not matter; while one is
// null, its actions are FAILED_PRECONDITION (PROCESSES_UNAVAILABLE / POOLS_UNAVAILABLE).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_
#define SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_

#include "spindle/pool/pool_table.h"
#include "spindle/process/process_table.h"
#include "spindle/trigger/trigger_table.h"

namespace spindle::services {

class SchedulerActionRunner final : public trigger::ActionRunner {
 public:
  SchedulerActionRunner(process::ProcessTable* const& processes, pool::PoolTable* const& pools)
      : processes_(processes), pools_(pools) {}

  // Checks an action at create time: PROCESSES_UNAVAILABLE / POOLS_UNAVAILABLE, the process
  // spec's own rules (INVALID_ARGUMENT naming spec.action.spawn.<field>), the task's rules
  // (spec.action.pool_task.task.<field>) and that the pool exists (NOT_FOUND).
  absl::Status Check(const trigger::Action& action) const;

  absl::StatusOr<Started> Start(const std::string& trigger, int64_t number,
                                const trigger::Action& action, Done done) override;
  void Stop(const trigger::Action& action, const Started& started) override;

 private:
  absl::StatusOr<Started> StartPoolTask(const std::string& trigger, const trigger::Action& action,
                                        Done done);

  process::ProcessTable* const& processes_;
  pool::PoolTable* const& pools_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_ACTION_RUNNER_H_
