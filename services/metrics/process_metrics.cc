#include "services/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_split.h"
#include "services/common/build_info.h"
#include "services/metrics/function_collector.h"

namespace spindle::services {
namespace {

int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') {
      ++count;
    }
  }
  closedir(dir);
  return count - 1;  // The fd opendir itself holds.
}

double BootTimeSeconds() {
  std::ifstream stat("/proc/stat");
  std::string line;
  while (std::getline(stat, line)) {
    if (line.rfind("btime ", 0) == 0) {
      return std::stod(line.substr(6));
    }
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> CollectProcessMetrics() {
  std::vector<prometheus::MetricFamily> families;
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name, which is in parentheses and may contain spaces.
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    // f[0] is field 3 (state); utime=14, stime=15, num_threads=20, starttime=22, vsize=23, rss=24.
    auto field = [&f](int n) { return std::stod(f.at(static_cast<size_t>(n - 3))); };
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    families.push_back(CounterFamily("process_cpu_seconds_total",
                                     "Total user and system CPU time spent in seconds.",
                                     (field(14) + field(15)) / ticks));
    families.push_back(
        GaugeFamily("process_threads", "Number of OS threads in the process.", field(20)));
    families.push_back(GaugeFamily("process_start_time_seconds",
                                   "Start time of the process since unix epoch in seconds.",
                                   BootTimeSeconds() + field(22) / ticks));
    families.push_back(
        GaugeFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", field(23)));
    families.push_back(GaugeFamily("process_resident_memory_bytes",
                                   "Resident memory size in bytes.", field(24) * page));
  }
  families.push_back(
      GaugeFamily("process_open_fds", "Number of open file descriptors.", CountOpenFds()));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(GaugeFamily("process_max_fds", "Maximum number of open file descriptors.",
                                   static_cast<double>(limit.rlim_cur)));
  }
  return families;
}

std::vector<prometheus::MetricFamily> CollectBuildInfo() {
  return {GaugeFamily(
      "spindle_build_info", "Always 1; the labels say which build of spindled is running.", 1,
      {{"version", kVersion}, {"build_type", kBuildType}, {"compiler", kCompiler}})};
}

}  // namespace spindle::services
