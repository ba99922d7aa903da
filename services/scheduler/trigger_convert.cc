#include "services/scheduler/trigger_convert.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/v1/pool.pb.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {
namespace {

std::string Deterministic(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

absl::Status CheckTimestamp(absl::string_view field, const google::protobuf::Timestamp& t) {
  if (t.nanos() < 0 || t.nanos() > 999'999'999 || t.seconds() < 0 ||
      t.seconds() > 253'402'300'799) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat(field, " is not a valid time"));
  }
  return absl::OkStatus();
}

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

}  // namespace

absl::StatusOr<trigger::TriggerSpec> SpecFromProto(const v1::TriggerSpec& in) {
  trigger::TriggerSpec spec;
  if (!in.has_schedule()) {
    return InvalidArgument("INVALID_ARGUMENT", "spec.schedule is required");
  }
  const v1::TriggerSchedule& schedule = in.schedule();
  switch (schedule.kind_case()) {
    case v1::TriggerSchedule::kAt:
      SPINDLE_RETURN_IF_ERROR(CheckTimestamp("spec.schedule.at", schedule.at()));
      spec.schedule.kind = trigger::Schedule::Kind::kAt;
      spec.schedule.at = FromTimestamp(schedule.at());
      break;
    case v1::TriggerSchedule::kDelayMs:
      spec.schedule.kind = trigger::Schedule::Kind::kDelay;
      spec.schedule.delay_ms = schedule.delay_ms();
      break;
    case v1::TriggerSchedule::kIntervalMs:
      spec.schedule.kind = trigger::Schedule::Kind::kInterval;
      spec.schedule.interval_ms = schedule.interval_ms();
      break;
    case v1::TriggerSchedule::kCron:
      spec.schedule.kind = trigger::Schedule::Kind::kCron;
      spec.schedule.cron_expression = schedule.cron().expression();
      spec.schedule.cron_timezone = schedule.cron().timezone();
      break;
    default:
      return InvalidArgument("INVALID_ARGUMENT",
                             "spec.schedule: set one of at, delay_ms, interval_ms, cron");
  }
  if (!in.has_action()) {
    return InvalidArgument("INVALID_ARGUMENT", "spec.action is required");
  }
  switch (in.action().kind_case()) {
    case v1::TriggerAction::kSpawn: {
      const v1::ProcessSpec& process = in.action().spawn();
      if (process.stdin_mode() == v1::PROCESS_STDIN_MODE_PIPE) {
        return InvalidArgument("INVALID_ARGUMENT",
                               "spec.action.spawn.stdin_mode: PIPE is not allowed in a trigger");
      }
      if (process.has_pty()) {
        return InvalidArgument("INVALID_ARGUMENT",
                               "spec.action.spawn.pty: a pty is not allowed in a trigger");
      }
      spec.action = {trigger::Action::Kind::kSpawn, Deterministic(process)};
      break;
    }
    case v1::TriggerAction::kPoolTask: {
      const v1::TriggerPoolTask& task = in.action().pool_task();
      if (task.pool().empty()) {
        return InvalidArgument("INVALID_ARGUMENT", "spec.action.pool_task.pool is required");
      }
      if (!task.has_task()) {
        return InvalidArgument("INVALID_ARGUMENT", "spec.action.pool_task.task is required");
      }
      spec.action = {trigger::Action::Kind::kPoolTask, Deterministic(task)};
      break;
    }
    default:
      return InvalidArgument("INVALID_ARGUMENT", "spec.action: set one of spawn, pool_task");
  }
  spec.max_runs = in.max_runs();
  if (in.has_start_time()) {
    SPINDLE_RETURN_IF_ERROR(CheckTimestamp("spec.start_time", in.start_time()));
    spec.start_time = FromTimestamp(in.start_time());
  }
  if (in.has_end_time()) {
    SPINDLE_RETURN_IF_ERROR(CheckTimestamp("spec.end_time", in.end_time()));
    spec.end_time = FromTimestamp(in.end_time());
  }
  switch (in.overlap()) {
    case v1::TRIGGER_OVERLAP_POLICY_UNSPECIFIED:
    case v1::TRIGGER_OVERLAP_POLICY_SKIP:
      spec.overlap = trigger::OverlapPolicy::kSkip;
      break;
    case v1::TRIGGER_OVERLAP_POLICY_QUEUE:
      spec.overlap = trigger::OverlapPolicy::kQueue;
      break;
    case v1::TRIGGER_OVERLAP_POLICY_ALLOW:
      spec.overlap = trigger::OverlapPolicy::kAllow;
      break;
    case v1::TRIGGER_OVERLAP_POLICY_REPLACE:
      spec.overlap = trigger::OverlapPolicy::kReplace;
      break;
    default:
      return InvalidArgument("INVALID_ARGUMENT",
                             absl::StrCat("spec.overlap: unknown value ", in.overlap()));
  }
  spec.labels.insert(in.labels().begin(), in.labels().end());
  spec.jitter_ms = in.jitter_ms();
  spec.session_id = in.session_id();
  spec.paused = in.paused();
  return spec;
}

absl::StatusOr<std::vector<trigger::TriggerState>> StatesFromProto(
    const google::protobuf::RepeatedField<int>& states) {
  std::vector<trigger::TriggerState> out;
  for (int state : states) {
    if (state < v1::TRIGGER_STATE_ACTIVE || state > v1::TRIGGER_STATE_COMPLETED) {
      return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("states: unknown value ", state));
    }
    out.push_back(static_cast<trigger::TriggerState>(state));
  }
  return out;
}

