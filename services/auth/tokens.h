// Bearer tokens and the roles they carry: the tokens file format and a table that finds a presented
// token in constant time.
//
// The tokens file has one token per line, fields separated by blanks:
//
//   # name      role       token                                  [expires=RFC3339]
//   ci          read-only  3q2+7w...at-least-16-characters
//   workers     exec       Zm9vYmFy...                            expires=2027-01-01T00:00:00Z
//
// Blank lines and lines starting with '#' are ignored. A name is 1..64 of [A-Za-z0-9._-]; a role is
// read-only, sync, exec or admin; a token is 16..512 printable non-blank ASCII characters. Names
// and tokens are unique. Error messages name the file and line, never the token.
//
// Thread-safety: a TokenTable is immutable after Parse, so it is thread-safe.
#ifndef SPINDLE_SERVICES_AUTH_TOKENS_H_
#define SPINDLE_SERVICES_AUTH_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace spindle::services::auth {

// What a token may do. Each role includes read-only; admin includes everything.
//   read-only  ServerService and the Get/List/Describe/Watch methods of every service
//   sync       + everything in SessionService, LockService, QueueService, ValueService
//   exec       + everything in ProcessService, PoolService, SchedulerService
//   admin      every method
enum class Role { kReadOnly, kSync, kExec, kAdmin };

// "read-only", "sync", "exec", "admin".
absl::string_view RoleName(Role role);
// INVALID_ARGUMENT (reason INVALID_ROLE) naming the value when it is not one of the names above.
absl::StatusOr<Role> ParseRole(absl::string_view name);

inline constexpr size_t kMinTokenLength = 16;
inline constexpr size_t kMaxTokenLength = 512;

struct TokenEntry {
  std::string name;
  Role role = Role::kReadOnly;
  // SHA-256 of the token: the table never keeps the token itself.
  std::array<uint8_t, 32> digest{};
  // The token is refused from this time on.
  absl::Time expires = absl::InfiniteFuture();
};

class TokenTable {
 public:
  TokenTable() = default;

  // Parses the file format above; `source` names the file in error messages. INVALID_ARGUMENT
  // (reason INVALID_TOKENS_FILE) with "source:line: what is wrong" on any bad line.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, absl::string_view source);

  // The entry whose token is `token`, or nullptr. Compares the token's digest with every entry's
  // in constant time, whether or not and wherever it matches.
  const TokenEntry* Find(absl::string_view token) const;

  const std::vector<TokenEntry>& entries() const { return entries_; }

 private:
  std::vector<TokenEntry> entries_;
};

// SHA-256 of `data`.
std::array<uint8_t, 32> Sha256(absl::string_view data);

}  // namespace spindle::services::auth

#endif  // SPINDLE_SERVICES_AUTH_TOKENS_H_
