// Plain engine types of the process capability: what a client asks for (ProcessSpec) and what the
// table reports (ProcessStatus, ProcessView, ProcessEvent). They mirror
// protos/spindle/v1/process.proto field for field (units in the names); services/process converts
// between the two, nothing else does. Defaults are filled in by ProcessTable::Spawn (see
// ValidateAndDefault in process_table.h), so a stored spec is always complete.
//
// Thread-safety: value types, thread-compatible.
#ifndef SPINDLE_PROCESS_TYPES_H_
#define SPINDLE_PROCESS_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace spindle::process {

enum class ProcessState { kUnspecified, kStarting, kRunning, kBackoff, kStopping, kExited, kFatal };
enum class StdinMode { kUnspecified, kNone, kData, kPipe };
enum class OutputMode { kUnspecified, kCapture, kDiscard, kMerge };
enum class OutputStream { kUnspecified, kStdout, kStderr, kBoth };
enum class RestartMode { kUnspecified, kNever, kOnFailure, kAlways };
enum class SignalTarget { kUnspecified, kProcess, kGroup, kTree };
enum class ExitReason {
  kUnspecified,
  kExited,
  kSignaled,
  kTerminated,
  kTimedOut,
  kSessionEnded,
  kCallerGone,
  kStartFailed,
};
enum class WaitCondition { kUnspecified, kFinal, kRunning };
enum class EventType { kUnspecified, kInitial, kSpawned, kStateChanged, kDeleted };

// "STARTING", "EXITED", ...: for logs, metrics labels and CLI output.
const char* StateName(ProcessState state);
// "exited", "signaled", "terminated", ...: metrics label values.
const char* ExitReasonName(ExitReason reason);
bool IsFinal(ProcessState state);

struct ProcessEnv {
  bool clean = false;
  std::map<std::string, std::string> set;
  std::vector<std::string> unset;
};

struct ProcessCommand {
  std::vector<std::string> argv;
  std::string executable;
  ProcessEnv env;
  std::string cwd;
};

struct ProcessLimits {
  std::optional<int64_t> cpu_seconds;
  std::optional<int64_t> address_space_bytes;
  std::optional<int64_t> open_files;
  std::optional<int64_t> processes;
  std::optional<int64_t> core_bytes;
  std::optional<int64_t> file_size_bytes;
  std::optional<int32_t> nice;
};

struct ProcessUser {
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::vector<uint32_t> supplementary_gids;
  bool IsSet() const { return uid.has_value() || gid.has_value() || !supplementary_gids.empty(); }
};

struct ProcessPty {
  uint32_t rows = 0;
  uint32_t cols = 0;
  std::string term;
};

struct RestartPolicy {
  RestartMode mode = RestartMode::kUnspecified;
  int64_t initial_backoff_ms = 0;
  int64_t max_backoff_ms = 0;
  double multiplier = 0;
  std::optional<double> jitter;
  int32_t max_restarts = 0;
  std::optional<int32_t> max_start_failures;
  std::optional<int64_t> min_uptime_ms;
  std::vector<int32_t> success_exit_codes;
};

// A signal as the client gave it: a name ("TERM", "SIGKILL", "SIGRTMIN+2", "9") or a number.
// Neither set means "unset" (the field's default applies).
struct SignalSpec {
  std::string name;
  int32_t number = 0;
  bool IsSet() const { return !name.empty() || number != 0; }
};

struct ProcessSpec {
  ProcessCommand command;
  std::string name;
  std::map<std::string, std::string> labels;
  StdinMode stdin_mode = StdinMode::kUnspecified;
  std::string stdin_data;
  OutputMode stdout_mode = OutputMode::kUnspecified;
  OutputMode stderr_mode = OutputMode::kUnspecified;
  int64_t output_buffer_bytes = 0;
  ProcessLimits limits;
  ProcessUser run_as;
  int64_t timeout_ms = 0;
  std::optional<int64_t> kill_grace_ms;
  SignalSpec stop_signal;
  bool new_session = false;
  std::string session_id;
  RestartPolicy restart;
  std::optional<ProcessPty> pty;
  bool unique_name = false;
};

struct ProcessExit {
  ExitReason reason = ExitReason::kUnspecified;
  int32_t exit_code = -1;
  int32_t signal_number = 0;
  bool core_dumped = false;
  std::string message;
};

struct ProcessUsage {
  int64_t user_cpu_ms = 0;
  int64_t system_cpu_ms = 0;
  int64_t max_rss_bytes = 0;
  int64_t minor_faults = 0;
  int64_t major_faults = 0;
  int64_t voluntary_context_switches = 0;
  int64_t involuntary_context_switches = 0;
};

struct ProcessStatus {
  ProcessState state = ProcessState::kUnspecified;
  int32_t pid = 0;
  int32_t process_group_id = 0;
  absl::Time created_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();  // InfinitePast = unset.
  absl::Time ended_at = absl::InfinitePast();
  std::optional<ProcessExit> exit;
  ProcessUsage usage;
  int32_t restart_count = 0;
  int32_t start_failures = 0;
  std::string last_failure;
  absl::Time next_restart_at = absl::InfinitePast();
  int64_t stdout_bytes = 0;
  int64_t stderr_bytes = 0;
  int64_t stdout_dropped_bytes = 0;
  int64_t stderr_dropped_bytes = 0;
  int64_t stdin_bytes = 0;
  bool stdin_open = false;
};

// A snapshot of one process.
struct ProcessView {
  std::string id;
  ProcessSpec spec;  // stdin_data is always empty here.
  ProcessStatus status;
};

struct ProcessEvent {
  EventType type = EventType::kUnspecified;
  ProcessView process;
  ProcessState previous_state = ProcessState::kUnspecified;
  absl::Time time;
};

// Filters of List and Watch; they combine with AND.
struct ProcessFilter {
  std::vector<ProcessState> states;
  std::string label_selector;
  std::string name_prefix;
  std::string session_id;
};

// Output bytes (or a gap marker: `data` empty and dropped_bytes > 0) of one stream.
struct OutputChunk {
  OutputStream stream = OutputStream::kStdout;
  int64_t offset = 0;
  std::string data;
  int64_t dropped_bytes = 0;
  bool is_gap() const { return dropped_bytes > 0; }
};

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_TYPES_H_
