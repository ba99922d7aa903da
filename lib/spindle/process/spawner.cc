#include "spindle/process/spawner.h"

#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace spindle::process {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// Sanitizer runtimes do not expect instrumented code to run in a CLONE_VM child: fork instead.
constexpr bool kShareMemory = false;
#else
constexpr bool kShareMemory = true;
#endif

// Child-side steps, reported through the error pipe with the errno.
enum Step : int {
  kStepSignals = 1,
  kStepSession,
  kStepTerminal,
  kStepStdio,
  kStepCloseFds,
  kStepCwd,
  kStepRlimit,
  kStepNice,
  kStepGroups,
  kStepGid,
  kStepUid,
  kStepExec,
  kStepCgroup,
  // Not a failure: the child runs on outside its cgroup (cgroup_required false).
  kStepCgroupSkipped,
};

struct ChildError {
  int step;
  int err;
};

// Everything the child needs, prepared by the parent: the child must not allocate.
struct ChildArgs {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  int stdin_fd;   // -1: leave; becomes fd 0.
  int stdout_fd;  // becomes fd 1.
  int stderr_fd;  // becomes fd 2.
  int error_fd;   // Write end of the error pipe (O_CLOEXEC: closed by a successful exec).
  int pty_slave;  // >= 0: make it the controlling terminal.
  bool new_session;
  int cgroup_procs_fd;  // -1: none.
  bool cgroup_required;
  const std::pair<int, rlim_t>* rlimits;
  size_t rlimit_count;
  bool set_nice;
  int nice;
  const gid_t* groups;
  size_t group_count;
  bool set_groups;
  bool set_gid;
  gid_t gid;
  bool set_uid;
  uid_t uid;
  sigset_t parent_mask;
};

// Reports `step` and errno to the parent without failing.
void ChildReport(const ChildArgs& a, int step) {
  ChildError e{step, errno};
  ssize_t ignored = ::write(a.error_fd, &e, sizeof(e));
  (void)ignored;
}

[[noreturn]] void ChildFail(const ChildArgs& a, int step) {
  ChildReport(a, step);
  ::_exit(127);
}

// Joins the cgroup first: nothing has been started yet, so every descendant is born inside it, and
// the child still has spindled's privileges (run_as comes later).
void ChildJoinCgroup(const ChildArgs& a) {
  if (a.cgroup_procs_fd < 0 || ::write(a.cgroup_procs_fd, "0", 1) == 1) {
    return;
  }
  if (a.cgroup_required) {
    ChildFail(a, kStepCgroup);
  }
  ChildReport(a, kStepCgroupSkipped);
}

// Moves `fd` to `target` (dup2 clears O_CLOEXEC on the copy; same fd: clear it by hand).
bool MoveFd(int fd, int target) {
  if (fd == target) {
    int flags = ::fcntl(fd, F_GETFD);
    return flags >= 0 && ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) == 0;
  }
  return ::dup2(fd, target) == target;
}

