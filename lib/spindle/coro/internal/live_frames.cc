#include "spindle/coro/internal/live_frames.h"

namespace spindle::coro::internal {

LiveFrames::Slot LiveFrames::slots_[LiveFrames::kShards];
thread_local int LiveFrames::shard_index_ = -1;

int LiveFrames::AssignShard() noexcept {
  static std::atomic<uint32_t> next{0};
  shard_index_ = static_cast<int>(next.fetch_add(1, std::memory_order_relaxed) % kShards);
  return shard_index_;
}

int64_t LiveFrames::Count() noexcept {
  int64_t total = 0;
  for (const Slot& slot : slots_) {
    total += slot.value.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace spindle::coro::internal
