#include "services/queue/queue_capability.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "services/common/stream_set.h"
#include "services/metrics/function_collector.h"
#include "services/queue/queue_service.h"
#include "services/queue/value_service.h"
#include "spindle/queue/queue_registry.h"
#include "spindle/value/value_store.h"

namespace spindle::services {
namespace {

constexpr const char* kOtherQueue = "_other";

// Chooses the queue label: a bounded set of names, first come first served, others "_other".
class QueueLabels {
 public:
  explicit QueueLabels(int64_t cap) : cap_(cap) {}

  // Labels for the live queues `names`; names that are gone free their slot.
  std::vector<std::string> Assign(const std::vector<std::string>& names) {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_set<std::string> live(names.begin(), names.end());
    for (auto it = labelled_.begin(); it != labelled_.end();) {
      if (!live.contains(*it)) {
        labelled_.erase(it++);
      } else {
        ++it;
      }
    }
    std::vector<std::string> labels;
    labels.reserve(names.size());
    for (const auto& name : names) {
      if (labelled_.contains(name)) {
        labels.push_back(name);
      } else if (static_cast<int64_t>(labelled_.size()) < cap_) {
        labelled_.insert(name);
        labels.push_back(name);
      } else {
        labels.push_back(kOtherQueue);
      }
    }
    return labels;
  }

 private:
  const int64_t cap_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> labelled_ ABSL_GUARDED_BY(mu_);
};

class QueueCapability final : public Capability {
 public:
  QueueCapability(CapabilityContext& context, QueueCapabilityOptions options)
      : wait_family_(prometheus::BuildHistogram()
                         .Name("spindle_queue_wait_seconds")
                         .Help("How long queue getters waited for an item before being served")
                         .Register(context.registry)),
        wait_histogram_(wait_family_.Add(
            {}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5,
                                                        10, 30, 60, 300})),
        ops_family_(prometheus::BuildCounter()
                        .Name("spindle_value_ops_total")
                        .Help("Value rpcs handled, by operation")
                        .Register(context.registry)),
        registry_(context.timers, context.sessions, RegistryOptionsFor(context)),
        store_(context.timers, context.sessions, StoreOptionsFor(context)),
        labels_(std::make_shared<QueueLabels>(options.max_queue_labels)) {
    for (const char* op : {"get", "set", "add", "cas", "delete", "list", "watch"}) {
      ops_[op] = &ops_family_.Add({{"op", op}});
    }
    queue_service_ = std::make_unique<QueueServiceImpl>(registry_, context.timers, streams_,
                                                        context.config.max_message_bytes);
    value_service_ = std::make_unique<ValueServiceImpl>(
        store_, context.timers, streams_,
        [this](absl::string_view op) {
          auto it = ops_.find(op);
          if (it != ops_.end()) {
            it->second->Increment();
          }
        },
        context.check_fence);
  }

  std::vector<ServiceEntry> Services() override {
    return {{v1::QueueService::service_full_name(), queue_service_.get()},
            {v1::ValueService::service_full_name(), value_service_.get()}};
  }

  void FillStats(v1::GetStatsResponse& stats) override {
    queue::QueueRegistry::Stats queues = registry_.GetStats();
    value::ValueStore::Stats values = store_.GetStats();
    v1::TableStats* tables = stats.mutable_tables();
    tables->set_queues(queues.queues);
    tables->set_queued_items(queues.queued_items);
    tables->set_values(values.values);
    tables->set_watchers(values.watchers);
  }

  std::vector<std::shared_ptr<prometheus::Collectable>> Collectors() override {
    return {std::make_shared<FunctionCollector>([this] { return Collect(); })};
  }

  void BeginShutdown() override { streams_.StopAll(); }

 private:
  queue::RegistryOptions RegistryOptionsFor(const CapabilityContext& context) {
    queue::RegistryOptions options;
    options.max_message_bytes = context.config.max_message_bytes;
    options.max_queues = context.config.max_names;
    options.max_waiters = context.config.max_waiters;
    options.observe_wait = [this](absl::Duration waited) {
      wait_histogram_.Observe(absl::ToDoubleSeconds(waited));
    };
    return options;
  }