int ChildMain(void* arg) {
  const ChildArgs& a = *static_cast<const ChildArgs*>(arg);
  // Default dispositions: the server may ignore SIGPIPE or catch signals; the program must not
  // inherit that. exec resets caught ones, but not ignored ones.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::sigaction(sig, &dfl, nullptr);  // EINVAL for the few glibc reserves: fine.
    }
  }
  ChildJoinCgroup(a);
  if (a.new_session || a.pty_slave >= 0) {
    if (::setsid() < 0) {
      ChildFail(a, kStepSession);
    }
  } else if (::setpgid(0, 0) < 0) {
    ChildFail(a, kStepSession);
  }
  if (a.pty_slave >= 0 && ::ioctl(a.pty_slave, TIOCSCTTY, 0) < 0) {
    ChildFail(a, kStepTerminal);
  }
  // The parent placed every source fd at >= 3, so these moves cannot clobber each other.
  if ((a.stdin_fd >= 0 && !MoveFd(a.stdin_fd, 0)) || !MoveFd(a.stdout_fd, 1) ||
      !MoveFd(a.stderr_fd, 2)) {
    ChildFail(a, kStepStdio);
  }
  // Everything but stdio and the error pipe: no server fd reaches the program.
  if (a.error_fd > 3 && ::syscall(SYS_close_range, 3, a.error_fd - 1, 0) < 0) {
    ChildFail(a, kStepCloseFds);
  }
  if (::syscall(SYS_close_range, a.error_fd + 1, ~0U, 0) < 0) {
    ChildFail(a, kStepCloseFds);
  }
  if (a.cwd != nullptr && ::chdir(a.cwd) < 0) {
    ChildFail(a, kStepCwd);
  }
  for (size_t i = 0; i < a.rlimit_count; ++i) {
    struct rlimit limit {
      a.rlimits[i].second, a.rlimits[i].second
    };
    if (::setrlimit(a.rlimits[i].first, &limit) < 0) {
      ChildFail(a, kStepRlimit);
    }
  }
  if (a.set_nice) {
    errno = 0;
    if (::setpriority(PRIO_PROCESS, 0, a.nice) < 0 && errno != 0) {
      ChildFail(a, kStepNice);
    }
  }
  if (a.set_groups && ::setgroups(a.group_count, a.groups) < 0) {
    ChildFail(a, kStepGroups);
  }
  if (a.set_gid && ::setresgid(a.gid, a.gid, a.gid) < 0) {
    ChildFail(a, kStepGid);
  }
  if (a.set_uid && ::setresuid(a.uid, a.uid, a.uid) < 0) {
    ChildFail(a, kStepUid);
  }
  sigset_t empty;
  sigemptyset(&empty);
  ::sigprocmask(SIG_SETMASK, &empty, nullptr);
  ::execve(a.path, a.argv, a.envp);
  ChildFail(a, kStepExec);
}

std::string StepText(const ChildError& e, const SpawnOptions& o, const std::string& path) {
  switch (e.step) {
    case kStepExec:
      return absl::StrCat("cannot execute '", path, "'");
    case kStepCwd:
      return absl::StrCat("cannot change directory to cwd '", o.cwd, "'");
    case kStepRlimit:
      return "cannot apply resource limits";
    case kStepNice:
      return "cannot set nice value";
    case kStepGroups:
    case kStepGid:
    case kStepUid:
      return "cannot switch to run_as user";
    case kStepSession:
      return "cannot create process group or session";
    case kStepTerminal:
      return "cannot acquire the pty as controlling terminal";
    case kStepStdio:
      return "cannot set up stdio";
    case kStepCloseFds:
      return "cannot close inherited fds";
    case kStepCgroup:
      return absl::StrCat("cannot join cgroup '", o.cgroup_dir, "'");
    default:
      return "child setup failed";
  }
}

absl::Status OsError(absl::string_view what, int err) {
  std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EAGAIN || err == EMFILE || err == ENFILE || err == ENOMEM) {
    return ResourceExhausted("SPAWN_FAILED", message);
  }
  return Error(absl::StatusCode::kInternal, "SPAWN_FAILED", message);
}

// Opens /dev/null for reading or writing, close-on-exec, at fd >= 3.
absl::StatusOr<UniqueFd> OpenNull(int flags) {
  int fd = ::open("/dev/null", flags | O_CLOEXEC);
  if (fd < 0) {
    return OsError("open /dev/null", errno);
  }
  return UniqueFd(fd);
}

// A close-on-exec pipe; both ends at fd >= 3 (fds 0..2 may be closed in a daemon).
absl::Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) {
    return OsError("pipe2", errno);
  }
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  for (UniqueFd* end : {read_end, write_end}) {
    if (end->get() < 3) {
      int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
      if (moved < 0) {
        return OsError("fcntl F_DUPFD_CLOEXEC", errno);
      }
      end->Reset(moved);
    }
  }
  return absl::OkStatus();
}

void SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) {
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

// A stack for CLONE_VM children, one per spawning thread (the parent is suspended while the child
// uses it, so one per thread is enough).
char* ChildStackTop() {
  constexpr size_t kStackBytes = 64 * 1024;
  thread_local char* stack = nullptr;
  if (stack == nullptr) {
    void* p = ::mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
      return nullptr;
    }
    stack = static_cast<char*>(p);
  }
  return stack + kStackBytes;
}

