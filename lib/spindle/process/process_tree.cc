#include "spindle/process/process_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/process/unique_fd.h"

namespace spindle::process {
namespace {

bool HasCookie(pid_t pid, absl::string_view cookie) {
  std::string environ = ReadSmallFile(absl::StrCat("/proc/", pid, "/environ")).value_or("");
  std::string wanted = absl::StrCat(kProcessCookieVar, "=", cookie);
  for (absl::string_view entry : absl::StrSplit(environ, '\0')) {
    if (entry == wanted) {
      return true;
    }
  }
  return false;
}

void AddSubtree(pid_t root, std::vector<pid_t>& out, absl::flat_hash_set<pid_t>& seen) {
  std::vector<pid_t> stack = {root};
  while (!stack.empty() && out.size() < 100000) {
    pid_t pid = stack.back();
    stack.pop_back();
    if (!seen.insert(pid).second) {
      continue;
    }
    out.push_back(pid);
    for (pid_t child : ChildrenOf(pid)) {
      stack.push_back(child);
    }
  }
}

}  // namespace

std::optional<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return std::nullopt;
  }
  std::string out;
  char buffer[4096];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::string task_dir = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = ::opendir(task_dir.c_str());
  if (dir == nullptr) {
    return children;
  }
  while (struct dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') {
      continue;
    }
    std::string list =
        ReadSmallFile(absl::StrCat(task_dir, "/", entry->d_name, "/children")).value_or("");
    for (absl::string_view token : absl::StrSplit(list, ' ', absl::SkipEmpty())) {
      pid_t child = 0;
      if (absl::SimpleAtoi(token, &child) && child > 0) {
        children.push_back(child);
      }
    }
  }
  ::closedir(dir);
  return children;
}

std::vector<pid_t> FindTree(pid_t root, absl::string_view cookie,
                            const std::function<bool(pid_t)>& is_tracked) {
  std::vector<pid_t> out;
  absl::flat_hash_set<pid_t> seen;
  if (root > 0) {
    AddSubtree(root, out, seen);
  }
  if (!cookie.empty()) {
    for (pid_t child : ChildrenOf(::getpid())) {
      if (seen.contains(child) || is_tracked(child)) {
        continue;
      }
      if (HasCookie(child, cookie)) {
        AddSubtree(child, out, seen);
      }
    }
  }
  return out;
}

int SignalAll(const std::vector<pid_t>& pids, int signal) {
  int delivered = 0;
  for (pid_t pid : pids) {
    if (pid > 0 && ::kill(pid, signal) == 0) {
      ++delivered;
    }
  }
  return delivered;
}

int OrphanReaper::Sweep(const std::function<bool(pid_t)>& is_tracked) {
  absl::flat_hash_set<pid_t> zombies;
  for (pid_t child : ChildrenOf(::getpid())) {
    if (is_tracked(child)) {
      continue;
    }
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == child) {
      zombies.insert(child);
    }
  }
  int reaped = 0;
  absl::MutexLock lock(&mu_);
  for (pid_t pid : zombies) {
    if (seen_zombies_.contains(pid) && ::waitpid(pid, nullptr, WNOHANG) == pid) {
      ++reaped;
    }
  }
  for (auto it = zombies.begin(); it != zombies.end();) {
    // Keep only those still waiting for their second sweep.
    auto current = it++;
    if (seen_zombies_.contains(*current)) {
      zombies.erase(current);
    }
  }
  seen_zombies_ = std::move(zombies);
  return reaped;
}

}  // namespace spindle::process
