#include "spindle/process/cgroup.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/process/process_table.h"
#include "spindle/process/process_tree.h"
#include "tests/fakes/manual_timer_service.h"
#include "tests/support/proc_files.h"

namespace spindle::process {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

using ::spindle::testing::Exists;
using ::spindle::testing::ReadFile;
using ::spindle::testing::StateOf;

bool Dead(pid_t pid) {
  char state = StateOf(pid);
  return state == 'Z' || state == 'X';
}

// The cgroup v2 directory `pid` is in.
std::string CgroupDirOf(pid_t pid) {
  std::optional<Cgroup2Mount> mount = FindCgroup2Mount(ReadFile("/proc/self/mountinfo"));
  std::optional<std::string> path =
      UnifiedCgroupPath(ReadFile(absl::StrCat("/proc/", pid, "/cgroup")));
  if (!mount.has_value() || !path.has_value()) return "";
  absl::string_view relative = *path;
  if (mount->root != "/") absl::ConsumePrefix(&relative, mount->root);
  return absl::StrCat(mount->mount_point, relative == "/" ? "" : relative);
}

// Skips the test when this host gives no writable cgroup v2 hierarchy.
#define SKIP_WITHOUT_CGROUPS(tree)                                                         \
  if (!(tree).ok()) {                                                                      \
    GTEST_SKIP() << "cgroup v2 is not usable on this host: " << (tree).status().message(); \
  }

TEST(CgroupModeTest, ParsesTheThreeModesAndRejectsOthers) {
  EXPECT_EQ(*ParseCgroupMode("--cgroups", "auto"), CgroupMode::kAuto);
  EXPECT_EQ(*ParseCgroupMode("--cgroups", "off"), CgroupMode::kOff);
  EXPECT_EQ(*ParseCgroupMode("--cgroups", "required"), CgroupMode::kRequired);
  auto bad = ParseCgroupMode("--cgroups", "sometimes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(bad.status()), "INVALID_FLAG");
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "--cgroups: 'sometimes'")) << bad.status();
}

TEST(CgroupPathsTest, FindsTheUnifiedMountOnAHybridHost) {
  constexpr absl::string_view kHybrid =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
  auto mount = FindCgroup2Mount(kHybrid);
  ASSERT_TRUE(mount.has_value());
  EXPECT_EQ(mount->mount_point, "/sys/fs/cgroup/unified");
  EXPECT_EQ(mount->root, "/");
}

TEST(CgroupPathsTest, FindsABindMountedSubtreeAndUnescapesItsPath) {
  auto mount = FindCgroup2Mount(
      "700 600 0:30 /kubepods/pod1 /sys/fs/cgroup\\040x ro - cgroup2 cgroup rw,nsdelegate\n");
  ASSERT_TRUE(mount.has_value());
  EXPECT_EQ(mount->mount_point, "/sys/fs/cgroup x");
  EXPECT_EQ(mount->root, "/kubepods/pod1");
}

TEST(CgroupPathsTest, NoCgroup2MountAndNoUnifiedLineAreNotFound) {
  EXPECT_FALSE(
      FindCgroup2Mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n").has_value());
  EXPECT_EQ(*UnifiedCgroupPath("4:memory:/a\n0::/system.slice/x.service\n"),
            "/system.slice/x.service");
  EXPECT_FALSE(UnifiedCgroupPath("4:memory:/a\n1:cpu:/\n").has_value());
}

TEST(CgroupPathsTest, OwnDirJoinsMountAndPathAndSaysWhyWhenUnavailable) {
  std::string scratch = absl::StrCat(::testing::TempDir(), "/cgroup_paths_", ::getpid());
  ASSERT_EQ(::system(absl::StrCat("mkdir -p ", scratch, "/mnt/app").c_str()), 0);
  std::ofstream(scratch + "/mountinfo")
      << "41 31 0:38 / " << scratch << "/mnt rw - cgroup2 cgroup2 rw\n";
  std::ofstream(scratch + "/cgroup") << "0::/app\n";
  std::ofstream(scratch + "/v1only") << "41 31 0:38 / /x rw - cgroup cgroup rw,cpu\n";
  auto dir = OwnCgroupDir(scratch + "/mountinfo", scratch + "/cgroup");
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, scratch + "/mnt/app");
  auto none = OwnCgroupDir(scratch + "/v1only", scratch + "/cgroup");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(Reason(none.status()), "CGROUPS_UNAVAILABLE");
  EXPECT_TRUE(absl::StrContains(none.status().message(), "no cgroup2")) << none.status();
}