// Reads one report of the child from the error pipe: sizeof(ChildError) bytes, or 0 at EOF (a
// successful exec closed it).
ssize_t ReadChildReport(int fd, ChildError& error) {
  ssize_t n;
  do {
    n = ::read(fd, &error, sizeof(error));
  } while (n < 0 && errno == EINTR);
  return n;
}

class LinuxSpawner final : public Spawner {
 public:
  absl::StatusOr<SpawnedChild> Spawn(const SpawnOptions& o) override;
};

absl::StatusOr<SpawnedChild> LinuxSpawner::Spawn(const SpawnOptions& o) {
  if (o.argv.empty()) {
    return InvalidArgument("INVALID_ARGUMENT", "command.argv: must not be empty");
  }
  SPINDLE_ASSIGN_OR_RETURN(
      std::string path, ResolveExecutable(o.executable.empty() ? o.argv[0] : o.executable, o.env));
  SpawnedChild child;
  // Child-side ends, closed in the parent when this returns.
  UniqueFd child_in, child_out, child_err, pty_slave;
  if (o.pty.has_value()) {
    int master = -1;
    int slave = -1;
    struct winsize size {};
    size.ws_row = static_cast<unsigned short>(o.pty->first);
    size.ws_col = static_cast<unsigned short>(o.pty->second);
    if (::openpty(&master, &slave, nullptr, nullptr, &size) < 0) {
      return OsError("openpty", errno);
    }
    UniqueFd m(master);
    pty_slave.Reset(slave);
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
    ::fcntl(slave, F_SETFD, FD_CLOEXEC);
    SetNonBlocking(master);
    int dup_master = ::fcntl(master, F_DUPFD_CLOEXEC, 3);
    if (dup_master < 0) {
      return OsError("fcntl F_DUPFD_CLOEXEC", errno);
    }
    child.stdin_fd.Reset(dup_master);
    child.stdout_fd = std::move(m);
    // The child gets the slave three times.
  } else {
    if (o.stdin_mode == SpawnOptions::Stdin::kPipe) {
      SPINDLE_RETURN_IF_ERROR(MakePipe(&child_in, &child.stdin_fd));
      SetNonBlocking(child.stdin_fd.get());
    } else {
      SPINDLE_ASSIGN_OR_RETURN(child_in, OpenNull(O_RDONLY));
    }
    if (o.stdout_mode == SpawnOptions::Output::kNull) {
      SPINDLE_ASSIGN_OR_RETURN(child_out, OpenNull(O_WRONLY));
    } else {
      SPINDLE_RETURN_IF_ERROR(MakePipe(&child.stdout_fd, &child_out));
      SetNonBlocking(child.stdout_fd.get());
    }
    if (o.stderr_mode == SpawnOptions::Output::kNull) {
      SPINDLE_ASSIGN_OR_RETURN(child_err, OpenNull(O_WRONLY));
    } else if (o.stderr_mode == SpawnOptions::Output::kPipe) {
      SPINDLE_RETURN_IF_ERROR(MakePipe(&child.stderr_fd, &child_err));
      SetNonBlocking(child.stderr_fd.get());
    }
  }
  UniqueFd error_read, error_write;
  SPINDLE_RETURN_IF_ERROR(MakePipe(&error_read, &error_write));

  // Prepared arrays: the child must not allocate.
  std::vector<char*> argv;
  argv.reserve(o.argv.size() + 1);
  for (const std::string& arg : o.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(o.env.size() + 1);
  for (const std::string& entry : o.env) {
    envp.push_back(const_cast<char*>(entry.c_str()));
  }
  envp.push_back(nullptr);

  ChildArgs args{};
  args.path = path.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();
  if (pty_slave.valid()) {
    args.stdin_fd = args.stdout_fd = args.stderr_fd = pty_slave.get();
    args.pty_slave = pty_slave.get();
  } else {
    args.stdin_fd = child_in.get();
    args.stdout_fd = child_out.get();
    args.stderr_fd =
        o.stderr_mode == SpawnOptions::Output::kMergeIntoStdout ? child_out.get() : child_err.get();
    args.pty_slave = -1;
  }
  args.error_fd = error_write.get();
  args.new_session = o.new_session;
  args.cgroup_procs_fd = o.cgroup_procs_fd;
  args.cgroup_required = o.cgroup_required;
  args.rlimits = o.rlimits.data();
  args.rlimit_count = o.rlimits.size();
  args.set_nice = o.nice.has_value();
  args.nice = o.nice.value_or(0);
  args.set_groups = o.groups.has_value();
  args.groups = o.groups.has_value() ? o.groups->data() : nullptr;
  args.group_count = o.groups.has_value() ? o.groups->size() : 0;
  args.set_gid = o.gid.has_value();
  args.gid = o.gid.value_or(0);
  args.set_uid = o.uid.has_value();
  args.uid = o.uid.value_or(0);

  // All signals blocked across clone, so no handler of the server runs in the child before it
  // reset the dispositions; the child then unblocks everything.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &args.parent_mask);
  int pidfd = -1;
  pid_t pid = -1;
  int clone_errno = 0;
  if constexpr (kShareMemory) {
    char* stack = ChildStackTop();
    if (stack == nullptr) {
      clone_errno = ENOMEM;
    } else {
      pid =
          ::clone(&ChildMain, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
      clone_errno = errno;
    }
  } else {
    pid = ::fork();
    if (pid == 0) {
      ChildMain(&args);
    }
    clone_errno = errno;
    if (pid > 0) {
      pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      if (pidfd >= 0) {
        ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
      }
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &args.parent_mask, nullptr);
  if (pid < 0) {
    return OsError("clone", clone_errno);
  }
  child.pid = pid;
  child.pidfd.Reset(pidfd);
  error_write.Reset();

  ChildError error{};
  ssize_t n = ReadChildReport(error_read.get(), error);
  if (n == static_cast<ssize_t>(sizeof(error)) && error.step == kStepCgroupSkipped) {
    child.cgroup_errno = error.err;
    n = ReadChildReport(error_read.get(), error);
  }
  child.joined_cgroup = o.cgroup_procs_fd >= 0 && child.cgroup_errno == 0;
  if (n == static_cast<ssize_t>(sizeof(error))) {
    // The child exited 127 without running anything: reap it here, it was never a process.
    siginfo_t info;
    if (child.pidfd.valid()) {
      ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd.get()), &info,
               WEXITED);
    } else {
      ::waitpid(pid, nullptr, 0);
    }
    return FailedPrecondition(
        "EXEC_FAILED", absl::StrCat(StepText(error, o, path), ": ", std::strerror(error.err)));
  }
  if (!child.pidfd.valid()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return OsError("pidfd_open", errno);
  }
  return child;
}

}  // namespace

