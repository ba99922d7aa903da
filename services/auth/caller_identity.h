// Who a call comes from, as one string the spawn policy counts live processes under
// (docs/SECURITY.md "Spawn policy"):
//   "token:<name>"     the name of the call's bearer token (looked up per call: gRPC's auth
//                      context is per connection, and one connection may carry calls with
//                      different tokens)
//   "cert:<subject>"   the mTLS client certificate's subject, when no token names the caller
//   "peer:<address>"   the peer's IP address without the port, when neither (so a client cannot
//                      escape a limit by opening more connections)
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_AUTH_CALLER_IDENTITY_H_
#define SPINDLE_SERVICES_AUTH_CALLER_IDENTITY_H_

#include <grpcpp/server_context.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace spindle::services::auth {

class Authorizer;

// The identity of the call `context`; `authorizer` (may be null: no tokens) names its token.
std::string CallerIdentity(const grpc::ServerContextBase& context, Authorizer* authorizer);

// CallerIdentity bound to the server's authorizer, as the capabilities get it.
using CallerIdentityFn = std::function<std::string(const grpc::ServerContextBase&)>;
CallerIdentityFn MakeCallerIdentity(std::shared_ptr<Authorizer> authorizer);

// "ipv4:127.0.0.1:5000" -> "127.0.0.1", "ipv6:[::1]:5000" -> "[::1]"; anything else unchanged.
std::string PeerAddressWithoutPort(absl::string_view peer);

}  // namespace spindle::services::auth

#endif  // SPINDLE_SERVICES_AUTH_CALLER_IDENTITY_H_
