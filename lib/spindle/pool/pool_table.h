// PoolTable: named worker pools and the tasks they run — the engine behind PoolService.
//
// Kinds (types.h): COMMAND pools spawn a fresh process per task (through the process engine's
// Spawner) and bound how many run at once; WORKER pools keep `size` long-lived worker processes
// fed over the framing of framing.h; THREAD pools run functions of a FunctionRegistry on `size`
// threads. Every pool has a bounded priority queue (higher priority first, FIFO within one),
// per-attempt timeouts, retries with exponential backoff, and task/pool lifecycles as documented
// in protos/spindle/v1/pool.proto, which is the contract of every method here (codes and reasons
// included).
//
// Processes: pipes and pidfds are watched by one IoLoop thread; exits are reaped with wait4. A
// running task is stopped by signalling its whole tree (process group plus descendants found
// through /proc and the SPINDLE_PROCESS_ID cookie): SIGTERM, then SIGKILL after the grace.
//
// Waiting calls (JoinPool, WaitTask, a Submit waiting for room) take a callback and return a
// WaiterId: the callback runs exactly once, on some engine thread (or inline before the call
// returns, then the id is 0), without any engine lock held — unless CancelWait(id) returned true
// first. Task and pool callbacks never run under a lock.
//
// Thread-safety: thread-safe. One mutex per pool; the name table is sharded.
#ifndef SPINDLE_POOL_POOL_TABLE_H_
#define SPINDLE_POOL_POOL_TABLE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/pool/functions.h"
#include "spindle/pool/types.h"
#include "spindle/process/spawn_policy.h"
#include "spindle/process/spawner.h"

namespace spindle::pool {

struct PoolTableOptions {
  // Most pools at once (RESOURCE_EXHAUSTED TOO_MANY_POOLS beyond).
  int64_t max_pools = 10'000;
  // Most workers (processes or threads) summed over the sizes of all live pools.
  int64_t max_total_workers = 4'096;
  // Finished tasks each pool keeps readable (oldest forgotten first).
  int64_t max_finished_tasks_per_pool = 10'000;
  // Events each pool keeps for WatchTasks replay.
  int64_t max_events_per_pool = 10'000;
  // Largest task output (WORKER result frame, THREAD return value); larger fails the task with
  // OUTPUT_TOO_LARGE.
  int64_t max_task_output_bytes = (4 << 20) - (64 << 10);
  // Base environment of spawned processes ("K=V"); unset: spindled's own.
  std::optional<std::vector<std::string>> base_env;
  // The spawn policy (process/spawn_policy.h) every worker and task command must pass; null: none.
  // A COMMAND or WORKER pool counts `size` processes against its creator's live-process limit
  // from CreatePool to DeletePool.
  std::shared_ptr<process::SpawnPolicy> spawn_policy;
  // Observers for metrics; called without locks held. May be empty.
  std::function<void(const std::string& pool, absl::Duration waited)> observe_queue_wait;
  std::function<void(const std::string& pool, TaskState outcome, absl::Duration ran)>
      observe_task_done;
};

// A live feed of one pool's events (WatchTasks). Destroying it unsubscribes.
class EventSubscription {
 public:
  virtual ~EventSubscription() = default;
  struct ReadResult {
    std::vector<TaskEvent> events;
    bool pool_deleted = false;  // No events will follow the ones returned.
  };
  // Up to `max` retained events with sequence > after_sequence, oldest first. OUT_OF_RANGE
  // (EVENTS_EXPIRED) when events after `after_sequence` were already discarded.
  virtual absl::StatusOr<ReadResult> Read(int64_t after_sequence, size_t max) = 0;
  // Sequence of the newest event so far (0 before any).
  virtual int64_t LastSequence() = 0;
  // Sequence just before the oldest retained event (0 while the first is retained).
  virtual int64_t BeforeOldest() = 0;
};

class PoolTable {
 public:
  using WaiterId = uint64_t;

  PoolTable(TimerService& timers, SessionHooks* sessions, std::unique_ptr<process::Spawner> spawner,
            std::shared_ptr<FunctionRegistry> functions, PoolTableOptions options = {});
  // Terminates every pool (SIGKILL), joins its threads.
  ~PoolTable();
  PoolTable(const PoolTable&) = delete;
  PoolTable& operator=(const PoolTable&) = delete;

