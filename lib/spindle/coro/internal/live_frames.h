// Counts the live coroutine frames of the engine's coroutine types (Task<T> and the internal
// drivers behind SyncWait, WhenAll and WhenAny) for ExecutorStats::live_coroutines.
//
// The count is process-wide: a frame belongs to no executor until it runs, and may move between
// executors. Increments and decrements go to a per-thread shard so that creating frames on many
// threads does not bounce one cache line; Count() sums the shards.
//
// Thread-safety: all functions are thread-safe and lock-free.
#ifndef SPINDLE_CORO_INTERNAL_LIVE_FRAMES_H_
#define SPINDLE_CORO_INTERNAL_LIVE_FRAMES_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

namespace spindle::coro::internal {

class LiveFrames {
 public:
  static void Add() noexcept { Shard().fetch_add(1, std::memory_order_relaxed); }
  static void Remove() noexcept { Shard().fetch_sub(1, std::memory_order_relaxed); }

  // Frames created and not yet destroyed. Exact when no frame is being created or destroyed.
  static int64_t Count() noexcept;

 private:
  static constexpr int kShards = 32;
  struct alignas(64) Slot {
    std::atomic<int64_t> value{0};
  };

  static std::atomic<int64_t>& Shard() noexcept {
    int index = shard_index_;
    if (index < 0) [[unlikely]] {
      index = AssignShard();
    }
    return slots_[index].value;
  }
  static int AssignShard() noexcept;

  static Slot slots_[kShards];
  static thread_local int shard_index_;
};

// Base of the engine's promise types: counts the frame in LiveFrames and allocates it with
// max_align_t alignment. Frames hold 16-byte aligned members (absl::AnyInvocable storage), and the
// plain operator new only promises that under glibc's malloc: ASan's allocator returns 8-byte
// aligned blocks for some sizes. Asking for the alignment costs nothing with glibc (memalign of
// 16 is malloc).
class FramePromise {
 public:
  FramePromise() noexcept { LiveFrames::Add(); }
  ~FramePromise() { LiveFrames::Remove(); }
  FramePromise(const FramePromise&) = delete;
  FramePromise& operator=(const FramePromise&) = delete;

  static void* operator new(std::size_t size) {
    return ::operator new (size, std::align_val_t{alignof(std::max_align_t)});
  }
  static void operator delete(void* frame) noexcept {
    ::operator delete (frame, std::align_val_t{alignof(std::max_align_t)});
  }
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_LIVE_FRAMES_H_
