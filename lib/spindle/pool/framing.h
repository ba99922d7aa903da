// The worker framing: how a WORKER pool talks to its long-lived worker processes over their
// stdin (tasks) and stdout (answers). docs/api/pools.md is the normative description; the
// shipped Python helper (python/spindle_worker.py) implements the worker side.
//
// A frame is 5 header bytes and a payload: one type byte, then the payload length as an unsigned
// 32-bit big-endian integer, then that many payload bytes.
//   'R' worker -> server: ready (payload ignored); sent once after start-up.
//   'T' server -> worker: a task; payload = the task's payload bytes.
//   'O' worker -> server: the task succeeded; payload = its result bytes.
//   'E' worker -> server: the task failed; payload = error text (e.g. a traceback).
// A worker handles one task at a time and answers every 'T' with exactly one 'O' or 'E'. EOF on
// its stdin asks it to exit.
//
// Thread-safety: FrameReader is thread-compatible; the free functions are thread-safe.
#ifndef SPINDLE_POOL_FRAMING_H_
#define SPINDLE_POOL_FRAMING_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spindle::pool {

inline constexpr char kFrameReady = 'R';
inline constexpr char kFrameTask = 'T';
inline constexpr char kFrameOk = 'O';
inline constexpr char kFrameError = 'E';
inline constexpr size_t kFrameHeaderBytes = 5;
// Largest payload a worker may send.
inline constexpr uint32_t kMaxFramePayload = 64u << 20;

struct Frame {
  char type = 0;
  std::string payload;
};

// Appends one encoded frame to `out`.
void AppendFrame(char type, absl::string_view payload, std::string& out);

// Splits a byte stream into frames.
class FrameReader {
 public:
  void Append(absl::string_view data) { buffer_.append(data.data(), data.size()); }
  // The next complete frame, nullopt when more bytes are needed, or INVALID_ARGUMENT
  // (BAD_FRAME) for an unknown type or a payload over kMaxFramePayload.
  absl::StatusOr<std::optional<Frame>> Next();
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  size_t consumed_ = 0;
};

}  // namespace spindle::pool

#endif  // SPINDLE_POOL_FRAMING_H_
