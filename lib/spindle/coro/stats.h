// Plain statistics an Executor reports (Executor::Stats()), for services/ to export as
// spindle_executor_* metrics and in the ServerService statistics RPC. No metrics library here.
//
// Thread-safety: plain values; a snapshot copied out under the executor's locks.
#ifndef SPINDLE_CORO_STATS_H_
#define SPINDLE_CORO_STATS_H_

#include <array>
#include <cstdint>
#include <limits>
#include <string>

namespace spindle::coro {

// How late work ran: for timers, from the deadline to the reactor noticing it; for queued work,
// from being queued by another thread (Post, reactor wake-ups, resumptions from foreign threads)
// to a worker picking it up.
struct LagStats {
  // Bucket i counts samples <= 2^i microseconds (1 us .. ~4.2 s); the last counts all larger ones.
  static constexpr int kBuckets = 24;
  static double BucketUpperBoundMicros(int bucket) {
    return bucket >= kBuckets - 1 ? std::numeric_limits<double>::infinity()
                                  : static_cast<double>(int64_t{1} << bucket);
  }

  uint64_t count = 0;             // Samples since start.
  double sum_micros = 0;          // Their sum.
  double average_micros = 0;      // Exponentially weighted moving average (1/16 per sample).
  int64_t recent_max_micros = 0;  // Largest sample in the last 10 to 20 seconds.
  std::array<uint64_t, kBuckets> buckets{};  // Non-cumulative counts.
};

struct ExecutorStats {
  std::string name;
  int threads = 0;                   // Worker threads (the reactor thread is extra).
  int64_t runnable = 0;              // Items queued for a worker right now (approximate).
  int64_t live_coroutines = 0;       // Engine coroutine frames alive in the process.
  int64_t pending_timers = 0;        // Timers armed and not yet fired or cancelled.
  int64_t registered_fds = 0;        // Fds registered with epoll (each has a waiter).
  int64_t loop_lag_us = 0;           // max(queue_lag, timer_lag).average_micros, rounded.
  int64_t max_loop_lag_us = 0;       // max(queue_lag, timer_lag).recent_max_micros.
  uint64_t tasks_spawned_total = 0;  // Tasks spawned into scopes on this executor since start.
  uint64_t tasks_completed_total = 0;
  uint64_t posted_total = 0;  // Callbacks accepted by Post() since start.
  LagStats queue_lag;
  LagStats timer_lag;
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_STATS_H_
