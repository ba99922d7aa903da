// The one place where pool protos and pool engine types (spindle/pool/types.h) convert. Engine
// enums have the proto enums' numbers; unknown numbers from a client are INVALID_ARGUMENT naming
// the field.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_POOL_CONVERT_H_
#define SPINDLE_SERVICES_POOL_CONVERT_H_

#include <string>

#include "absl/status/statusor.h"
#include "spindle/pool/types.h"
#include "spindle/v1/pool.pb.h"

namespace spindle::services {

absl::StatusOr<pool::PoolSpec> FromProto(const v1::PoolSpec& spec);
// `field` names the spec in errors ("task", "tasks[3]").
absl::StatusOr<pool::TaskSpec> FromProto(const std::string& field, const v1::TaskSpec& spec);
absl::StatusOr<pool::RetryPolicy> FromProto(const std::string& field,
                                            const v1::TaskRetryPolicy& policy);
// A Map input with the map's shared settings.
absl::StatusOr<pool::TaskSpec> FromMapInput(const v1::PoolMapInput& input,
                                            const v1::PoolMapStart& start);
absl::StatusOr<pool::TaskFilter> TaskFilterFromProto(const v1::ListTasksRequest& request);
absl::StatusOr<std::vector<pool::PoolState>> PoolStatesFromProto(
    const google::protobuf::RepeatedField<int>& states);

void ToProto(const pool::PoolView& view, v1::Pool* out);
void ToProto(const pool::TaskView& view, v1::Task* out);
void ToProto(const pool::TaskResult& result, v1::TaskResult* out);
void ToProto(const pool::TaskEvent& event, bool include_output, v1::TaskEvent* out);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_CONVERT_H_
