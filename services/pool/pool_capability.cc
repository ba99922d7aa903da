#include "services/pool/pool_capability.h"

#include <prometheus/histogram.h>

#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "services/common/stream_set.h"
#include "services/metrics/function_collector.h"
#include "services/pool/pool_service.h"
#include "spindle/pool/pool_table.h"

namespace spindle::services {
namespace {

constexpr const char* kOtherPool = "_other";

// Chooses the pool label: a bounded set of names, first come first served, others "_other".
// Names stay labelled once chosen (histogram series cannot be removed cleanly).
class PoolLabels {
 public:
  explicit PoolLabels(int64_t cap) : cap_(cap) {}
  std::string Label(const std::string& name) {
    absl::MutexLock lock(&mu_);
    if (labelled_.contains(name)) return name;
    if (static_cast<int64_t>(labelled_.size()) < cap_) {
      labelled_.insert(name);
      return name;
    }
    return kOtherPool;
  }

 private:
  const int64_t cap_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> labelled_ ABSL_GUARDED_BY(mu_);
};

// A histogram family whose series are made on first use per label.
class LabelledHistogram {
 public:
  LabelledHistogram(prometheus::Family<prometheus::Histogram>& family,
                    prometheus::Histogram::BucketBoundaries buckets)
      : family_(family), buckets_(std::move(buckets)) {}
  void Observe(const std::string& label, double value) {
    prometheus::Histogram* h;
    {
      absl::MutexLock lock(&mu_);
      auto it = series_.find(label);
      if (it == series_.end()) {
        it = series_.emplace(label, &family_.Add({{"pool", label}}, buckets_)).first;
      }
      h = it->second;
    }
    h->Observe(value);
  }

 private:
  prometheus::Family<prometheus::Histogram>& family_;
  const prometheus::Histogram::BucketBoundaries buckets_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> series_ ABSL_GUARDED_BY(mu_);
};

class PoolCapability final : public Capability {
 public:
  PoolCapability(CapabilityContext& context, PoolCapabilityOptions options)
      : labels_(std::make_shared<PoolLabels>(options.max_pool_labels)),
        task_seconds_(prometheus::BuildHistogram()
                          .Name("spindle_pool_task_seconds")
                          .Help("Run time of finished task attempts, by pool")
                          .Register(context.registry),
                      {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600}),
        queue_wait_seconds_(prometheus::BuildHistogram()
                                .Name("spindle_pool_queue_wait_seconds")
                                .Help("Time tasks waited in a pool's queue before they started")
                                .Register(context.registry),
                            {0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300}) {
    pool::PoolTableOptions table_options;
    table_options.max_pools = context.config.max_names;
    table_options.max_total_workers = context.config.max_processes * 4;
    table_options.max_task_output_bytes = context.config.max_message_bytes - (64 << 10);
    table_options.spawn_policy = context.config.spawn_policy;
    table_options.observe_queue_wait = [this](const std::string& pool, absl::Duration waited) {
      queue_wait_seconds_.Observe(labels_->Label(pool), absl::ToDoubleSeconds(waited));
    };
    table_options.observe_task_done = [this](const std::string& pool, pool::TaskState,
                                             absl::Duration ran) {
      task_seconds_.Observe(labels_->Label(pool), absl::ToDoubleSeconds(ran));
    };
    auto functions = options.functions != nullptr ? options.functions
                                                  : std::make_shared<pool::FunctionRegistry>();
    table_ = std::make_unique<pool::PoolTable>(context.timers, context.sessions,
                                               process::MakeLinuxSpawner(), functions,
                                               std::move(table_options));
    service_ = std::make_unique<PoolServiceImpl>(
        *table_, streams_, context.config.max_message_bytes, context.caller_identity);
    // Capabilities made after this one (the scheduler's pool_task triggers) use the table.
    context.pools = table_.get();
  }

  std::vector<ServiceEntry> Services() override {
    return {{v1::PoolService::service_full_name(), service_.get()}};
  }

  void FillStats(v1::GetStatsResponse& stats) override {
    pool::PoolTable::TableStats s = table_->GetStats();
    stats.mutable_tables()->set_pools(s.pools);
    stats.mutable_tables()->set_tasks(s.tasks);
  }

