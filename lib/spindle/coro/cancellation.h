// Cancellation as objects: a CancellationSource requests it, CancellationTokens observe it, and a
// CancellationRegistration runs a callback when it happens.
//
// Every engine wait that can block takes a token. When the token's source is cancelled, the wait
// ends with the source's reason: CANCELLED by default, DEADLINE_EXCEEDED when a DeadlineSource's
// timer fired, or whatever status the canceller passed (e.g. the gRPC layer cancelling for a client
// that went away). Waiters therefore tell "the client cancelled" from "the deadline passed" by the
// code of the status they get back, and the message names what was being waited for.
//
//   CancellationSource source;             // e.g. one per gRPC call
//   absl::Status s = co_await mutex_wait(source.token());
//   ...                                     // on another thread:
//   source.Cancel(spindle::Cancelled("client disconnected"));
//
// A source can be linked to a parent token: it is then cancelled, with the parent's reason, when
// the parent is (a TaskScope's children see both the scope's and the executor's cancellation).
//
// Callbacks: a registration's callback runs exactly once, or never if the registration is destroyed
// first. It runs synchronously inside the first Cancel() (on the canceller's thread, in
// registration order), or inside the registration's constructor when the token is already
// cancelled. Destroying a registration removes it; if its callback is running on another thread at
// that moment, the destructor waits for it to return, so a callback never outlives its
// registration. A callback may destroy its own registration. Callbacks must be short and must not
// block: the engine's remove a waiter from a queue and schedule its coroutine.
//
// Thread-safety: all three types are thread-safe; Cancel() may race with registrations,
// deregistrations and other Cancel() calls. A token is cheap to copy (one atomic increment) and
// keeps the shared state alive after its source is gone.
#ifndef SPINDLE_CORO_CANCELLATION_H_
#define SPINDLE_CORO_CANCELLATION_H_

#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spindle::coro {

class CancellationRegistration;
class CancellationToken;

namespace internal {
class CancellationState;
}  // namespace internal

namespace internal {

// A callback linked into a token's shared state: the common part of CancellationRegistration and
// of the engine's own wait registrations (which need no allocation and no 16-byte alignment).
class CancellationCallback {
 public:
  CancellationCallback(const CancellationCallback&) = delete;
  CancellationCallback& operator=(const CancellationCallback&) = delete;

 protected:
  using Invoke = void (*)(CancellationCallback* self);
  explicit CancellationCallback(Invoke invoke) noexcept : invoke_(invoke) {}
  ~CancellationCallback() = default;

  // REQUIRES: not registered.
  void set_invoke(Invoke invoke) noexcept { invoke_ = invoke; }

  // Links this callback to `token`, or invokes it now if `token` is already cancelled. Does
  // nothing for a token that cannot be cancelled. REQUIRES: not registered.
  void Register(const CancellationToken& token);
  // Unlinks; if the callback is running on another thread, waits for it to return. Idempotent.
  void Deregister();

 private:
  friend class CancellationState;

  Invoke invoke_;
  CancellationState* state_ = nullptr;
  // Links in the state's list; guarded by the state's mutex.
  CancellationCallback* prev_ = nullptr;
  CancellationCallback* next_ = nullptr;
  bool linked_ = false;
};

}  // namespace internal

class CancellationToken {
 public:
  // A token that is never cancelled.
  CancellationToken() noexcept = default;
  CancellationToken(const CancellationToken& other) noexcept;
  CancellationToken(CancellationToken&& other) noexcept;
  CancellationToken& operator=(const CancellationToken& other) noexcept;
  CancellationToken& operator=(CancellationToken&& other) noexcept;
  ~CancellationToken();

  bool IsCancelled() const noexcept;
  // False for a default-constructed token: waits can skip registering a callback.
  bool CanBeCancelled() const noexcept { return state_ != nullptr; }
  // OK until cancelled; then the reason given to Cancel() (never OK).
  absl::Status status() const;

 private:
  friend class CancellationSource;
  friend class internal::CancellationCallback;
  explicit CancellationToken(internal::CancellationState* adopted) noexcept : state_(adopted) {}

  internal::CancellationState* state_ = nullptr;
};

class CancellationSource {
 public:
  CancellationSource();
  // A source that is also cancelled, with the same reason, when `parent` is.
  explicit CancellationSource(const CancellationToken& parent);
  CancellationSource(CancellationSource&& other) noexcept;
  CancellationSource& operator=(CancellationSource&& other) noexcept;
  CancellationSource(const CancellationSource&) = delete;
  CancellationSource& operator=(const CancellationSource&) = delete;
  // Does not cancel; tokens stay valid (and uncancelled).
  ~CancellationSource();

  CancellationToken token() const noexcept;

  // Cancels with reason spindle::Cancelled("cancellation requested").
  bool Cancel();
  // Cancels with `reason` (an OK reason is replaced by the default one). Runs the registered
  // callbacks before returning. Returns false if the source was already cancelled (the first
  // reason stays).
  bool Cancel(absl::Status reason);
  bool IsCancelled() const noexcept;

 private:
  internal::CancellationState* state_ = nullptr;
  std::unique_ptr<CancellationRegistration> parent_link_;
};

class CancellationRegistration final : private internal::CancellationCallback {
 public:
  // Registers `callback` to run when `token` is cancelled; runs it now if it already is. Does
  // nothing for a token that cannot be cancelled.
  CancellationRegistration(const CancellationToken& token, absl::AnyInvocable<void()> callback);
  // Deregisters; waits for the callback if it is running on another thread.
  ~CancellationRegistration() { Deregister(); }

 private:
  static void Run(internal::CancellationCallback* self);

  absl::AnyInvocable<void()> callback_;
};

namespace internal {

// The status a wait returns when `token` ends it: the token's code and payloads, and a message
// naming what was waited for, e.g. "waiting for AsyncMutex lock: client disconnected".
absl::Status AbandonedWait(const CancellationToken& token, absl::string_view what);

}  // namespace internal
}  // namespace spindle::coro

#endif  // SPINDLE_CORO_CANCELLATION_H_
