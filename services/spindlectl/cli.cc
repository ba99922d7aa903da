#include "services/spindlectl/cli.h"

#include <cstdio>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <nlohmann/json.hpp>

#include "services/common/status_convert.h"

namespace spindle::cli {

Cli::Cli(const GlobalOptions& options) : options_(options) {}

std::shared_ptr<grpc::Channel> Cli::channel() {
  if (channel_ == nullptr) {
    channel_ = grpc::CreateChannel(options_.address, grpc::InsecureChannelCredentials());
  }
  return channel_;
}

std::unique_ptr<grpc::ClientContext> Cli::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (options_.timeout_ms > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(options_.timeout_ms));
  }
  return context;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

int Cli::Print(const google::protobuf::Message& message,
               const std::function<void(const google::protobuf::Message&)>& human) const {
  if (options_.json) {
    std::printf("%s\n", ToJson(message).c_str());
  } else {
    human(message);
  }
  std::fflush(stdout);
  return kOk;
}

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kOk;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kTimeout;
    case grpc::StatusCode::UNAVAILABLE:
      return kUnavailable;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return kConflict;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return kDenied;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kUsage;
    default:
      return kError;
  }
}

int Cli::Fail(const grpc::Status& status) const {
  static constexpr const char* kNames[] = {
      "OK",           "CANCELLED",         "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  const char* name = code >= 0 && code <= 16 ? kNames[code] : "UNKNOWN";
  const std::string reason = services::ReasonOf(status);
  if (options_.json) {
    nlohmann::json error = {
        {"code", name}, {"reason", reason}, {"message", status.error_message()}};
    std::fprintf(stderr, "%s\n", error.dump().c_str());
  } else {
    std::fprintf(stderr, "spindlectl: %s: %s%s%s\n", name, status.error_message().c_str(),
                 reason.empty() ? "" : " [", reason.empty() ? "" : (reason + "]").c_str());
  }
  return ExitCodeFor(status.error_code());
}

}  // namespace spindle::cli