TEST(CgroupTreeTest, CreatesItsDirectoryAndRemovesItWithLeftovers) {
  auto tree = CgroupTree::Create(/*required=*/false);
  SKIP_WITHOUT_CGROUPS(tree);
  std::string dir = (*tree)->dir();
  EXPECT_TRUE(Exists(dir));
  auto child = (*tree)->MakeProcessCgroup("p1-test");
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_TRUE(Exists(*child));
  EXPECT_FALSE((*tree)->MakeProcessCgroup("../escape").ok());
  tree->reset();
  EXPECT_FALSE(Exists(*child));
  EXPECT_FALSE(Exists(dir));
}

TEST(CgroupTreeTest, RemovesWhatACrashedServerLeftBehind) {
  auto own = OwnCgroupDir();
  auto probe = CgroupTree::Create(/*required=*/false);
  SKIP_WITHOUT_CGROUPS(probe);
  probe->reset();
  // A pid that is certainly gone: a child of this test, reaped.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  std::string stale = absl::StrCat(*own, "/spindle-", dead, "-0");
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((stale + "/p1-0").c_str(), 0755), 0);
  auto tree = CgroupTree::Create(/*required=*/false);
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_FALSE(Exists(stale));
}

// A table with cgroups, and one process that escapes the process tree: it double-forks, calls
// setsid() and clears its environment (no cookie), and ignores SIGTERM.
class CgroupProcessTableTest : public ::testing::Test {
 protected:
  // Root script: starts the daemon through a shell that exits at once, then sleeps. The daemon
  // prints its pid.
  static constexpr const char* kRootScript =
      "trap '' TERM; sh -c 'setsid env -i /bin/sh -c \"$0\" &' \"$1\"; exec sleep 100";
  static constexpr const char* kDaemonScript = "trap '' TERM; echo $$; exec sleep 100";

  void SetUp() override {
    auto executor = coro::Executor::Create({.threads = 2, .name = "cgtest"});
    ASSERT_TRUE(executor.ok());
    executor_ = std::move(*executor);
  }
  void TearDown() override {
    table_.reset();
    executor_->Shutdown();
    for (pid_t pid : started_) {
      if (pid > 0 && !Dead(pid)) ::kill(pid, SIGKILL);  // Only what this test started.
    }
  }
  void MakeTable(std::shared_ptr<CgroupTree> cgroups) {
    ProcessTableOptions options;
    options.cgroups = std::move(cgroups);
    table_ = std::make_unique<ProcessTable>(std::move(options), MakeLinuxSpawner(), *executor_,
                                            timers_, nullptr, nullptr);
  }

  static ProcessSpec EscapingSpec() {
    ProcessSpec spec;
    spec.command.argv = {"/bin/sh", "-c", kRootScript, "sh", kDaemonScript};
    return spec;
  }

  // The pid the daemon printed, once it did (0 after the deadline).
  pid_t DaemonPid(const std::string& id) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      auto chunk = table_->ReadOutput(id, OutputStream::kStdout, 0, 1 << 16);
      pid_t pid = 0;
      if (chunk.ok() && chunk->has_value() &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace((*chunk)->data), &pid)) {
        started_.push_back(pid);
        return pid;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return 0;
  }

  // Waits (bounded) until the daemon left the root's tree: its intermediate shell exited.
  bool LeftTheTree(pid_t root, pid_t daemon) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      std::vector<pid_t> tree = FindTree(root, "", [](pid_t) { return false; });
      if (std::find(tree.begin(), tree.end(), daemon) == tree.end()) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  ProcessView TerminateAndWait(const std::string& id) {
    auto gone = std::make_shared<absl::Notification>();
    auto t = table_->Terminate(id, 0, absl::Seconds(1), ExitReason::kTerminated,
                               [gone](ProcessView) { gone->Notify(); });
    EXPECT_TRUE(t.ok()) << t.status();
    timers_.Advance(absl::Seconds(1));  // Grace over: the SIGKILL stage.
    EXPECT_TRUE(gone->WaitForNotificationWithTimeout(kWait));
    return *table_->Get(id);
  }

  testing::ManualTimerService timers_;
  std::unique_ptr<coro::Executor> executor_;
  std::unique_ptr<ProcessTable> table_;
  std::vector<pid_t> started_;
};

