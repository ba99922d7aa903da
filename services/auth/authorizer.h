// Authorizer: decides, for every call, whether its bearer token may call its method.
//
// It holds the tokens file's table (see tokens.h) and re-reads the file when it changes (checked at
// most once per AuthConfig::tokens_reload_interval, on the calls themselves; a file that no longer
// parses is logged and counted, and the previous tokens stay in force). Decisions are counted in
// spindle_auth_denied_total{reason}, spindle_auth_tokens and spindle_auth_token_reloads_total.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_AUTH_AUTHORIZER_H_
#define SPINDLE_SERVICES_AUTH_AUTHORIZER_H_

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/auth/tokens.h"
#include "services/server/config.h"

namespace spindle::services::auth {

// Who made a call.
struct Identity {
  std::string name;  // the token's name; empty for open methods
  Role role = Role::kReadOnly;
};

class Authorizer {
 public:
  // Reads config.tokens_file. INVALID_ARGUMENT naming the file when it is missing, unreadable,
  // malformed or holds no token. `registry` is kept alive by the authorizer.
  static absl::StatusOr<std::shared_ptr<Authorizer>> Create(
      const AuthConfig& config, std::shared_ptr<prometheus::Registry> registry);

  // Checks one call: `method` is its path, `authorization` the value of its authorization header
  // ("Bearer <token>"; empty when absent). Open methods pass without a token. Otherwise:
  // UNAUTHENTICATED (reasons TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED) or PERMISSION_DENIED
  // (reason ROLE_DENIED) naming the token's name, its role and the method.
  absl::StatusOr<Identity> Authorize(absl::string_view method, absl::string_view authorization);

  // The name of the live token in `authorization` ("Bearer <token>"), or "" when it names none.
  // Compares in constant time like Authorize; counts nothing (the call was authorized already).
  std::string TokenName(absl::string_view authorization);

  // For /metrics behind HTTP basic auth: `user` must be the name of a live token and `password`
  // that token (any role).
  bool CheckBasicAuth(const std::string& user, const std::string& password);

  size_t token_count() const;

 private:
  Authorizer(const AuthConfig& config, std::shared_ptr<prometheus::Registry> registry);

  struct FileStamp {
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  absl::StatusOr<std::pair<TokenTable, FileStamp>> Load() const;
  // The current table, after re-reading the file if it changed and the interval has passed.
  std::shared_ptr<const TokenTable> Current();
  absl::Status Deny(absl::string_view reason, absl::Status status);

  // Constant after construction.
  const AuthConfig config_;
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& denied_;
  prometheus::Gauge& tokens_gauge_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_ok_;
  prometheus::Counter& reloads_failed_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
  FileStamp stamp_ ABSL_GUARDED_BY(mu_);
  // Also the stamp of a file that failed to parse, so a broken file is reported once.
  FileStamp last_seen_ ABSL_GUARDED_BY(mu_);
  // When the file is next checked for changes (Unix ns); read without the lock on every call.
  std::atomic<int64_t> next_check_ns_{0};
};

}  // namespace spindle::services::auth

#endif  // SPINDLE_SERVICES_AUTH_AUTHORIZER_H_
