#include "spindle/coro/internal/timer_heap.h"

namespace spindle::coro::internal {

void TimerHeap::Push(TimerNode* node) {
  node->sequence = next_sequence_++;
  heap_.push_back(Entry{node->deadline_ns, node});
  node->heap_index = heap_.size() - 1;
  SiftUp(node->heap_index);
}

TimerNode* TimerHeap::Pop() {
  TimerNode* node = heap_.front().node;
  Remove(node);
  return node;
}

bool TimerHeap::Remove(TimerNode* node) {
  const size_t index = node->heap_index;
  if (index >= heap_.size() || heap_[index].node != node) {
    return false;
  }
  const Entry last = heap_.back();
  heap_.pop_back();
  node->heap_index = TimerNode::kNotQueued;
  if (last.node != node) {
    Place(index, last);
    // The moved entry may belong above or below its new position.
    SiftUp(index);
    SiftDown(last.node->heap_index);
  }
  return true;
}

void TimerHeap::SiftUp(size_t index) noexcept {
  const Entry entry = heap_[index];
  while (index > 0) {
    const size_t parent = (index - 1) / kArity;
    if (!Before(entry, heap_[parent])) {
      break;
    }
    Place(index, heap_[parent]);
    index = parent;
  }
  Place(index, entry);
}

void TimerHeap::SiftDown(size_t index) noexcept {
  const Entry entry = heap_[index];
  const size_t size = heap_.size();
  for (;;) {
    const size_t first = kArity * index + 1;
    if (first >= size) {
      break;
    }
    const size_t end = first + kArity < size ? first + kArity : size;
    size_t child = first;
    for (size_t c = first + 1; c < end; ++c) {
      if (Before(heap_[c], heap_[child])) {
        child = c;
      }
    }
    if (!Before(heap_[child], entry)) {
      break;
    }
    Place(index, heap_[child]);
    index = child;
  }
  Place(index, entry);
}

}  // namespace spindle::coro::internal
