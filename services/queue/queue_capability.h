// The queues + values capability: QueueService and ValueService over the queue registry and the
// value store, their metrics, and their share of GetStats.
//
// Metrics (all read from engine stats at scrape time, except the histogram and the op counter):
//   spindle_queue_depth{queue}                 gauge, ready items
//   spindle_queue_inflight{queue}              gauge, leased items not yet acked
//   spindle_queue_items_total{queue,op}        counter, op in
//   put|get|ack|nack|redeliver|dead_letter spindle_queue_wait_seconds                 histogram,
//   how long served getters waited spindle_values                             gauge, values stored
//   spindle_value_ops_total{op}                counter, value rpcs by operation
//   spindle_watchers                           gauge, open value watches
// The queue label takes at most `max_queue_labels` distinct names (first come, kept while the
// queue exists); other queues are summed under queue="_other".
//
// Thread-safety: thread-safe after construction.
#ifndef SPINDLE_SERVICES_QUEUE_QUEUE_CAPABILITY_H_
#define SPINDLE_SERVICES_QUEUE_QUEUE_CAPABILITY_H_

#include <cstdint>
#include <memory>

#include "services/server/capability.h"

namespace spindle::services {

struct QueueCapabilityOptions {
  // Distinct queue label values on /metrics before aggregation under "_other".
  int64_t max_queue_labels = 100;
};

std::unique_ptr<Capability> MakeQueueCapability(CapabilityContext& context,
                                                QueueCapabilityOptions options = {});

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_QUEUE_CAPABILITY_H_