  // ---- pools ----
  struct CreateResult {
    PoolView pool;
    bool created = false;
  };
  // `identity` is the creating client, counted by the spawn policy (empty: not counted).
  absl::StatusOr<CreateResult> CreatePool(const std::string& name, PoolSpec spec,
                                          const std::string& request_id,
                                          const std::string& identity = "");
  absl::StatusOr<PoolView> GetPool(const std::string& name, bool include_workers);
  struct PoolPage {
    std::vector<PoolView> pools;
    std::string next_page_token;
  };
  absl::StatusOr<PoolPage> ListPools(const std::vector<PoolState>& states,
                                     const std::string& label_selector,
                                     const std::string& name_prefix, int32_t page_size,
                                     const std::string& page_token);
  absl::StatusOr<PoolView> ResizePool(const std::string& name, int32_t size);
  absl::StatusOr<PoolView> ClosePool(const std::string& name);
  // grace_ms unset: the pool's kill_grace_ms.
  absl::StatusOr<PoolView> TerminatePool(const std::string& name, std::optional<int64_t> grace_ms);
  absl::Status DeletePool(const std::string& name, bool force);
  // Calls done(pool, joined) when the pool is CLOSED or TERMINATED, or with joined = false at
  // `deadline`. FAILED_PRECONDITION (POOL_OPEN) for an OPEN pool, NOT_FOUND: done(error) inline.
  WaiterId JoinPool(const std::string& name, absl::Time deadline,
                    absl::AnyInvocable<void(absl::StatusOr<PoolView>, bool joined) &&> done);

  // ---- tasks ----
  struct SubmitOptions {
    std::string request_id;
    std::string session_id;
    bool wait = false;                             // Wait for queue room.
    absl::Time deadline = absl::InfiniteFuture();  // With wait: then submitted = false.
    // Field name of each spec in errors ("task", "tasks[3]", "inputs[index=17]"); empty: "task"
    // for one spec, "tasks[i]" for several.
    std::vector<std::string> fields;
    // Runs once per task when it becomes final, without locks held, with the task's index in
    // `specs` (Map).
    std::function<void(size_t index, const TaskView&)> on_final;
    bool include_input_in_views = false;
  };
  struct SubmitResult {
    bool submitted = false;
    std::vector<TaskView> tasks;  // Bulk input omitted.
  };
  WaiterId Submit(const std::string& pool, std::vector<TaskSpec> specs, SubmitOptions options,
                  absl::AnyInvocable<void(absl::StatusOr<SubmitResult>) &&> done);
  absl::StatusOr<TaskView> GetTask(const std::string& task_id, bool include_input);
  // Calls done(task, done) once the task is final, or with done = false at `deadline`.
  WaiterId WaitTask(const std::string& task_id, absl::Time deadline,
                    absl::AnyInvocable<void(absl::StatusOr<TaskView>, bool done) &&> done);
  // `reason`: CANCELLED (CancelTask), STREAM_ENDED (Map), ... ; message goes into the result.
  absl::StatusOr<TaskView> CancelTask(const std::string& task_id, std::optional<int64_t> grace_ms,
                                      const std::string& reason = "CANCELLED",
                                      const std::string& message = "cancelled by CancelTask");
  struct TaskPage {
    std::vector<TaskView> tasks;
    std::string next_page_token;
  };
  absl::StatusOr<TaskPage> ListTasks(const std::string& pool, const TaskFilter& filter,
                                     int32_t page_size, const std::string& page_token,
                                     bool include_output);
  // Events of one pool. `notify` runs (without locks) whenever new events may be readable or the
  // pool was deleted.
  absl::StatusOr<std::unique_ptr<EventSubscription>> Subscribe(const std::string& pool,
                                                               std::function<void()> notify);

  // Removes a waiter; true when its callback will never run.
  bool CancelWait(WaiterId id);

  // ---- stats ----
  struct TableStats {
    int64_t pools = 0;
    int64_t tasks = 0;  // Retained tasks of all pools.
  };
  TableStats GetStats();
  // Every pool (workers omitted), by name.
  std::vector<PoolView> AllPools();
  FunctionRegistry& functions() { return *functions_; }

  // Checks `spec` as Submit to `pool` would, without submitting: NOT_FOUND for an unknown pool,
  // INVALID_ARGUMENT naming `field` (work of the wrong kind, bad command, unknown function).
  absl::Status ValidateTask(const std::string& pool, const std::string& field,
                            const TaskSpec& spec);

  // Validation helpers shared with the service: OK or INVALID_ARGUMENT naming `field`.
  static absl::Status ValidateRetryPolicy(const std::string& field, const RetryPolicy& policy);

  class Pool;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<FunctionRegistry> functions_;
};

}  // namespace spindle::pool

#endif  // SPINDLE_POOL_POOL_TABLE_H_
