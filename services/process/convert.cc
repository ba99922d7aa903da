#include "services/process/convert.h"

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/process/signals.h"

namespace spindle::services {
namespace {

template <typename E>
absl::StatusOr<E> EnumFromProto(absl::string_view field, int value, int max) {
  if (value < 0 || value > max) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat(field, ": unknown enum value ", value));
  }
  return static_cast<E>(value);
}

template <typename T>
std::optional<T> Opt(bool has, T value) {
  return has ? std::optional<T>(value) : std::nullopt;
}

}  // namespace

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  int64_t ns = absl::ToUnixNanos(t);
  out->set_seconds(ns / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(ns % 1'000'000'000));
}

absl::StatusOr<process::SignalSpec> SignalFromProto(absl::string_view field,
                                                    const v1::ProcessSignal& signal) {
  process::SignalSpec spec;
  switch (signal.kind_case()) {
    case v1::ProcessSignal::kName:
      spec.name = signal.name();
      if (spec.name.empty()) {
        return InvalidArgument("INVALID_SIGNAL", absl::StrCat(field, ".name: must not be empty"));
      }
      break;
    case v1::ProcessSignal::kNumber:
      spec.number = signal.number();
      if (spec.number == 0) {
        return InvalidArgument("INVALID_SIGNAL",
                               absl::StrCat(field, ": signal '0' is not a signal number (1..64)"));
      }
      break;
    default:
      break;
  }
  return spec;
}

absl::StatusOr<process::OutputStream> StreamFromProto(absl::string_view field, int stream) {
  SPINDLE_ASSIGN_OR_RETURN(auto s, EnumFromProto<process::OutputStream>(field, stream, 3));
  return s == process::OutputStream::kUnspecified ? process::OutputStream::kBoth : s;
}

absl::StatusOr<process::ProcessSpec> FromProto(const v1::ProcessSpec& in) {
  process::ProcessSpec spec;
  const auto& cmd = in.command();
  spec.command.argv.assign(cmd.argv().begin(), cmd.argv().end());
  spec.command.executable = cmd.executable();
  spec.command.cwd = cmd.cwd();
  spec.command.env.clean = cmd.env().clean();
  spec.command.env.set.insert(cmd.env().set().begin(), cmd.env().set().end());
  spec.command.env.unset.assign(cmd.env().unset().begin(), cmd.env().unset().end());
  spec.name = in.name();
  spec.labels.insert(in.labels().begin(), in.labels().end());
  SPINDLE_ASSIGN_OR_RETURN(
      spec.stdin_mode, EnumFromProto<process::StdinMode>("spec.stdin_mode", in.stdin_mode(), 3));
  spec.stdin_data = in.stdin_data();
  SPINDLE_ASSIGN_OR_RETURN(spec.stdout_mode, EnumFromProto<process::OutputMode>(
                                                 "spec.stdout_mode", in.stdout_mode(), 3));
  SPINDLE_ASSIGN_OR_RETURN(spec.stderr_mode, EnumFromProto<process::OutputMode>(
                                                 "spec.stderr_mode", in.stderr_mode(), 3));
  spec.output_buffer_bytes = in.output_buffer_bytes();
  const auto& l = in.limits();
  spec.limits.cpu_seconds = Opt(l.has_cpu_seconds(), l.cpu_seconds());
  spec.limits.address_space_bytes = Opt(l.has_address_space_bytes(), l.address_space_bytes());
  spec.limits.open_files = Opt(l.has_open_files(), l.open_files());
  spec.limits.processes = Opt(l.has_processes(), l.processes());
  spec.limits.core_bytes = Opt(l.has_core_bytes(), l.core_bytes());
  spec.limits.file_size_bytes = Opt(l.has_file_size_bytes(), l.file_size_bytes());
  spec.limits.nice = Opt(l.has_nice(), l.nice());
  const auto& u = in.run_as();
  spec.run_as.uid = Opt(u.has_uid(), u.uid());
  spec.run_as.gid = Opt(u.has_gid(), u.gid());
  spec.run_as.supplementary_gids.assign(u.supplementary_gids().begin(),
                                        u.supplementary_gids().end());
  spec.timeout_ms = in.timeout_ms();
  spec.kill_grace_ms = Opt(in.has_kill_grace_ms(), in.kill_grace_ms());
  if (in.has_stop_signal()) {
    SPINDLE_ASSIGN_OR_RETURN(spec.stop_signal,
                             SignalFromProto("spec.stop_signal", in.stop_signal()));
  }
  spec.new_session = in.new_session();
  spec.session_id = in.session_id();
  const auto& r = in.restart();
  SPINDLE_ASSIGN_OR_RETURN(spec.restart.mode,
                           EnumFromProto<process::RestartMode>("spec.restart.mode", r.mode(), 3));
  spec.restart.initial_backoff_ms = r.initial_backoff_ms();
  spec.restart.max_backoff_ms = r.max_backoff_ms();
  spec.restart.multiplier = r.multiplier();
  spec.restart.jitter = Opt(r.has_jitter(), r.jitter());
  spec.restart.max_restarts = r.max_restarts();
  spec.restart.max_start_failures = Opt(r.has_max_start_failures(), r.max_start_failures());
  spec.restart.min_uptime_ms = Opt(r.has_min_uptime_ms(), r.min_uptime_ms());
  spec.restart.success_exit_codes.assign(r.success_exit_codes().begin(),
                                         r.success_exit_codes().end());
  if (in.has_pty()) {
    spec.pty = process::ProcessPty{in.pty().rows(), in.pty().cols(), in.pty().term()};
  }
  spec.unique_name = in.unique_name();
  return spec;
}

absl::StatusOr<process::ProcessFilter> FilterFromProto(
    const google::protobuf::RepeatedField<int>& states, const std::string& label_selector,
    const std::string& name_prefix, const std::string& session_id) {
  process::ProcessFilter filter;
  for (int s : states) {
    SPINDLE_ASSIGN_OR_RETURN(auto state, EnumFromProto<process::ProcessState>("states", s, 6));
    if (state != process::ProcessState::kUnspecified) filter.states.push_back(state);
  }
  filter.label_selector = label_selector;
  filter.name_prefix = name_prefix;
  filter.session_id = session_id;
  return filter;
}

void ToProto(const process::ProcessSpec& spec, v1::ProcessSpec* out) {
  auto* cmd = out->mutable_command();
  for (const auto& a : spec.command.argv) cmd->add_argv(a);
  cmd->set_executable(spec.command.executable);
  cmd->set_cwd(spec.command.cwd);
  cmd->mutable_env()->set_clean(spec.command.env.clean);
  for (const auto& [k, v] : spec.command.env.set) (*cmd->mutable_env()->mutable_set())[k] = v;
  for (const auto& k : spec.command.env.unset) cmd->mutable_env()->add_unset(k);
  out->set_name(spec.name);
  for (const auto& [k, v] : spec.labels) (*out->mutable_labels())[k] = v;
  out->set_stdin_mode(static_cast<v1::ProcessStdinMode>(spec.stdin_mode));
  out->set_stdout_mode(static_cast<v1::ProcessOutputMode>(spec.stdout_mode));
  out->set_stderr_mode(static_cast<v1::ProcessOutputMode>(spec.stderr_mode));
  out->set_output_buffer_bytes(spec.output_buffer_bytes);
  const auto& l = spec.limits;
  auto* lo = out->mutable_limits();
  if (l.cpu_seconds) lo->set_cpu_seconds(*l.cpu_seconds);
  if (l.address_space_bytes) lo->set_address_space_bytes(*l.address_space_bytes);
  if (l.open_files) lo->set_open_files(*l.open_files);
  if (l.processes) lo->set_processes(*l.processes);
  if (l.core_bytes) lo->set_core_bytes(*l.core_bytes);
  if (l.file_size_bytes) lo->set_file_size_bytes(*l.file_size_bytes);
  if (l.nice) lo->set_nice(*l.nice);
  if (spec.run_as.IsSet()) {
    auto* u = out->mutable_run_as();
    if (spec.run_as.uid) u->set_uid(*spec.run_as.uid);
    if (spec.run_as.gid) u->set_gid(*spec.run_as.gid);
    for (uint32_t g : spec.run_as.supplementary_gids) u->add_supplementary_gids(g);
  }
  out->set_timeout_ms(spec.timeout_ms);
  if (spec.kill_grace_ms) out->set_kill_grace_ms(*spec.kill_grace_ms);
  if (!spec.stop_signal.name.empty()) {
    out->mutable_stop_signal()->set_name(spec.stop_signal.name);
  } else if (spec.stop_signal.number != 0) {
    out->mutable_stop_signal()->set_number(spec.stop_signal.number);
  }
  out->set_new_session(spec.new_session);
  out->set_session_id(spec.session_id);
  const auto& r = spec.restart;
  auto* ro = out->mutable_restart();
  ro->set_mode(static_cast<v1::ProcessRestartMode>(r.mode));
  ro->set_initial_backoff_ms(r.initial_backoff_ms);
  ro->set_max_backoff_ms(r.max_backoff_ms);
  ro->set_multiplier(r.multiplier);
  if (r.jitter) ro->set_jitter(*r.jitter);
  ro->set_max_restarts(r.max_restarts);
  if (r.max_start_failures) ro->set_max_start_failures(*r.max_start_failures);
  if (r.min_uptime_ms) ro->set_min_uptime_ms(*r.min_uptime_ms);
  for (int32_t c : r.success_exit_codes) ro->add_success_exit_codes(c);
  if (spec.pty) {
    out->mutable_pty()->set_rows(spec.pty->rows);
    out->mutable_pty()->set_cols(spec.pty->cols);
    out->mutable_pty()->set_term(spec.pty->term);
  }
  out->set_unique_name(spec.unique_name);
}

void ToProto(const process::ProcessStatus& s, v1::ProcessStatus* out) {
  out->set_state(static_cast<v1::ProcessState>(s.state));
  out->set_pid(s.pid);
  out->set_process_group_id(s.process_group_id);
  if (s.created_at != absl::InfinitePast()) SetTimestamp(s.created_at, out->mutable_created_at());
  if (s.started_at != absl::InfinitePast()) SetTimestamp(s.started_at, out->mutable_started_at());
  if (s.ended_at != absl::InfinitePast() && s.pid == 0) {
    SetTimestamp(s.ended_at, out->mutable_ended_at());
  }
  if (s.exit.has_value()) {
    auto* e = out->mutable_exit();
    e->set_reason(static_cast<v1::ProcessExitReason>(s.exit->reason));
    e->set_exit_code(s.exit->exit_code);
    e->set_signal_number(s.exit->signal_number);
    if (s.exit->signal_number != 0) e->set_signal_name(process::SignalName(s.exit->signal_number));
    e->set_core_dumped(s.exit->core_dumped);
    e->set_message(s.exit->message);
  }
  auto* u = out->mutable_usage();
  u->set_user_cpu_ms(s.usage.user_cpu_ms);
  u->set_system_cpu_ms(s.usage.system_cpu_ms);
  u->set_max_rss_bytes(s.usage.max_rss_bytes);
  u->set_minor_faults(s.usage.minor_faults);
  u->set_major_faults(s.usage.major_faults);
  u->set_voluntary_context_switches(s.usage.voluntary_context_switches);
  u->set_involuntary_context_switches(s.usage.involuntary_context_switches);
  out->set_restart_count(s.restart_count);
  out->set_start_failures(s.start_failures);
  out->set_last_failure(s.last_failure);
  if (s.next_restart_at != absl::InfinitePast()) {
    SetTimestamp(s.next_restart_at, out->mutable_next_restart_at());
  }
  out->set_stdout_bytes(s.stdout_bytes);
  out->set_stderr_bytes(s.stderr_bytes);
  out->set_stdout_dropped_bytes(s.stdout_dropped_bytes);
  out->set_stderr_dropped_bytes(s.stderr_dropped_bytes);
  out->set_stdin_bytes(s.stdin_bytes);
  out->set_stdin_open(s.stdin_open);
}

void ToProto(const process::ProcessView& view, v1::Process* out) {
  out->set_id(view.id);
  ToProto(view.spec, out->mutable_spec());
  ToProto(view.status, out->mutable_status());
}

void ToProto(const process::OutputChunk& chunk, v1::ProcessOutputChunk* out) {
  out->set_stream(static_cast<v1::ProcessOutputStream>(chunk.stream));
  out->set_offset(chunk.offset);
  out->set_data(chunk.data);
}

void ToProto(const process::OutputChunk& gap, v1::ProcessOutputGap* out) {
  out->set_stream(static_cast<v1::ProcessOutputStream>(gap.stream));
  out->set_offset(gap.offset);
  out->set_dropped_bytes(gap.dropped_bytes);
}

void ToProto(const process::ProcessEvent& event, v1::WatchProcessesResponse* out) {
  out->set_type(static_cast<v1::ProcessEventType>(event.type));
  auto* p = out->mutable_process();
  p->set_id(event.process.id);
  p->mutable_spec()->set_name(event.process.spec.name);
  for (const auto& [k, v] : event.process.spec.labels)
    (*p->mutable_spec()->mutable_labels())[k] = v;
  ToProto(event.process.status, p->mutable_status());
  out->set_previous_state(static_cast<v1::ProcessState>(event.previous_state));
  SetTimestamp(event.time, out->mutable_time());
}

}  // namespace spindle::services
