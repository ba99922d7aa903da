#include "spindle/common/status.h"

#include "absl/strings/cord.h"

namespace spindle {

absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message) {
  absl::Status status(code, message);
  if (!reason.empty()) {
    status.SetPayload(kReasonPayloadUrl, absl::Cord(reason));
  }
  return status;
}

std::string Reason(const absl::Status& status) {
  auto payload = status.GetPayload(kReasonPayloadUrl);
  return payload.has_value() ? std::string(*payload) : std::string();
}

absl::Status InvalidArgument(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kInvalidArgument, reason, message);
}
absl::Status NotFound(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kNotFound, reason, message);
}
absl::Status AlreadyExists(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kAlreadyExists, reason, message);
}
absl::Status FailedPrecondition(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kFailedPrecondition, reason, message);
}
absl::Status ResourceExhausted(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kResourceExhausted, reason, message);
}
absl::Status Aborted(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kAborted, reason, message);
}
absl::Status OutOfRange(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kOutOfRange, reason, message);
}
absl::Status Cancelled(absl::string_view message) {
  return Error(absl::StatusCode::kCancelled, "CANCELLED", message);
}
absl::Status DeadlineExceeded(absl::string_view message) {
  return Error(absl::StatusCode::kDeadlineExceeded, "DEADLINE_EXCEEDED", message);
}
absl::Status Unavailable(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kUnavailable, reason, message);
}
absl::Status PermissionDenied(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kPermissionDenied, reason, message);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) {
    return status;
  }
  absl::Status annotated(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

}  // namespace spindle
