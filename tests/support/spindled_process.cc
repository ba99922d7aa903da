#include "tests/support/spindled_process.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace spindle::testing {
namespace {

ExitResult FromWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return {true, WEXITSTATUS(status)};
  }
  return {false, WTERMSIG(status)};
}

// Waits for `pid` up to `timeout` on its pidfd (no polling loop).
std::optional<ExitResult> WaitFor(pid_t pid, absl::Duration timeout) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p = {pidfd, POLLIN, 0};
    const absl::Time deadline = absl::Now() + timeout;
    int n = 0;
    do {
      auto left = std::max(deadline - absl::Now(), absl::ZeroDuration());
      n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)));
    } while (n < 0 && errno == EINTR);
    close(pidfd);
    if (n == 0) {
      return std::nullopt;
    }
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) {
    return std::nullopt;
  }
  return FromWaitStatus(status);
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (out_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  }
  if (err_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  }
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("spawn ", argv[0], ": ", strerror(rc)));
  }
  return pid;
}

}  // namespace

std::string SpindledPath() { return SPINDLE_SPINDLED_PATH; }
std::string SpindlectlPath() { return SPINDLE_SPINDLECTL_PATH; }

SpindledProcess::~SpindledProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    WaitFor(pid_, absl::Seconds(30));
  }
  if (reader_.joinable()) {
    reader_.join();
  }
}

absl::Status SpindledProcess::Start(std::vector<std::string> extra_flags, absl::Duration timeout) {
  std::vector<std::string> argv = {SpindledPath(), "--listen=127.0.0.1:0",
                                   "--metrics-listen=127.0.0.1:0"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(strerror(errno));
  }
  auto pid = Spawn(argv, -1, fds[1]);
  close(fds[1]);
  if (!pid.ok()) {
    close(fds[0]);
    return pid.status();
  }
  pid_ = *pid;
  reader_ = std::thread([this, fd = fds[0]] { DrainStderr(fd); });

  // Wait for the listening line.
  auto found = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return eof_ || logs_.find("event=listening") != std::string::npos;
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  auto at = logs_.find("event=listening");
  if (at == std::string::npos) {
    return absl::DeadlineExceededError(
        absl::StrCat("spindled did not start listening; its log:\n", logs_));
  }
  absl::string_view line = absl::string_view(logs_).substr(at);
  line = line.substr(0, line.find('\n'));
  for (absl::string_view field : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&field, "address=")) {
      address_ = std::string(field);
    } else if (absl::ConsumePrefix(&field, "metrics_address=")) {
      metrics_address_ = std::string(field);
    }
  }
  return absl::OkStatus();
}

void SpindledProcess::DrainStderr(int fd) {
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (n <= 0) {
      eof_ = true;
      break;
    }
    logs_.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
}

std::optional<ExitResult> SpindledProcess::SignalAndWait(int signal, absl::Duration timeout) {
  if (pid_ <= 0) {
    return std::nullopt;
  }
  kill(pid_, signal);
  auto result = WaitFor(pid_, timeout);
  if (result.has_value()) {
    pid_ = -1;
  }
  return result;
}

std::string SpindledProcess::logs() const {
  absl::MutexLock lock(&mu_);
  return logs_;
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError(strerror(errno));
  }
  auto pid = Spawn(argv, out[1], err[1]);
  close(out[1]);
  close(err[1]);
  if (!pid.ok()) {
    close(out[0]);
    close(err[0]);
    return pid.status();
  }
  CommandResult result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  const absl::Time deadline = absl::Now() + timeout;
  while (open_fds > 0 && absl::Now() < deadline) {
    int n = poll(fds, 2, 100);
    if (n < 0 && errno != EINTR) {
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP))) {
        char buffer[4096];
        ssize_t r = read(fds[i].fd, buffer, sizeof(buffer));
        if (r > 0) {
          sinks[i]->append(buffer, static_cast<size_t>(r));
        } else if (r == 0 || errno != EINTR) {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
        }
      }
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) {
      close(fd.fd);
    }
  }
  auto exit = WaitFor(*pid, std::max(deadline - absl::Now(), absl::ZeroDuration()));
  if (!exit.has_value()) {
    kill(*pid, SIGKILL);
    WaitFor(*pid, absl::Seconds(10));
    return absl::DeadlineExceededError(absl::StrCat(argv[0], " did not finish in time"));
  }
  result.exit = *exit;
  return result;
}

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    return absl::InternalError("curl_easy_init failed");
  }
  std::string body;
  std::string url = absl::StrCat("http://", address, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode rc = curl_easy_perform(curl);
  long http_code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": ", curl_easy_strerror(rc)));
  }
  if (http_code != 200) {
    return absl::UnavailableError(absl::StrCat("GET ", url, ": HTTP ", http_code));
  }
  return body;
}

}  // namespace spindle::testing
