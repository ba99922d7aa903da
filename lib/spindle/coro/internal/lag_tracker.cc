#include "spindle/coro/internal/lag_tracker.h"

#include <time.h>

#include <algorithm>
#include <bit>

namespace spindle::coro::internal {

int64_t MonotonicNowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void LagTracker::Record(int64_t lag_ns, int64_t now_ns) noexcept {
  const int64_t lag_us = std::max<int64_t>(lag_ns, 0) / 1000;
  const double lag = static_cast<double>(lag_us);
  stats_.average_micros =
      stats_.count == 0 ? lag : stats_.average_micros + (lag - stats_.average_micros) / 16.0;
  ++stats_.count;
  stats_.sum_micros += lag;
  // Bucket i holds lag <= 2^i us: the index is ceil(log2(lag)), 0 for lag <= 1.
  const int bucket = lag_us <= 1 ? 0 : std::bit_width(static_cast<uint64_t>(lag_us - 1));
  ++stats_.buckets[std::min(bucket, LagStats::kBuckets - 1)];

  if (now_ns - window_start_ns_ >= kWindowNs) {
    previous_window_max_us_ = now_ns - window_start_ns_ >= 2 * kWindowNs ? 0 : window_max_us_;
    window_start_ns_ = now_ns;
    window_max_us_ = 0;
  }
  window_max_us_ = std::max(window_max_us_, lag_us);
}

LagStats LagTracker::Snapshot(int64_t now_ns) const noexcept {
  LagStats snapshot = stats_;
  const int64_t age = now_ns - window_start_ns_;
  if (age < kWindowNs) {
    snapshot.recent_max_micros = std::max(window_max_us_, previous_window_max_us_);
  } else if (age < 2 * kWindowNs) {
    snapshot.recent_max_micros = window_max_us_;
  } else {
    snapshot.recent_max_micros = 0;
  }
  return snapshot;
}

}  // namespace spindle::coro::internal
