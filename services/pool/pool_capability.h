// The pools capability: PoolService over the pool engine (lib/spindle/pool), its metrics and its
// share of GetStats.
//
// Metrics:
//   spindle_pool_workers{pool,state}             gauge, workers by state (starting, idle, busy,
//                                                stopping)
//   spindle_pool_tasks{pool,state}               gauge, tasks queued, running, backoff
//   spindle_pool_tasks_total{pool,outcome}       counter, finished tasks by outcome (succeeded,
//                                                failed, timed_out, cancelled)
//   spindle_pool_task_seconds{pool}              histogram, run time of finished attempts
//   spindle_pool_queue_wait_seconds{pool}        histogram, time from queued to started
//   spindle_pool_worker_restarts_total{pool}     counter, workers replaced after dying
// The pool label takes at most `max_pool_labels` distinct names (first come); other pools are
// summed under pool="_other".
//
// Thread-safety: thread-safe after construction.
#ifndef SPINDLE_SERVICES_POOL_POOL_CAPABILITY_H_
#define SPINDLE_SERVICES_POOL_POOL_CAPABILITY_H_

#include <cstdint>
#include <memory>

#include "services/server/capability.h"
#include "spindle/pool/functions.h"

namespace spindle::services {

struct PoolCapabilityOptions {
  // Distinct pool label values on /metrics before aggregation under "_other".
  int64_t max_pool_labels = 100;
  // The THREAD pools' functions; null: the built-ins only. An embedder registers its own here.
  std::shared_ptr<pool::FunctionRegistry> functions;
};

std::unique_ptr<Capability> MakePoolCapability(CapabilityContext& context,
                                               PoolCapabilityOptions options = {});

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_POOL_CAPABILITY_H_
