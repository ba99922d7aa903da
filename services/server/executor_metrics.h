// The coroutine executor's statistics as `spindle_executor_*` metrics and as the ServerService
// GetStats answer.
#ifndef SPINDLE_SERVICES_SERVER_EXECUTOR_METRICS_H_
#define SPINDLE_SERVICES_SERVER_EXECUTOR_METRICS_H_

#include <prometheus/metric_family.h>

#include <vector>

#include "spindle/coro/stats.h"
#include "spindle/v1/server.pb.h"

namespace spindle::services {

std::vector<prometheus::MetricFamily> CollectExecutorMetrics(const coro::ExecutorStats& stats);

void FillExecutorStats(const coro::ExecutorStats& stats, v1::ExecutorStats& out);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_EXECUTOR_METRICS_H_
