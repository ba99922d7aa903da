// The one place where process protos and engine types (spindle/process/types.h) convert. Engine
// enums have the proto enums' numbers; unknown numbers from a client are INVALID_ARGUMENT naming
// the field.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_PROCESS_CONVERT_H_
#define SPINDLE_SERVICES_PROCESS_CONVERT_H_

#include "absl/status/statusor.h"
#include "spindle/process/types.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {

absl::StatusOr<process::ProcessSpec> FromProto(const v1::ProcessSpec& spec);
absl::StatusOr<process::ProcessFilter> FilterFromProto(
    const google::protobuf::RepeatedField<int>& states, const std::string& label_selector,
    const std::string& name_prefix, const std::string& session_id);
absl::StatusOr<process::OutputStream> StreamFromProto(absl::string_view field, int stream);
// A set signal spec; INVALID_ARGUMENT when `required` and unset, or the kind is unknown.
absl::StatusOr<process::SignalSpec> SignalFromProto(absl::string_view field,
                                                    const v1::ProcessSignal& signal);

void ToProto(const process::ProcessSpec& spec, v1::ProcessSpec* out);
void ToProto(const process::ProcessStatus& status, v1::ProcessStatus* out);
void ToProto(const process::ProcessView& view, v1::Process* out);
void ToProto(const process::OutputChunk& chunk, v1::ProcessOutputChunk* out);
void ToProto(const process::OutputChunk& gap, v1::ProcessOutputGap* out);
void ToProto(const process::ProcessEvent& event, v1::WatchProcessesResponse* out);
void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_CONVERT_H_
