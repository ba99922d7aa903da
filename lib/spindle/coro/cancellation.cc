#include "spindle/coro/cancellation.h"

#include <atomic>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro {
namespace internal {

// Shared by a source, its tokens and its registrations; reference-counted.
class CancellationState {
 public:
  CancellationState() = default;
  CancellationState(const CancellationState&) = delete;
  CancellationState& operator=(const CancellationState&) = delete;

  void Ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      delete this;
    }
  }

  bool IsCancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  absl::Status reason() const {
    internal::MutexLock lock(&mu_);
    return reason_;
  }

  bool Cancel(absl::Status reason) {
    if (reason.ok()) {
      reason = spindle::Cancelled("cancellation requested");
    }
    // A callback may drop the last other reference: a coroutine it resumes inline can leave the
    // scope of the source (e.g. a DeadlineSource whose timer is firing) and drop its wait. Keep
    // the state alive until the loop below is done with it.
    Ref();
    mu_.Lock();
    if (cancelled_.load(std::memory_order_relaxed)) {
      mu_.Unlock();
      Unref();
      return false;
    }
    reason_ = std::move(reason);
    cancelled_.store(true, std::memory_order_release);
    canceller_ = std::this_thread::get_id();
    while (CancellationCallback* callback = head_) {
      Unlink(callback);
      running_ = callback;
      mu_.Unlock();
      callback->invoke_(callback);  // May destroy `callback`.
      mu_.Lock();
      running_ = nullptr;
      callback_done_.SignalAll();
    }
    mu_.Unlock();
    Unref();  // May delete this.
    return true;
  }

  // Links `registration`; returns false (not linked) when already cancelled.
  bool Register(CancellationCallback* registration) {
    internal::MutexLock lock(&mu_);
    if (cancelled_.load(std::memory_order_relaxed)) {
      return false;
    }
    registration->prev_ = tail_;
    registration->next_ = nullptr;
    if (tail_ != nullptr) {
      tail_->next_ = registration;
    } else {
      head_ = registration;
    }
    tail_ = registration;
    registration->linked_ = true;
    return true;
  }

  void Deregister(CancellationCallback* registration) {
    internal::MutexLock lock(&mu_);
    if (registration->linked_) {
      Unlink(registration);
      return;
    }
    // Its callback ran or is running. Wait unless it runs on this very thread (a callback
    // destroying its own registration, or a nested deregistration inside a callback).
    while (running_ == registration && canceller_ != std::this_thread::get_id()) {
      callback_done_.Wait(&mu_);
    }
  }

 private:
  void Unlink(CancellationCallback* registration) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (registration->prev_ != nullptr) {
      registration->prev_->next_ = registration->next_;
    } else {
      head_ = registration->next_;
    }
    if (registration->next_ != nullptr) {
      registration->next_->prev_ = registration->prev_;
    } else {
      tail_ = registration->prev_;
    }
    registration->prev_ = registration->next_ = nullptr;
    registration->linked_ = false;
  }

  std::atomic<int32_t> refs_{1};
  std::atomic<bool> cancelled_{false};
  mutable internal::Mutex mu_;
  internal::CondVar callback_done_;
  absl::Status reason_ ABSL_GUARDED_BY(mu_);
  CancellationCallback* head_ ABSL_GUARDED_BY(mu_) = nullptr;
  CancellationCallback* tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The callback Cancel() is running, and the thread running it.
  CancellationCallback* running_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread::id canceller_ ABSL_GUARDED_BY(mu_);
};

// Owns one reference on a state.
class StateRef {
 public:
  explicit StateRef(CancellationState* state) noexcept : state_(state) { state_->Ref(); }
  StateRef(StateRef&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  StateRef& operator=(StateRef&&) = delete;
  ~StateRef() {
    if (state_ != nullptr) {
      state_->Unref();
    }
  }
  CancellationState* get() const noexcept { return state_; }

 private:
  CancellationState* state_;
};

absl::Status AbandonedWait(const CancellationToken& token, absl::string_view what) {
  return spindle::Annotate(token.status(), absl::StrCat("waiting for ", what));
}

}  // namespace internal

// CancellationToken

