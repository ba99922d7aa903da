#include "services/sync/sync_metrics.h"

#include <string>

#include "services/metrics/function_collector.h"

namespace spindle::services {

SyncMetrics::SyncMetrics(prometheus::Registry& registry) {
  auto& acquisitions = prometheus::BuildCounter()
                           .Name("spindle_lock_acquisitions_total")
                           .Help(
                               "Lock acquisitions by lock kind and result (acquired, "
                               "not_acquired, deadline_exceeded, cancelled, deadlock, error)")
                           .Register(registry);
  for (int kind = 0; kind < kKinds; ++kind) {
    for (int outcome = 0; outcome < kOutcomes; ++outcome) {
      acquisitions_[kind][outcome] = &acquisitions.Add(
          {{"kind", sync::LockKindName(static_cast<sync::LockKind>(kind))},
           {"result", sync::AcquireOutcomeName(static_cast<sync::AcquireOutcome>(outcome))}});
    }
  }
  const prometheus::Histogram::BucketBoundaries buckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300};
  wait_ = &prometheus::BuildHistogram()
               .Name("spindle_lock_wait_seconds")
               .Help("Time an acquire spent waiting for its outcome, seconds")
               .Register(registry)
               .Add({}, buckets);
  hold_ = &prometheus::BuildHistogram()
               .Name("spindle_lock_hold_seconds")
               .Help(
                   "Time a grant was held until released, expired, revoked or its session "
                   "ended, seconds")
               .Register(registry)
               .Add({}, buckets);
}

void SyncMetrics::OnAcquire(sync::LockKind kind, sync::AcquireOutcome outcome,
                            absl::Duration waited) {
  int k = static_cast<int>(kind);
  int o = static_cast<int>(outcome);
  if (k >= 0 && k < kKinds && o >= 0 && o < kOutcomes) {
    acquisitions_[k][o]->Increment();
  }
  wait_->Observe(absl::ToDoubleSeconds(waited));
}

void SyncMetrics::OnGrantEnd(sync::LockKind kind, absl::Duration held) {
  hold_->Observe(absl::ToDoubleSeconds(held));
}

std::shared_ptr<prometheus::Collectable> SyncMetrics::Collector(const sync::SessionTable& sessions,
                                                                const sync::LockTable& locks) {
  return std::make_shared<FunctionCollector>([&sessions, &locks] {
    sync::LockTableStats lock_stats = locks.Stats();
    sync::SessionTableStats session_stats = sessions.Stats();
    std::vector<prometheus::MetricFamily> families;
    families.push_back(GaugeFamily("spindle_locks_held", "Lock grants held now",
                                   static_cast<double>(lock_stats.grants)));
    families.push_back(GaugeFamily("spindle_lock_waiters",
                                   "Waiters on locks, events, barriers and conditions now",
                                   static_cast<double>(lock_stats.waiters)));
    families.push_back(GaugeFamily("spindle_sessions", "Live sessions now",
                                   static_cast<double>(session_stats.sessions)));
    families.push_back(CounterFamily("spindle_session_expirations_total",
                                     "Sessions that ended because their TTL ran out",
                                     static_cast<double>(session_stats.expirations)));
    return families;
  });
}

}  // namespace spindle::services