  std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() override {
    return {std::make_shared<FunctionCollector>([this] { return Collect(); })};
  }

  void BeginShutdown() override { streams_.StopAll(); }

 private:
  std::vector<prometheus::MetricFamily> Collect() {
    using prometheus::MetricFamily;
    using prometheus::MetricType;
    MetricFamily workers{"spindle_pool_workers", "Pool workers by state", MetricType::Gauge, {}};
    MetricFamily tasks{"spindle_pool_tasks",
                       "Pool tasks now queued, running or in backoff",
                       MetricType::Gauge,
                       {}};
    MetricFamily totals{
        "spindle_pool_tasks_total", "Finished pool tasks by outcome", MetricType::Counter, {}};
    MetricFamily submits{"spindle_pool_submits_waiting",
                         "Submit calls waiting for room in a full pool queue",
                         MetricType::Gauge,
                         {}};
    MetricFamily restarts{"spindle_pool_worker_restarts_total",
                          "Pool workers replaced after they died or failed to start",
                          MetricType::Counter,
                          {}};
    struct Sums {
      double starting = 0, idle = 0, busy = 0, stopping = 0;
      double queued = 0, running = 0, backoff = 0;
      double succeeded = 0, failed = 0, timed_out = 0, cancelled = 0;
      double restarts = 0;
      double submits_waiting = 0;
    };
    std::map<std::string, Sums> by_label;
    for (const pool::PoolView& v : table_->AllPools()) {
      Sums& s = by_label[labels_->Label(v.name)];
      s.starting += v.stats.workers_starting;
      s.idle += v.stats.workers_idle;
      s.busy += v.stats.workers_busy;
      s.stopping += v.stats.workers_stopping;
      s.queued += static_cast<double>(v.stats.tasks_queued);
      s.running += static_cast<double>(v.stats.tasks_running);
      s.backoff += static_cast<double>(v.stats.tasks_backoff);
      s.succeeded += static_cast<double>(v.stats.tasks_succeeded);
      s.failed += static_cast<double>(v.stats.tasks_failed);
      s.timed_out += static_cast<double>(v.stats.tasks_timed_out);
      s.cancelled += static_cast<double>(v.stats.tasks_cancelled);
      s.restarts += static_cast<double>(v.stats.worker_restarts);
      s.submits_waiting += v.stats.submits_waiting;
    }
    for (const auto& [label, s] : by_label) {
      for (const auto& [state, value] :
           {std::pair{"starting", s.starting}, std::pair{"idle", s.idle}, std::pair{"busy", s.busy},
            std::pair{"stopping", s.stopping}}) {
        AddSample(workers, value, {{"pool", label}, {"state", state}});
      }
      for (const auto& [state, value] :
           {std::pair{"queued", s.queued}, std::pair{"running", s.running},
            std::pair{"backoff", s.backoff}}) {
        AddSample(tasks, value, {{"pool", label}, {"state", state}});
      }
      for (const auto& [outcome, value] :
           {std::pair{"succeeded", s.succeeded}, std::pair{"failed", s.failed},
            std::pair{"timed_out", s.timed_out}, std::pair{"cancelled", s.cancelled}}) {
        AddSample(totals, value, {{"outcome", outcome}, {"pool", label}});
      }
      AddSample(restarts, s.restarts, {{"pool", label}});
      AddSample(submits, s.submits_waiting, {{"pool", label}});
    }
    std::vector<MetricFamily> families;
    families.push_back(std::move(workers));
    families.push_back(std::move(tasks));
    families.push_back(std::move(totals));
    families.push_back(std::move(restarts));
    families.push_back(std::move(submits));
    return families;
  }

  std::shared_ptr<PoolLabels> labels_;
  LabelledHistogram task_seconds_;
  LabelledHistogram queue_wait_seconds_;
  StreamSet streams_;
  std::unique_ptr<pool::PoolTable> table_;
  std::unique_ptr<PoolServiceImpl> service_;
};

}  // namespace

std::unique_ptr<Capability> MakePoolCapability(CapabilityContext& context,
                                               PoolCapabilityOptions options) {
  return std::make_unique<PoolCapability>(context, std::move(options));
}

}  // namespace spindle::services
