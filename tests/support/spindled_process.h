// Starts the real spindled binary on ephemeral loopback ports for a test, and stops it.
//
// The binary is started with --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 plus any extra
// flags; Start() waits (bounded) for its "event=listening" log line and reads the bound addresses
// from it. Its stderr is drained on a thread and kept, so a test can assert on the logs.
//
// Thread-safety: thread-compatible; logs() is thread-safe.
#ifndef SPINDLE_TESTS_SUPPORT_SPINDLED_PROCESS_H_
#define SPINDLE_TESTS_SUPPORT_SPINDLED_PROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace spindle::testing {

// The path of the spindled binary under test (set by CMake).
std::string SpindledPath();
// The path of the spindlectl binary under test (set by CMake).
std::string SpindlectlPath();

struct ExitResult {
  bool exited = false;  // false: killed by a signal
  int code = 0;         // exit code or signal number
};

class SpindledProcess {
 public:
  SpindledProcess() = default;
  ~SpindledProcess();  // Kills the process if it still runs.

  // Starts spindled with `extra_flags` and waits up to `timeout` until it listens.
  absl::Status Start(std::vector<std::string> extra_flags = {},
                     absl::Duration timeout = absl::Seconds(30));

  // Sends `signal` and waits up to `timeout` for the exit; nullopt on timeout.
  std::optional<ExitResult> SignalAndWait(int signal, absl::Duration timeout);

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  std::string logs() const;

 private:
  void DrainStderr(int fd);

  pid_t pid_ = -1;
  std::string address_;
  std::string metrics_address_;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::string logs_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs `argv` to completion (bounded by `timeout`, then killed) and returns its exit and output.
struct CommandResult {
  ExitResult exit;
  std::string out;
  std::string err;
};
absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout = absl::Seconds(60));

// GET http://<address><path>; the body on 200, an error otherwise.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path);

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_SUPPORT_SPINDLED_PROCESS_H_
