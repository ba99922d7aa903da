// Resource usage of a live process, read from /proc: the process itself, not its descendants
// (those are counted by wait4 when it is reaped). CPU times and page faults come from
// /proc/PID/stat, the peak resident set and the context switches from /proc/PID/status.
//
// Thread-safety: free functions, thread-safe.
#ifndef SPINDLE_PROCESS_PROC_USAGE_H_
#define SPINDLE_PROCESS_PROC_USAGE_H_

#include <sys/types.h>

#include <optional>

#include "absl/strings/string_view.h"
#include "spindle/process/types.h"

namespace spindle::process {

// The usage of `pid`, or nullopt when it is gone or its parent is not `parent` (the pid was
// reaped and reused meanwhile).
std::optional<ProcessUsage> ReadLiveUsage(pid_t pid, pid_t parent);

// Parses the text of /proc/PID/stat and /proc/PID/status (exposed for tests). `ppid` receives the
// parent pid. nullopt when `stat` is malformed.
std::optional<ProcessUsage> ParseProcUsage(absl::string_view stat, absl::string_view status,
                                           pid_t* ppid);

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_PROC_USAGE_H_
