// Signal names and numbers as clients spell them: "SIGTERM", "term", "15", "SIGRTMIN+2".
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_PROCESS_SIGNALS_H_
#define SPINDLE_PROCESS_SIGNALS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spindle/process/types.h"

namespace spindle::process {

// The signal number for `spec` (name or number), 1..64. INVALID_ARGUMENT (reason INVALID_SIGNAL)
// naming `field` for an unset spec, an unknown name, 0 or a number out of range.
absl::StatusOr<int> ResolveSignal(absl::string_view field, const SignalSpec& spec);

// "SIGTERM", "SIGRTMIN+3", or "SIG<n>" for a number without a name.
std::string SignalName(int signal_number);

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_SIGNALS_H_
