// Small readers of /proc and the filesystem for tests that watch processes and cgroups.
//
// Thread-safety: free functions, thread-safe.
#ifndef SPINDLE_TESTS_SUPPORT_PROC_FILES_H_
#define SPINDLE_TESTS_SUPPORT_PROC_FILES_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace spindle::testing {

// The whole file, or "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// The state letter of `pid` from /proc/<pid>/stat (R, S, Z, ...); 'X' when it is gone.
inline char StateOf(pid_t pid) {
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? 'X' : stat[close + 2];
}

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_SUPPORT_PROC_FILES_H_
