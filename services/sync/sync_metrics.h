// Metrics of sessions and locks, bound to the engine's LockObserver and stats:
//   spindle_lock_acquisitions_total{kind,result}   counter
//   spindle_lock_wait_seconds                      histogram (time an acquire waited)
//   spindle_lock_hold_seconds                      histogram (time a grant was held)
//   spindle_locks_held, spindle_lock_waiters, spindle_sessions       gauges (read at scrape)
//   spindle_session_expirations_total              counter (read at scrape)
// Label values are bounded: kind is one of 7 names, result one of 6.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SYNC_SYNC_METRICS_H_
#define SPINDLE_SERVICES_SYNC_SYNC_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>

#include "spindle/sync/lock_table.h"
#include "spindle/sync/session_table.h"

namespace spindle::services {

class SyncMetrics final : public sync::LockObserver {
 public:
  explicit SyncMetrics(prometheus::Registry& registry);

  void OnAcquire(sync::LockKind kind, sync::AcquireOutcome outcome, absl::Duration waited) override;
  void OnGrantEnd(sync::LockKind kind, absl::Duration held) override;

  // Gauges and counters computed from the tables at every scrape.
  static std::shared_ptr<prometheus::Collectable> Collector(const sync::SessionTable& sessions,
                                                            const sync::LockTable& locks);

 private:
  static constexpr int kKinds = 8;
  static constexpr int kOutcomes = 6;
  std::array<std::array<prometheus::Counter*, kOutcomes>, kKinds> acquisitions_{};
  prometheus::Histogram* wait_ = nullptr;
  prometheus::Histogram* hold_ = nullptr;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_SYNC_METRICS_H_
