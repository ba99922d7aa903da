#include "services/scheduler/scheduler_metrics.h"

#include "absl/strings/ascii.h"
#include "services/metrics/function_collector.h"

namespace spindle::services {
namespace {

constexpr trigger::RunState kCountedStates[] = {
    trigger::RunState::kSkipped,  trigger::RunState::kSucceeded, trigger::RunState::kFailed,
    trigger::RunState::kTimedOut, trigger::RunState::kCancelled,
};

prometheus::Histogram& FetchSeconds(prometheus::Registry& registry) {
  return prometheus::BuildHistogram()
      .Name("spindle_fetch_seconds")
      .Help("Total time of each FetchUrls transfer (connect to last byte, redirects included)")
      .Register(registry)
      .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
}

}  // namespace

SchedulerMetrics::SchedulerMetrics(prometheus::Registry& registry)
    : fetch_seconds_(FetchSeconds(registry)) {
  auto& fetches = prometheus::BuildCounter()
                      .Name("spindle_fetch_requests_total")
                      .Help("URLs fetched by FetchUrls, by result (ok or the error reason)")
                      .Register(registry);
  fetch_results_["ok"] = &fetches.Add({{"result", "ok"}});
  for (const std::string& reason : http::ErrorReasons()) {
    const std::string label = absl::AsciiStrToLower(reason);
    fetch_results_[label] = &fetches.Add({{"result", label}});
  }
  auto& runs = prometheus::BuildCounter()
                   .Name("spindle_trigger_runs_total")
                   .Help("Trigger runs that ended, by final state (skipped included)")
                   .Register(registry);
  for (trigger::RunState state : kCountedStates) {
    run_states_[state] =
        &runs.Add({{"state", absl::AsciiStrToLower(trigger::RunStateName(state))}});
  }
}

void SchedulerMetrics::OnFetchResult(const http::FetchResult& result) {
  const std::string label = result.ok() ? "ok" : absl::AsciiStrToLower(result.error_reason);
  auto it = fetch_results_.find(label);
  if (it == fetch_results_.end()) {
    it = fetch_results_.find("receive_failed");
  }
  it->second->Increment();
  fetch_seconds_.Observe(static_cast<double>(result.timing.total_ms) / 1000.0);
}

void SchedulerMetrics::OnRunFinal(trigger::RunState state) {
  if (auto it = run_states_.find(state); it != run_states_.end()) {
    it->second->Increment();
  }
}

std::vector<prometheus::MetricFamily> SchedulerMetrics::CollectTriggers(
    const trigger::TriggerTableStats& stats) {
  prometheus::MetricFamily family =
      GaugeFamily("spindle_triggers", "Triggers by state", static_cast<double>(stats.active),
                  {{"state", "active"}});
  AddSample(family, static_cast<double>(stats.paused), {{"state", "paused"}});
  AddSample(family, static_cast<double>(stats.completed), {{"state", "completed"}});
  return {std::move(family)};
}

}  // namespace spindle::services
