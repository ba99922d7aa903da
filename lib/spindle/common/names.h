// Validation of the names clients give to things (queues, locks, values, pools, processes).
//
// A name is 1..kMaxNameLength bytes of [A-Za-z0-9._:/-], does not start with '/' or '.', and has
// no empty path segment ("a//b"). The rule is the same for every kind so that names can be used in
// metrics labels, logs and file-like hierarchies ("jobs/eu/high") without escaping.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_COMMON_NAMES_H_
#define SPINDLE_COMMON_NAMES_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spindle {

inline constexpr std::size_t kMaxNameLength = 128;

// OK when `name` is a valid name; otherwise INVALID_ARGUMENT with reason INVALID_NAME and a
// message naming `field` and quoting the value, e.g. "queue: name 'a b' has invalid character ' '".
absl::Status ValidateName(absl::string_view field, absl::string_view name,
                          std::size_t max_length = kMaxNameLength);

// OK when `prefix` is empty or a valid name prefix (same charset, may end in '/').
absl::Status ValidatePrefix(absl::string_view field, absl::string_view prefix);

}  // namespace spindle

#endif  // SPINDLE_COMMON_NAMES_H_
