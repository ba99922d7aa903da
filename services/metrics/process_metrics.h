// The `process_*` self metrics of spindled (as the Prometheus client libraries name them) and
// `spindle_build_info`, read from /proc at scrape time.
#ifndef SPINDLE_SERVICES_METRICS_PROCESS_METRICS_H_
#define SPINDLE_SERVICES_METRICS_PROCESS_METRICS_H_

#include <prometheus/metric_family.h>

#include <vector>

namespace spindle::services {

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds, process_threads.
std::vector<prometheus::MetricFamily> CollectProcessMetrics();

// spindle_build_info{version,build_type,compiler} 1.
std::vector<prometheus::MetricFamily> CollectBuildInfo();

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_METRICS_PROCESS_METRICS_H_
