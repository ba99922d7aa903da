// Spawner: starts one child process from a fully resolved description. The only place in the
// engine that forks and execs; ProcessTable calls it, tests may put a fake behind it.
//
// LinuxSpawner (MakeLinuxSpawner) spawns with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD): no page
// tables are copied (posix_spawn speed) and the pidfd is created atomically with the child, so no
// other reaper can take its pid first. The child only makes system calls between clone and exec:
// it resets signal dispositions and the signal mask, makes its own process group or session (and
// takes a pty as controlling terminal), moves its stdio into place, closes every other fd
// (close_range), changes directory, applies rlimits and nice, drops to run_as, and execs. A
// failure of any of these steps is written (step and errno) to a close-on-exec error pipe and the
// child exits 127; the parent reads the pipe, reaps the child and returns FAILED_PRECONDITION
// (reason EXEC_FAILED) with the errno text, so a missing binary never looks like "exited 127".
//
// With SpawnOptions::cgroup_procs_fd the child first joins that cgroup (cgroup.h) by writing "0"
// to it, before anything else and while still privileged, so everything it ever starts is born
// inside. A failed join fails the spawn when cgroup_required; otherwise the child is reported
// through the error pipe as running outside (SpawnedChild::cgroup_errno) and goes on.
//
// Thread-safety: thread-safe; Spawn may run on many threads at once.
#ifndef SPINDLE_PROCESS_SPAWNER_H_
#define SPINDLE_PROCESS_SPAWNER_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "spindle/process/unique_fd.h"

namespace spindle::process {

// What to start, after defaults and policy were applied.
struct SpawnOptions {
  enum class Stdin { kNull, kPipe };
  enum class Output { kPipe, kNull, kMergeIntoStdout };

  std::vector<std::string> argv;  // Non-empty.
  // Program to exec; empty: argv[0]. Without '/', looked up in PATH of `env`.
  std::string executable;
  std::vector<std::string> env;  // "KEY=value" entries, the child's whole environment.
  std::string cwd;               // Empty: inherit.
  Stdin stdin_mode = Stdin::kNull;
  Output stdout_mode = Output::kPipe;
  Output stderr_mode = Output::kPipe;
  // true: setsid(); false: setpgid(0, 0). Forced true with a pty.
  bool new_session = false;
  // A pseudo-terminal (rows, cols): the child's stdio and controlling terminal.
  std::optional<std::pair<int, int>> pty;
  std::vector<std::pair<int, rlim_t>> rlimits;  // (RLIMIT_*, value): soft = hard = value.
  std::optional<int> nice;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<std::vector<gid_t>> groups;  // Set: setgroups(groups).
  // cgroup.procs of the cgroup the child joins before exec, opened O_WRONLY by the caller (who
  // keeps owning it); -1: the child stays in spindled's cgroup.
  int cgroup_procs_fd = -1;
  std::string cgroup_dir;  // That cgroup's directory, for error messages.
  // A child that cannot join fails the spawn (EXEC_FAILED "cannot join cgroup '<dir>': <errno
  // text>"); false: it runs outside the cgroup.
  bool cgroup_required = false;
};

// A started child. Pipe ends are non-blocking and close-on-exec; absent ones are invalid.
struct SpawnedChild {
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd stdin_fd;   // Write end (kPipe), or the pty master (dup).
  UniqueFd stdout_fd;  // Read end (kPipe or merged), or the pty master.
  UniqueFd stderr_fd;  // Read end (kPipe).
  // With cgroup_procs_fd: whether the child joined the cgroup, and else why not (errno).
  bool joined_cgroup = false;
  int cgroup_errno = 0;
};

class Spawner {
 public:
  virtual ~Spawner() = default;
  // Starts the child. Errors: FAILED_PRECONDITION (EXEC_FAILED) "<what> '<value>': <errno text>"
  // when the program is missing or not executable, cwd is bad, or another child-side step failed;
  // RESOURCE_EXHAUSTED (SPAWN_FAILED) when the OS refuses resources (EAGAIN, EMFILE, ENOMEM).
  virtual absl::StatusOr<SpawnedChild> Spawn(const SpawnOptions& options) = 0;
};

// The clone-based spawner described above. Spawns and the orphan reaper (reaper.h) coordinate
// through SpawnGuard so that a child is registered before a reaper may see it.
std::unique_ptr<Spawner> MakeLinuxSpawner();

// Resolves `file` against the PATH entries of `env` (or a default PATH) like execvp: returns the
// path to exec or FAILED_PRECONDITION (EXEC_FAILED) with ENOENT/EACCES text.
absl::StatusOr<std::string> ResolveExecutable(const std::string& file,
                                              const std::vector<std::string>& env);

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_SPAWNER_H_
