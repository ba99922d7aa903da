#include "spindle/pool/internal_util.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "spindle/common/status.h"

namespace spindle::pool::internal {

absl::StatusOr<std::vector<LabelRequirement>> ParseSelector(absl::string_view field,
                                                            absl::string_view selector) {
  std::vector<LabelRequirement> out;
  if (selector.size() > 1024) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat(field, ": longer than 1024 bytes"));
  }
  for (absl::string_view part : absl::StrSplit(selector, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    LabelRequirement r;
    size_t ne = part.find("!=");
    size_t eq = part.find('=');
    if (ne != absl::string_view::npos) {
      r = {LabelRequirement::kNotEquals, std::string(part.substr(0, ne)),
           std::string(part.substr(ne + 2))};
    } else if (eq != absl::string_view::npos) {
      r = {LabelRequirement::kEquals, std::string(part.substr(0, eq)),
           std::string(part.substr(eq + 1))};
    } else if (absl::ConsumePrefix(&part, "!")) {
      r = {LabelRequirement::kAbsent, std::string(part), ""};
    } else {
      r = {LabelRequirement::kPresent, std::string(part), ""};
    }
    r.key = std::string(absl::StripAsciiWhitespace(r.key));
    if (r.key.empty() || r.key.size() > 128 || absl::StrContains(r.key, '!') ||
        absl::StrContains(r.key, '=')) {
      return InvalidArgument("INVALID_ARGUMENT",
                             absl::StrCat(field, ": bad requirement '", part, "'"));
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool SelectorMatches(const std::vector<LabelRequirement>& requirements,
                     const std::map<std::string, std::string>& labels) {
  for (const auto& r : requirements) {
    auto it = labels.find(r.key);
    switch (r.kind) {
      case LabelRequirement::kEquals:
        if (it == labels.end() || it->second != r.value) return false;
        break;
      case LabelRequirement::kNotEquals:
        if (it != labels.end() && it->second == r.value) return false;
        break;
      case LabelRequirement::kPresent:
        if (it == labels.end()) return false;
        break;
      case LabelRequirement::kAbsent:
        if (it != labels.end()) return false;
        break;
    }
  }
  return true;
}

}  // namespace spindle::pool::internal
