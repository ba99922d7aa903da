// Channel<T>: a bounded multi-producer multi-consumer queue for coroutines, FIFO on both sides and
// cancellable.
//
//   Channel<Job> jobs(/*capacity=*/64);
//   absl::Status s = co_await jobs.Send(std::move(job), token);        // waits while full
//   absl::StatusOr<Job> next = co_await jobs.Receive(token);           // waits while empty
//   jobs.Close();
//
// Capacity 0 makes a rendezvous channel: Send() completes when a receiver takes the value.
//
// Close(): later Send()s, and senders waiting at that moment, get FAILED_PRECONDITION (reason
// CHANNEL_CLOSED; a waiting sender's value was never accepted and is dropped with its operation).
// Receivers first drain what was accepted, then get OUT_OF_RANGE (reason CHANNEL_CLOSED): the end
// of the stream. No accepted item is ever lost.
//
// Cancellation removes the waiter: a cancelled receiver never consumes an item (the item goes to
// the next receiver or stays buffered), a cancelled sender's value is not enqueued.
//
// Waiters resume as described in executor.h ("Which thread resumes a waiter"); e.g. a Send() on a
// worker hands the value to a waiting receiver of the same executor, which runs on that worker
// right after the sender suspends.
//
// Thread-safety: thread-safe. The destructor requires that nobody waits.
#ifndef SPINDLE_CORO_CHANNEL_H_
#define SPINDLE_CORO_CHANNEL_H_

#include <coroutine>
#include <cstddef>
#include <deque>
#include <optional>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spindle/common/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/wait_operation.h"
#include "spindle/coro/internal/waiter.h"

namespace spindle::coro {

template <typename T>
class Channel {
 public:
  // `co_await ch.Send(value, token)` yields absl::Status.
  class [[nodiscard]] SendOperation : public internal::WaitOperation, private internal::WaiterNode {
   public:
    bool await_ready() { return EndIfCancelled("Channel send"); }
    bool await_suspend(std::coroutine_handle<> handle);
    absl::Status await_resume() noexcept { return TakeResult(); }

   private:
    friend class Channel;
    friend class internal::WaiterList<SendOperation>;
    friend class internal::WaiterChain<SendOperation>;
    SendOperation(Channel* channel, T value, CancellationToken token)
        : internal::WaitOperation(std::move(token)), channel_(channel), value_(std::move(value)) {}
    void OnCancel();

    Channel* const channel_;
    T value_;
  };

  // `co_await ch.Receive(token)` yields absl::StatusOr<T>.
  class [[nodiscard]] ReceiveOperation : public internal::WaitOperation,
                                         private internal::WaiterNode {
   public:
    bool await_ready() { return EndIfCancelled("Channel receive"); }
    bool await_suspend(std::coroutine_handle<> handle);
    absl::StatusOr<T> await_resume();

   private:
    friend class Channel;
    friend class internal::WaiterList<ReceiveOperation>;
    friend class internal::WaiterChain<ReceiveOperation>;
    ReceiveOperation(Channel* channel, CancellationToken token)
        : internal::WaitOperation(std::move(token)), channel_(channel) {}
    void OnCancel();

    Channel* const channel_;
    std::optional<T> value_;
  };

  explicit Channel(size_t capacity) : capacity_(capacity) {}
  ~Channel() {
    internal::MutexLock lock(&mu_);
    ABSL_RAW_CHECK(senders_.empty() && receivers_.empty(),
                   "Channel destroyed while coroutines wait on it");
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  SendOperation Send(T value, CancellationToken token) {
    return SendOperation(this, std::move(value), std::move(token));
  }
  ReceiveOperation Receive(CancellationToken token) {
    return ReceiveOperation(this, std::move(token));
  }

  // Without waiting: OK (accepted; `value` moved from), RESOURCE_EXHAUSTED (full; `value`
  // untouched) or FAILED_PRECONDITION (closed; `value` untouched).
  absl::Status TrySend(T&& value);
  // Without waiting: a value, nullopt when empty and open, or OUT_OF_RANGE when closed and drained.
  absl::StatusOr<std::optional<T>> TryReceive();

  // Idempotent. See the file comment.
  void Close();

  bool closed() const {
    internal::MutexLock lock(&mu_);
    return closed_;
  }
  // Buffered items.
  size_t size() const {
    internal::MutexLock lock(&mu_);
    return buffer_.size();
  }
  size_t capacity() const noexcept { return capacity_; }
  // Coroutines suspended in Send() (channel full) / Receive() (channel empty).
  size_t senders_waiting() const {
    internal::MutexLock lock(&mu_);
    return senders_.size();
  }
  size_t receivers_waiting() const {
    internal::MutexLock lock(&mu_);
    return receivers_.size();
  }

 private:
  static absl::Status SendClosed() {
    return spindle::FailedPrecondition("CHANNEL_CLOSED", "send on a closed channel");
  }
  static absl::Status ReceiveClosed() {
    return spindle::OutOfRange("CHANNEL_CLOSED", "channel is closed and drained");
  }

  // Hands `value` to a waiting receiver or buffers it. Returns the receiver to complete, if any.
  // REQUIRES: !closed_ and (a receiver waits or there is room).
  ReceiveOperation* Accept(T&& value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ReceiveOperation* receiver = receivers_.PopFront()) {
      receiver->value_.emplace(std::move(value));
      return receiver;
    }
    buffer_.push_back(std::move(value));
    return nullptr;
  }
  bool CanAccept() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !receivers_.empty() || buffer_.size() < capacity_;
  }
  // Takes the next value for a receiver: from the buffer (refilled from the oldest waiting sender)
  // or, for a rendezvous, straight from a waiting sender. Returns the sender to complete, if any.
  std::optional<T> Take(SendOperation** sender_to_complete) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    *sender_to_complete = nullptr;
    if (!buffer_.empty()) {
      std::optional<T> value(std::move(buffer_.front()));
      buffer_.pop_front();
      if (SendOperation* sender = senders_.PopFront()) {
        buffer_.push_back(std::move(sender->value_));
        *sender_to_complete = sender;
      }
      return value;
    }
    if (SendOperation* sender = senders_.PopFront()) {
      *sender_to_complete = sender;
      return std::optional<T>(std::move(sender->value_));
    }
    return std::nullopt;
  }

  const size_t capacity_;
  mutable internal::Mutex mu_;
  std::deque<T> buffer_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  internal::WaiterList<SendOperation> senders_ ABSL_GUARDED_BY(mu_);
  internal::WaiterList<ReceiveOperation> receivers_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
