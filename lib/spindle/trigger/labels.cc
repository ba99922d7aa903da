#include "spindle/trigger/labels.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

namespace spindle::trigger {
namespace {

constexpr size_t kMaxLabels = 32;
constexpr size_t kMaxKeyBytes = 63;
constexpr size_t kMaxValueBytes = 256;

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
         c == '-';
}

absl::Status CheckKey(absl::string_view field, absl::string_view key, absl::string_view reason) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return InvalidArgument(
        reason, absl::StrCat(field, ": label key '", key, "' must be 1..", kMaxKeyBytes, " bytes"));
  }
  for (char c : key) {
    if (!IsKeyChar(c)) {
      return InvalidArgument(
          reason, absl::StrCat(field, ": label key '", key, "' may only hold [a-z0-9._/-]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLabels(absl::string_view field, const Labels& labels) {
  if (labels.size() > kMaxLabels) {
    return InvalidArgument("INVALID_LABELS", absl::StrCat(field, ": ", labels.size(),
                                                          " labels, at most ", kMaxLabels));
  }
  for (const auto& [key, value] : labels) {
    SPINDLE_RETURN_IF_ERROR(CheckKey(field, key, "INVALID_LABELS"));
    if (value.size() > kMaxValueBytes) {
      return InvalidArgument("INVALID_LABELS",
                             absl::StrCat(field, ": value of '", key, "' is ", value.size(),
                                          " bytes, at most ", kMaxValueBytes));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view field,
                                                   absl::string_view text) {
  LabelSelector selector;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return selector;
  }
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view item = absl::StripAsciiWhitespace(raw);
    Term term;
    if (const size_t ne = item.find("!="); ne != absl::string_view::npos) {
      term = {Term::Op::kNotEquals, std::string(absl::StripAsciiWhitespace(item.substr(0, ne))),
              std::string(absl::StripAsciiWhitespace(item.substr(ne + 2)))};
    } else if (const size_t eq = item.find('='); eq != absl::string_view::npos) {
      term = {Term::Op::kEquals, std::string(absl::StripAsciiWhitespace(item.substr(0, eq))),
              std::string(absl::StripAsciiWhitespace(item.substr(eq + 1)))};
    } else if (absl::StartsWith(item, "!")) {
      term = {Term::Op::kNotExists, std::string(absl::StripAsciiWhitespace(item.substr(1))), ""};
    } else {
      term = {Term::Op::kExists, std::string(item), ""};
    }
    absl::Status key = CheckKey(field, term.key, "INVALID_SELECTOR");
    if (!key.ok()) {
      return InvalidArgument("INVALID_SELECTOR",
                             absl::StrCat(field, ": '", text, "': ", key.message()));
    }
    selector.terms_.push_back(std::move(term));
  }
  return selector;
}

bool LabelSelector::Matches(const Labels& labels) const {
  for (const Term& term : terms_) {
    auto it = labels.find(term.key);
    switch (term.op) {
      case Term::Op::kEquals:
        if (it == labels.end() || it->second != term.value) return false;
        break;
      case Term::Op::kNotEquals:
        if (it != labels.end() && it->second == term.value) return false;
        break;
      case Term::Op::kExists:
        if (it == labels.end()) return false;
        break;
      case Term::Op::kNotExists:
        if (it != labels.end()) return false;
        break;
    }
  }
  return true;
}

}  // namespace spindle::trigger
