#include "services/process/process_metrics.h"

#include "services/metrics/function_collector.h"

namespace spindle::services {
namespace {

prometheus::Family<prometheus::Counter>& Counters(prometheus::Registry& registry,
                                                  const std::string& name,
                                                  const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

ProcessMetrics::ProcessMetrics(prometheus::Registry& registry)
    : spawns_(Counters(registry, "spindle_process_spawns_total",
                       "Process spawns by result (ok, exec_failed, error).")),
      spawn_ok_(spawns_.Add({{"result", "ok"}})),
      spawn_exec_failed_(spawns_.Add({{"result", "exec_failed"}})),
      spawn_error_(spawns_.Add({{"result", "error"}})),
      spawn_seconds_(
          prometheus::BuildHistogram()
              .Name("spindle_process_spawn_seconds")
              .Help("Time to spawn a process (clone to exec), seconds.")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.00005, 0.0001, 0.00025, 0.0005,
                                                               0.001, 0.0025, 0.005, 0.01, 0.025,
                                                               0.05, 0.1, 0.25})),
      exits_(Counters(registry, "spindle_process_exits_total",
                      "Ended runs of processes by reason (exited, signaled, terminated, "
                      "timed_out, session_ended, caller_gone, start_failed).")),
      output_(Counters(registry, "spindle_process_output_bytes_total",
                       "Output bytes read from processes, by stream.")),
      stdout_bytes_(output_.Add({{"stream", "stdout"}})),
      stderr_bytes_(output_.Add({{"stream", "stderr"}})),
      dropped_bytes_(Counters(registry, "spindle_process_output_dropped_bytes_total",
                              "Output bytes overwritten in ring buffers before anyone read them.")
                         .Add({})) {
  for (int i = 0; i < 8; ++i) {
    exit_by_reason_[i] =
        &exits_.Add({{"reason", process::ExitReasonName(static_cast<process::ExitReason>(i))}});
  }
}

void ProcessMetrics::OnSpawn(absl::string_view result, absl::Duration latency) {
  if (result == "ok") {
    spawn_ok_.Increment();
  } else if (result == "exec_failed") {
    spawn_exec_failed_.Increment();
  } else {
    spawn_error_.Increment();
  }
  spawn_seconds_.Observe(absl::ToDoubleSeconds(latency));
}

void ProcessMetrics::OnExit(process::ExitReason reason) {
  int i = static_cast<int>(reason);
  if (i >= 0 && i < 8) exit_by_reason_[i]->Increment();
}

void ProcessMetrics::OnOutput(process::OutputStream stream, int64_t bytes) {
  (stream == process::OutputStream::kStderr ? stderr_bytes_ : stdout_bytes_)
      .Increment(static_cast<double>(bytes));
}

void ProcessMetrics::OnOutputDropped(int64_t bytes) {
  dropped_bytes_.Increment(static_cast<double>(bytes));
}

std::vector<prometheus::MetricFamily> ProcessMetrics::CollectStates(
    const process::ProcessTableStats& stats) {
  prometheus::MetricFamily family;
  family.name = "spindle_processes";
  family.help = "Processes known to the server (live and retained), by state.";
  family.type = prometheus::MetricType::Gauge;
  for (int i = 1; i <= 6; ++i) {
    AddSample(family, static_cast<double>(stats.by_state[i]),
              {{"state", process::StateName(static_cast<process::ProcessState>(i))}});
  }
  return {family};
}

}  // namespace spindle::services
