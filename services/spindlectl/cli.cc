#include "services/spindlectl/cli.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "services/common/status_convert.h"

namespace spindle::cli {

Cli::Cli(const GlobalOptions& options) : options_(options) {}

namespace {

// The contents of `path`; exits with kUsage naming `flag` when it cannot be read.
std::string ReadFileOrExit(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    std::fprintf(stderr, "spindlectl: %s '%s' cannot be read\n", flag, path.c_str());
    std::exit(kUsage);
  }
  return text.str();
}

}  // namespace

std::shared_ptr<grpc::Channel> Cli::channel() {
  if (channel_ == nullptr) {
    const SecurityOptions& s = security_;
    if (!s.tls && s.tls_ca.empty() && s.tls_cert.empty()) {
      channel_ = grpc::CreateChannel(options_.address, grpc::InsecureChannelCredentials());
      return channel_;
    }
    grpc::SslCredentialsOptions ssl;
    if (!s.tls_ca.empty()) {
      ssl.pem_root_certs = ReadFileOrExit("--tls-ca", s.tls_ca);
    }
    if (!s.tls_cert.empty() || !s.tls_key.empty()) {
      if (s.tls_cert.empty() || s.tls_key.empty()) {
        std::fprintf(stderr, "spindlectl: --tls-cert and --tls-key go together\n");
        std::exit(kUsage);
      }
      ssl.pem_cert_chain = ReadFileOrExit("--tls-cert", s.tls_cert);
      ssl.pem_private_key = ReadFileOrExit("--tls-key", s.tls_key);
    }
    grpc::ChannelArguments args;
    if (!s.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(s.tls_server_name);
    }
    channel_ = grpc::CreateCustomChannel(options_.address, grpc::SslCredentials(ssl), args);
  }
  return channel_;
}

void AddSecurityOptions(CLI::App& app, Cli& cli, int* /*exit_code*/) {
  SecurityOptions& s = cli.security();
  app.add_flag("--tls", s.tls, "connect with TLS, trusting the system's roots")
      ->envname("SPINDLE_TLS");
  app.add_option("--tls-ca", s.tls_ca, "PEM roots to trust for the server; implies TLS")
      ->envname("SPINDLE_TLS_CA");
  app.add_option("--tls-cert", s.tls_cert, "PEM client certificate for mTLS (with --tls-key)")
      ->envname("SPINDLE_CLIENT_CERT");
  app.add_option("--tls-key", s.tls_key, "PEM private key of --tls-cert")
      ->envname("SPINDLE_CLIENT_KEY");
  app.add_option("--tls-server-name", s.tls_server_name,
                 "name the server's certificate must carry, when not the --address host")
      ->envname("SPINDLE_TLS_SERVER_NAME");
  app.add_option("--token", s.token, "bearer token sent with every call (prefer SPINDLE_TOKEN)")
      ->envname("SPINDLE_TOKEN");
}

std::unique_ptr<grpc::ClientContext> Cli::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (options_.timeout_ms > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(options_.timeout_ms));
  }
  if (!security_.token.empty()) {
    context->AddMetadata("authorization", "Bearer " + security_.token);
  }
  return context;
}

std::unique_ptr<grpc::ClientContext> Cli::WaitContext(int64_t bound_ms) const {
  if (options_.timeout_given) {
    return Context();
  }
  auto context = Context();
  if (bound_ms > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(bound_ms + options_.timeout_ms));
  } else {
    context->set_deadline(std::chrono::system_clock::time_point::max());
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

const char* StatusCodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int index = static_cast<int>(code);
  return index >= 0 && index <= 16 ? kNames[index] : "UNKNOWN";
}

int Cli::Fail(const grpc::Status& status) const {
  const char* name = StatusCodeName(status.error_code());
  const std::string reason = services::ReasonOf(status);
  if (options_.json) {
    nlohmann::json error = {
        {"code", name}, {"reason", reason}, {"message", status.error_message()}};
    auto metadata = services::ErrorMetadataOf(status);
    if (!metadata.empty()) {
      error["metadata"] = metadata;
    }
    std::fprintf(stderr, "%s\n", error.dump().c_str());
  } else {
    std::fprintf(stderr, "spindlectl: %s: %s%s%s\n", name, status.error_message().c_str(),
                 reason.empty() ? "" : " [", reason.empty() ? "" : (reason + "]").c_str());
  }
  return ExitCodeFor(status.error_code());
}

}  // namespace spindle::cli
