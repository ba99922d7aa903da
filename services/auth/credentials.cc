#include "services/auth/credentials.h"

#include <arpa/inet.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "spindle/common/status.h"

namespace spindle::services::auth {
namespace {

absl::string_view View(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                           GRPC_SLICE_LENGTH(slice));
}

// The state of the auth metadata processor; owned by the gRPC core credentials.
struct ProcessorState {
  std::shared_ptr<Authorizer> authorizer;
};

// Runs in gRPC's server auth filter for every call, before the call reaches the application.
//
// It records nothing in `context`: that auth context belongs to the connection, not the call (gRPC
// 1.51's server auth filter passes the channel's), so a property added here would be shared by
// every call on the connection, whatever token each carries, would grow with every call, and
// would be written by concurrent calls without a lock. Who a call comes from is looked up per
// call instead (caller_identity.h), from its own authorization header, which therefore stays in
// the call's metadata; nothing logs metadata.
void ProcessAuthMetadata(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
  auto* processor = static_cast<ProcessorState*>(state);
  absl::string_view method;
  absl::string_view authorization;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = View(md[i].key);
    if (key == ":path") {
      method = View(md[i].value);
    } else if (key == "authorization") {
      authorization = View(md[i].value);
    }
  }
  auto identity = processor->authorizer->Authorize(method, authorization);
  if (!identity.ok()) {
    const std::string message(identity.status().message());
    done(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(identity.status().code()),
         message.c_str());
    return;
  }
  done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void DestroyProcessorState(void* state) { delete static_cast<ProcessorState*>(state); }

// Server credentials around core credentials, with the token check attached. The core API is used
// because gRPC's C++ InsecureServerCredentials() cannot carry an auth metadata processor.
class CheckedServerCredentials final : public grpc::ServerCredentials {
 public:
  CheckedServerCredentials(grpc_server_credentials* credentials,
                           std::shared_ptr<Authorizer> authorizer)
      : credentials_(credentials) {
    if (authorizer != nullptr) {
      grpc_auth_metadata_processor processor{&ProcessAuthMetadata, &DestroyProcessorState,
                                             new ProcessorState{std::move(authorizer)}};
      grpc_server_credentials_set_auth_metadata_processor(credentials_, processor);
    }
  }
  ~CheckedServerCredentials() override { grpc_server_credentials_release(credentials_); }

  // The processor is fixed at construction; one set later would bypass the token check.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    spdlog::error("event=auth_processor_ignored (spindle's token check stays in force)");
  }

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    return grpc_server_add_http2_port(server, address.c_str(), credentials_);
  }

  grpc_server_credentials* const credentials_;
};

absl::Status BadFile(absl::string_view flag, absl::string_view path, absl::string_view why) {
  return InvalidArgument("INVALID_TLS_FILE", absl::StrCat(flag, " '", path, "': ", why));
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) {
    return "no PEM data found";
  }
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return buffer;
}

absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return BadFile(flag, path, strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioDeleter> MemoryBio(const std::string& data) {
  return std::unique_ptr<BIO, BioDeleter>(
      BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// Checks what gRPC would only find out at the first handshake: the files parse and belong
// together.
absl::Status ValidateTlsFiles(const TlsConfig& tls) {
  if (tls.cert_file.empty() || tls.key_file.empty()) {
    return InvalidArgument("INVALID_FLAG",
                           "--tls-cert and --tls-key go together: give both or neither");
  }
  if (tls.reload_interval_s < 1) {
    return InvalidArgument("INVALID_FLAG", absl::StrCat("--tls-reload-interval-s ",
                                                        tls.reload_interval_s, " must be >= 1"));
  }
  SPINDLE_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile("--tls-cert", tls.cert_file));
  SPINDLE_ASSIGN_OR_RETURN(std::string key_pem, ReadFile("--tls-key", tls.key_file));
  std::unique_ptr<X509, X509Deleter> cert(
      PEM_read_bio_X509(MemoryBio(cert_pem).get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) {
    return BadFile("--tls-cert", tls.cert_file,
                   absl::StrCat("not a PEM certificate (", OpenSslError(), ")"));
  }
  std::unique_ptr<EVP_PKEY, KeyDeleter> key(
      PEM_read_bio_PrivateKey(MemoryBio(key_pem).get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return BadFile("--tls-key", tls.key_file,
                   absl::StrCat("not an unencrypted PEM private key (", OpenSslError(), ")"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return BadFile(
        "--tls-key", tls.key_file,
        absl::StrCat("does not match the certificate in --tls-cert '", tls.cert_file, "'"));
  }
  if (!tls.client_ca_file.empty()) {
    SPINDLE_ASSIGN_OR_RETURN(std::string ca_pem, ReadFile("--tls-client-ca", tls.client_ca_file));
    std::unique_ptr<X509, X509Deleter> ca(
        PEM_read_bio_X509(MemoryBio(ca_pem).get(), nullptr, nullptr, nullptr));
    if (ca == nullptr) {
      return BadFile("--tls-client-ca", tls.client_ca_file,
                     absl::StrCat("not a PEM certificate (", OpenSslError(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls, std::shared_ptr<Authorizer> authorizer) {
  if (!tls.enabled()) {
    if (!tls.client_ca_file.empty()) {
      return InvalidArgument("INVALID_FLAG",
                             "--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS)");
    }
    if (authorizer == nullptr) {
      return grpc::InsecureServerCredentials();
    }
    return std::shared_ptr<grpc::ServerCredentials>(std::make_shared<CheckedServerCredentials>(
        grpc_insecure_server_credentials_create(), std::move(authorizer)));
  }
  SPINDLE_RETURN_IF_ERROR(ValidateTlsFiles(tls));
  grpc_tls_credentials_options* options = grpc_tls_credentials_options_create();
  grpc_tls_certificate_provider* provider = grpc_tls_certificate_provider_file_watcher_create(
      tls.key_file.c_str(), tls.cert_file.c_str(),
      tls.client_ca_file.empty() ? nullptr : tls.client_ca_file.c_str(),
      static_cast<unsigned>(tls.reload_interval_s));
  grpc_tls_credentials_options_set_certificate_provider(options, provider);
  grpc_tls_certificate_provider_release(provider);  // the options hold their own reference
  grpc_tls_credentials_options_watch_identity_key_cert_pairs(options);
  if (tls.client_ca_file.empty()) {
    grpc_tls_credentials_options_set_cert_request_type(options,
                                                       GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    grpc_tls_credentials_options_watch_root_certs(options);
    grpc_tls_credentials_options_set_cert_request_type(
        options, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  grpc_server_credentials* credentials = grpc_tls_server_credentials_create(options);
  if (credentials == nullptr) {
    return InvalidArgument(
        "INVALID_TLS_FILE",
        absl::StrCat("gRPC refused the TLS settings of --tls-cert '", tls.cert_file, "'"));
  }
  return std::shared_ptr<grpc::ServerCredentials>(
      std::make_shared<CheckedServerCredentials>(credentials, std::move(authorizer)));
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) {
    return true;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string address(host);
  in_addr v4;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;  // any other name may resolve to anything
}

absl::StatusOr<ServerSecurity> MakeServerSecurity(const ServerConfig& config,
                                                  absl::string_view listen_host,
                                                  std::shared_ptr<prometheus::Registry> registry) {
  ServerSecurity security;
  const bool tokens = !config.auth.tokens_file.empty();
  const bool tls = config.tls.enabled();
  const bool mtls = tls && !config.tls.client_ca_file.empty();
  if (config.auth.metrics_require_token && !tokens) {
    return InvalidArgument("INVALID_FLAG", "--metrics-require-token needs --auth-tokens");
  }
  if (!IsLoopbackHost(listen_host) && !tls && !tokens) {
    if (!config.insecure) {
      return FailedPrecondition(
          "INSECURE_LISTEN",
          absl::StrCat("refusing to listen on non-loopback --listen '", config.listen,
                       "' with neither TLS (--tls-cert/--tls-key) nor tokens (--auth-tokens): "
                       "anyone who reaches the port could run processes. Add them, or pass "
                       "--insecure if the network itself is trusted"));
    }
    spdlog::warn(
        "event=insecure_listen address={} message=\"INSECURE: no TLS and no tokens on a "
        "non-loopback address; anyone who can reach this port can spawn processes as this user\"",
        config.listen);
  } else if (!IsLoopbackHost(listen_host) && !tokens && !mtls) {
    spdlog::warn(
        "event=unauthenticated_listen address={} message=\"TLS without tokens or client CA: "
        "traffic is encrypted but every client is admin\"",
        config.listen);
  } else if (!IsLoopbackHost(listen_host) && tokens && !tls) {
    spdlog::warn(
        "event=plaintext_tokens address={} message=\"tokens over plaintext: anyone who can see "
        "the traffic can replay them; add --tls-cert/--tls-key\"",
        config.listen);
  }
  if (tokens) {
    SPINDLE_ASSIGN_OR_RETURN(security.authorizer,
                             Authorizer::Create(config.auth, std::move(registry)));
  }
  SPINDLE_ASSIGN_OR_RETURN(security.credentials,
                           MakeServerCredentials(config.tls, security.authorizer));
  spdlog::info("event=security tls={} mtls={} tokens={} metrics_auth={}", tls, mtls,
               security.authorizer == nullptr ? 0 : security.authorizer->token_count(),
               config.auth.metrics_require_token);
  return security;
}

void ProtectMetrics(const ServerConfig& config, const ServerSecurity& security,
                    prometheus::Exposer& exposer) {
  if (!config.auth.metrics_require_token || security.authorizer == nullptr) {
    return;
  }
  std::shared_ptr<Authorizer> authorizer = security.authorizer;
  exposer.RegisterAuth(
      [authorizer](const std::string& user, const std::string& password) {
        return authorizer->CheckBasicAuth(user, password);
      },
      "spindle");
}

}  // namespace spindle::services::auth
