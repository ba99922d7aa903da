// Conversions between scheduler.proto trigger messages and lib/spindle/trigger engine types: the
// one place they meet. A trigger's action is stored in the engine as the deterministic
// serialization of its ProcessSpec or TriggerPoolTask, so equal settings compare equal.
//
// Thread-safety: free functions, thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_TRIGGER_CONVERT_H_
#define SPINDLE_SERVICES_SCHEDULER_TRIGGER_CONVERT_H_

#include "absl/status/statusor.h"
#include "spindle/trigger/types.h"
#include "spindle/v1/scheduler.pb.h"

namespace spindle::services {

// INVALID_ARGUMENT naming the field for unknown enum values, a missing schedule or action, and
// spawn actions with stdin_mode PIPE or a pty.
absl::StatusOr<trigger::TriggerSpec> SpecFromProto(const v1::TriggerSpec& spec);
absl::StatusOr<std::vector<trigger::TriggerState>> StatesFromProto(
    const google::protobuf::RepeatedField<int>& states);
absl::StatusOr<std::vector<trigger::RunState>> RunStatesFromProto(
    const google::protobuf::RepeatedField<int>& states);

void ToProto(const trigger::TriggerSpec& spec, v1::TriggerSpec* out);
void ToProto(const trigger::RunView& run, v1::TriggerRun* out);
void ToProto(const trigger::TriggerView& view, v1::Trigger* out);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_TRIGGER_CONVERT_H_
