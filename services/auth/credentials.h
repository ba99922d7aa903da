// The security of spindled's gRPC port in one place: TLS or mTLS credentials, the bearer-token
// check attached to them, the rule that refuses an open non-loopback port, and the /metrics guard.
//
// Token checks run in gRPC's transport auth filter (an auth metadata processor on the server
// credentials), before any handler, interceptor or message parsing: a refused call never reaches a
// service. (gRPC 1.51's server interceptors cannot refuse a call before its handler runs, so the
// check is not an interceptor.) It adds nothing to the AuthContext, which gRPC keeps per
// connection, not per call; caller_identity.h names a call's token from its own authorization
// header (which stays in the call's metadata; no log prints metadata).
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_AUTH_CREDENTIALS_H_
#define SPINDLE_SERVICES_AUTH_CREDENTIALS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/auth/authorizer.h"
#include "services/server/config.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace spindle::services::auth {

// Server credentials for `tls` (plaintext when it is off) that check every call with `authorizer`
// (no check when null). With a client CA, clients must present a certificate it signed. The
// certificate, key and CA files are re-read every tls.reload_interval_s seconds. INVALID_ARGUMENT
// naming the flag and file when a file is missing or does not parse, or the key does not match
// the certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsConfig& tls, std::shared_ptr<Authorizer> authorizer);

// Whether `host` (as in --listen, IPv6 in brackets) only accepts local connections: 127.0.0.0/8,
// [::1] or localhost.
bool IsLoopbackHost(absl::string_view host);

// Everything the server needs to secure its ports.
struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<Authorizer> authorizer;  // null without a tokens file
};

// Builds the credentials and the authorizer from `config`, after checking the rules:
// FAILED_PRECONDITION (reason INSECURE_LISTEN) for a non-loopback `listen_host` with neither TLS
// nor tokens unless config.insecure; INVALID_ARGUMENT for --metrics-require-token without tokens or
// a client CA without a certificate. Logs a warning for every insecure choice it lets through.
absl::StatusOr<ServerSecurity> MakeServerSecurity(const ServerConfig& config,
                                                  absl::string_view listen_host,
                                                  std::shared_ptr<prometheus::Registry> registry);

// Puts /metrics behind HTTP basic auth (user = token name, password = token) when
// config.auth.metrics_require_token; does nothing otherwise.
void ProtectMetrics(const ServerConfig& config, const ServerSecurity& security,
                    prometheus::Exposer& exposer);

}  // namespace spindle::services::auth

#endif  // SPINDLE_SERVICES_AUTH_CREDENTIALS_H_
