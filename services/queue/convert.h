// The one place where queue and value protobufs become engine types and back, with the request
// validation that needs the wire types (field names in messages, bounds from the protos).
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_QUEUE_CONVERT_H_
#define SPINDLE_SERVICES_QUEUE_CONVERT_H_

#include <grpcpp/server_context.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "spindle/queue/queue.h"
#include "spindle/queue/types.h"
#include "spindle/v1/common.pb.h"
#include "spindle/v1/queue.pb.h"
#include "spindle/v1/value.pb.h"
#include "spindle/value/value_data.h"
#include "spindle/value/value_store.h"

namespace spindle::services {

// ---- shared ----
void ToTimestamp(absl::Time time, google::protobuf::Timestamp* out);
// An engine status as the spindle.v1.Status of a per-item outcome (same code, message, reason as
// ToGrpcStatus gives the call).
void ToProtoStatus(const absl::Status& status, v1::Status* out);
absl::Status ValidateRequestId(const std::string& request_id);
absl::Status CheckRange(absl::string_view field, int64_t value, int64_t low, int64_t high);
// The call's deadline (InfiniteFuture when none).
absl::Time WaitDeadline(const grpc::ServerContextBase& context);
// How a waiting call ends: the earlier of the call deadline (DEADLINE_EXCEEDED) and max_wait_ms
// (an OK, empty answer).
queue::Queue::WaitBound MakeWaitBound(bool wait, int64_t max_wait_ms, absl::Time deadline,
                                      absl::Time now);

// ---- queues ----
absl::StatusOr<queue::QueueConfig> FromProto(const v1::QueueConfig& config);
void ToProto(const queue::QueueConfig& config, v1::QueueConfig* out);
void ToProto(const queue::QueueInfo& info, v1::QueueInfo* out);
void ToProto(const queue::Delivery& delivery, v1::QueueItem* out);
void ToProto(const queue::ReceiptResult& result, v1::QueueReceiptResult* out);
// Items 1..1000 with their bounds; `field` names the repeated field ("items", "batch.items").
absl::StatusOr<std::vector<queue::PutItem>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::QueuePutItem>& items, absl::string_view field);
absl::Status ValidateReceipts(const google::protobuf::RepeatedPtrField<std::string>& receipts);
// Mode, visibility timeout and session for a get or a consume start.
absl::StatusOr<queue::GetOptions> GetOptionsFromProto(v1::QueueGetMode mode,
                                                      int64_t visibility_timeout_ms,
                                                      const std::string& session_id,
                                                      absl::string_view prefix);

// ---- values ----
absl::StatusOr<value::Data> FromProto(const v1::ValueData& data, absl::string_view field);
void ToProto(const value::Data& data, v1::ValueData* out);
void ToProto(const value::Scalar& scalar, v1::ValueScalar* out);
absl::StatusOr<std::optional<value::Element>> FromProto(const v1::ValueElement& element,
                                                        bool has_element);
void ToProto(const value::Element& element, v1::ValueElement* out);
void ToProto(const value::Entry& entry, v1::ValueEntry* out);
void ToProto(const value::Event& event, bool names_only, v1::ValueEvent* out);
// Checks a lock grant's fencing token: OK while held, else ABORTED (STALE_FENCING_TOKEN).
using FenceChecker = std::function<absl::Status(absl::string_view lock_name, int64_t token)>;
// The guard of a fenced write: empty without a fence; INVALID_ARGUMENT naming fence.lock_name /
// fence.fencing_token for a malformed one; FAILED_PRECONDITION FENCING_UNAVAILABLE when the
// server has no lock table (`checker` empty). The guard runs under the value's shard lock.
absl::StatusOr<value::WriteGuard> FenceGuard(bool has_fence, const v1::ValueFence& fence,
                                             const FenceChecker& checker);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_CONVERT_H_