absl::StatusOr<std::vector<trigger::RunState>> RunStatesFromProto(
    const google::protobuf::RepeatedField<int>& states) {
  std::vector<trigger::RunState> out;
  for (int state : states) {
    if (state < v1::TRIGGER_RUN_STATE_SKIPPED || state > v1::TRIGGER_RUN_STATE_CANCELLED) {
      return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("states: unknown value ", state));
    }
    out.push_back(static_cast<trigger::RunState>(state));
  }
  return out;
}

void ToProto(const trigger::TriggerSpec& spec, v1::TriggerSpec* out) {
  v1::TriggerSchedule* schedule = out->mutable_schedule();
  switch (spec.schedule.kind) {
    case trigger::Schedule::Kind::kAt:
      SetTimestamp(spec.schedule.at, schedule->mutable_at());
      break;
    case trigger::Schedule::Kind::kDelay:
      schedule->set_delay_ms(spec.schedule.delay_ms);
      break;
    case trigger::Schedule::Kind::kInterval:
      schedule->set_interval_ms(spec.schedule.interval_ms);
      break;
    case trigger::Schedule::Kind::kCron:
      schedule->mutable_cron()->set_expression(spec.schedule.cron_expression);
      schedule->mutable_cron()->set_timezone(spec.schedule.cron_timezone);
      break;
    default:
      break;
  }
  if (spec.action.kind == trigger::Action::Kind::kSpawn) {
    out->mutable_action()->mutable_spawn()->ParseFromString(spec.action.encoded);
  } else if (spec.action.kind == trigger::Action::Kind::kPoolTask) {
    out->mutable_action()->mutable_pool_task()->ParseFromString(spec.action.encoded);
  }
  out->set_max_runs(spec.max_runs);
  if (spec.start_time != absl::InfinitePast()) {
    SetTimestamp(spec.start_time, out->mutable_start_time());
  }
  if (spec.end_time != absl::InfiniteFuture()) {
    SetTimestamp(spec.end_time, out->mutable_end_time());
  }
  out->set_overlap(static_cast<v1::TriggerOverlapPolicy>(spec.overlap));
  out->mutable_labels()->insert(spec.labels.begin(), spec.labels.end());
  out->set_jitter_ms(spec.jitter_ms);
  out->set_session_id(spec.session_id);
  out->set_paused(spec.paused);
}

void ToProto(const trigger::RunView& run, v1::TriggerRun* out) {
  out->set_trigger(run.trigger);
  out->set_number(run.number);
  out->set_state(static_cast<v1::TriggerRunState>(run.state));
  out->set_manual(run.manual);
  SetTimestamp(run.scheduled_at, out->mutable_scheduled_at());
  if (run.started_at != absl::InfinitePast()) {
    SetTimestamp(run.started_at, out->mutable_started_at());
  }
  if (run.ended_at != absl::InfinitePast()) {
    SetTimestamp(run.ended_at, out->mutable_ended_at());
  }
  out->set_process_id(run.process_id);
  out->set_task_id(run.task_id);
  if (!run.detail.empty()) {
    if (!run.process_id.empty()) {
      out->mutable_exit()->ParseFromString(run.detail);
    } else if (!run.task_id.empty()) {
      out->mutable_task_result()->ParseFromString(run.detail);
    }
  }
  out->set_error(run.error);
}

void ToProto(const trigger::TriggerView& view, v1::Trigger* out) {
  out->set_name(view.name);
  ToProto(view.spec, out->mutable_spec());
  out->set_state(static_cast<v1::TriggerState>(view.state));
  if (view.next_run_at != absl::InfinitePast() && view.next_run_at != absl::InfiniteFuture()) {
    SetTimestamp(view.next_run_at, out->mutable_next_run_at());
  }
  out->set_run_count(view.run_count);
  out->set_skipped_count(view.skipped_count);
  out->set_failed_count(view.failed_count);
  out->set_running(view.running);
  if (view.last_run.has_value()) {
    ToProto(*view.last_run, out->mutable_last_run());
  }
  SetTimestamp(view.created_at, out->mutable_created_at());
}

}  // namespace spindle::services
