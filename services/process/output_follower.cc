#include "services/process/output_follower.h"

#include <algorithm>

namespace spindle::services {

using process::OutputStream;

absl::StatusOr<OutputFollower::Next> OutputFollower::Poll() {
  Next next;
  if (exited_sent_ || (max_bytes_ > 0 && sent_bytes_ >= max_bytes_)) {
    next.kind = Next::kEnd;
    return next;
  }
  // The state first: a final process has all its output in the rings already.
  auto view = table_.Get(id_);
  if (!view.ok()) {
    return view.status();
  }
  bool final = process::IsFinal(view->status.state);
  for (int i = 0; i < 2; ++i) {
    OutputStream s = ((turn_ + i) % 2 == 0) ? OutputStream::kStdout : OutputStream::kStderr;
    if (!Wants(s)) continue;
    int64_t& offset = offsets_[s == OutputStream::kStderr ? 1 : 0];
    int64_t limit = max_chunk_;
    if (max_bytes_ > 0) limit = std::min(limit, max_bytes_ - sent_bytes_);
    auto chunk = table_.ReadOutput(id_, s, offset, limit);
    if (!chunk.ok()) return chunk.status();
    if (!chunk->has_value()) continue;
    turn_ = (turn_ + i + 1) % 2;
    next.chunk = std::move(**chunk);
    if (next.chunk.is_gap()) {
      next.kind = Next::kGap;
      offset += next.chunk.dropped_bytes;
    } else {
      next.kind = Next::kChunk;
      offset += static_cast<int64_t>(next.chunk.data.size());
      sent_bytes_ += static_cast<int64_t>(next.chunk.data.size());
    }
    return next;
  }
  if (final) {
    exited_sent_ = true;
    next.kind = Next::kExited;
    next.status = view->status;
    return next;
  }
  next.kind = follow_ ? Next::kWait : Next::kEnd;
  return next;
}

}  // namespace spindle::services
