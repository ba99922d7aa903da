#include "spindle/process/proc_usage.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "spindle/process/unique_fd.h"

namespace spindle::process {
namespace {

// The whole of a small /proc file; nullopt when it cannot be read (the process is gone).
std::optional<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return std::nullopt;
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return std::nullopt;
    }
    if (n == 0) {
      return text;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
}

int64_t TicksToMs(int64_t ticks) {
  static const int64_t kTicksPerSecond = [] {
    long ticks = ::sysconf(_SC_CLK_TCK);
    return ticks > 0 ? static_cast<int64_t>(ticks) : int64_t{100};
  }();
  return ticks * 1000 / kTicksPerSecond;
}

// The number after "key:" on its line of /proc/PID/status (a "kB" suffix is left to the caller).
int64_t StatusField(absl::string_view status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) {
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, " kB");
    int64_t value = 0;
    return absl::SimpleAtoi(line, &value) ? value : 0;
  }
  return 0;
}

}  // namespace

std::optional<ProcessUsage> ParseProcUsage(absl::string_view stat, absl::string_view status,
                                           pid_t* ppid) {
  // "pid (comm) state ppid ...": comm may hold blanks and parentheses, so fields start after
  // the last ')'.
  size_t close = stat.rfind(')');
  if (close == absl::string_view::npos) {
    return std::nullopt;
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state) of proc(5); minflt is 10, majflt 12, utime 14, stime 15.
  constexpr size_t kState = 3;
  auto field = [&](size_t number, int64_t* out) {
    return number - kState < fields.size() &&
           absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[number - kState]), out);
  };
  int64_t parent = 0, minflt = 0, majflt = 0, utime = 0, stime = 0;
  if (!field(4, &parent) || !field(10, &minflt) || !field(12, &majflt) || !field(14, &utime) ||
      !field(15, &stime)) {
    return std::nullopt;
  }
  *ppid = static_cast<pid_t>(parent);
  ProcessUsage usage;
  usage.user_cpu_ms = TicksToMs(utime);
  usage.system_cpu_ms = TicksToMs(stime);
  usage.minor_faults = minflt;
  usage.major_faults = majflt;
  usage.max_rss_bytes = StatusField(status, "VmHWM") * 1024;
  usage.voluntary_context_switches = StatusField(status, "voluntary_ctxt_switches");
  usage.involuntary_context_switches = StatusField(status, "nonvoluntary_ctxt_switches");
  return usage;
}

std::optional<ProcessUsage> ReadLiveUsage(pid_t pid, pid_t parent) {
  if (pid <= 0) {
    return std::nullopt;
  }
  const std::string dir = absl::StrCat("/proc/", pid, "/");
  std::optional<std::string> stat = ReadSmallFile(dir + "stat");
  std::optional<std::string> status = ReadSmallFile(dir + "status");
  if (!stat.has_value() || !status.has_value()) {
    return std::nullopt;
  }
  pid_t ppid = 0;
  std::optional<ProcessUsage> usage = ParseProcUsage(*stat, *status, &ppid);
  if (!usage.has_value() || ppid != parent) {
    return std::nullopt;
  }
  return usage;
}

}  // namespace spindle::process
