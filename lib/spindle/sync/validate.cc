#include "spindle/sync/validate.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"

namespace spindle::sync {

std::string QuoteValue(absl::string_view value) {
  constexpr std::size_t kMaxQuoted = 64;
  std::string out = absl::CEscape(value.substr(0, kMaxQuoted));
  if (value.size() > kMaxQuoted) {
    absl::StrAppend(&out, "...");
  }
  return absl::StrCat("'", out, "'");
}

absl::Status ValidatePrintable(absl::string_view field, absl::string_view value,
                               std::size_t max_bytes) {
  if (value.size() > max_bytes) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat(field, " ", QuoteValue(value), " is ", value.size(),
                                        " bytes; the limit is ", max_bytes));
  }
  for (char c : value) {
    if (!absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return InvalidArgument("INVALID_ARGUMENT", absl::StrCat(field, " ", QuoteValue(value),
                                                              " must be printable ASCII"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateDurationMs(absl::string_view field, absl::Duration value, absl::Duration min,
                                absl::Duration max, absl::string_view reason) {
  if (value < min || value > max) {
    return InvalidArgument(
        reason, absl::StrCat(field, " ", absl::ToInt64Milliseconds(value), " is out of bounds ",
                             absl::ToInt64Milliseconds(min), "..", absl::ToInt64Milliseconds(max)));
  }
  return absl::OkStatus();
}

bool LabelsMatch(const Labels& labels, const Labels& want) {
  for (const auto& [key, value] : want) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) {
      return false;
    }
  }
  return true;
}

}  // namespace spindle::sync
