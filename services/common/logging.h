// Structured one-line logs for spindled, on spdlog.
//
// Every line is one event in logfmt: `2026-11-23T10:40:00.123Z info event=listening
// address=127.0.0.1:50051`. Log with spdlog::info("event=... key={}", value); quote values that
// may hold spaces.
#ifndef SPINDLE_SERVICES_COMMON_LOGGING_H_
#define SPINDLE_SERVICES_COMMON_LOGGING_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace spindle::services {

// Sets up the default logger on stderr at `level` (trace, debug, info, warn, error, off);
// INVALID_ARGUMENT naming the value otherwise. Safe to call more than once.
absl::Status InitLogging(absl::string_view level);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_COMMON_LOGGING_H_
