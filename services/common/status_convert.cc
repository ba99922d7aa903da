#include "services/common/status_convert.h"

#include "spindle/common/status.h"
#include "spindle/v1/common.pb.h"

namespace spindle::services {

grpc::Status GrpcError(grpc::StatusCode code, absl::string_view reason, absl::string_view message) {
  std::string details;
  if (!reason.empty()) {
    v1::ErrorInfo info;
    info.set_reason(std::string(reason));
    info.set_domain(std::string(kErrorDomain));
    v1::Status rpc_status;
    rpc_status.set_code(static_cast<int32_t>(code));
    rpc_status.set_message(std::string(message));
    rpc_status.add_details()->PackFrom(info);
    rpc_status.SerializeToString(&details);
  }
  return grpc::Status(code, std::string(message), std::move(details));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  return GrpcError(static_cast<grpc::StatusCode>(status.code()), Reason(status), status.message());
}

std::string ReasonOf(const grpc::Status& status) {
  if (status.error_details().empty()) {
    return "";
  }
  v1::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) {
    return "";
  }
  for (const auto& any : rpc_status.details()) {
    v1::ErrorInfo info;
    if (any.UnpackTo(&info)) {
      return info.reason();
    }
  }
  return "";
}

}  // namespace spindle::services
