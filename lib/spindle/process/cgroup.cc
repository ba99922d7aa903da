#include "spindle/process/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "spindle/common/status.h"
#include "spindle/process/process_tree.h"

namespace spindle::process {
namespace {

// How long the destructor keeps trying to empty and remove leftover process cgroups: members the
// table's shutdown killed take a moment to finish exiting, and one that forks while it is moved
// leaves its new child behind for the next round.
constexpr absl::Duration kShutdownWait = absl::Seconds(2);

absl::Status Unavailable(absl::string_view what, absl::string_view path, int err) {
  return FailedPrecondition("CGROUPS_UNAVAILABLE",
                            absl::StrCat(what, " '", path, "': ", std::strerror(err)));
}

// Writes `text` to an existing file in one write; 0 or the errno.
int WriteFile(const std::string& path, absl::string_view text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return errno;
  }
  ssize_t n;
  do {
    n = ::write(fd.get(), text.data(), text.size());
  } while (n < 0 && errno == EINTR);
  return n < 0 ? errno : 0;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountPath(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (size_t j = 1; j <= 3; ++j) {
        char c = field[i + j];
        octal = octal && c >= '0' && c <= '7';
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<std::string> SubdirectoriesOf(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (struct dirent* entry = ::readdir(d)) {
    if (entry->d_type == DT_DIR && entry->d_name[0] != '.') {
      out.push_back(absl::StrCat(dir, "/", entry->d_name));
    }
  }
  ::closedir(d);
  return out;
}

// Moves the members of cgroup `dir` to cgroup `target`. A member that is exiting is not found or
// refuses (ESRCH): fine, it is leaving anyway.
void MoveMembers(const std::string& dir, const std::string& target) {
  std::string procs = absl::StrCat(target, "/cgroup.procs");
  for (pid_t pid : CgroupMembers(dir)) {
    WriteFile(procs, absl::StrCat(pid));
  }
}

// Whether `name` is spindle-<pid>-<n> of a server process that no longer exists (it was killed
// before it could clean up). This process's own pid never counts: in a container spindled is
// often pid 1 every time, and another server in this process may own the directory.
bool IsStaleTree(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "spindle-")) {
    return false;
  }
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(name, '-');
  pid_t pid = 0;
  int n = 0;
  if (!absl::SimpleAtoi(parts.first, &pid) || !absl::SimpleAtoi(parts.second, &n) || pid <= 0 ||
      pid == ::getpid()) {
    return false;
  }
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// Empties `dir` into `target` (a cgroup directory) and removes it, bounded by `deadline`. Members
// killed a moment ago finish exiting; survivors keep running in `target`, as without cgroups.
bool EvacuateAndRemove(const std::string& dir, const std::string& target, absl::Time deadline) {
  while (!RemoveCgroup(dir)) {
    MoveMembers(dir, target);
    if (RemoveCgroup(dir)) {
      return true;
    }
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Removes what crashed servers left under `own_dir`.
void RemoveStaleTrees(const std::string& own_dir) {
  absl::Time deadline = absl::Now() + absl::Milliseconds(100);
  for (const std::string& tree : SubdirectoriesOf(own_dir)) {
    if (!IsStaleTree(tree.substr(tree.rfind('/') + 1))) {
      continue;
    }
    for (const std::string& child : SubdirectoriesOf(tree)) {
      EvacuateAndRemove(child, own_dir, deadline);
    }
    RemoveCgroup(tree);
  }
}

}  // namespace

absl::StatusOr<CgroupMode> ParseCgroupMode(absl::string_view flag, absl::string_view value) {
  if (value == "off") {
    return CgroupMode::kOff;
  }
  if (value == "auto") {
    return CgroupMode::kAuto;
  }
  if (value == "required") {
    return CgroupMode::kRequired;
  }
  return InvalidArgument("INVALID_FLAG",
                         absl::StrCat(flag, ": '", value, "' is not one of auto, off, required"));
}

absl::string_view CgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kOff:
      return "off";
    case CgroupMode::kRequired:
      return "required";
    default:
      return "auto";
  }
}

std::optional<Cgroup2Mount> FindCgroup2Mount(absl::string_view mountinfo) {
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // "<id> <parent> <major:minor> <root> <mount point> <options> [optional...] - <type> ..."
    std::pair<absl::string_view, absl::string_view> halves = absl::StrSplit(line, " - ");
    std::vector<absl::string_view> after = absl::StrSplit(halves.second, ' ');
    std::vector<absl::string_view> before = absl::StrSplit(halves.first, ' ');
    if (after.empty() || after[0] != "cgroup2" || before.size() < 5) {
      continue;
    }
    return Cgroup2Mount{UnescapeMountPath(before[4]), UnescapeMountPath(before[3])};
  }
  return std::nullopt;
}

std::optional<std::string> UnifiedCgroupPath(absl::string_view proc_cgroup) {
  for (absl::string_view line : absl::StrSplit(proc_cgroup, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "0::")) {
      return std::string(line);
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::string> OwnCgroupDir(absl::string_view mountinfo_path,
                                         absl::string_view cgroup_path) {
  std::optional<std::string> mountinfo = ReadSmallFile(std::string(mountinfo_path));
  if (!mountinfo.has_value()) {
    return Unavailable("cannot read", mountinfo_path, errno);
  }
  std::optional<Cgroup2Mount> mount = FindCgroup2Mount(*mountinfo);
  if (!mount.has_value()) {
    return FailedPrecondition(
        "CGROUPS_UNAVAILABLE",
        absl::StrCat("no cgroup2 file system is mounted (", mountinfo_path, " lists none)"));
  }
  std::optional<std::string> membership = ReadSmallFile(std::string(cgroup_path));
  if (!membership.has_value()) {
    return Unavailable("cannot read", cgroup_path, errno);
  }
  std::optional<std::string> own = UnifiedCgroupPath(*membership);
  if (!own.has_value()) {
    return FailedPrecondition(
        "CGROUPS_UNAVAILABLE",
        absl::StrCat(cgroup_path,
                     " has no cgroup v2 ('0::') line: this process is not in the "
                     "unified hierarchy"));
  }
  absl::string_view relative = *own;
  if (mount->root != "/" && !absl::ConsumePrefix(&relative, mount->root)) {
    return FailedPrecondition(
        "CGROUPS_UNAVAILABLE",
        absl::StrCat("own cgroup '", *own, "' is outside the cgroup2 mount of '", mount->root,
                     "' at '", mount->mount_point, "'"));
  }
  std::string dir = absl::StrCat(mount->mount_point, relative == "/" ? "" : relative);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Unavailable("cannot find own cgroup", dir, errno == 0 ? ENOTDIR : errno);
  }
  return dir;
}

CgroupTree::CgroupTree(std::string own_dir, std::string dir, bool required)
    : own_dir_(std::move(own_dir)), dir_(std::move(dir)), required_(required) {}

absl::StatusOr<std::unique_ptr<CgroupTree>> CgroupTree::Create(bool required, std::string own_dir) {
  if (own_dir.empty()) {
    SPINDLE_ASSIGN_OR_RETURN(own_dir, OwnCgroupDir());
  }
  // A child joins by writing its cgroup.procs, which needs write access to the cgroup.procs of
  // the common ancestor (spindled's own cgroup) too.
  std::string own_procs = absl::StrCat(own_dir, "/cgroup.procs");
  if (::access(own_procs.c_str(), W_OK) != 0) {
    return Unavailable("cannot write", own_procs, errno);
  }
  RemoveStaleTrees(own_dir);
  // Several servers may share one process (tests) and a crashed one may have left its directory:
  // take the first free number.
  static std::atomic<int> next{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string dir = absl::StrCat(own_dir, "/spindle-", ::getpid(), "-", next.fetch_add(1));
    if (::mkdir(dir.c_str(), 0755) == 0) {
      return std::unique_ptr<CgroupTree>(new CgroupTree(own_dir, dir, required));
    }
    if (errno != EEXIST) {
      return Unavailable("cannot create cgroup", dir, errno);
    }
  }
  return FailedPrecondition("CGROUPS_UNAVAILABLE",
                            absl::StrCat("cannot create a cgroup under '", own_dir,
                                         "': 100 names spindle-", ::getpid(), "-* are taken"));
}

CgroupTree::~CgroupTree() {
  absl::Time deadline = absl::Now() + kShutdownWait;
  for (const std::string& dir : SubdirectoriesOf(dir_)) {
    EvacuateAndRemove(dir, own_dir_, deadline);
  }
  RemoveCgroup(dir_);
}

absl::StatusOr<std::string> CgroupTree::MakeProcessCgroup(absl::string_view name) const {
  if (name.empty() || absl::StrContains(name, '/') || name == "." || name == "..") {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("cgroup name '", name, "' is not one path component"));
  }
  std::string dir = absl::StrCat(dir_, "/", name);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return FailedPrecondition(
        "CGROUP_FAILED", absl::StrCat("cannot create cgroup '", dir, "': ", std::strerror(errno)));
  }
  return dir;
}

