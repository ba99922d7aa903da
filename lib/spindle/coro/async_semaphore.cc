#include "spindle/coro/async_semaphore.h"

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro {

namespace {
constexpr char kWhat[] = "AsyncSemaphore permits";
}  // namespace

AsyncSemaphore::AsyncSemaphore(int64_t permits) : available_(permits < 0 ? 0 : permits) {
  ABSL_RAW_CHECK(permits >= 0, "AsyncSemaphore permits must be >= 0");
}

AsyncSemaphore::~AsyncSemaphore() {
  internal::MutexLock lock(&mu_);
  ABSL_RAW_CHECK(waiters_.empty(), "AsyncSemaphore destroyed while coroutines wait on it");
}

bool AsyncSemaphore::TryAcquire(int64_t count) {
  if (count < 0) {
    return false;
  }
  internal::MutexLock lock(&mu_);
  if (!waiters_.empty() || available_ < count) {
    return false;
  }
  available_ -= count;
  return true;
}

void AsyncSemaphore::Release(int64_t count) {
  ABSL_RAW_CHECK(count >= 0, "AsyncSemaphore::Release() of a negative count");
  Granted granted;
  {
    internal::MutexLock lock(&mu_);
    available_ += count;
    GrantWaiters(granted);
  }
  Complete(granted);
}

int64_t AsyncSemaphore::available() const {
  internal::MutexLock lock(&mu_);
  return available_;
}

size_t AsyncSemaphore::waiters() const {
  internal::MutexLock lock(&mu_);
  return waiters_.size();
}

void AsyncSemaphore::GrantWaiters(Granted& granted) {
  while (!waiters_.empty() && waiters_.front()->count_ <= available_) {
    AcquireOperation* waiter = waiters_.PopFront();
    available_ -= waiter->count_;
    granted.PushBack(waiter);
  }
}

void AsyncSemaphore::Complete(Granted& granted) {
  granted.CompleteEach(
      [](AcquireOperation* waiter) { waiter->completion().Complete(absl::OkStatus()); });
}

bool AsyncSemaphore::AcquireOperation::await_ready() {
  if (count_ < 0) {
    EndInline(spindle::InvalidArgument(
        "INVALID_COUNT", absl::StrCat("AsyncSemaphore::Acquire count must be >= 0, got ", count_)));
    return true;
  }
  if (EndIfCancelled(kWhat)) {
    return true;
  }
  internal::MutexLock lock(&semaphore_->mu_);
  if (semaphore_->waiters_.empty() && semaphore_->available_ >= count_) {
    semaphore_->available_ -= count_;
    EndInline(absl::OkStatus());
    return true;
  }
  return false;
}

bool AsyncSemaphore::AcquireOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle);
  {
    internal::MutexLock lock(&semaphore_->mu_);
    if (semaphore_->waiters_.empty() && semaphore_->available_ >= count_) {
      semaphore_->available_ -= count_;
      EndInline(absl::OkStatus());
      return false;
    }
    semaphore_->waiters_.PushBack(this);
  }
  return Suspend<&AcquireOperation::OnCancel>(this);
}

void AsyncSemaphore::AcquireOperation::OnCancel() {
  Granted granted;
  bool removed;
  {
    internal::MutexLock lock(&semaphore_->mu_);
    const bool was_first = semaphore_->waiters_.front() == this;
    removed = semaphore_->waiters_.Remove(this);
    if (removed && was_first) {
      // It may have been the request blocking the ones behind it.
      semaphore_->GrantWaiters(granted);
    }
  }
  if (removed) {
    completion().Complete(internal::AbandonedWait(token(), kWhat));
  }
  Complete(granted);
}

}  // namespace spindle::coro