  static value::StoreOptions StoreOptionsFor(const CapabilityContext& context) {
    value::StoreOptions options;
    options.max_values = context.config.max_names;
    return options;
  }

  std::vector<prometheus::MetricFamily> Collect() {
    using prometheus::MetricFamily;
    using prometheus::MetricType;
    MetricFamily depth{"spindle_queue_depth", "Ready items per queue", MetricType::Gauge, {}};
    MetricFamily inflight{
        "spindle_queue_inflight", "Leased items not yet acked per queue", MetricType::Gauge, {}};
    MetricFamily items{"spindle_queue_items_total",
                       "Items through each queue by operation (put, get, ack, nack, redeliver, "
                       "dead_letter)",
                       MetricType::Counter,
                       {}};
    auto queues = registry_.All();
    std::vector<std::string> names;
    names.reserve(queues.size());
    for (const auto& q : queues) {
      names.push_back(q->name());
    }
    std::vector<std::string> labels = labels_->Assign(names);
    struct Sums {
      double depth = 0, inflight = 0;
      queue::QueueTotals totals;
    };
    std::map<std::string, Sums> by_label;
    for (size_t i = 0; i < queues.size(); ++i) {
      queue::Queue::Counts counts = queues[i]->GetCounts();
      Sums& sums = by_label[labels[i]];
      sums.depth += static_cast<double>(counts.depth);
      sums.inflight += static_cast<double>(counts.in_flight);
      sums.totals.put += counts.totals.put;
      sums.totals.delivered += counts.totals.delivered;
      sums.totals.acked += counts.totals.acked;
      sums.totals.nacked += counts.totals.nacked;
      sums.totals.redelivered += counts.totals.redelivered;
      sums.totals.dead_lettered += counts.totals.dead_lettered;
    }
    for (const auto& [label, sums] : by_label) {
      AddSample(depth, sums.depth, {{"queue", label}});
      AddSample(inflight, sums.inflight, {{"queue", label}});
      const std::pair<const char*, int64_t> ops[] = {{"put", sums.totals.put},
                                                     {"get", sums.totals.delivered},
                                                     {"ack", sums.totals.acked},
                                                     {"nack", sums.totals.nacked},
                                                     {"redeliver", sums.totals.redelivered},
                                                     {"dead_letter", sums.totals.dead_lettered}};
      for (const auto& [op, value] : ops) {
        AddSample(items, static_cast<double>(value), {{"op", op}, {"queue", label}});
      }
    }
    value::ValueStore::Stats values = store_.GetStats();
    std::vector<MetricFamily> families;
    families.push_back(std::move(depth));
    families.push_back(std::move(inflight));
    families.push_back(std::move(items));
    families.push_back(
        GaugeFamily("spindle_values", "Values stored", static_cast<double>(values.values)));
    families.push_back(GaugeFamily("spindle_watchers", "Open value watches",
                                   static_cast<double>(values.watchers)));
    return families;
  }

  prometheus::Family<prometheus::Histogram>& wait_family_;
  prometheus::Histogram& wait_histogram_;
  prometheus::Family<prometheus::Counter>& ops_family_;
  absl::flat_hash_map<std::string, prometheus::Counter*> ops_;
  StreamSet streams_;
  queue::QueueRegistry registry_;
  value::ValueStore store_;
  std::shared_ptr<QueueLabels> labels_;
  std::unique_ptr<QueueServiceImpl> queue_service_;
  std::unique_ptr<ValueServiceImpl> value_service_;
};

}  // namespace

std::unique_ptr<Capability> MakeQueueCapability(CapabilityContext& context,
                                                QueueCapabilityOptions options) {
  return std::make_unique<QueueCapability>(context, options);
}

}  // namespace spindle::services
