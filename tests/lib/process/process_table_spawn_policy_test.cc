// ProcessTable with a spawn policy: refused specs never spawn, defaults show in the stored spec,
// spindled's own environment is scrubbed, and the per-identity live-process limit follows
// processes from spawn to final (and back on restart).
#include <signal.h>

#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/process/process_table.h"
#include "spindle/process/spawn_policy.h"
#include "tests/fakes/manual_timer_service.h"

namespace spindle::process {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kWait = absl::Seconds(20);

class ProcessTableSpawnPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto executor = coro::Executor::Create({.threads = 2, .name = "ptest"});
    ASSERT_TRUE(executor.ok());
    executor_ = std::move(*executor);
  }
  void TearDown() override {
    table_.reset();
    executor_->Shutdown();
  }

  void MakeTable(const std::string& policy_text) {
    auto policy = SpawnPolicy::Parse(policy_text, "test.json");
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = std::move(*policy);
    ProcessTableOptions options;
    options.spawn_policy = policy_;
    options.base_env =
        std::vector<std::string>{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "SECRET_TOKEN=hunter2"};
    table_ = std::make_unique<ProcessTable>(std::move(options), MakeLinuxSpawner(), *executor_,
                                            timers_, nullptr, nullptr);
  }

  static ProcessSpec Cmd(std::vector<std::string> argv) {
    ProcessSpec spec;
    spec.command.argv = std::move(argv);
    return spec;
  }

  ProcessView WaitFinal(const std::string& id) {
    auto done = std::make_shared<absl::Notification>();
    auto view = std::make_shared<ProcessView>();
    auto wait = table_->Wait(id, WaitCondition::kFinal, [done, view](ProcessView v) {
      *view = std::move(v);
      done->Notify();
    });
    EXPECT_TRUE(wait.ok()) << wait.status();
    EXPECT_TRUE(done->WaitForNotificationWithTimeout(kWait)) << "process " << id << " not final";
    return *view;
  }

  std::string Stdout(const std::string& id) {
    std::string out;
    int64_t offset = 0;
    while (true) {
      auto chunk = table_->ReadOutput(id, OutputStream::kStdout, offset, 1 << 20);
      if (!chunk.ok() || !chunk->has_value()) break;
      offset += (*chunk)->is_gap() ? (*chunk)->dropped_bytes
                                   : static_cast<int64_t>((*chunk)->data.size());
      out += (*chunk)->data;
    }
    return out;
  }

  std::unique_ptr<coro::Executor> executor_;
  testing::ManualTimerService timers_;
  std::shared_ptr<SpawnPolicy> policy_;
  std::unique_ptr<ProcessTable> table_;
};

TEST_F(ProcessTableSpawnPolicyTest, RefusedSpecNeverSpawns) {
  MakeTable(R"({"executables": {"allow": ["/usr/bin/"], "deny": ["/usr/bin/env"]}})");
  auto denied = table_->Spawn(Cmd({"/bin/sh", "-c", "touch /tmp/should-not-exist"}));
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Reason(denied.status()), "SPAWN_POLICY");
  EXPECT_EQ(denied.status().message(),
            "spec.command.argv[0] '/bin/sh' is not under an allowed executable prefix (policy "
            "rule executables.allow)");
  auto deny_wins = table_->Spawn(Cmd({"/usr/bin/env"}));
  EXPECT_EQ(deny_wins.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(table_->Stats().total, 0);
  EXPECT_EQ(policy_->GetStats().rejections, 2);
}

TEST_F(ProcessTableSpawnPolicyTest, ValidationAppliesThePolicyToo) {
  MakeTable(R"({"executables": {"allow": ["/usr/bin/"]}})");
  ProcessSpec spec = Cmd({"/bin/sh"});
  absl::Status status = table_->ValidateAndDefault(spec, /*for_run=*/true, 4 << 20);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  // Malformed input is still INVALID_ARGUMENT, checked before the policy.
  ProcessSpec empty;
  EXPECT_EQ(table_->ValidateAndDefault(empty, false, 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProcessTableSpawnPolicyTest, StoredSpecShowsWhatThePolicyFilledIn) {
  MakeTable(R"({"executables": {"allow": ["/usr/bin/"]},
                "limits": {"default": {"cpu_seconds": 30}, "max": {"open_files": 64}},
                "cwd": {"allow": ["/tmp"]}})");
  auto view = table_->Spawn(Cmd({"sh", "-c", "ulimit -n; ulimit -t; pwd"}));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->spec.command.executable, "/usr/bin/sh");
  EXPECT_EQ(view->spec.command.argv[0], "sh");
  EXPECT_EQ(view->spec.command.cwd, "/tmp");
  EXPECT_EQ(view->spec.limits.cpu_seconds, 30);
  EXPECT_EQ(view->spec.limits.open_files, 64);
  ProcessView final = WaitFinal(view->id);
  ASSERT_TRUE(final.status.exit.has_value());
  EXPECT_EQ(final.status.exit->exit_code, 0);
  EXPECT_EQ(Stdout(view->id), "64\n30\n/tmp\n");
}

