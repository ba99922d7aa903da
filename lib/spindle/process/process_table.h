// ProcessTable: every process spindled spawned, from spawn to being forgotten.
//
// What it does (see protos/spindle/v1/process.proto for the client-visible contract):
//  - Spawn validates a ProcessSpec, fills its defaults, starts it through a Spawner and watches it
//    on the coroutine executor: one coroutine per run waits for the pidfd to become readable (the
//    exit) and one per captured pipe reads it when readable. No thread per process.
//  - States follow supervisord (STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL), with restart
//    policies (backoff with cap and jitter, max restarts, min uptime, max start failures),
//    wall-clock timeouts, stop signal + grace + SIGKILL of the whole tree (process_tree.h). With
//    cgroups (options.cgroups, cgroup.h) every process is born in a cgroup of its own, the stop
//    signal also reaches every member and the SIGKILL is cgroup.kill: nothing escapes. The cgroup
//    is removed once the process exited and its last member is gone (retried at housekeeping).
//  - Output goes into one OutputRing per captured stream (bounded memory); stdin pipes are written
//    with back-pressure (WriteStdin completes when the pipe took the bytes).
//  - Waiting (Wait, WaitChange, WriteStdin completion, Terminate with wait) is by callbacks: the
//    caller registers and returns; the table calls back exactly once unless the caller cancelled
//    the registration first (Cancel* returns true then). Callbacks run on an executor worker or a
//    timer thread, or inline in the registering call when the condition already holds, always
//    without table locks held; they must not block.
//  - Finished processes are retained by count and age, then forgotten.
//
// Thread-safety: thread-safe. Records are sharded by id; each record has its own mutex.
// Lifetime: the executor and the timer service must outlive the table; the table's destructor
// kills every live process tree (SIGKILL) and cancels its coroutines and timers.
#ifndef SPINDLE_PROCESS_PROCESS_TABLE_H_
#define SPINDLE_PROCESS_PROCESS_TABLE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/process/cgroup.h"
#include "spindle/process/spawn_policy.h"
#include "spindle/process/spawner.h"
#include "spindle/process/types.h"

namespace spindle::coro {
class Executor;
}  // namespace spindle::coro

namespace spindle::process {

struct ProcessTableOptions {
  // Most live (not final) processes at once; RESOURCE_EXHAUSTED (TOO_MANY_PROCESSES) beyond.
  // Retained final processes count too, but the oldest is forgotten to make room for a new one.
  int64_t max_processes = 1024;
  int64_t default_output_buffer_bytes = 1 << 20;
  int64_t max_output_buffer_bytes = 64 << 20;
  // Retention of final processes.
  int64_t retain_finished = 1000;
  absl::Duration retain_age = absl::Hours(1);
  // Working directory for specs without cwd; empty: spindled's.
  std::string default_cwd;
  // Base environment ("K=V") for specs without env.clean; empty vector: spindled's environ.
  std::optional<std::vector<std::string>> base_env;
  // Reap orphaned zombies every `housekeeping_interval` (spindled is a subreaper).
  bool reap_orphans = false;
  absl::Duration housekeeping_interval = absl::Seconds(1);
  // Whether run_as may be used (spindled runs as root or with CAP_SETUID).
  bool allow_run_as = false;
  // The spawn policy every spec must pass (spawn_policy.h); null: none. Shared with the pools.
  std::shared_ptr<SpawnPolicy> spawn_policy;
  // Where each process gets a cgroup of its own (cgroup.h); null: cgroups off, trees are found
  // through /proc and the environment cookie only (process_tree.h).
  std::shared_ptr<CgroupTree> cgroups;
};

// Events for metrics (services/process binds them to prometheus). Called without locks held, on
// whatever thread made the change; implementations must be thread-safe and must not block.
class ProcessObserver {
 public:
  virtual ~ProcessObserver() = default;
  // result: "ok", "exec_failed", "error".
  virtual void OnSpawn(absl::string_view result, absl::Duration latency) {}
  virtual void OnExit(ExitReason reason) {}
  virtual void OnOutput(OutputStream stream, int64_t bytes) {}
  virtual void OnOutputDropped(int64_t bytes) {}
};

struct ProcessTableStats {
  int64_t by_state[7] = {};  // Indexed by ProcessState.
  int64_t total = 0;
  int64_t live = 0;
  int64_t waiters = 0;
};

class ProcessTable {
 public:
  using WaitId = uint64_t;
  using ViewCallback = absl::AnyInvocable<void(ProcessView) &&>;
  using StatusCallback = absl::AnyInvocable<void(absl::Status) &&>;

  // `sessions` may be null (a spec with session_id is then FAILED_PRECONDITION
  // SESSIONS_UNAVAILABLE). `observer` may be null.
  ProcessTable(ProcessTableOptions options, std::unique_ptr<Spawner> spawner,
               coro::Executor& executor, TimerService& timers, SessionHooks* sessions,
               ProcessObserver* observer);
  ~ProcessTable();
  ProcessTable(const ProcessTable&) = delete;
  ProcessTable& operator=(const ProcessTable&) = delete;

  // Checks `spec` and fills its defaults (stdin NONE, CAPTURE, buffer size, grace, stop signal,
  // restart fields). INVALID_ARGUMENT naming the field otherwise. `for_run`: the stricter rules
  // of Run (no PIPE, restart NEVER, buffers fit `max_run_output_bytes`). With a spawn policy, the
  // spec must then pass it (PERMISSION_DENIED, reason SPAWN_POLICY) and gets its defaults.
  absl::Status ValidateAndDefault(ProcessSpec& spec, bool for_run,
                                  int64_t max_run_output_bytes) const;

