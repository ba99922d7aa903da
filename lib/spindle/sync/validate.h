// Validation shared by the session and lock tables: printable text, durations, label matches
// (labels themselves: spindle::ValidateLabels, spindle/common/labels.h).
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SYNC_VALIDATE_H_
#define SPINDLE_SYNC_VALIDATE_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spindle/common/labels.h"
#include "spindle/sync/types.h"

namespace spindle::sync {

// 0..max_bytes of printable ASCII. INVALID_ARGUMENT reason INVALID_ARGUMENT naming `field`.
absl::Status ValidatePrintable(absl::string_view field, absl::string_view value,
                               std::size_t max_bytes);

// A duration in min..max. INVALID_ARGUMENT with `reason`, naming `field` in milliseconds.
absl::Status ValidateDurationMs(absl::string_view field, absl::Duration value, absl::Duration min,
                                absl::Duration max, absl::string_view reason);

// True when `labels` holds every entry of `want`.
bool LabelsMatch(const Labels& labels, const Labels& want);

// Quotes a client value for a message, cut to 64 bytes and C-escaped.
std::string QuoteValue(absl::string_view value);

}  // namespace spindle::sync

#endif  // SPINDLE_SYNC_VALIDATE_H_
