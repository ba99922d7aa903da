#include "services/common/status_convert.h"

#include "absl/strings/strip.h"
#include "spindle/common/status.h"
#include "spindle/v1/common.pb.h"

namespace spindle::services {

namespace {

grpc::Status ErrorWithInfo(grpc::StatusCode code, absl::string_view reason,
                           absl::string_view message, const absl::Status* context) {
  std::string details;
  if (!reason.empty()) {
    v1::ErrorInfo info;
    info.set_reason(std::string(reason));
    info.set_domain(std::string(kErrorDomain));
    if (context != nullptr) {
      // Every other spindle.dev/KEY payload of the engine status (a deadlock's cycle and locks,
      // a broken barrier's cause) becomes metadata[KEY].
      context->ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
        if (url == kReasonPayloadUrl || !absl::ConsumePrefix(&url, kErrorDomain) ||
            !absl::ConsumePrefix(&url, "/") || url.empty()) {
          return;
        }
        (*info.mutable_metadata())[std::string(url)] = std::string(payload);
      });
    }
    v1::Status rpc_status;
    rpc_status.set_code(static_cast<int32_t>(code));
    rpc_status.set_message(std::string(message));
    rpc_status.add_details()->PackFrom(info);
    rpc_status.SerializeToString(&details);
  }
  return grpc::Status(code, std::string(message), std::move(details));
}

bool ErrorInfoOf(const grpc::Status& status, v1::ErrorInfo* info) {
  if (status.error_details().empty()) {
    return false;
  }
  v1::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) {
    return false;
  }
  for (const auto& any : rpc_status.details()) {
    if (any.UnpackTo(info)) {
      return true;
    }
  }
  return false;
}

}  // namespace

grpc::Status GrpcError(grpc::StatusCode code, absl::string_view reason, absl::string_view message) {
  return ErrorWithInfo(code, reason, message, nullptr);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  return ErrorWithInfo(static_cast<grpc::StatusCode>(status.code()), Reason(status),
                       status.message(), &status);
}

std::string ReasonOf(const grpc::Status& status) {
  v1::ErrorInfo info;
  return ErrorInfoOf(status, &info) ? info.reason() : "";
}

std::map<std::string, std::string> ErrorMetadataOf(const grpc::Status& status) {
  v1::ErrorInfo info;
  if (!ErrorInfoOf(status, &info)) {
    return {};
  }
  return {info.metadata().begin(), info.metadata().end()};
}

}  // namespace spindle::services
