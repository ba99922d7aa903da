// Finding every descendant of a process, including those that left its process group or
// daemonised (and were reparented to spindled, the child subreaper), and reaping orphans.
//
// Descendants are found two ways: the live tree under the root (/proc/<pid>/task/*/children), and
// spindled's own children that are not tracked processes (orphans reparented to it) whose
// environment carries the process's cookie (SPINDLE_PROCESS_ID=<id>, set at spawn), with their
// trees. A descendant that both left the tree and scrubbed its environment escapes these two; where
// cgroup v2 is usable the process table closes that gap with a cgroup per process (cgroup.h),
// whose members it signals too and which it kills with cgroup.kill.
//
// Thread-safety: free functions and a thread-safe OrphanReaper.
#ifndef SPINDLE_PROCESS_PROCESS_TREE_H_
#define SPINDLE_PROCESS_PROCESS_TREE_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace spindle::process {

// The environment variable that marks every process spawned for process id X and its descendants.
inline constexpr absl::string_view kProcessCookieVar = "SPINDLE_PROCESS_ID";

// A small file (/proc, cgroupfs) read whole, up to about `max_bytes`; nullopt (errno set) when it
// cannot be opened.
std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 4 << 20);

// Direct children of process `pid` (every thread's), from /proc. Empty when it is gone.
std::vector<pid_t> ChildrenOf(pid_t pid);

// `root` (when > 0) and every live descendant, plus spindled's untracked children carrying
// `cookie` in their environment and their descendants. `is_tracked(pid)` says which of spindled's
// children are other tracked processes (never included unless under `root`).
std::vector<pid_t> FindTree(pid_t root, absl::string_view cookie,
                            const std::function<bool(pid_t)>& is_tracked);

// Sends `signal` to each pid; returns how many accepted it.
int SignalAll(const std::vector<pid_t>& pids, int signal);

// Reaps zombie children that no ProcessTable run tracks: orphans reparented to spindled. A zombie
// is reaped on the second sweep that sees it, so another component of the server that spawns and
// reaps its own children has at least one sweep interval to do so.
class OrphanReaper {
 public:
  // Returns how many zombies were reaped.
  int Sweep(const std::function<bool(pid_t)>& is_tracked);

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<pid_t> seen_zombies_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_PROCESS_TREE_H_
