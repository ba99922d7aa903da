// Accumulates lag samples into LagStats: a histogram, an EWMA and a max over a sliding window.
//
// Thread-safety: thread-compatible; each owner guards its tracker with a mutex it already holds on
// the path that produces samples.
#ifndef SPINDLE_CORO_INTERNAL_LAG_TRACKER_H_
#define SPINDLE_CORO_INTERNAL_LAG_TRACKER_H_

#include <cstdint>

#include "spindle/coro/stats.h"

namespace spindle::coro::internal {

class LagTracker {
 public:
  static constexpr int64_t kWindowNs = int64_t{10} * 1000 * 1000 * 1000;

  void Record(int64_t lag_ns, int64_t now_ns) noexcept;
  LagStats Snapshot(int64_t now_ns) const noexcept;

 private:
  LagStats stats_;
  int64_t window_start_ns_ = 0;
  int64_t window_max_us_ = 0;
  int64_t previous_window_max_us_ = 0;
};

// Monotonic clock in nanoseconds.
int64_t MonotonicNowNs() noexcept;

}  // namespace spindle::coro::internal

#endif  // SPINDLE_CORO_INTERNAL_LAG_TRACKER_H_