TEST_F(CgroupProcessTableTest, TerminateKillsADaemonThatLeftTheTreeAndClearedItsEnvironment) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(/*required=*/false);
  SKIP_WITHOUT_CGROUPS(tree);
  std::shared_ptr<CgroupTree> cgroups = *std::move(tree);
  MakeTable(cgroups);
  auto p = table_->Spawn(EscapingSpec());
  ASSERT_TRUE(p.ok()) << p.status();
  started_.push_back(p->status.pid);
  pid_t daemon = DaemonPid(p->id);
  ASSERT_GT(daemon, 0);
  ASSERT_TRUE(LeftTheTree(p->status.pid, daemon));
  EXPECT_FALSE(
      absl::StrContains(ReadFile(absl::StrCat("/proc/", daemon, "/environ")), kProcessCookieVar));
  // Both live in the process's cgroup, under the table's.
  std::string dir = absl::StrCat(cgroups->dir(), "/", p->id);
  EXPECT_TRUE(Exists(dir));
  EXPECT_EQ(CgroupDirOf(p->status.pid), dir);
  EXPECT_EQ(CgroupDirOf(daemon), dir);

  ProcessView v = TerminateAndWait(p->id);
  EXPECT_EQ(v.status.exit->signal_number, SIGKILL);
  absl::Time deadline = absl::Now() + kWait;
  while (!Dead(daemon) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_TRUE(Dead(daemon)) << "daemon " << daemon << " escaped (state " << StateOf(daemon) << ")";
  // The cgroup goes once its last member is gone (at once, or at the next housekeeping).
  deadline = absl::Now() + kWait;
  while (Exists(dir) && absl::Now() < deadline) {
    timers_.Advance(absl::Seconds(1));
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(Exists(dir));
}

TEST_F(CgroupProcessTableTest, ACgroupIsRemovedWhenItsProcessExits) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(/*required=*/false);
  SKIP_WITHOUT_CGROUPS(tree);
  std::shared_ptr<CgroupTree> cgroups = *std::move(tree);
  MakeTable(cgroups);
  ProcessSpec spec;
  spec.command.argv = {"/bin/sh", "-c", "read line"};
  spec.stdin_mode = StdinMode::kPipe;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok()) << p.status();
  std::string dir = absl::StrCat(cgroups->dir(), "/", p->id);
  EXPECT_TRUE(Exists(dir));
  ASSERT_TRUE(table_->CloseStdin(p->id, 0).ok());
  auto done = std::make_shared<absl::Notification>();
  ASSERT_TRUE(
      table_->Wait(p->id, WaitCondition::kFinal, [done](ProcessView) { done->Notify(); }).ok());
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(kWait));
  EXPECT_FALSE(Exists(dir));
}

TEST_F(CgroupProcessTableTest, WithoutCgroupsProcessesStayInTheServersCgroupAndADaemonEscapes) {
  MakeTable(nullptr);
  auto p = table_->Spawn(EscapingSpec());
  ASSERT_TRUE(p.ok()) << p.status();
  started_.push_back(p->status.pid);
  pid_t daemon = DaemonPid(p->id);
  ASSERT_GT(daemon, 0);
  ASSERT_TRUE(LeftTheTree(p->status.pid, daemon));
  EXPECT_EQ(CgroupDirOf(p->status.pid), CgroupDirOf(::getpid()));
  ProcessView v = TerminateAndWait(p->id);
  EXPECT_EQ(v.status.exit->signal_number, SIGKILL);
  // The documented limitation without cgroups: nothing links the daemon to the process.
  EXPECT_FALSE(Dead(daemon));
}

TEST_F(CgroupProcessTableTest, RequiredModeFailsASpawnThatCannotGetItsCgroup) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(/*required=*/true);
  SKIP_WITHOUT_CGROUPS(tree);
  std::shared_ptr<CgroupTree> cgroups = *std::move(tree);
  ASSERT_EQ(::rmdir(cgroups->dir().c_str()), 0);  // The hierarchy went away under the server.
  MakeTable(cgroups);
  ProcessSpec spec;
  spec.command.argv = {"/bin/true"};
  auto p = table_->Spawn(spec);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(p.status()), "CGROUP_FAILED");
  EXPECT_TRUE(absl::StrContains(p.status().message(), cgroups->dir())) << p.status();
}

TEST_F(CgroupProcessTableTest, AutoModeRunsAProcessUntrackedWhenItCannotGetItsCgroup) {
  absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create(/*required=*/false);
  SKIP_WITHOUT_CGROUPS(tree);
  std::shared_ptr<CgroupTree> cgroups = *std::move(tree);
  ASSERT_EQ(::rmdir(cgroups->dir().c_str()), 0);
  MakeTable(cgroups);
  ProcessSpec spec;
  spec.command.argv = {"/bin/sh", "-c", "exit 4"};
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok()) << p.status();
  auto done = std::make_shared<absl::Notification>();
  auto exit_code = std::make_shared<int>(-1);
  ASSERT_TRUE(table_
                  ->Wait(p->id, WaitCondition::kFinal,
                         [done, exit_code](ProcessView v) {
                           *exit_code = v.status.exit.value_or(ProcessExit{}).exit_code;
                           done->Notify();
                         })
                  .ok());
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(*exit_code, 4);
}

}  // namespace
}  // namespace spindle::process
