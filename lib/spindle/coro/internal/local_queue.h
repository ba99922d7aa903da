// A worker's local run queue: a bounded ring that only its owner pushes to and that any worker
// pops from (the owner to run, idle workers to steal half of it).
//
// Items are opaque non-null pointers. The owner pushes at the tail with plain stores; consumers
// claim items at the head with a compare-and-swap, so a pop costs one uncontended CAS and stealing
// never blocks the owner. Order is FIFO for everyone, which is what makes Yield() fair.
//
// Thread-safety: Push() and the destination side of StealHalf() are owner-only; Pop(),
// StealHalf() on the source and SizeApprox() are safe from any thread.
#ifndef SPINDLE_CORO_INTERNAL_LOCAL_QUEUE_H_
#define SPINDLE_CORO_INTERNAL_LOCAL_QUEUE_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spindle::coro::internal {

class LocalQueue {
 public:
  static constexpr uint32_t kCapacity = 256;

  // Owner only. Returns false (and leaves the queue unchanged) when the queue is full.
  bool Push(void* item) noexcept {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    const uint32_t head = head_.load(std::memory_order_acquire);
    if (tail - head >= kCapacity) {
      return false;
    }
    slots_[tail & kMask].store(item, std::memory_order_relaxed);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // Any thread. Returns the oldest item, or nullptr when empty.
  void* Pop() noexcept {
    uint32_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      const uint32_t tail = tail_.load(std::memory_order_acquire);
      if (head == tail) {
        return nullptr;
      }
      // May read a slot the owner is overwriting; then the CAS fails because head moved on.
      void* item = slots_[head & kMask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return item;
      }
    }
  }

  // Called by the owner of `this` (which must be empty) to take the older half of `victim`'s
  // items. Returns one of them to run now and queues the rest here; nullptr if `victim` was empty.
  void* StealHalf(LocalQueue& victim, size_t* stolen) noexcept {
    std::array<void*, kCapacity / 2> items;
    uint32_t head = victim.head_.load(std::memory_order_acquire);
    uint32_t count = 0;
    for (;;) {
      const uint32_t tail = victim.tail_.load(std::memory_order_acquire);
      const uint32_t available = tail - head;
      if (available == 0 || available > kCapacity) {  // > kCapacity: a stale head, retry.
        if (available == 0) {
          *stolen = 0;
          return nullptr;
        }
        head = victim.head_.load(std::memory_order_acquire);
        continue;
      }
      count = available - available / 2;
      if (count > items.size()) {
        count = items.size();
      }
      for (uint32_t i = 0; i < count; ++i) {
        items[i] = victim.slots_[(head + i) & kMask].load(std::memory_order_relaxed);
      }
      if (victim.head_.compare_exchange_weak(head, head + count, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
        break;
      }
    }
    for (uint32_t i = 1; i < count; ++i) {
      Push(items[i]);  // Cannot fail: this queue was empty and count <= kCapacity / 2.
    }
    *stolen = count;
    return items[0];
  }

  // Any thread; a snapshot that may be stale by the time it is used.
  size_t SizeApprox() const noexcept {
    const uint32_t tail = tail_.load(std::memory_order_acquire);
    const uint32_t head = head_.load(std::memory_order_acquire);
    const uint32_t size = tail - head;
    return size > kCapacity ? 0 : size;
  }

 private:
  static constexpr uint32_t kMask = kCapacity - 1;
  static_assert((kCapacity & kMask) == 0, "capacity must be a power of two");

  alignas(64) std::atomic<uint32_t> head_{0};  // Next item to take; advanced by CAS.
  alignas(64) std::atomic<uint32_t> tail_{0};  // Next free slot; written by the owner only.
  std::array<std::atomic<void*>, kCapacity> slots_{};
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_LOCAL_QUEUE_H_
