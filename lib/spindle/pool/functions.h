// FunctionRegistry: the native functions THREAD pools run, by name. An embedder extends it with
// Register() before (or while) serving; the built-ins are:
//   sleep     args: [ms]. Sleeps, returns early (error "cancelled") when the task is cancelled or
//             times out. Output: "slept <ms> ms".
//   checksum  args: [path] or none (then `input` is hashed). Output: "crc32:<8 hex digits>" of the
//             file's or input's bytes (CRC-32/ISO-HDLC, as zlib's crc32; not cryptographic).
//   echo      Output: `input`.
//   fail      Always fails with the args joined by spaces as the error (for tests and demos).
//
// Thread-safety: thread-safe. Functions run on pool threads, several at once.
#ifndef SPINDLE_POOL_FUNCTIONS_H_
#define SPINDLE_POOL_FUNCTIONS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace spindle::pool {

// What a function gets: its arguments and a way to notice cancellation.
class CallContext {
 public:
  CallContext(const std::vector<std::string>& args, const std::string& input,
              std::shared_ptr<absl::Notification> cancelled)
      : args_(args), input_(input), cancelled_(std::move(cancelled)) {}

  const std::vector<std::string>& args() const { return args_; }
  const std::string& input() const { return input_; }
  // True once the task was cancelled or timed out; a long function should check it.
  bool cancelled() const { return cancelled_->HasBeenNotified(); }
  // Waits up to `d`; true when cancelled in the meantime.
  bool WaitCancelled(absl::Duration d) const {
    return cancelled_->WaitForNotificationWithTimeout(d);
  }

 private:
  const std::vector<std::string>& args_;
  const std::string& input_;
  std::shared_ptr<absl::Notification> cancelled_;
};

// A function returns its output bytes, or an error whose message becomes the task's error.
using Function = std::function<absl::StatusOr<std::string>(const CallContext&)>;

class FunctionRegistry {
 public:
  // A registry with the built-ins.
  FunctionRegistry();

  // Adds or replaces `name` (1..128 bytes).
  void Register(const std::string& name, Function function);
  // The function, or nullptr.
  std::shared_ptr<const Function> Find(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Function>> functions_ ABSL_GUARDED_BY(mu_);
};

// CRC-32 (ISO-HDLC, zlib's) of `data`, continuing from `crc` (0 to start).
uint32_t Crc32(uint32_t crc, const char* data, size_t size);

}  // namespace spindle::pool

#endif  // SPINDLE_POOL_FUNCTIONS_H_
