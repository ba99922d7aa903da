#include "spindle/coro/internal/timer_heap.h"

namespace spindle::coro::internal {

void TimerHeap::Push(TimerNode* node) {
  node->sequence = next_sequence_++;
  heap_.push_back(node);
  node->heap_index = heap_.size() - 1;
  SiftUp(node->heap_index);
}

TimerNode* TimerHeap::Pop() {
  TimerNode* node = heap_.front();
  Remove(node);
  return node;
}

bool TimerHeap::Remove(TimerNode* node) {
  const size_t index = node->heap_index;
  if (index >= heap_.size() || heap_[index] != node) {
    return false;
  }
  TimerNode* last = heap_.back();
  heap_.pop_back();
  node->heap_index = TimerNode::kNotQueued;
  if (last != node) {
    Place(index, last);
    // The moved node may belong above or below its new position.
    SiftUp(index);
    SiftDown(last->heap_index);
  }
  return true;
}

void TimerHeap::SiftUp(size_t index) noexcept {
  TimerNode* node = heap_[index];
  while (index > 0) {
    const size_t parent = (index - 1) / 2;
    if (!Before(node, heap_[parent])) {
      break;
    }
    Place(index, heap_[parent]);
    index = parent;
  }
  Place(index, node);
}

void TimerHeap::SiftDown(size_t index) noexcept {
  TimerNode* node = heap_[index];
  const size_t size = heap_.size();
  for (;;) {
    size_t child = 2 * index + 1;
    if (child >= size) {
      break;
    }
    if (child + 1 < size && Before(heap_[child + 1], heap_[child])) {
      ++child;
    }
    if (!Before(heap_[child], node)) {
      break;
    }
    Place(index, heap_[child]);
    index = child;
  }
  Place(index, node);
}

}  // namespace spindle::coro::internal
