#include "services/auth/caller_identity.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/auth/authorizer.h"

namespace spindle::services::auth {

std::string PeerAddressWithoutPort(absl::string_view peer) {
  absl::string_view address = peer;
  if (absl::ConsumePrefix(&address, "ipv4:") || absl::ConsumePrefix(&address, "ipv6:")) {
    const size_t colon = address.rfind(':');
    if (colon != absl::string_view::npos && colon > 0 && address.back() != ']') {
      address = address.substr(0, colon);
    }
    return std::string(address);
  }
  return std::string(peer);
}

std::string CallerIdentity(const grpc::ServerContextBase& context, Authorizer* authorizer) {
  if (authorizer != nullptr) {
    const auto& metadata = context.client_metadata();
    auto header = metadata.find("authorization");
    if (header != metadata.end()) {
      std::string name =
          authorizer->TokenName(absl::string_view(header->second.data(), header->second.size()));
      if (!name.empty()) return absl::StrCat("token:", name);
    }
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr) {
    // Set by the TLS handshake: one value per connection, which is what a certificate is.
    std::vector<grpc::string_ref> subject =
        auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
    if (!subject.empty() && !subject.front().empty()) {
      return absl::StrCat("cert:",
                          absl::string_view(subject.front().data(), subject.front().size()));
    }
  }
  return absl::StrCat("peer:", PeerAddressWithoutPort(context.peer()));
}

CallerIdentityFn MakeCallerIdentity(std::shared_ptr<Authorizer> authorizer) {
  return [authorizer = std::move(authorizer)](const grpc::ServerContextBase& context) {
    return CallerIdentity(context, authorizer.get());
  };
}

}  // namespace spindle::services::auth
