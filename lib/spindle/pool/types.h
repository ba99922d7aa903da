// Plain engine types of worker pools: what a client asks for (PoolSpec, TaskSpec) and what the
// pool table reports (PoolView, TaskView, TaskEvent). They mirror protos/spindle/v1/pool.proto
// field for field (units in the names; enums have the proto enums' numbers); services/pool
// converts between the two, nothing else does. Defaults are filled in by PoolTable, so a stored
// spec is always complete.
//
// Thread-safety: value types, thread-compatible.
#ifndef SPINDLE_POOL_TYPES_H_
#define SPINDLE_POOL_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/time/time.h"
#include "spindle/process/types.h"

namespace spindle::pool {

enum class PoolKind { kUnspecified = 0, kCommand = 1, kWorker = 2, kThread = 3 };
enum class PoolState {
  kUnspecified = 0,
  kOpen = 1,
  kDraining = 2,
  kClosed = 3,
  kTerminating = 4,
  kTerminated = 5
};
enum class WorkerState { kUnspecified = 0, kStarting = 1, kIdle = 2, kBusy = 3, kStopping = 4 };
enum class TaskState {
  kUnspecified = 0,
  kQueued = 1,
  kRunning = 2,
  kBackoff = 3,
  kSucceeded = 4,
  kFailed = 5,
  kCancelled = 6,
  kTimedOut = 7
};
enum class RetryCondition { kUnspecified = 0, kFailed = 1, kTimedOut = 2, kWorkerLost = 3 };
enum class TaskEventType {
  kUnspecified = 0,
  kQueued = 1,
  kStarted = 2,
  kSucceeded = 3,
  kFailed = 4,
  kRetried = 5,
  kCancelled = 6,
  kTimedOut = 7
};

// "OPEN", "QUEUED", "IDLE", ...: for logs, metrics labels and CLI output.
const char* PoolStateName(PoolState state);
const char* TaskStateName(TaskState state);
const char* WorkerStateName(WorkerState state);
const char* PoolKindName(PoolKind kind);
bool IsFinal(TaskState state);
bool IsFinal(PoolState state);

struct RetryPolicy {
  int32_t max_attempts = 0;        // 0 or 1: no retry.
  int64_t initial_backoff_ms = 0;  // 0 = 1,000.
  int64_t max_backoff_ms = 0;      // 0 = 60,000.
  double multiplier = 0;           // 0 = 2.0.
  std::optional<double> jitter;    // unset = 0.2.
  std::vector<int32_t> non_retryable_exit_codes;
  std::vector<RetryCondition> retry_on;  // empty = kFailed, kWorkerLost.
  bool operator==(const RetryPolicy&) const = default;
};

struct WorkerSpec {
  process::ProcessCommand command;
  int64_t start_timeout_ms = 0;  // 0 = 30,000.
  int64_t stop_grace_ms = 0;     // 0 = 5,000.
};

struct PoolSpec {
  PoolKind kind = PoolKind::kUnspecified;
  int32_t size = 0;  // 0 = number of cores.
  std::optional<WorkerSpec> worker;
  int32_t max_queued = 0;  // 0 = 10,000.
  int64_t default_task_timeout_ms = 0;
  RetryPolicy retry;
  int32_t max_tasks_per_worker = 0;
  std::map<std::string, std::string> labels;
  process::ProcessLimits limits;
  process::ProcessUser run_as;
  int64_t kill_grace_ms = 0;     // 0 = 5,000.
  int64_t max_output_bytes = 0;  // 0 = 65,536.
  std::string session_id;
};

struct TaskCommand {
  process::ProcessCommand command;
  std::string stdin_data;
  bool merge_stderr = false;
};

struct TaskCall {
  std::string function;
  std::vector<std::string> args;
  std::string input;
};

struct TaskSpec {
  // monostate: unset (INVALID_ARGUMENT); string: WORKER payload.
  std::variant<std::monostate, std::string, TaskCommand, TaskCall> work;
  int32_t priority = 0;
  std::map<std::string, std::string> labels;
  std::optional<int64_t> timeout_ms;  // unset: the pool's default; 0 = none.
  std::optional<RetryPolicy> retry;   // unset: the pool's.
};

struct TaskResult {
  TaskState outcome = TaskState::kUnspecified;
  std::optional<process::ProcessExit> exit;
  std::string stdout_data;
  std::string stderr_data;
  int64_t stdout_dropped_bytes = 0;
  int64_t stderr_dropped_bytes = 0;
  std::string output;
  std::string error;
  std::string error_reason;
  int32_t attempts = 0;
  std::string worker_id;
  absl::Time submitted_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();  // InfinitePast = unset.
  absl::Time ended_at = absl::InfinitePast();
  process::ProcessUsage usage;
};

// A snapshot of one task.
struct TaskView {
  std::string id;
  std::string pool;
  TaskSpec spec;  // Bulk input only when asked for.
  TaskState state = TaskState::kUnspecified;
  int32_t attempt = 0;
  absl::Time submitted_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time ended_at = absl::InfinitePast();
  std::string worker_id;
  std::string session_id;
  std::string last_error;
  absl::Time next_attempt_at = absl::InfinitePast();
  std::optional<TaskResult> result;
};

struct TaskEvent {
  int64_t sequence = 0;
  TaskEventType type = TaskEventType::kUnspecified;
  std::string task_id;
  std::string pool;
  absl::Time time;
  int32_t attempt = 0;
  std::string worker_id;
  std::map<std::string, std::string> labels;
  std::optional<TaskResult> result;
  std::string error;
  absl::Time next_attempt_at = absl::InfinitePast();
};

struct PoolStats {
  int32_t workers = 0;
  int32_t workers_starting = 0;
  int32_t workers_idle = 0;
  int32_t workers_busy = 0;
  int32_t workers_stopping = 0;
  int64_t tasks_queued = 0;
  int64_t tasks_backoff = 0;
  int64_t tasks_running = 0;
  int64_t tasks_submitted = 0;
  int64_t tasks_succeeded = 0;
  int64_t tasks_failed = 0;
  int64_t tasks_timed_out = 0;
  int64_t tasks_cancelled = 0;
  int64_t task_retries = 0;
  int64_t worker_restarts = 0;
  int64_t worker_recycles = 0;
  int64_t oldest_queued_age_ms = 0;
  int64_t tasks_handed_ahead = 0;  // Given to a busy worker ahead of time (worker pools).
  int32_t submits_waiting = 0;     // Submit calls waiting for room in a full queue now.
};

struct WorkerView {
  std::string id;
  WorkerState state = WorkerState::kUnspecified;
  int32_t pid = 0;
  std::string task_id;
  int64_t tasks_done = 0;
  absl::Time started_at = absl::InfinitePast();
};

struct PoolView {
  std::string name;
  PoolSpec spec;
  PoolState state = PoolState::kUnspecified;
  PoolStats stats;
  std::vector<WorkerView> workers;  // Only when asked for.
  absl::Time created_at = absl::InfinitePast();
  absl::Time closed_at = absl::InfinitePast();
  std::string last_worker_error;
};

// Filters of ListTasks and WatchTasks; they combine with AND.
struct TaskFilter {
  std::vector<TaskState> states;
  std::string label_selector;
  std::string session_id;
};

}  // namespace spindle::pool

#endif  // SPINDLE_POOL_TYPES_H_
