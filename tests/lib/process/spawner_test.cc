#include "spindle/process/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "spindle/common/status.h"

namespace spindle::process {
namespace {

// Reads a non-blocking fd until EOF (bounded by 10 s).
std::string ReadAll(int fd) {
  std::string out;
  char buffer[4096];
  for (int i = 0; i < 1000; ++i) {
    struct pollfd p {
      fd, POLLIN, 0
    };
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

int Reap(const SpawnedChild& child) {
  siginfo_t info{};
  ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd.get()), &info, WEXITED);
  return info.si_status;
}

SpawnOptions Command(std::vector<std::string> argv) {
  SpawnOptions o;
  o.argv = std::move(argv);
  o.env = {"PATH=/usr/bin:/bin", "GREETING=hi"};
  return o;
}

TEST(SpawnerTest, RunsAProgramAndCapturesItsOutput) {
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({"/bin/sh", "-c", "echo out $GREETING; echo err >&2"}));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_GT(child->pid, 0);
  EXPECT_EQ(ReadAll(child->stdout_fd.get()), "out hi\n");
  EXPECT_EQ(ReadAll(child->stderr_fd.get()), "err\n");
  EXPECT_EQ(Reap(*child), 0);
}

TEST(SpawnerTest, LooksUpTheProgramInPath) {
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({"echo", "found"}));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_fd.get()), "found\n");
  Reap(*child);
}

TEST(SpawnerTest, MissingProgramIsFailedPreconditionWithTheErrnoText) {
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({"/usr/bin/definitely-not-here"}));
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(child.status()), "EXEC_FAILED");
  EXPECT_NE(child.status().message().find("No such file or directory"), absl::string_view::npos)
      << child.status();
  EXPECT_NE(child.status().message().find("/usr/bin/definitely-not-here"), absl::string_view::npos);
}

TEST(SpawnerTest, NotExecutableIsPermissionDeniedText) {
  std::string path = ::testing::TempDir() + "/not-executable";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("#!/bin/sh\n", f);
  std::fclose(f);
  ::chmod(path.c_str(), 0644);
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({path}));
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(child.status().message().find("Permission denied"), absl::string_view::npos)
      << child.status();
}

TEST(SpawnerTest, BadCwdIsReportedByTheChild) {
  auto spawner = MakeLinuxSpawner();
  SpawnOptions o = Command({"/bin/true"});
  o.cwd = "/no/such/dir";
  auto child = spawner->Spawn(o);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(Reason(child.status()), "EXEC_FAILED");
  EXPECT_NE(child.status().message().find("cwd '/no/such/dir'"), absl::string_view::npos)
      << child.status();
  EXPECT_NE(child.status().message().find("No such file or directory"), absl::string_view::npos);
}

TEST(SpawnerTest, ChildSeesOnlyStdioFds) {
  // An fd of the parent without O_CLOEXEC must not leak either.
  int leaky = ::dup(2);
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({"/bin/sh", "-c", "ls /proc/$$/fd"}));
  ASSERT_TRUE(child.ok()) << child.status();
  std::string fds = ReadAll(child->stdout_fd.get());
  Reap(*child);
  ::close(leaky);
  std::vector<std::string> lines = absl::StrSplit(fds, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines, (std::vector<std::string>{"0", "1", "2"})) << fds;
}

TEST(SpawnerTest, ChildGetsItsOwnProcessGroupOrSession) {
  auto spawner = MakeLinuxSpawner();
  auto child = spawner->Spawn(Command({"/bin/sh", "-c", "ps -o pgid= -o sid= -p $$"}));
  ASSERT_TRUE(child.ok()) << child.status();
  std::string out = ReadAll(child->stdout_fd.get());
  Reap(*child);
  std::vector<std::string> ids = absl::StrSplit(out, ' ', absl::SkipWhitespace());
  ASSERT_EQ(ids.size(), 2u) << out;
  EXPECT_EQ(std::stoi(ids[0]), child->pid);
  EXPECT_NE(std::stoi(ids[1]), child->pid);

  SpawnOptions session = Command({"/bin/sh", "-c", "ps -o sid= -p $$"});
  session.new_session = true;
  auto leader = spawner->Spawn(session);
  ASSERT_TRUE(leader.ok());
  std::string sid = ReadAll(leader->stdout_fd.get());
  Reap(*leader);
  EXPECT_EQ(std::stoi(sid), leader->pid);
}

TEST(SpawnerTest, AppliesRlimitsStdinAndMerge) {
  auto spawner = MakeLinuxSpawner();
  SpawnOptions o = Command({"/bin/sh", "-c", "ulimit -n; cat; echo e >&2"});
  o.rlimits.emplace_back(RLIMIT_NOFILE, 17);
  o.stdin_mode = SpawnOptions::Stdin::kPipe;
  o.stderr_mode = SpawnOptions::Output::kMergeIntoStdout;
  auto child = spawner->Spawn(o);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_FALSE(child->stderr_fd.valid());
  ASSERT_EQ(::write(child->stdin_fd.get(), "in\n", 3), 3);
  child->stdin_fd.Reset();
  EXPECT_EQ(ReadAll(child->stdout_fd.get()), "17\nin\ne\n");
  Reap(*child);
}

TEST(SpawnerTest, DiscardedOutputGoesToDevNull) {
  auto spawner = MakeLinuxSpawner();
  SpawnOptions o = Command({"/bin/sh", "-c", "echo gone"});
  o.stdout_mode = SpawnOptions::Output::kNull;
  o.stderr_mode = SpawnOptions::Output::kNull;
  auto child = spawner->Spawn(o);
  ASSERT_TRUE(child.ok());
  EXPECT_FALSE(child->stdout_fd.valid());
  EXPECT_EQ(Reap(*child), 0);
}

// A cgroup.procs fd the child cannot write (read-only): the join fails in the child.
TEST(SpawnerTest, AFailedCgroupJoinFailsTheSpawnWhenRequired) {
  int read_only = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(read_only, 0);
  SpawnOptions o = Command({"/bin/true"});
  o.cgroup_procs_fd = read_only;
  o.cgroup_dir = "/sys/fs/cgroup/x";
  o.cgroup_required = true;
  auto child = MakeLinuxSpawner()->Spawn(o);
  ::close(read_only);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(child.status()), "EXEC_FAILED");
  EXPECT_EQ(child.status().message(), "cannot join cgroup '/sys/fs/cgroup/x': Bad file descriptor");
}

TEST(SpawnerTest, AFailedCgroupJoinIsReportedAndTheChildRunsWhenNotRequired) {
  int read_only = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(read_only, 0);
  SpawnOptions o = Command({"/bin/sh", "-c", "echo ran"});
  o.cgroup_procs_fd = read_only;
  auto child = MakeLinuxSpawner()->Spawn(o);
  ::close(read_only);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_FALSE(child->joined_cgroup);
  EXPECT_EQ(child->cgroup_errno, EBADF);
  EXPECT_EQ(ReadAll(child->stdout_fd.get()), "ran\n");
  EXPECT_EQ(Reap(*child), 0);
}

TEST(SpawnerTest, WithoutACgroupNothingIsJoined) {
  auto child = MakeLinuxSpawner()->Spawn(Command({"/bin/true"}));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_FALSE(child->joined_cgroup);
  EXPECT_EQ(child->cgroup_errno, 0);
  EXPECT_EQ(Reap(*child), 0);
}

}  // namespace
}  // namespace spindle::process
