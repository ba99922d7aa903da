// Labels and label selectors, one set of rules for every capability (common.proto): at most 32
// labels, keys 1..63 bytes of [a-z0-9._/-], values at most 256 bytes. A selector is a
// comma-separated list of requirements that must all hold: "k=v", "k!=v", "k" (present), "!k"
// (absent); blanks around keys and values are ignored, so a selector cannot name a value that holds
// a ',' or begins or ends with a blank. At most 1024 bytes.
//
// Thread-safety: value types and free functions, thread-compatible.
#ifndef SPINDLE_COMMON_LABELS_H_
#define SPINDLE_COMMON_LABELS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spindle {

using Labels = std::map<std::string, std::string>;

inline constexpr size_t kMaxLabels = 32;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxSelectorBytes = 1024;

// INVALID_ARGUMENT, reason INVALID_LABELS, naming `field` and the bad key or value.
absl::Status ValidateLabels(absl::string_view field, const Labels& labels);

class LabelSelector {
 public:
  // INVALID_ARGUMENT, reason INVALID_SELECTOR, naming `field` and the bad requirement. Empty (or
  // blank) text selects everything.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view field, absl::string_view text);

  bool Matches(const Labels& labels) const;
  bool SelectsAll() const { return terms_.empty(); }

 private:
  struct Term {
    enum class Op { kEquals, kNotEquals, kExists, kNotExists };
    Op op;
    std::string key;
    std::string value;
  };
  std::vector<Term> terms_;
};

}  // namespace spindle

#endif  // SPINDLE_COMMON_LABELS_H_
