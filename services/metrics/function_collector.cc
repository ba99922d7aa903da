#include "services/metrics/function_collector.h"

namespace spindle::services {

void AddSample(prometheus::MetricFamily& family, double value,
               std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help, double value,
                                     std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::MetricFamily family{
      std::move(name), std::move(help), prometheus::MetricType::Gauge, {}};
  AddSample(family, value, std::move(labels));
  return family;
}

prometheus::MetricFamily CounterFamily(std::string name, std::string help, double value,
                                       std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::MetricFamily family{
      std::move(name), std::move(help), prometheus::MetricType::Counter, {}};
  AddSample(family, value, std::move(labels));
  return family;
}

}  // namespace spindle::services
