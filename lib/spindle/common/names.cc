#include "spindle/common/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spindle/common/status.h"

namespace spindle {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
         c == '/' || c == '-';
}

// Quotes `value` for a message, cutting it short so a huge bad name cannot bloat the reply.
std::string Quote(absl::string_view value) {
  constexpr std::size_t kMaxQuoted = 64;
  std::string out = absl::CEscape(value.substr(0, kMaxQuoted));
  if (value.size() > kMaxQuoted) {
    absl::StrAppend(&out, "...");
  }
  return absl::StrCat("'", out, "'");
}

absl::Status CheckChars(absl::string_view field, absl::string_view name) {
  for (char c : name) {
    if (!IsNameChar(c)) {
      return InvalidArgument(
          "INVALID_NAME",
          absl::StrCat(field, " ", Quote(name), " has invalid character ",
                       Quote(absl::string_view(&c, 1)), " (allowed: A-Z a-z 0-9 . _ : / -)"));
    }
  }
  if (absl::StrContains(name, "//")) {
    return InvalidArgument("INVALID_NAME",
                           absl::StrCat(field, " ", Quote(name), " has an empty '/' segment"));
  }
  if (name.front() == '/' || name.front() == '.') {
    return InvalidArgument(
        "INVALID_NAME", absl::StrCat(field, " ", Quote(name), " must not start with '/' or '.'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateName(absl::string_view field, absl::string_view name, std::size_t max_length) {
  if (name.empty()) {
    return InvalidArgument("INVALID_NAME", absl::StrCat(field, " must not be empty"));
  }
  if (name.size() > max_length) {
    return InvalidArgument("INVALID_NAME",
                           absl::StrFormat("%s %s is %d bytes long; the limit is %d", field,
                                           Quote(name), name.size(), max_length));
  }
  SPINDLE_RETURN_IF_ERROR(CheckChars(field, name));
  if (name.back() == '/') {
    return InvalidArgument("INVALID_NAME",
                           absl::StrCat(field, " ", Quote(name), " must not end with '/'"));
  }
  return absl::OkStatus();
}

absl::Status ValidatePrefix(absl::string_view field, absl::string_view prefix) {
  if (prefix.empty()) {
    return absl::OkStatus();
  }
  if (prefix.size() > kMaxNameLength) {
    return InvalidArgument("INVALID_NAME",
                           absl::StrFormat("%s %s is %d bytes long; the limit is %d", field,
                                           Quote(prefix), prefix.size(), kMaxNameLength));
  }
  return CheckChars(field, prefix);
}

}  // namespace spindle
