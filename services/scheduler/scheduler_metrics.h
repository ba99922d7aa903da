// Metrics of the scheduler capability, registered on the server's registry (no globals):
//   spindle_fetch_requests_total{result}   URLs fetched by FetchUrls; result "ok" or the
//                                          lower-case error_reason (bounded set)
//   spindle_fetch_seconds                  total time of each transfer (histogram)
//   spindle_triggers{state}                triggers by state (active, paused, completed), at scrape
//   spindle_trigger_runs_total{state}      runs that reached a final state, or were skipped
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_
#define SPINDLE_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <map>
#include <string>
#include <vector>

#include "spindle/http/fetcher.h"
#include "spindle/trigger/types.h"

namespace spindle::services {

class SchedulerMetrics {
 public:
  explicit SchedulerMetrics(prometheus::Registry& registry);

  void OnFetchResult(const http::FetchResult& result);
  void OnRunFinal(trigger::RunState state);

  // spindle_triggers{state} from the table's counts.
  static std::vector<prometheus::MetricFamily> CollectTriggers(
      const trigger::TriggerTableStats& stats);

 private:
  std::map<std::string, prometheus::Counter*> fetch_results_;  // Constant after construction.
  prometheus::Histogram& fetch_seconds_;
  std::map<trigger::RunState, prometheus::Counter*> run_states_;  // Constant after construction.
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_SCHEDULER_METRICS_H_
