// Plain engine types of triggers: what a client asks for (TriggerSpec) and what the table reports
// (TriggerView, RunView, RunEvent). They mirror protos/spindle/v1/scheduler.proto (units in the
// names); services/scheduler converts between the two, nothing else does.
//
// The action of a trigger is opaque to the engine: a kind and the bytes the services layer chose
// to describe it (a deterministic serialization), compared for "same settings" and handed back to
// the ActionRunner at each run.
//
// Thread-safety: value types, thread-compatible.
#ifndef SPINDLE_TRIGGER_TYPES_H_
#define SPINDLE_TRIGGER_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace spindle::trigger {

enum class OverlapPolicy { kUnspecified, kSkip, kQueue, kAllow, kReplace };
enum class TriggerState { kUnspecified, kActive, kPaused, kCompleted };
enum class RunState {
  kUnspecified,
  kSkipped,
  kQueued,
  kRunning,
  kSucceeded,
  kFailed,
  kTimedOut,
  kCancelled,
};

// "ACTIVE", "SKIPPED", ...: for logs and CLI output; lower-case variants for metrics labels.
const char* TriggerStateName(TriggerState state);
const char* RunStateName(RunState state);
bool IsFinal(RunState state);

struct Schedule {
  enum class Kind { kNone, kAt, kDelay, kInterval, kCron };
  Kind kind = Kind::kNone;
  absl::Time at = absl::InfinitePast();  // kAt.
  int64_t delay_ms = 0;                  // kDelay.
  int64_t interval_ms = 0;               // kInterval.
  std::string cron_expression;           // kCron.
  std::string cron_timezone;             // kCron; filled with "UTC" when empty.

  bool operator==(const Schedule&) const = default;
};

struct Action {
  enum class Kind { kNone, kSpawn, kPoolTask };
  Kind kind = Kind::kNone;
  std::string encoded;  // Opaque to the engine.
  // Who created the trigger, for the spawn policy's per-identity limits: the processes its runs
  // spawn count against that client. Opaque to the engine; empty: counted against no one.
  std::string identity;

  bool operator==(const Action&) const = default;
};

struct TriggerSpec {
  Schedule schedule;
  Action action;
  int64_t max_runs = 0;                          // 0: unlimited (one-shots run once).
  absl::Time start_time = absl::InfinitePast();  // InfinitePast: unset.
  absl::Time end_time = absl::InfiniteFuture();  // InfiniteFuture: unset.
  OverlapPolicy overlap = OverlapPolicy::kUnspecified;
  std::map<std::string, std::string> labels;
  int64_t jitter_ms = 0;
  std::string session_id;
  bool paused = false;

  bool operator==(const TriggerSpec&) const = default;
};

// How a run's action ended, as the ActionRunner reports it.
struct RunOutcome {
  RunState state = RunState::kFailed;  // A final state.
  std::string error;                   // Why it failed or was cancelled; may be empty.
  std::string detail;                  // Opaque result for the services layer (exit, task result).
};

struct RunView {
  std::string trigger;
  int64_t number = 0;
  RunState state = RunState::kUnspecified;
  bool manual = false;
  absl::Time scheduled_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();  // InfinitePast: never started.
  absl::Time ended_at = absl::InfinitePast();
  std::string process_id;
  std::string task_id;
  std::string detail;  // RunOutcome::detail once final.
  std::string error;
};

struct TriggerView {
  std::string name;
  TriggerSpec spec;
  TriggerState state = TriggerState::kUnspecified;
  absl::Time next_run_at = absl::InfinitePast();  // InfinitePast: none (paused, completed).
  int64_t run_count = 0;
  int64_t skipped_count = 0;
  int64_t failed_count = 0;
  int32_t running = 0;
  std::optional<RunView> last_run;
  absl::Time created_at = absl::InfinitePast();
};

// What a watch sees: a run in its new state, or the end of a trigger.
struct RunEvent {
  enum class Kind { kRun, kTriggerDeleted };
  Kind kind = Kind::kRun;
  RunView run;                                // kRun. For kTriggerDeleted only run.trigger is set.
  std::map<std::string, std::string> labels;  // Of the trigger, for selectors.
};

struct TriggerFilter {
  std::vector<TriggerState> states;
  std::string label_selector;
  std::string name_prefix;
};

struct TriggerTableStats {
  int64_t active = 0;
  int64_t paused = 0;
  int64_t completed = 0;
  int64_t running_runs = 0;
  int64_t watchers = 0;
};

}  // namespace spindle::trigger

#endif  // SPINDLE_TRIGGER_TYPES_H_
