#include "services/auth/tokens.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "spindle/common/status.h"

namespace spindle::services::auth {
namespace {

constexpr size_t kMaxIdentityName = 64;

bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-'; }

bool IsTokenChar(char c) { return c > ' ' && c < 0x7f; }

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReadOnly:
      return "read-only";
    case Role::kSync:
      return "sync";
    case Role::kExec:
      return "exec";
    case Role::kAdmin:
      return "admin";
  }
  return "read-only";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  for (Role role : {Role::kReadOnly, Role::kSync, Role::kExec, Role::kAdmin}) {
    if (name == RoleName(role)) {
      return role;
    }
  }
  return InvalidArgument(
      "INVALID_ROLE", absl::StrCat("role '", name, "' is not one of read-only, sync, exec, admin"));
}

std::array<uint8_t, 32> Sha256(absl::string_view data) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return digest;
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, absl::string_view source) {
  TokenTable table;
  absl::flat_hash_set<std::string> names;
  absl::flat_hash_set<std::string> digests;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') {
      continue;
    }
    auto bad = [&](absl::string_view why) {
      return InvalidArgument("INVALID_TOKENS_FILE",
                             absl::StrCat(source, ":", line_number, ": ", why));
    };
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.size() < 3 || fields.size() > 4) {
      return bad(absl::StrCat("expected 'name role token [expires=RFC3339]', found ", fields.size(),
                              " fields"));
    }
    TokenEntry entry;
    entry.name = std::string(fields[0]);
    if (entry.name.size() > kMaxIdentityName ||
        !std::all_of(entry.name.begin(), entry.name.end(), IsNameChar)) {
      return bad(absl::StrCat("name '", entry.name, "' must be 1..64 of [A-Za-z0-9._-]"));
    }
    if (!names.insert(entry.name).second) {
      return bad(absl::StrCat("name '", entry.name, "' appears twice"));
    }
    auto role = ParseRole(fields[1]);
    if (!role.ok()) {
      return bad(role.status().message());
    }
    entry.role = *role;
    absl::string_view token = fields[2];
    if (token.size() < kMinTokenLength || token.size() > kMaxTokenLength ||
        !std::all_of(token.begin(), token.end(), IsTokenChar)) {
      return bad(absl::StrCat("the token of '", entry.name, "' must be ", kMinTokenLength, "..",
                              kMaxTokenLength, " printable characters"));
    }
    entry.digest = Sha256(token);
    if (!digests.insert(std::string(entry.digest.begin(), entry.digest.end())).second) {
      return bad(absl::StrCat("the token of '", entry.name, "' is also another name's token"));
    }
    if (fields.size() == 4) {
      absl::string_view expires = fields[3];
      std::string error;
      if (!absl::ConsumePrefix(&expires, "expires=") ||
          !absl::ParseTime(absl::RFC3339_full, expires, &entry.expires, &error)) {
        return bad(
            absl::StrCat("fourth field '", fields[3],
                         "' must be expires=<RFC 3339 time>, e.g. expires=2027-01-01T00:00:00Z"));
      }
    }
    table.entries_.push_back(std::move(entry));
  }
  return table;
}

const TokenEntry* TokenTable::Find(absl::string_view token) const {
  const std::array<uint8_t, 32> digest = Sha256(token);
  const TokenEntry* found = nullptr;
  for (const TokenEntry& entry : entries_) {
    // Every entry is compared whole: the time taken says nothing about which one matched.
    const bool equal = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    found = equal ? &entry : found;
  }
  return found;
}

}  // namespace spindle::services::auth
