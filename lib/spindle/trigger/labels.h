// Labels and label selectors of triggers (common.proto rules): at most 32 labels, keys 1..63 bytes
// of [a-z0-9._/-], values at most 256 bytes; selectors "k=v", "k!=v", "k", "!k", comma-separated,
// all must hold.
//
// Thread-safety: value types and free functions, thread-compatible.
#ifndef SPINDLE_TRIGGER_LABELS_H_
#define SPINDLE_TRIGGER_LABELS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace spindle::trigger {

using Labels = std::map<std::string, std::string>;

// INVALID_ARGUMENT (INVALID_LABELS) naming `field` and the bad key or value.
absl::Status ValidateLabels(absl::string_view field, const Labels& labels);

class LabelSelector {
 public:
  // INVALID_ARGUMENT (INVALID_SELECTOR) naming `field`. Empty text selects everything.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view field, absl::string_view text);
  bool Matches(const Labels& labels) const;

 private:
  struct Term {
    enum class Op { kEquals, kNotEquals, kExists, kNotExists };
    Op op;
    std::string key;
    std::string value;
  };
  std::vector<Term> terms_;
};

}  // namespace spindle::trigger

#endif  // SPINDLE_TRIGGER_LABELS_H_
