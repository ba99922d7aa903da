#include "services/pool/convert.h"

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/process/signals.h"

namespace spindle::services {
namespace {

absl::Status Invalid(absl::string_view message) {
  return InvalidArgument("INVALID_ARGUMENT", message);
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return;
  timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

process::ProcessCommand CommandFromProto(const v1::ProcessCommand& c) {
  process::ProcessCommand out;
  out.argv.assign(c.argv().begin(), c.argv().end());
  out.executable = c.executable();
  out.env.clean = c.env().clean();
  for (const auto& [k, v] : c.env().set()) out.env.set[k] = v;
  out.env.unset.assign(c.env().unset().begin(), c.env().unset().end());
  out.cwd = c.cwd();
  return out;
}

void CommandToProto(const process::ProcessCommand& c, v1::ProcessCommand* out) {
  for (const auto& a : c.argv) out->add_argv(a);
  out->set_executable(c.executable);
  out->mutable_env()->set_clean(c.env.clean);
  for (const auto& [k, v] : c.env.set) (*out->mutable_env()->mutable_set())[k] = v;
  for (const auto& k : c.env.unset) out->mutable_env()->add_unset(k);
  out->set_cwd(c.cwd);
}

void RetryToProto(const pool::RetryPolicy& r, v1::TaskRetryPolicy* out) {
  out->set_max_attempts(r.max_attempts);
  out->set_initial_backoff_ms(r.initial_backoff_ms);
  out->set_max_backoff_ms(r.max_backoff_ms);
  out->set_multiplier(r.multiplier);
  if (r.jitter.has_value()) out->set_jitter(*r.jitter);
  for (int32_t c : r.non_retryable_exit_codes) out->add_non_retryable_exit_codes(c);
  for (auto c : r.retry_on) out->add_retry_on(static_cast<v1::TaskRetryCondition>(c));
}

absl::StatusOr<pool::TaskCommand> TaskCommandFromProto(const v1::TaskCommand& c) {
  pool::TaskCommand out;
  out.command = CommandFromProto(c.command());
  out.stdin_data = c.stdin_data();
  out.merge_stderr = c.merge_stderr();
  return out;
}

pool::TaskCall TaskCallFromProto(const v1::TaskCall& c) {
  pool::TaskCall out;
  out.function = c.function();
  out.args.assign(c.args().begin(), c.args().end());
  out.input = c.input();
  return out;
}

}  // namespace

absl::StatusOr<pool::RetryPolicy> FromProto(const std::string& field,
                                            const v1::TaskRetryPolicy& p) {
  pool::RetryPolicy out;
  out.max_attempts = p.max_attempts();
  out.initial_backoff_ms = p.initial_backoff_ms();
  out.max_backoff_ms = p.max_backoff_ms();
  out.multiplier = p.multiplier();
  if (p.has_jitter()) out.jitter = p.jitter();
  out.non_retryable_exit_codes.assign(p.non_retryable_exit_codes().begin(),
                                      p.non_retryable_exit_codes().end());
  for (int i = 0; i < p.retry_on_size(); ++i) {
    int v = p.retry_on(i);
    if (v < 1 || v > 3) {
      return Invalid(absl::StrCat(field, ".retry_on[", i, "]: ", v,
                                  " is not FAILED, TIMED_OUT or WORKER_LOST"));
    }
    out.retry_on.push_back(static_cast<pool::RetryCondition>(v));
  }
  return out;
}

absl::StatusOr<pool::PoolSpec> FromProto(const v1::PoolSpec& s) {
  pool::PoolSpec out;
  if (s.kind() < 0 || s.kind() > 3) {
    return Invalid(absl::StrCat("spec.kind: unknown kind ", s.kind()));
  }
  out.kind = static_cast<pool::PoolKind>(s.kind());
  out.size = s.size();
  if (s.has_worker()) {
    pool::WorkerSpec w;
    w.command = CommandFromProto(s.worker().command());
    w.start_timeout_ms = s.worker().start_timeout_ms();
    w.stop_grace_ms = s.worker().stop_grace_ms();
    out.worker = std::move(w);
  }
  out.max_queued = s.max_queued();
  out.default_task_timeout_ms = s.default_task_timeout_ms();
  SPINDLE_ASSIGN_OR_RETURN(out.retry, FromProto("spec.retry", s.retry()));
  out.max_tasks_per_worker = s.max_tasks_per_worker();
  for (const auto& [k, v] : s.labels()) out.labels[k] = v;
  const auto& l = s.limits();
  if (l.has_cpu_seconds()) out.limits.cpu_seconds = l.cpu_seconds();
  if (l.has_address_space_bytes()) out.limits.address_space_bytes = l.address_space_bytes();
  if (l.has_open_files()) out.limits.open_files = l.open_files();
  if (l.has_processes()) out.limits.processes = l.processes();
  if (l.has_core_bytes()) out.limits.core_bytes = l.core_bytes();
  if (l.has_file_size_bytes()) out.limits.file_size_bytes = l.file_size_bytes();
  if (l.has_nice()) out.limits.nice = l.nice();
  if (s.run_as().has_uid()) out.run_as.uid = s.run_as().uid();
  if (s.run_as().has_gid()) out.run_as.gid = s.run_as().gid();
  out.run_as.supplementary_gids.assign(s.run_as().supplementary_gids().begin(),
                                       s.run_as().supplementary_gids().end());
  out.kill_grace_ms = s.kill_grace_ms();
  out.max_output_bytes = s.max_output_bytes();
  out.session_id = s.session_id();
  return out;
}

absl::StatusOr<pool::TaskSpec> FromProto(const std::string& field, const v1::TaskSpec& s) {
  pool::TaskSpec out;
  switch (s.work_case()) {
    case v1::TaskSpec::kPayload:
      out.work = s.payload();
      break;
    case v1::TaskSpec::kCommand: {
      SPINDLE_ASSIGN_OR_RETURN(out.work, TaskCommandFromProto(s.command()));
      break;
    }
    case v1::TaskSpec::kCall:
      out.work = TaskCallFromProto(s.call());
      break;
    default:
      break;
  }
  out.priority = s.priority();
  for (const auto& [k, v] : s.labels()) out.labels[k] = v;
  if (s.has_timeout_ms()) out.timeout_ms = s.timeout_ms();
  if (s.has_retry()) {
    SPINDLE_ASSIGN_OR_RETURN(out.retry, FromProto(field + ".retry", s.retry()));
  }
  return out;
}

absl::StatusOr<pool::TaskSpec> FromMapInput(const v1::PoolMapInput& input,
                                            const v1::PoolMapStart& start) {
  pool::TaskSpec out;
  switch (input.work_case()) {
    case v1::PoolMapInput::kPayload:
      out.work = input.payload();
      break;
    case v1::PoolMapInput::kCommand: {
      SPINDLE_ASSIGN_OR_RETURN(out.work, TaskCommandFromProto(input.command()));
      break;
    }
    case v1::PoolMapInput::kCall:
      out.work = TaskCallFromProto(input.call());
      break;
    default:
      break;
  }
  out.priority = start.priority();
  for (const auto& [k, v] : start.labels()) out.labels[k] = v;
  if (start.has_timeout_ms()) out.timeout_ms = start.timeout_ms();
  if (start.has_retry()) {
    SPINDLE_ASSIGN_OR_RETURN(out.retry, FromProto("start.retry", start.retry()));
  }
  return out;
}

absl::StatusOr<std::vector<pool::PoolState>> PoolStatesFromProto(
    const google::protobuf::RepeatedField<int>& states) {
  std::vector<pool::PoolState> out;
  for (int i = 0; i < states.size(); ++i) {
    if (states[i] < 1 || states[i] > 5) {
      return Invalid(absl::StrCat("states[", i, "]: unknown pool state ", states[i]));
    }
    out.push_back(static_cast<pool::PoolState>(states[i]));
  }
  return out;
}

absl::StatusOr<pool::TaskFilter> TaskFilterFromProto(const v1::ListTasksRequest& request) {
  pool::TaskFilter filter;
  for (int i = 0; i < request.states_size(); ++i) {
    int s = request.states(i);
    if (s < 1 || s > 7) {
      return Invalid(absl::StrCat("states[", i, "]: unknown task state ", s));
    }
    filter.states.push_back(static_cast<pool::TaskState>(s));
  }
  filter.label_selector = request.label_selector();
  filter.session_id = request.session_id();
  return filter;
}

void ToProto(const pool::PoolView& v, v1::Pool* out) {
  out->set_name(v.name);
  v1::PoolSpec* spec = out->mutable_spec();
  spec->set_kind(static_cast<v1::PoolKind>(v.spec.kind));
  spec->set_size(v.spec.size);
  if (v.spec.worker.has_value()) {
    CommandToProto(v.spec.worker->command, spec->mutable_worker()->mutable_command());
    spec->mutable_worker()->set_start_timeout_ms(v.spec.worker->start_timeout_ms);
    spec->mutable_worker()->set_stop_grace_ms(v.spec.worker->stop_grace_ms);
  }
  spec->set_max_queued(v.spec.max_queued);
  spec->set_default_task_timeout_ms(v.spec.default_task_timeout_ms);
  RetryToProto(v.spec.retry, spec->mutable_retry());
  spec->set_max_tasks_per_worker(v.spec.max_tasks_per_worker);
  for (const auto& [k, val] : v.spec.labels) (*spec->mutable_labels())[k] = val;
  const auto& l = v.spec.limits;
  auto* lo = spec->mutable_limits();
  if (l.cpu_seconds) lo->set_cpu_seconds(*l.cpu_seconds);
  if (l.address_space_bytes) lo->set_address_space_bytes(*l.address_space_bytes);
  if (l.open_files) lo->set_open_files(*l.open_files);
  if (l.processes) lo->set_processes(*l.processes);
  if (l.core_bytes) lo->set_core_bytes(*l.core_bytes);
  if (l.file_size_bytes) lo->set_file_size_bytes(*l.file_size_bytes);
  if (l.nice) lo->set_nice(*l.nice);
  if (v.spec.run_as.uid) spec->mutable_run_as()->set_uid(*v.spec.run_as.uid);
  if (v.spec.run_as.gid) spec->mutable_run_as()->set_gid(*v.spec.run_as.gid);
  for (uint32_t g : v.spec.run_as.supplementary_gids) {
    spec->mutable_run_as()->add_supplementary_gids(g);
  }
  spec->set_kill_grace_ms(v.spec.kill_grace_ms);
  spec->set_max_output_bytes(v.spec.max_output_bytes);
  spec->set_session_id(v.spec.session_id);
  out->set_state(static_cast<v1::PoolState>(v.state));
  v1::PoolStats* st = out->mutable_stats();
  st->set_workers(v.stats.workers);
  st->set_workers_starting(v.stats.workers_starting);
  st->set_workers_idle(v.stats.workers_idle);
  st->set_workers_busy(v.stats.workers_busy);
  st->set_tasks_queued(v.stats.tasks_queued);
  st->set_tasks_backoff(v.stats.tasks_backoff);
  st->set_tasks_running(v.stats.tasks_running);
  st->set_tasks_submitted(v.stats.tasks_submitted);
  st->set_tasks_succeeded(v.stats.tasks_succeeded);
  st->set_tasks_failed(v.stats.tasks_failed);
  st->set_tasks_timed_out(v.stats.tasks_timed_out);
  st->set_tasks_cancelled(v.stats.tasks_cancelled);
  st->set_task_retries(v.stats.task_retries);
  st->set_worker_restarts(v.stats.worker_restarts);
  st->set_worker_recycles(v.stats.worker_recycles);
  st->set_tasks_handed_ahead(v.stats.tasks_handed_ahead);
  st->set_submits_waiting(v.stats.submits_waiting);
  st->set_oldest_queued_age_ms(v.stats.oldest_queued_age_ms);
  for (const auto& w : v.workers) {
    v1::PoolWorker* pw = out->add_workers();
    pw->set_id(w.id);
    pw->set_state(static_cast<v1::PoolWorkerState>(w.state));
    pw->set_pid(w.pid);
    pw->set_task_id(w.task_id);
    pw->set_tasks_done(w.tasks_done);
    SetTime(w.started_at, pw->mutable_started_at());
  }
  SetTime(v.created_at, out->mutable_created_at());
  if (v.closed_at != absl::InfinitePast()) SetTime(v.closed_at, out->mutable_closed_at());
  out->set_last_worker_error(v.last_worker_error);
}

void ToProto(const pool::TaskResult& r, v1::TaskResult* out) {
  out->set_outcome(static_cast<v1::TaskState>(r.outcome));
  if (r.exit.has_value()) {
    v1::ProcessExit* e = out->mutable_exit();
    e->set_reason(static_cast<v1::ProcessExitReason>(r.exit->reason));
    e->set_exit_code(r.exit->exit_code);
    e->set_signal_number(r.exit->signal_number);
    if (r.exit->signal_number != 0) e->set_signal_name(process::SignalName(r.exit->signal_number));
    e->set_core_dumped(r.exit->core_dumped);
    e->set_message(r.exit->message);
  }
  out->set_stdout_data(r.stdout_data);
  out->set_stderr_data(r.stderr_data);
  out->set_stdout_dropped_bytes(r.stdout_dropped_bytes);
  out->set_stderr_dropped_bytes(r.stderr_dropped_bytes);
  out->set_output(r.output);
  out->set_error(r.error);
  out->set_error_reason(r.error_reason);
  out->set_attempts(r.attempts);
  out->set_worker_id(r.worker_id);
  SetTime(r.submitted_at, out->mutable_submitted_at());
  if (r.started_at != absl::InfinitePast()) SetTime(r.started_at, out->mutable_started_at());
  SetTime(r.ended_at, out->mutable_ended_at());
  if (r.exit.has_value()) {
    auto* u = out->mutable_usage();
    u->set_user_cpu_ms(r.usage.user_cpu_ms);
    u->set_system_cpu_ms(r.usage.system_cpu_ms);
    u->set_max_rss_bytes(r.usage.max_rss_bytes);
    u->set_minor_faults(r.usage.minor_faults);
    u->set_major_faults(r.usage.major_faults);
    u->set_voluntary_context_switches(r.usage.voluntary_context_switches);
    u->set_involuntary_context_switches(r.usage.involuntary_context_switches);
  }
}

void ToProto(const pool::TaskView& v, v1::Task* out) {
  out->set_id(v.id);
  out->set_pool(v.pool);
  v1::TaskSpec* spec = out->mutable_spec();
  if (const auto* p = std::get_if<std::string>(&v.spec.work)) {
    spec->set_payload(*p);
  } else if (const auto* c = std::get_if<pool::TaskCommand>(&v.spec.work)) {
    CommandToProto(c->command, spec->mutable_command()->mutable_command());
    spec->mutable_command()->set_stdin_data(c->stdin_data);
    spec->mutable_command()->set_merge_stderr(c->merge_stderr);
  } else if (const auto* f = std::get_if<pool::TaskCall>(&v.spec.work)) {
    spec->mutable_call()->set_function(f->function);
    for (const auto& a : f->args) spec->mutable_call()->add_args(a);
    spec->mutable_call()->set_input(f->input);
  }
  spec->set_priority(v.spec.priority);
  for (const auto& [k, val] : v.spec.labels) (*spec->mutable_labels())[k] = val;
  if (v.spec.timeout_ms.has_value()) spec->set_timeout_ms(*v.spec.timeout_ms);
  if (v.spec.retry.has_value()) RetryToProto(*v.spec.retry, spec->mutable_retry());
  out->set_state(static_cast<v1::TaskState>(v.state));
  out->set_attempt(v.attempt);
  SetTime(v.submitted_at, out->mutable_submitted_at());
  if (v.started_at != absl::InfinitePast()) SetTime(v.started_at, out->mutable_started_at());
  if (v.ended_at != absl::InfinitePast()) SetTime(v.ended_at, out->mutable_ended_at());
  out->set_worker_id(v.worker_id);
  out->set_session_id(v.session_id);
  out->set_last_error(v.last_error);
  if (v.next_attempt_at != absl::InfinitePast()) {
    SetTime(v.next_attempt_at, out->mutable_next_attempt_at());
  }
  if (v.result.has_value()) ToProto(*v.result, out->mutable_result());
}

void ToProto(const pool::TaskEvent& e, bool include_output, v1::TaskEvent* out) {
  out->set_sequence(e.sequence);
  out->set_type(static_cast<v1::TaskEventType>(e.type));
  out->set_task_id(e.task_id);
  out->set_pool(e.pool);
  SetTime(e.time, out->mutable_time());
  out->set_attempt(e.attempt);
  out->set_worker_id(e.worker_id);
  for (const auto& [k, v] : e.labels) (*out->mutable_labels())[k] = v;
  if (e.result.has_value()) {
    ToProto(*e.result, out->mutable_result());
    if (!include_output) {
      out->mutable_result()->clear_stdout_data();
      out->mutable_result()->clear_stderr_data();
      out->mutable_result()->clear_output();
    }
  }
  out->set_error(e.error);
  if (e.next_attempt_at != absl::InfinitePast()) {
    SetTime(e.next_attempt_at, out->mutable_next_attempt_at());
  }
}

}  // namespace spindle::services