absl::StatusOr<std::string> ResolveExecutable(const std::string& file,
                                              const std::vector<std::string>& env) {
  if (file.empty()) {
    return FailedPrecondition("EXEC_FAILED", "cannot execute '': No such file or directory");
  }
  auto check = [](const std::string& path) -> int {
    if (::access(path.c_str(), X_OK) == 0) {
      struct stat st;
      if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        return EACCES;
      }
      return 0;
    }
    return errno;
  };
  if (absl::StrContains(file, '/')) {
    int err = check(file);
    if (err != 0) {
      return FailedPrecondition("EXEC_FAILED",
                                absl::StrCat("cannot execute '", file, "': ", std::strerror(err)));
    }
    return file;
  }
  std::string path_var = "/usr/local/bin:/usr/bin:/bin";
  for (const std::string& entry : env) {
    if (absl::StartsWith(entry, "PATH=")) {
      path_var = entry.substr(5);
    }
  }
  int first_error = ENOENT;
  for (absl::string_view dir : absl::StrSplit(path_var, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    int err = check(candidate);
    if (err == 0) {
      return candidate;
    }
    if (err == EACCES) {
      first_error = EACCES;
    }
  }
  return FailedPrecondition(
      "EXEC_FAILED", absl::StrCat("cannot execute '", file, "': ", std::strerror(first_error),
                                  " (in PATH ", path_var, ")"));
}

std::unique_ptr<Spawner> MakeLinuxSpawner() { return std::make_unique<LinuxSpawner>(); }

}  // namespace spindle::process
