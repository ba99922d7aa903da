#include "spindle/common/labels.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

namespace spindle {
namespace {

// 'key', escaped and cut at 64 bytes: a message stays readable whatever the client sent.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxQuoted = 64;
  std::string out = absl::StrCat("'", absl::CEscape(text.substr(0, kMaxQuoted)));
  absl::StrAppend(&out, text.size() > kMaxQuoted ? "...'" : "'");
  return out;
}

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
         c == '-';
}

// Empty when `key` is a valid label key, else what is wrong with it.
std::string KeyProblem(absl::string_view key) {
  if (key.empty() || key.size() > kMaxLabelKeyBytes) {
    return absl::StrCat("label key ", Quote(key), " must be 1..", kMaxLabelKeyBytes, " bytes");
  }
  for (char c : key) {
    if (!IsKeyChar(c)) {
      return absl::StrCat("label key ", Quote(key), " may only hold [a-z0-9._/-]");
    }
  }
  return "";
}

}  // namespace

absl::Status ValidateLabels(absl::string_view field, const Labels& labels) {
  if (labels.size() > kMaxLabels) {
    return InvalidArgument("INVALID_LABELS", absl::StrCat(field, ": ", labels.size(),
                                                          " labels, at most ", kMaxLabels));
  }
  for (const auto& [key, value] : labels) {
    if (std::string problem = KeyProblem(key); !problem.empty()) {
      return InvalidArgument("INVALID_LABELS", absl::StrCat(field, ": ", problem));
    }
    if (value.size() > kMaxLabelValueBytes) {
      return InvalidArgument("INVALID_LABELS",
                             absl::StrCat(field, ": value of ", Quote(key), " is ", value.size(),
                                          " bytes, at most ", kMaxLabelValueBytes));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view field,
                                                   absl::string_view text) {
  if (text.size() > kMaxSelectorBytes) {
    return InvalidArgument("INVALID_SELECTOR", absl::StrCat(field, ": ", text.size(),
                                                            " bytes, at most ", kMaxSelectorBytes));
  }
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
    if (std::string problem = KeyProblem(term.key); !problem.empty()) {
      return InvalidArgument("INVALID_SELECTOR",
                             absl::StrCat(field, ": requirement ", Quote(item), ": ", problem));
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

}  // namespace spindle
