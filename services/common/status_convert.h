// The one place where engine errors (absl::Status) become gRPC statuses.
//
// The code maps one to one (absl's canonical codes are gRPC's). The message is kept. The engine's
// reason payload (spindle::Reason) travels as a spindle.v1.ErrorInfo inside a spindle.v1.Status
// (wire-compatible with google.rpc.Status) in the status details, with the status's other
// `spindle.dev/KEY` payloads as ErrorInfo.metadata[KEY]; the errors interceptor also copies the
// reason to the `spindle-reason` trailer.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_COMMON_STATUS_CONVERT_H_
#define SPINDLE_SERVICES_COMMON_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spindle::services {

// The domain every ErrorInfo carries.
inline constexpr absl::string_view kErrorDomain = "spindle.dev";
// The trailing metadata key that repeats the reason for clients that do not decode details.
inline constexpr absl::string_view kReasonTrailer = "spindle-reason";

// Converts an engine status. An OK status becomes grpc::Status::OK.
grpc::Status ToGrpcStatus(const absl::Status& status);

// A gRPC error with `reason` in its details, for errors raised in services/ itself (e.g. request
// validation that needs protobuf types).
grpc::Status GrpcError(grpc::StatusCode code, absl::string_view reason, absl::string_view message);

// The reason inside a status's details, or "" when it has none or they do not parse.
std::string ReasonOf(const grpc::Status& status);

// The metadata of the ErrorInfo inside a status's details (e.g. a deadlock's "cycle" and
// "locks"); empty when it has none or they do not parse.
std::map<std::string, std::string> ErrorMetadataOf(const grpc::Status& status);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_COMMON_STATUS_CONVERT_H_
