#include "spindle/coro/async_mutex.h"

#include "absl/base/internal/raw_logging.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro {

namespace {
constexpr char kWhat[] = "AsyncMutex lock";
}  // namespace

AsyncMutex::~AsyncMutex() {
  internal::MutexLock lock(&mu_);
  ABSL_RAW_CHECK(!locked_ && waiters_.empty(), "AsyncMutex destroyed while locked or waited for");
}

std::optional<AsyncMutex::Guard> AsyncMutex::TryLock() {
  internal::MutexLock lock(&mu_);
  if (locked_) {
    return std::nullopt;
  }
  locked_ = true;
  return Guard(this);
}

bool AsyncMutex::IsLocked() const {
  internal::MutexLock lock(&mu_);
  return locked_;
}

size_t AsyncMutex::waiters() const {
  internal::MutexLock lock(&mu_);
  return waiters_.size();
}

void AsyncMutex::Unlock() {
  LockOperation* next;
  {
    internal::MutexLock lock(&mu_);
    next = waiters_.PopFront();
    if (next == nullptr) {
      locked_ = false;
    }
    // Otherwise the lock passes to `next` and stays locked.
  }
  if (next != nullptr) {
    next->completion().Complete(absl::OkStatus());
  }
}

bool AsyncMutex::LockOperation::await_ready() {
  if (EndIfCancelled(kWhat)) {
    return true;
  }
  internal::MutexLock lock(&mutex_->mu_);
  if (!mutex_->locked_) {
    mutex_->locked_ = true;
    EndInline(absl::OkStatus());
    return true;
  }
  return false;
}

bool AsyncMutex::LockOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle);
  {
    internal::MutexLock lock(&mutex_->mu_);
    if (!mutex_->locked_) {
      mutex_->locked_ = true;
      EndInline(absl::OkStatus());
      return false;
    }
    mutex_->waiters_.PushBack(this);
  }
  return Suspend<&LockOperation::OnCancel>(this);
}

absl::StatusOr<AsyncMutex::Guard> AsyncMutex::LockOperation::await_resume() {
  absl::Status status = TakeResult();
  if (!status.ok()) {
    return status;
  }
  return Guard(mutex_);
}

void AsyncMutex::LockOperation::OnCancel() {
  bool removed;
  {
    internal::MutexLock lock(&mutex_->mu_);
    removed = mutex_->waiters_.Remove(this);
  }
  if (removed) {
    completion().Complete(internal::AbandonedWait(token(), kWhat));
  }
}

}  // namespace spindle::coro