CancellationToken::CancellationToken(const CancellationToken& other) noexcept
    : state_(other.state_) {
  if (state_ != nullptr) {
    state_->Ref();
  }
}

CancellationToken::CancellationToken(CancellationToken&& other) noexcept
    : state_(std::exchange(other.state_, nullptr)) {}

CancellationToken& CancellationToken::operator=(const CancellationToken& other) noexcept {
  if (other.state_ != nullptr) {
    other.state_->Ref();
  }
  if (state_ != nullptr) {
    state_->Unref();
  }
  state_ = other.state_;
  return *this;
}

CancellationToken& CancellationToken::operator=(CancellationToken&& other) noexcept {
  if (this != &other) {
    if (state_ != nullptr) {
      state_->Unref();
    }
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

CancellationToken::~CancellationToken() {
  if (state_ != nullptr) {
    state_->Unref();
  }
}

bool CancellationToken::IsCancelled() const noexcept {
  return state_ != nullptr && state_->IsCancelled();
}

absl::Status CancellationToken::status() const {
  if (state_ == nullptr || !state_->IsCancelled()) {
    return absl::OkStatus();
  }
  return state_->reason();
}

// CancellationSource

CancellationSource::CancellationSource() : state_(new internal::CancellationState()) {}

CancellationSource::CancellationSource(const CancellationToken& parent) : CancellationSource() {
  if (!parent.CanBeCancelled()) {
    return;
  }
  // The callback holds its own reference on this source's state, so a moved or destroyed source
  // cannot pull the state from under a Cancel() running on the parent's thread.
  parent_link_ = std::make_unique<CancellationRegistration>(
      parent, [child = internal::StateRef(state_), parent_state = parent.state_] {
        // parent_state is alive: the parent's Cancel() is running this callback.
        child.get()->Cancel(parent_state->reason());
      });
}

CancellationSource::CancellationSource(CancellationSource&& other) noexcept
    : state_(std::exchange(other.state_, nullptr)), parent_link_(std::move(other.parent_link_)) {}

CancellationSource& CancellationSource::operator=(CancellationSource&& other) noexcept {
  if (this != &other) {
    parent_link_.reset();
    if (state_ != nullptr) {
      state_->Unref();
    }
    state_ = std::exchange(other.state_, nullptr);
    parent_link_ = std::move(other.parent_link_);
  }
  return *this;
}

CancellationSource::~CancellationSource() {
  parent_link_.reset();
  if (state_ != nullptr) {
    state_->Unref();
  }
}

CancellationToken CancellationSource::token() const noexcept {
  if (state_ == nullptr) {
    return CancellationToken();
  }
  state_->Ref();
  return CancellationToken(state_);
}

bool CancellationSource::Cancel() { return Cancel(absl::OkStatus()); }

bool CancellationSource::Cancel(absl::Status reason) {
  return state_ != nullptr && state_->Cancel(std::move(reason));
}

bool CancellationSource::IsCancelled() const noexcept {
  return state_ != nullptr && state_->IsCancelled();
}

// CancellationCallback and CancellationRegistration

namespace internal {

void CancellationCallback::Register(const CancellationToken& token) {
  CancellationState* state = token.state_;
  if (state == nullptr) {
    return;
  }
  state->Ref();
  state_ = state;
  if (state->Register(this)) {
    return;
  }
  state_ = nullptr;
  state->Unref();
  invoke_(this);  // Already cancelled.
}

void CancellationCallback::Deregister() {
  if (state_ != nullptr) {
    state_->Deregister(this);
    std::exchange(state_, nullptr)->Unref();
  }
}

}  // namespace internal

CancellationRegistration::CancellationRegistration(const CancellationToken& token,
                                                   absl::AnyInvocable<void()> callback)
    : CancellationCallback(&CancellationRegistration::Run), callback_(std::move(callback)) {
  Register(token);
}

void CancellationRegistration::Run(internal::CancellationCallback* self) {
  // Moved out first: the callback may destroy its own registration.
  absl::AnyInvocable<void()> callback =
      std::move(static_cast<CancellationRegistration*>(self)->callback_);
  callback();
}

}  // namespace spindle::coro
