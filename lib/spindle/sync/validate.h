// Validation shared by the session and lock tables: labels, printable text, idempotency keys.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SYNC_VALIDATE_H_
#define SPINDLE_SYNC_VALIDATE_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spindle/sync/types.h"

namespace spindle::sync {

// At most 32 entries; keys 1..63 bytes of [a-z0-9._/-]; values at most 256 bytes.
// INVALID_ARGUMENT reason INVALID_LABELS naming `field` and the key.
absl::Status ValidateLabels(absl::string_view field, const Labels& labels);

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