bool Channel<T>::SendOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle);
  ReceiveOperation* receiver = nullptr;
  bool queued = false;
  {
    internal::MutexLock lock(&channel_->mu_);
    if (channel_->closed_) {
      EndInline(SendClosed());
      return false;
    }
    if (channel_->CanAccept()) {
      receiver = channel_->Accept(std::move(value_));
    } else {
      channel_->senders_.PushBack(this);
      queued = true;
    }
  }
  if (queued) {
    return Suspend<&SendOperation::OnCancel>(this);
  }
  if (receiver != nullptr) {
    receiver->completion().Complete(absl::OkStatus());
  }
  EndInline(absl::OkStatus());
  return false;
}

template <typename T>
void Channel<T>::SendOperation::OnCancel() {
  bool removed;
  {
    internal::MutexLock lock(&channel_->mu_);
    removed = channel_->senders_.Remove(this);
  }
  if (removed) {
    completion().Complete(internal::AbandonedWait(token(), "Channel send (channel full)"));
  }
}

template <typename T>
bool Channel<T>::ReceiveOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle);
  SendOperation* sender = nullptr;
  bool queued = false;
  {
    internal::MutexLock lock(&channel_->mu_);
    value_ = channel_->Take(&sender);
    if (!value_.has_value()) {
      if (channel_->closed_) {
        EndInline(ReceiveClosed());
        return false;
      }
      // From here a sender may fill value_ and complete us concurrently: only `queued` is ours.
      channel_->receivers_.PushBack(this);
      queued = true;
    }
  }
  if (queued) {
    return Suspend<&ReceiveOperation::OnCancel>(this);
  }
  if (sender != nullptr) {
    sender->completion().Complete(absl::OkStatus());
  }
  EndInline(absl::OkStatus());
  return false;
}

template <typename T>
absl::StatusOr<T> Channel<T>::ReceiveOperation::await_resume() {
  absl::Status status = TakeResult();
  if (!status.ok()) {
    return status;
  }
  return std::move(*value_);
}

template <typename T>
void Channel<T>::ReceiveOperation::OnCancel() {
  bool removed;
  {
    internal::MutexLock lock(&channel_->mu_);
    removed = channel_->receivers_.Remove(this);
  }
  if (removed) {
    completion().Complete(internal::AbandonedWait(token(), "Channel receive (channel empty)"));
  }
}

template <typename T>
absl::Status Channel<T>::TrySend(T&& value) {
  ReceiveOperation* receiver;
  {
    internal::MutexLock lock(&mu_);
    if (closed_) {
      return SendClosed();
    }
    if (!CanAccept()) {
      return spindle::ResourceExhausted("CHANNEL_FULL", "channel is full");
    }
    receiver = Accept(std::move(value));
  }
  if (receiver != nullptr) {
    receiver->completion().Complete(absl::OkStatus());
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<std::optional<T>> Channel<T>::TryReceive() {
  SendOperation* sender;
  std::optional<T> value;
  {
    internal::MutexLock lock(&mu_);
    value = Take(&sender);
    if (!value.has_value() && closed_) {
      return ReceiveClosed();
    }
  }
  if (sender != nullptr) {
    sender->completion().Complete(absl::OkStatus());
  }
  return value;
}

template <typename T>
void Channel<T>::Close() {
  internal::WaiterChain<SendOperation> senders;
  internal::WaiterChain<ReceiveOperation> receivers;
  {
    internal::MutexLock lock(&mu_);
    if (closed_) {
      return;
    }
    closed_ = true;
    while (SendOperation* sender = senders_.PopFront()) {
      senders.PushBack(sender);
    }
    // Receivers wait only while the buffer is empty: nothing is left for them.
    while (ReceiveOperation* receiver = receivers_.PopFront()) {
      receivers.PushBack(receiver);
    }
  }
  senders.CompleteEach([](SendOperation* sender) { sender->completion().Complete(SendClosed()); });
  receivers.CompleteEach(
      [](ReceiveOperation* receiver) { receiver->completion().Complete(ReceiveClosed()); });
}

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_CHANNEL_H_
