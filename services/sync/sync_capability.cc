#include "services/sync/sync_capability.h"

#include "services/sync/lock_service.h"
#include "services/sync/session_service.h"
#include "services/sync/sync_metrics.h"
#include "spindle/sync/lock_table.h"
#include "spindle/sync/session_table.h"

namespace spindle::services {
namespace {

class SyncCapability final : public Capability {
 public:
  explicit SyncCapability(CapabilityContext& context)
      : sessions_(context.timers,
                  sync::SessionTableOptions{.max_sessions = context.config.max_sessions}),
        metrics_(context.registry),
        locks_(context.timers, &sessions_,
               sync::LockTableOptions{.max_locks = context.config.max_names,
                                      .max_waiters = context.config.max_waiters},
               &metrics_),
        session_service_(sessions_, locks_),
        lock_service_(locks_) {
    context.sessions = &sessions_;
    context.check_fence = [this](absl::string_view lock_name, int64_t fencing_token) {
      return locks_.CheckFence(lock_name, fencing_token);
    };
  }

  std::vector<ServiceEntry> Services() override {
    return {{v1::SessionService::service_full_name(), &session_service_},
            {v1::LockService::service_full_name(), &lock_service_}};
  }

  void FillStats(v1::GetStatsResponse& stats) override {
    sync::LockTableStats locks = locks_.Stats();
    stats.mutable_tables()->set_sessions(sessions_.Stats().sessions);
    stats.mutable_tables()->set_locks(locks.locks);
    stats.mutable_tables()->set_lock_waiters(locks.waiters);
  }

  std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() override {
    return {SyncMetrics::Collector(sessions_, locks_)};
  }

 private:
  sync::SessionTable sessions_;
  SyncMetrics metrics_;
  sync::LockTable locks_;
  SessionServiceImpl session_service_;
  LockServiceImpl lock_service_;
};

}  // namespace

std::unique_ptr<Capability> MakeSyncCapability(CapabilityContext& context) {
  return std::make_unique<SyncCapability>(context);
}

}  // namespace spindle::services