  // Validates, spawns and registers a process; returns it once exec succeeded. Errors as
  // ProcessService.Spawn. `request_id` (may be empty) makes retries return the original.
  // `identity` is the client it is spawned for: the spawn policy's per-identity live-process limit
  // counts it until it is final (RESOURCE_EXHAUSTED, reason SPAWN_POLICY, beyond). Empty: the
  // server's own spawn, not counted.
  absl::StatusOr<ProcessView> Spawn(ProcessSpec spec, absl::string_view request_id = "",
                                    absl::string_view identity = "");

  // NOT_FOUND (PROCESS_NOT_FOUND) for an unknown id.
  absl::StatusOr<ProcessView> Get(absl::string_view id) const;

  struct Page {
    std::vector<ProcessView> processes;
    std::string next_page_token;
  };
  // Oldest first. INVALID_ARGUMENT for a bad page size, token, selector or prefix.
  absl::StatusOr<Page> List(const ProcessFilter& filter, int32_t page_size,
                            absl::string_view page_token) const;
  // INVALID_ARGUMENT for a bad label selector or name prefix.
  absl::Status ValidateFilter(const ProcessFilter& filter) const;
  bool Matches(const ProcessFilter& filter, const ProcessView& view) const;

  // Calls `done` once the process meets `until` (inline when it does already; then returns 0).
  // Returns an id for CancelWait. NOT_FOUND for an unknown id.
  absl::StatusOr<WaitId> Wait(absl::string_view id, WaitCondition until, ViewCallback done);
  // true when `done` will never be called; false when it ran or is running.
  bool CancelWait(absl::string_view id, WaitId wait);

  // Calls `changed` once when the process has output beyond the given offsets (a stream's offset
  // < 0 means "don't care") or is final, or was forgotten. Inline when already so (returns 0).
  absl::StatusOr<WaitId> WaitChange(absl::string_view id, int64_t stdout_offset,
                                    int64_t stderr_offset, absl::AnyInvocable<void() &&> changed);
  bool CancelWaitChange(absl::string_view id, WaitId wait);

  // Reads retained output of `stream` (STDOUT or STDERR) at `offset`: a gap chunk when the bytes
  // were dropped, a data chunk of at most `max_bytes`, or nullopt at the end.
  absl::StatusOr<std::optional<OutputChunk>> ReadOutput(absl::string_view id, OutputStream stream,
                                                        int64_t offset, int64_t max_bytes) const;

  // Sends `signal` to the process, its group or its tree. Returns how many got it.
  // NOT_FOUND; FAILED_PRECONDITION (PROCESS_EXITED) when no run is alive.
  absl::StatusOr<int> Signal(absl::string_view id, int signal, SignalTarget target);

  // Stops the process for good (see TerminateProcess). `signal` 0: its stop signal; `grace`
  // nullopt: its kill_grace_ms. `gone` (may be null) is called with the view once the process is
  // final. Returns the view after sending the stop signal.
  absl::StatusOr<ProcessView> Terminate(absl::string_view id, int signal,
                                        std::optional<absl::Duration> grace, ExitReason reason,
                                        ViewCallback gone = nullptr);

  // Stops a live run (as Terminate) and starts the process again under the same id; `done` gets
  // the view with the new run, or the exec error.
  void Restart(absl::string_view id, std::optional<absl::Duration> grace,
               absl::AnyInvocable<void(absl::StatusOr<ProcessView>) &&> done);

  // Forgets a final process; with `force` terminates a live one first. `done` gets the outcome.
  void Delete(absl::string_view id, bool force, StatusCallback done);

  // Stdin of a PIPE process. One owner at a time: Acquire returns a lease id (STDIN_NOT_PIPE,
  // STDIN_BUSY, STDIN_CLOSED, PROCESS_EXITED, NOT_FOUND).
  absl::StatusOr<uint64_t> AcquireStdin(absl::string_view id);
  void ReleaseStdin(absl::string_view id, uint64_t lease);
  // Writes `data` (skipping the part before the current position when `offset` is set); `done`
  // gets the stdin position after the write once the pipe accepted all of it, or an error
  // (PROCESS_EXITED, STDIN_BROKEN_PIPE, STDIN_CLOSED). With `close`, stdin is closed afterwards.
  // REQUIRES: `lease` is held; one write at a time per lease.
  void WriteStdin(absl::string_view id, uint64_t lease, std::string data,
                  std::optional<int64_t> offset, bool close,
                  absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done);
  // Closes stdin. `lease` 0: only when no lease is held (else STDIN_BUSY). Idempotent.
  absl::StatusOr<ProcessView> CloseStdin(absl::string_view id, uint64_t lease);
  // Sets the pty window size; FAILED_PRECONDITION (NO_PTY) without a pty.
  absl::Status Resize(absl::string_view id, int rows, int cols);

  // Calls `on_event` for every event of a matching process until Unwatch (which waits for a
  // running callback to return). Events of one process come in order.
  uint64_t Watch(ProcessFilter filter, absl::AnyInvocable<void(const ProcessEvent&)> on_event);
  void Unwatch(uint64_t watch);

  ProcessTableStats Stats() const;

  // Kills every live process tree and refuses new spawns (UNAVAILABLE). Idempotent.
  void Shutdown();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_PROCESS_TABLE_H_
