// DeadlineSource: cancellation by timer. Its token is cancelled with DEADLINE_EXCEEDED when the
// deadline passes, or with the parent's reason when the parent token is cancelled first, so a
// waiter can tell which one ended its wait by the status code.
//
//   DeadlineSource deadline(executor, absl::Now() + absl::Seconds(5), call_token);
//   absl::StatusOr<Guard> guard = co_await mutex.Lock(deadline.token());
//   // DEADLINE_EXCEEDED: "waiting for AsyncMutex lock: deadline 2024-... exceeded"
//
// The timer runs on the executor's reactor; the token's callbacks (waking the waiters) run on the
// reactor thread when it fires. An infinite deadline arms nothing; a past one cancels at once.
//
// Thread-safety: thread-safe. The destructor disarms the timer and waits if it is firing at that
// moment; it must not run inside one of the token's own cancellation callbacks.
#ifndef SPINDLE_CORO_DEADLINE_H_
#define SPINDLE_CORO_DEADLINE_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/internal/reactor.h"

namespace spindle::coro {

class DeadlineSource {
 public:
  DeadlineSource(Executor& executor, absl::Time deadline,
                 const CancellationToken& parent = CancellationToken());
  ~DeadlineSource();
  DeadlineSource(const DeadlineSource&) = delete;
  DeadlineSource& operator=(const DeadlineSource&) = delete;

  CancellationToken token() const { return source_.token(); }
  absl::Time deadline() const noexcept { return deadline_; }
  // Cancels early, with CANCELLED or `reason`.
  bool Cancel() { return source_.Cancel(); }
  bool Cancel(absl::Status reason) { return source_.Cancel(std::move(reason)); }

 private:
  static void OnFire(internal::Timer* timer) noexcept;
  absl::Status ExceededStatus() const;

  Executor* const executor_;
  const absl::Time deadline_;
  CancellationSource source_;
  internal::Timer timer_;
  bool armed_ = false;
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_DEADLINE_H_
