// A prometheus Collectable whose families come from a function called at every scrape.
//
// The engine exposes plain stats structs; services/ turns them into metric families with a
// FunctionCollector, so nothing is sampled between scrapes and no metric globals exist.
//
// Thread-safety: thread-safe if the function is.
#ifndef SPINDLE_SERVICES_METRICS_FUNCTION_COLLECTOR_H_
#define SPINDLE_SERVICES_METRICS_FUNCTION_COLLECTOR_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace spindle::services {

class FunctionCollector final : public prometheus::Collectable {
 public:
  using Function = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit FunctionCollector(Function function) : function_(std::move(function)) {}

  std::vector<prometheus::MetricFamily> Collect() const override { return function_(); }

 private:
  Function function_;
};

// Builders for one-sample families.
prometheus::MetricFamily GaugeFamily(std::string name, std::string help, double value,
                                     std::vector<prometheus::ClientMetric::Label> labels = {});
prometheus::MetricFamily CounterFamily(std::string name, std::string help, double value,
                                       std::vector<prometheus::ClientMetric::Label> labels = {});

// Adds one sample with `labels` to a gauge or counter family.
void AddSample(prometheus::MetricFamily& family, double value,
               std::vector<prometheus::ClientMetric::Label> labels);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_METRICS_FUNCTION_COLLECTOR_H_
