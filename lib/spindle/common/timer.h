// Time for the engine: a clock and a timer service, behind interfaces so tests can drive time by
// hand (tests/fakes/manual_timer_service.h) and the server can run timers on the coroutine
// executor's reactor (services/server/executor_timer_service.h).
//
// Engine tables (locks, sessions, queues, values) schedule their deadlines and lease expiries here:
// expiry is exact to the timer, never to a periodic sweep.
//
// Thread-safety: implementations are thread-safe. Callbacks run on a thread of the implementation
// (never inside Schedule()); they must not block.
#ifndef SPINDLE_COMMON_TIMER_H_
#define SPINDLE_COMMON_TIMER_H_

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"

namespace spindle {

class Clock {
 public:
  virtual ~Clock() = default;
  // The current time. Wall clock, but never goes backwards within one process.
  virtual absl::Time Now() const = 0;
};

class TimerService : public Clock {
 public:
  using TimerId = uint64_t;
  using Callback = absl::AnyInvocable<void() &&>;

  // Runs `callback` once at or soon after `when` (at once, on a timer thread, if `when` has
  // passed). Returns an id for Cancel(); ids are never 0 and never reused.
  virtual TimerId Schedule(absl::Time when, Callback callback) = 0;

  // Cancels a timer that has not started to run. Returns true when the callback will never run;
  // false when it already ran, is running now, or `id` is unknown.
  virtual bool Cancel(TimerId id) = 0;
};

}  // namespace spindle

#endif  // SPINDLE_COMMON_TIMER_H_
