// The plumbing shared by every engine wait: the completion handshake between a suspending
// coroutine and whoever ends its wait, and the intrusive FIFO lists waiters queue in.
//
// The shape of a cancellable wait (AsyncMutex::Lock, Channel::Receive, Executor::SleepFor, ...):
//
//   await_suspend(h):
//     completion_.Prepare(h, target)
//     under the primitive's mutex: grant at once (return false) or queue the waiter
//     register the cancellation callback      // may run at once if the token is cancelled
//     return completion_.FinishSuspend()      // false: the outcome is already known
//
//   granting (under the primitive's mutex): dequeue the waiter; afterwards, Complete(OK)
//   cancelling (callback): under the mutex, dequeue the waiter *if still queued*; if it was,
//                          Complete(CANCELLED...) afterwards; otherwise do nothing (granted)
//
// Exactly one side dequeues the waiter, under the primitive's mutex, so a waiter is either granted
// or cancelled, never both: a cancelled waiter is never granted, and a granted one keeps what it
// got even when cancellation races with the grant. Complete() is called without holding any lock
// and is the completer's last access to the waiter; the coroutine resumes only after both
// Complete() and FinishSuspend(), so the cancellation callback may be registered after the waiter
// is already visible to granters.
//
// Thread-safety: Completion is safe for exactly one Complete() racing with FinishSuspend();
// WaiterList is thread-compatible (guarded by its primitive's mutex).
#ifndef SPINDLE_CORO_INTERNAL_WAITER_H_
#define SPINDLE_CORO_INTERNAL_WAITER_H_

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"

namespace spindle::coro {

class Executor;

namespace internal {

// Resumes `handle` where a finished wait continues: queued to `target`'s workers (see
// executor.h, "Which thread resumes a waiter"), or inline on the calling thread when `target` is
// null (a coroutine that was not running on an executor). Defined in executor.cc.
void ResumeWaiter(Executor* target, std::coroutine_handle<> handle) noexcept;

// Executor::Current(), without including executor.h.
Executor* CurrentExecutor() noexcept;

class Completion {
 public:
  // Records who to resume and where. Call before the waiter becomes visible to completers.
  void Prepare(std::coroutine_handle<> handle, Executor* target) noexcept {
    handle_ = handle;
    target_ = target;
  }

  // The last step of await_suspend. Returns whether the coroutine stays suspended; false means the
  // outcome is already decided and the coroutine continues at once.
  bool FinishSuspend() noexcept { return pending_.fetch_sub(1, std::memory_order_acq_rel) != 1; }

  // The outcome of a wait that ends without suspending (await_ready true, or await_suspend false
  // before the waiter was published). Complete() is then never called.
  void SetInline(absl::Status status) noexcept { status_ = std::move(status); }

  // Decides the outcome. Called once, without locks held; the caller must not touch the waiter
  // afterwards (the coroutine may already be running and destroying it).
  void Complete(absl::Status status) noexcept {
    status_ = std::move(status);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      ResumeWaiter(target_, handle_);
    }
  }

  // For await_resume.
  absl::Status TakeStatus() noexcept { return std::move(status_); }

 private:
  std::coroutine_handle<> handle_;
  Executor* target_ = nullptr;
  absl::Status status_;
  std::atomic<uint32_t> pending_{2};  // Complete() and FinishSuspend().
};

// A node of a WaiterList. `queued` tells the cancellation path whether it still has to dequeue.
struct WaiterNode {
  WaiterNode* prev = nullptr;
  WaiterNode* next = nullptr;
  bool queued = false;
};

// FIFO list of waiters of type T (derived from WaiterNode); O(1) push, pop and removal.
template <typename T>
class WaiterList {
 public:
  WaiterList() = default;
  WaiterList(WaiterList&& other) noexcept
      : head_(std::exchange(other.head_, nullptr)),
        tail_(std::exchange(other.tail_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  WaiterList& operator=(WaiterList&&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  size_t size() const noexcept { return size_; }
  T* front() const noexcept { return static_cast<T*>(head_); }

  void PushBack(T* waiter) noexcept {
    WaiterNode* node = waiter;
    node->prev = tail_;
    node->next = nullptr;
    node->queued = true;
    if (tail_ != nullptr) {
      tail_->next = node;
    } else {
      head_ = node;
    }
    tail_ = node;
    ++size_;
  }

  T* PopFront() noexcept {
    WaiterNode* node = head_;
    if (node != nullptr) {
      Unlink(node);
    }
    return static_cast<T*>(node);
  }

  // Returns false when `waiter` is not queued (already dequeued by a granter).
  // REQUIRES: if queued, `waiter` is in this list.
  bool Remove(T* waiter) noexcept {
    WaiterNode* node = waiter;
    if (!node->queued) {
      return false;
    }
    Unlink(node);
    return true;
  }

 private:
  void Unlink(WaiterNode* node) noexcept {
    if (node->prev != nullptr) {
      node->prev->next = node->next;
    } else {
      head_ = node->next;
    }
    if (node->next != nullptr) {
      node->next->prev = node->prev;
    } else {
      tail_ = node->prev;
    }
    node->prev = node->next = nullptr;
    node->queued = false;
    --size_;
  }

  WaiterNode* head_ = nullptr;
  WaiterNode* tail_ = nullptr;
  size_t size_ = 0;
};

// Waiters already dequeued (under the primitive's mutex) and waiting to be completed after it is
// released, chained through WaiterNode::next; no allocation. Nodes in a chain are not `queued`, so
// a racing cancellation callback leaves them alone.
template <typename T>
class WaiterChain {
 public:
  void PushBack(T* waiter) noexcept {
    WaiterNode* node = waiter;
    node->next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = node;
    } else {
      head_ = node;
    }
    tail_ = node;
  }
  bool empty() const noexcept { return head_ == nullptr; }

  // Calls `complete(waiter)` in order. Reads each link before the call, which may free the node.
  template <typename Complete>
  void CompleteEach(Complete complete) {
    WaiterNode* node = std::exchange(head_, nullptr);
    tail_ = nullptr;
    while (node != nullptr) {
      WaiterNode* next = node->next;
      complete(static_cast<T*>(node));
      node = next;
    }
  }

 private:
  WaiterNode* head_ = nullptr;
  WaiterNode* tail_ = nullptr;
};

}  // namespace internal
}  // namespace spindle::coro

#endif  // SPINDLE_CORO_INTERNAL_WAITER_H_
