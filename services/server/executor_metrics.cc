#include "services/server/executor_metrics.h"

#include <cmath>

#include "services/metrics/function_collector.h"

namespace spindle::services {
namespace {

// A Prometheus histogram in seconds from the executor's power-of-two microsecond buckets.
prometheus::MetricFamily LagHistogram(std::string name, std::string help,
                                      const coro::LagStats& lag) {
  prometheus::MetricFamily family{
      std::move(name), std::move(help), prometheus::MetricType::Histogram, {}};
  prometheus::ClientMetric metric;
  metric.histogram.sample_count = lag.count;
  metric.histogram.sample_sum = lag.sum_micros / 1e6;
  uint64_t cumulative = 0;
  for (int i = 0; i < coro::LagStats::kBuckets; ++i) {
    cumulative += lag.buckets[static_cast<size_t>(i)];
    prometheus::ClientMetric::Bucket bucket;
    bucket.cumulative_count = cumulative;
    const double bound = coro::LagStats::BucketUpperBoundMicros(i);
    bucket.upper_bound = std::isinf(bound) ? bound : bound / 1e6;
    metric.histogram.bucket.push_back(bucket);
  }
  family.metric.push_back(std::move(metric));
  return family;
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectExecutorMetrics(const coro::ExecutorStats& s) {
  std::vector<prometheus::MetricFamily> families;
  families.push_back(GaugeFamily("spindle_executor_threads",
                                 "Worker threads of the coroutine executor.", s.threads));
  families.push_back(GaugeFamily("spindle_executor_runnable",
                                 "Coroutines and callbacks ready to run, waiting for a worker.",
                                 static_cast<double>(s.runnable)));
  families.push_back(GaugeFamily("spindle_executor_live_coroutines",
                                 "Coroutine frames alive (running or suspended).",
                                 static_cast<double>(s.live_coroutines)));
  families.push_back(GaugeFamily("spindle_executor_pending_timers",
                                 "Timers armed and not yet fired or cancelled.",
                                 static_cast<double>(s.pending_timers)));
  families.push_back(GaugeFamily("spindle_executor_registered_fds",
                                 "File descriptors registered with the reactor.",
                                 static_cast<double>(s.registered_fds)));
  families.push_back(GaugeFamily("spindle_executor_loop_lag_seconds",
                                 "Moving average of how late timers and posted work ran.",
                                 static_cast<double>(s.loop_lag_us) / 1e6));
  families.push_back(GaugeFamily("spindle_executor_loop_lag_max_seconds",
                                 "Largest lag of timers and posted work in the recent interval.",
                                 static_cast<double>(s.max_loop_lag_us) / 1e6));
  families.push_back(CounterFamily("spindle_executor_tasks_spawned_total",
                                   "Tasks spawned on the executor since start.",
                                   static_cast<double>(s.tasks_spawned_total)));
  families.push_back(CounterFamily("spindle_executor_tasks_completed_total",
                                   "Tasks completed on the executor since start.",
                                   static_cast<double>(s.tasks_completed_total)));
  families.push_back(CounterFamily("spindle_executor_posted_total",
                                   "Callbacks posted to the executor since start.",
                                   static_cast<double>(s.posted_total)));
  families.push_back(LagHistogram("spindle_executor_queue_lag_seconds",
                                  "How long posted work waited for a worker thread.", s.queue_lag));
  families.push_back(LagHistogram("spindle_executor_timer_lag_seconds",
                                  "How late timers fired after their deadline.", s.timer_lag));
  return families;
}

void FillExecutorStats(const coro::ExecutorStats& s, v1::ExecutorStats& out) {
  out.set_threads(s.threads);
  out.set_runnable(s.runnable);
  out.set_live_coroutines(s.live_coroutines);
  out.set_pending_timers(s.pending_timers);
  out.set_registered_fds(s.registered_fds);
  out.set_loop_lag_us(s.loop_lag_us);
  out.set_max_loop_lag_us(s.max_loop_lag_us);
  out.set_tasks_spawned_total(static_cast<int64_t>(s.tasks_spawned_total));
  out.set_tasks_completed_total(static_cast<int64_t>(s.tasks_completed_total));
}

}  // namespace spindle::services
