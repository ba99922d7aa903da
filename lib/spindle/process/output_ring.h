// OutputRing: the bounded buffer one output stream of a process is kept in.
//
// Bytes are addressed by absolute offsets counted from the first byte ever appended. The ring
// keeps the last `capacity` bytes; older ones are dropped, and a read from before the oldest
// retained byte returns a gap marker first. Memory grows with what was written, up to `capacity`
// (a process that writes a few bytes costs a few bytes), and never beyond it.
//
// Thread-safety: thread-compatible; ProcessTable guards each ring with its record's mutex.
#ifndef SPINDLE_PROCESS_OUTPUT_RING_H_
#define SPINDLE_PROCESS_OUTPUT_RING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace spindle::process {

class OutputRing {
 public:
  // REQUIRES: capacity > 0.
  explicit OutputRing(int64_t capacity) : capacity_(capacity) {}

  void Append(absl::string_view data);

  // Offset just past the last byte appended (= total bytes ever appended).
  int64_t end_offset() const { return end_; }
  // Offset of the oldest retained byte (= bytes dropped so far).
  int64_t start_offset() const { return end_ - size_; }
  int64_t capacity() const { return capacity_; }

  // Reads up to `max_bytes` from `offset`. When `offset` is before start_offset() returns the
  // number of lost bytes in `*dropped` (and no data); the caller resumes at offset + *dropped.
  // Reads at or past end_offset() return "" with *dropped = 0.
  std::string Read(int64_t offset, int64_t max_bytes, int64_t* dropped) const;

 private:
  const int64_t capacity_;
  std::vector<char> buffer_;  // Grows to capacity_, then wraps.
  int64_t end_ = 0;
  int64_t size_ = 0;  // Retained bytes; <= buffer_.size().
};

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_OUTPUT_RING_H_
