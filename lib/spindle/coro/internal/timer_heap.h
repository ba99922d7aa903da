// An indexed 4-ary min-heap of intrusive timer nodes, ordered by deadline and then by insertion
// order (timers with the same deadline expire first-in, first-out).
//
// Each node records its position, so Remove() of any node is O(log n) like Push() and Pop(): a
// cancelled timer leaves the heap at once instead of lingering until its deadline. Nodes belong to
// the caller (typically they live in a suspended coroutine's frame); the heap array keeps each
// node's deadline next to its pointer (16 bytes: the four children of a node share a cache line),
// so sifting compares without touching the scattered nodes except on deadline ties; four children
// per node halve the depth of a binary heap. With 100,000 timers those misses are the cost.
//
// Thread-safety: thread-compatible; the Reactor guards it with its timer mutex.
#ifndef SPINDLE_CORO_INTERNAL_TIMER_HEAP_H_
#define SPINDLE_CORO_INTERNAL_TIMER_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace spindle::coro::internal {

struct TimerNode {
  static constexpr size_t kNotQueued = std::numeric_limits<size_t>::max();

  int64_t deadline_ns = 0;  // Monotonic clock, nanoseconds.
  uint64_t sequence = 0;    // Assigned by Push(); breaks deadline ties.
  size_t heap_index = kNotQueued;

  bool queued() const noexcept { return heap_index != kNotQueued; }
};

class TimerHeap {
 public:
  // REQUIRES: !node->queued().
  void Push(TimerNode* node);
  // REQUIRES: !empty().
  TimerNode* Pop();
  // Returns false when `node` is not in the heap.
  bool Remove(TimerNode* node);

  TimerNode* top() const noexcept { return heap_.empty() ? nullptr : heap_.front().node; }
  bool empty() const noexcept { return heap_.empty(); }
  size_t size() const noexcept { return heap_.size(); }

 private:
  static constexpr size_t kArity = 4;
  struct Entry {
    int64_t deadline_ns;
    TimerNode* node;
  };
  static bool Before(const Entry& a, const Entry& b) noexcept {
    return a.deadline_ns != b.deadline_ns ? a.deadline_ns < b.deadline_ns
                                          : a.node->sequence < b.node->sequence;
  }
  void Place(size_t index, const Entry& entry) noexcept {
    heap_[index] = entry;
    entry.node->heap_index = index;
  }
  void SiftUp(size_t index) noexcept;
  void SiftDown(size_t index) noexcept;

  std::vector<Entry> heap_;
  uint64_t next_sequence_ = 0;
};

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_TIMER_HEAP_H_
