#include "spindle/coro/async_event.h"

#include "absl/base/internal/raw_logging.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro {

AsyncEvent::~AsyncEvent() {
  internal::MutexLock lock(&mu_);
  ABSL_RAW_CHECK(waiters_.empty(), "AsyncEvent destroyed while coroutines wait on it");
}

void AsyncEvent::Set() {
  internal::WaiterChain<WaitOperation> woken;
  {
    internal::MutexLock lock(&mu_);
    if (set_.load(std::memory_order_relaxed)) {
      return;
    }
    set_.store(true, std::memory_order_release);
    while (WaitOperation* waiter = waiters_.PopFront()) {
      woken.PushBack(waiter);
    }
  }
  woken.CompleteEach(
      [](WaitOperation* waiter) { waiter->completion().Complete(absl::OkStatus()); });
}

void AsyncEvent::Clear() {
  internal::MutexLock lock(&mu_);
  set_.store(false, std::memory_order_release);
}

size_t AsyncEvent::waiters() const {
  internal::MutexLock lock(&mu_);
  return waiters_.size();
}

bool AsyncEvent::WaitOperation::await_ready() {
  if (EndIfCancelled(what_)) {
    return true;
  }
  if (event_->IsSet()) {
    EndInline(absl::OkStatus());
    return true;
  }
  return false;
}

bool AsyncEvent::WaitOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle);
  {
    internal::MutexLock lock(&event_->mu_);
    if (event_->set_.load(std::memory_order_relaxed)) {
      EndInline(absl::OkStatus());
      return false;
    }
    event_->waiters_.PushBack(this);
  }
  return Suspend<&WaitOperation::OnCancel>(this);
}

void AsyncEvent::WaitOperation::OnCancel() {
  bool removed;
  {
    internal::MutexLock lock(&event_->mu_);
    removed = event_->waiters_.Remove(this);
  }
  if (removed) {
    completion().Complete(internal::AbandonedWait(token(), what_));
  }
}

}  // namespace spindle::coro
