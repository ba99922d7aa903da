// OutputFollower: the reading side shared by ReadOutput and Attach. It walks a process's output
// rings from given offsets and says what to send next: a chunk, a gap marker, the final status,
// or nothing yet (then, when following, it registers a continuation with the table that fires
// on new output or a final state).
//
// Thread-safety: thread-compatible; the owning reactor serialises calls under its own mutex.
#ifndef SPINDLE_SERVICES_PROCESS_OUTPUT_FOLLOWER_H_
#define SPINDLE_SERVICES_PROCESS_OUTPUT_FOLLOWER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "spindle/process/process_table.h"

namespace spindle::services {

class OutputFollower {
 public:
  struct Next {
    enum Kind { kChunk, kGap, kExited, kEnd, kWait } kind = kEnd;
    process::OutputChunk chunk;     // kChunk, kGap.
    process::ProcessStatus status;  // kExited.
  };

  // `stream` is STDOUT, STDERR or BOTH. `max_bytes` 0: no limit.
  OutputFollower(process::ProcessTable& table, std::string id, process::OutputStream stream,
                 int64_t stdout_offset, int64_t stderr_offset, bool follow, int64_t max_bytes,
                 int64_t max_chunk_bytes)
      : table_(table),
        id_(std::move(id)),
        stream_(stream),
        offsets_{stdout_offset, stderr_offset},
        follow_(follow),
        max_bytes_(max_bytes),
        max_chunk_(max_chunk_bytes) {}

  // What to send next. kWait: nothing now and following; call WaitForChange. kEnd: end the
  // stream OK (not final and not following, or max_bytes reached). After kExited comes kEnd.
  absl::StatusOr<Next> Poll();

  int64_t offset(process::OutputStream stream) const {
    return offsets_[stream == process::OutputStream::kStderr ? 1 : 0];
  }
  const std::string& id() const { return id_; }
  bool follow() const { return follow_; }

 private:
  bool Wants(process::OutputStream s) const {
    return stream_ == process::OutputStream::kBoth || stream_ == s;
  }

  process::ProcessTable& table_;
  const std::string id_;
  const process::OutputStream stream_;
  int64_t offsets_[2];
  const bool follow_;
  const int64_t max_bytes_;
  const int64_t max_chunk_;
  int64_t sent_bytes_ = 0;
  int turn_ = 0;
  bool exited_sent_ = false;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_OUTPUT_FOLLOWER_H_
