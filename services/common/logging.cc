#include "services/common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"

namespace spindle::services {

absl::Status InitLogging(absl::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str answers "off" for anything it does not know.
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgument("INVALID_FLAG",
                           absl::StrCat("--log-level '", level,
                                        "' is not one of trace, debug, info, warn, error, off"));
  }
  auto logger = spdlog::get("spindle");
  if (logger == nullptr) {
    logger = spdlog::stderr_logger_mt("spindle");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(parsed);
  spdlog::flush_on(spdlog::level::trace);
  return absl::OkStatus();
}

}  // namespace spindle::services
