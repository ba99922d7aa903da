// Prometheus binding of the process engine's events: spawns (count by result, latency),
// exits by reason, output bytes by stream and dropped bytes. The per-state gauge
// spindle_processes{state} is computed from ProcessTable::Stats at each scrape (CollectStates).
//
// Thread-safety: thread-safe (prometheus-cpp metrics are).
#ifndef SPINDLE_SERVICES_PROCESS_PROCESS_METRICS_H_
#define SPINDLE_SERVICES_PROCESS_PROCESS_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <vector>

#include "spindle/process/process_table.h"

namespace spindle::services {

class ProcessMetrics final : public process::ProcessObserver {
 public:
  explicit ProcessMetrics(prometheus::Registry& registry);

  void OnSpawn(absl::string_view result, absl::Duration latency) override;
  void OnExit(process::ExitReason reason) override;
  void OnOutput(process::OutputStream stream, int64_t bytes) override;
  void OnOutputDropped(int64_t bytes) override;

  // spindle_processes{state}.
  static std::vector<prometheus::MetricFamily> CollectStates(
      const process::ProcessTableStats& stats);

 private:
  prometheus::Family<prometheus::Counter>& spawns_;
  prometheus::Counter& spawn_ok_;
  prometheus::Counter& spawn_exec_failed_;
  prometheus::Counter& spawn_error_;
  prometheus::Histogram& spawn_seconds_;
  prometheus::Family<prometheus::Counter>& exits_;
  prometheus::Counter* exit_by_reason_[8];
  prometheus::Family<prometheus::Counter>& output_;
  prometheus::Counter& stdout_bytes_;
  prometheus::Counter& stderr_bytes_;
  prometheus::Counter& dropped_bytes_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_PROCESS_METRICS_H_
