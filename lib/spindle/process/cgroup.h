// Cgroup v2 membership for process trees: every process spindled spawns can be born inside a
// cgroup of its own, so that killing its tree reaches every descendant, even one that left the
// process tree (double fork + setsid, reparented) and scrubbed its environment (process_tree.h).
//
// Only membership and cgroup.kill are used: no controller is enabled in any subtree_control, so
// this works on a delegated or nested hierarchy as long as spindled may create directories under
// its own cgroup. Layout:
//
//   <cgroup2 mount><spindled's own cgroup>/spindle-<pid>-<n>/   one per ProcessTable (CgroupTree)
//     <process id>/                                            one per process (all its runs)
//
// The child joins its process cgroup between clone and exec by writing "0" to an fd of its
// cgroup.procs opened by the parent (SpawnOptions::cgroup_procs_fd), so every descendant is
// created inside it: there is no window in which a fork escapes.
//
// Where cgroup v2 is not usable (no cgroup2 mount, read-only, EPERM) CgroupTree::Create fails
// with the reason and callers fall back to the process-tree mechanism.
//
// Thread-safety: CgroupTree is thread-safe (immutable after Create); the free functions are
// thread-safe (they only touch the filesystem).
#ifndef SPINDLE_PROCESS_CGROUP_H_
#define SPINDLE_PROCESS_CGROUP_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spindle/process/unique_fd.h"

namespace spindle::process {

// --cgroups: off (never), auto (when the host allows it), required (startup fails without).
enum class CgroupMode { kOff, kAuto, kRequired };

// Parses "off", "auto" or "required". INVALID_ARGUMENT (INVALID_FLAG) naming `flag` and the value.
absl::StatusOr<CgroupMode> ParseCgroupMode(absl::string_view flag, absl::string_view value);
absl::string_view CgroupModeName(CgroupMode mode);

// Where the cgroup2 hierarchy is mounted, from /proc/self/mountinfo text: the mount point and the
// hierarchy path mounted there (root, "/" unless a sub-cgroup was bind-mounted). nullopt: none.
struct Cgroup2Mount {
  std::string mount_point;
  std::string root;
};
std::optional<Cgroup2Mount> FindCgroup2Mount(absl::string_view mountinfo);

// The unified-hierarchy path from /proc/self/cgroup text (the "0::<path>" line). nullopt: none.
std::optional<std::string> UnifiedCgroupPath(absl::string_view proc_cgroup);

// The directory of the calling process's own cgroup v2. FAILED_PRECONDITION
// (CGROUPS_UNAVAILABLE) saying why when there is no cgroup2 mount or this process's cgroup is not
// visible under it. The paths are parameters for tests.
absl::StatusOr<std::string> OwnCgroupDir(absl::string_view mountinfo_path = "/proc/self/mountinfo",
                                         absl::string_view cgroup_path = "/proc/self/cgroup");

// The per-server parent cgroup. Created (mkdir) by Create, removed by the destructor: leftover
// process cgroups are removed first; any still-live members (descendants that outlived their
// process and were not killed by the table's shutdown) are moved back to spindled's own cgroup so
// no directory is left behind.
class CgroupTree {
 public:
  // Finds spindled's own cgroup and creates spindle-<pid>-<n> under it, after removing the
  // spindle-<pid>-* left there by servers whose pid no longer exists (killed before they could
  // clean up; their surviving members move to spindled's cgroup). FAILED_PRECONDITION
  // (CGROUPS_UNAVAILABLE) "<what> '<path>': <errno text>" when the host does not allow it.
  // `own_dir` empty: OwnCgroupDir().
  static absl::StatusOr<std::unique_ptr<CgroupTree>> Create(bool required,
                                                            std::string own_dir = "");
  ~CgroupTree();
  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;

  // The server's parent cgroup directory.
  const std::string& dir() const { return dir_; }
  // Whether a process that cannot join its cgroup must fail to spawn (--cgroups=required).
  bool required() const { return required_; }

  // Creates the cgroup of one process (an existing one is reused) and returns its directory.
  // `name` must be a single path component. FAILED_PRECONDITION (CGROUP_FAILED) naming the path.
  absl::StatusOr<std::string> MakeProcessCgroup(absl::string_view name) const;

 private:
  CgroupTree(std::string own_dir, std::string dir, bool required);

  const std::string own_dir_;
  const std::string dir_;
  const bool required_;
};

// Opens `dir`/cgroup.procs O_WRONLY | O_CLOEXEC, for a child to join with write("0").
absl::StatusOr<UniqueFd> OpenCgroupProcs(const std::string& dir);

// Pids of the live members of cgroup `dir` (cgroup.procs); empty when it is gone.
std::vector<pid_t> CgroupMembers(const std::string& dir);

// Whether any process is still in `dir` ("populated 1" in cgroup.events). false when it is gone.
bool CgroupPopulated(const std::string& dir);

// SIGKILLs every member: "1" to cgroup.kill (kernel >= 5.14, atomic against forks), else SIGKILL to
// each pid in cgroup.procs. Returns how many members there were.
int KillCgroup(const std::string& dir);

// Removes an empty cgroup. true when it is gone (removed, or it did not exist); false while it
// still has members (EBUSY) or on another error.
bool RemoveCgroup(const std::string& dir);

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_CGROUP_H_