TEST_F(ProcessTableSpawnPolicyTest, InheritedEnvironmentIsScrubbed) {
  MakeTable(R"({"environment": {"allow": ["PATH", "LANG", "JOB_*"]}})");
  ProcessSpec spec = Cmd({"/usr/bin/env"});
  spec.command.env.set["JOB_ID"] = "7";
  auto view = table_->Spawn(spec);
  ASSERT_TRUE(view.ok()) << view.status();
  WaitFinal(view->id);
  std::vector<std::string> lines = absl::StrSplit(Stdout(view->id), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, Contains("PATH=/usr/bin:/bin"));
  EXPECT_THAT(lines, Contains("LANG=C.UTF-8"));
  EXPECT_THAT(lines, Contains("JOB_ID=7"));
  EXPECT_THAT(lines, Contains(HasSubstr("SPINDLE_PROCESS_ID=")));  // the server's own cookie
  EXPECT_THAT(lines, Not(Contains(HasSubstr("SECRET_TOKEN"))));

  ProcessSpec bad = Cmd({"/usr/bin/env"});
  bad.command.env.set["LD_PRELOAD"] = "/tmp/evil.so";
  auto refused = table_->Spawn(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("env.set['LD_PRELOAD']"));
}

TEST_F(ProcessTableSpawnPolicyTest, LiveProcessLimitPerIdentity) {
  MakeTable(R"({"identities": {"max_live_processes": 2}})");
  auto a1 = table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:a");
  auto a2 = table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:a");
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:a");
  ASSERT_FALSE(a3.ok());
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(a3.status()), "SPAWN_POLICY");
  EXPECT_EQ(a3.status().message(),
            "identity 'token:a' has 2 live processes; a new process would exceed its limit of 2 "
            "(policy rule identities.max_live_processes)");
  // Others, and the server's own spawns, are not affected.
  auto b1 = table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:b");
  EXPECT_TRUE(b1.ok()) << b1.status();
  auto own = table_->Spawn(Cmd({"/bin/true"}));
  EXPECT_TRUE(own.ok()) << own.status();

  // A final process no longer counts.
  ASSERT_TRUE(
      table_->Terminate(a1->id, SIGKILL, absl::ZeroDuration(), ExitReason::kTerminated).ok());
  WaitFinal(a1->id);
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 1);
  auto a4 = table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:a");
  EXPECT_TRUE(a4.ok()) << a4.status();

  // Restarting a final process makes it count again, for the identity that spawned it.
  absl::Notification restarted;
  absl::StatusOr<ProcessView> again;
  table_->Restart(a1->id, std::nullopt, [&](absl::StatusOr<ProcessView> v) {
    again = std::move(v);
    restarted.Notify();
  });
  ASSERT_TRUE(restarted.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(
      table_->Terminate(a2->id, SIGKILL, absl::ZeroDuration(), ExitReason::kTerminated).ok());
  WaitFinal(a2->id);
  absl::Notification restarted2;
  table_->Restart(a1->id, std::nullopt, [&](absl::StatusOr<ProcessView> v) {
    again = std::move(v);
    restarted2.Notify();
  });
  ASSERT_TRUE(restarted2.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 2);
}

TEST_F(ProcessTableSpawnPolicyTest, FailedExecGivesTheSlotBack) {
  MakeTable(R"({"identities": {"max_live_processes": 1}})");
  auto missing = table_->Spawn(Cmd({"/nonexistent/program"}), "", "token:a");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 0);
  ProcessSpec named = Cmd({"/bin/sleep", "60"});
  named.name = "only";
  named.unique_name = true;
  ASSERT_TRUE(table_->Spawn(named, "", "token:b").ok());
  auto dup = table_->Spawn(named, "", "token:a");
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 0);
  EXPECT_TRUE(table_->Spawn(Cmd({"/bin/sleep", "60"}), "", "token:a").ok());
}

}  // namespace
}  // namespace spindle::process