absl::StatusOr<UniqueFd> OpenCgroupProcs(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/cgroup.procs");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return FailedPrecondition("CGROUP_FAILED",
                              absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  return fd;
}

std::vector<pid_t> CgroupMembers(const std::string& dir) {
  std::vector<pid_t> pids;
  std::optional<std::string> procs = ReadSmallFile(absl::StrCat(dir, "/cgroup.procs"));
  if (!procs.has_value()) {
    return pids;
  }
  for (absl::string_view token : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
    pid_t pid = 0;
    if (absl::SimpleAtoi(token, &pid) && pid > 0) {
      pids.push_back(pid);
    }
  }
  return pids;
}

bool CgroupPopulated(const std::string& dir) {
  std::optional<std::string> events = ReadSmallFile(absl::StrCat(dir, "/cgroup.events"));
  if (!events.has_value()) {
    return false;
  }
  for (absl::string_view line : absl::StrSplit(*events, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "populated ")) {
      return line != "0";
    }
  }
  return false;
}

int KillCgroup(const std::string& dir) {
  std::vector<pid_t> members = CgroupMembers(dir);
  if (WriteFile(absl::StrCat(dir, "/cgroup.kill"), "1") != 0) {
    // No cgroup.kill (kernel < 5.14): a member forking right now may leave a child behind, which
    // the next call (the exit of the root, or a later retry) gets.
    for (pid_t pid : members) {
      ::kill(pid, SIGKILL);
    }
  }
  return static_cast<int>(members.size());
}

bool RemoveCgroup(const std::string& dir) { return ::rmdir(dir.c_str()) == 0 || errno == ENOENT; }

}  // namespace spindle::process
