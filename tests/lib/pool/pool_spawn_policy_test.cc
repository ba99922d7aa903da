// PoolTable with a spawn policy: WORKER commands and pool limits/run_as are checked at
// CreatePool, COMMAND tasks at Submit (and ValidateTask, which the scheduler uses), inherited
// environment is scrubbed, and COMMAND/WORKER pools count their size against the creator's
// live-process limit until deleted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "spindle/common/status.h"
#include "spindle/pool/pool_table.h"
#include "spindle/process/spawn_policy.h"
#include "tests/lib/pool/real_timer_service.h"

namespace spindle::pool {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kBound = absl::Seconds(20);

TaskSpec CommandTask(std::vector<std::string> argv) {
  TaskSpec spec;
  TaskCommand command;
  command.command.argv = std::move(argv);
  spec.work = command;
  return spec;
}

PoolSpec Spec(PoolKind kind, int size) {
  PoolSpec spec;
  spec.kind = kind;
  spec.size = size;
  if (kind == PoolKind::kWorker) {
    WorkerSpec worker;
    worker.command.argv = {"/usr/bin/python3", SPINDLE_WORKER_PY, "echo"};
    spec.worker = worker;
  }
  return spec;
}

class PoolSpawnPolicyTest : public ::testing::Test {
 protected:
  void MakeTable(const std::string& policy_text) {
    auto policy = process::SpawnPolicy::Parse(policy_text, "test.json");
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = std::move(*policy);
    PoolTableOptions options;
    options.spawn_policy = policy_;
    options.base_env = std::vector<std::string>{"PATH=/usr/bin:/bin", "SECRET_TOKEN=hunter2"};
    table_ = std::make_unique<PoolTable>(timers_, nullptr, process::MakeLinuxSpawner(),
                                         std::make_shared<FunctionRegistry>(), std::move(options));
  }

  absl::StatusOr<std::vector<TaskView>> Submit(const std::string& pool, TaskSpec spec) {
    absl::Notification done;
    absl::StatusOr<PoolTable::SubmitResult> result;
    std::vector<TaskSpec> specs;
    specs.push_back(std::move(spec));
    table_->Submit(pool, std::move(specs), {}, [&](absl::StatusOr<PoolTable::SubmitResult> r) {
      result = std::move(r);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound));
    if (!result.ok()) return result.status();
    return result->tasks;
  }

  TaskView Wait(const std::string& task_id) {
    absl::Notification done;
    absl::StatusOr<TaskView> result;
    table_->WaitTask(task_id, absl::Now() + kBound, [&](absl::StatusOr<TaskView> r, bool) {
      result = std::move(r);
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound + absl::Seconds(5)));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : TaskView{};
  }

  spindle::testing::RealTimerService timers_;
  std::shared_ptr<process::SpawnPolicy> policy_;
  std::unique_ptr<PoolTable> table_;
};

TEST_F(PoolSpawnPolicyTest, WorkerCommandIsCheckedAtCreate) {
  MakeTable(R"({"executables": {"allow": ["/opt/workers/"]}})");
  auto r = table_->CreatePool("w", Spec(PoolKind::kWorker, 1), "", "token:a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Reason(r.status()), "SPAWN_POLICY");
  EXPECT_EQ(r.status().message(),
            "spec.worker.command.argv[0] '/usr/bin/python3' is not under an allowed executable "
            "prefix (policy rule executables.allow)");
  EXPECT_EQ(table_->GetPool("w", false).status().code(), absl::StatusCode::kNotFound);
  // THREAD pools spawn nothing: no executable rule applies.
  EXPECT_TRUE(table_->CreatePool("t", Spec(PoolKind::kThread, 1), "", "token:a").ok());
}

TEST_F(PoolSpawnPolicyTest, PoolLimitsAndRunAsAreChecked) {
  MakeTable(R"({"limits": {"default": {"cpu_seconds": 9}, "max": {"processes": 50}},
                "run_as": {"users": [12345]}})");
  PoolSpec over = Spec(PoolKind::kCommand, 1);
  over.limits.processes = 100;
  auto r = table_->CreatePool("c", over, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(r.status().message(),
            "spec.limits.processes 100 is over the maximum 50 (policy rule limits.max.processes)");
  PoolSpec root = Spec(PoolKind::kCommand, 1);
  root.run_as.uid = 0;
  EXPECT_THAT(table_->CreatePool("c", root, "").status().message(),
              HasSubstr("spec.run_as.uid 0 is not an allowed user (policy rule run_as.users"));
  auto ok = table_->CreatePool("c", Spec(PoolKind::kCommand, 1), "");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->pool.spec.limits.cpu_seconds, 9);
  EXPECT_EQ(ok->pool.spec.limits.processes, 50);
}

TEST_F(PoolSpawnPolicyTest, CommandTasksAreCheckedAtSubmitAndRunScrubbed) {
  MakeTable(R"({"executables": {"allow": ["/usr/bin/"]},
                "environment": {"allow": ["PATH"]}})");
  ASSERT_TRUE(table_->CreatePool("c", Spec(PoolKind::kCommand, 1), "").ok());
  auto denied = Submit("c", CommandTask({"/bin/sh", "-c", "true"}));
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(denied.status().message(),
            "task.command.command.argv[0] '/bin/sh' is not under an allowed executable prefix "
            "(policy rule executables.allow)");
  // What the scheduler's pool_task triggers check when they are created.
  absl::Status check =
      table_->ValidateTask("c", "spec.action.pool_task.task", CommandTask({"/bin/sh"}));
  EXPECT_THAT(check.message(), HasSubstr("spec.action.pool_task.task.command.command.argv[0]"));

  auto tasks = Submit("c", CommandTask({"env"}));
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  TaskView done = Wait((*tasks)[0].id);
  ASSERT_EQ(done.state, TaskState::kSucceeded) << done.last_error;
  EXPECT_THAT(done.result->stdout_data, HasSubstr("PATH=/usr/bin:/bin"));
  EXPECT_THAT(done.result->stdout_data, Not(HasSubstr("SECRET_TOKEN")));
  // The stored task shows the resolved executable.
  EXPECT_EQ(std::get<TaskCommand>(done.spec.work).command.executable, "/usr/bin/env");
}

TEST_F(PoolSpawnPolicyTest, PoolSizeCountsAgainstTheCreator) {
  MakeTable(R"({"identities": {"max_live_processes": 3}})");
  ASSERT_TRUE(table_->CreatePool("a1", Spec(PoolKind::kCommand, 2), "", "token:a").ok());
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 2);
  auto a2 = table_->CreatePool("a2", Spec(PoolKind::kCommand, 2), "", "token:a");
  EXPECT_EQ(a2.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a2.status().message(),
            "identity 'token:a' has 2 live processes; pool 'a2' of size 2 would exceed its limit "
            "of 3 (policy rule identities.max_live_processes)");
  EXPECT_TRUE(table_->CreatePool("b1", Spec(PoolKind::kCommand, 3), "", "token:b").ok());
  EXPECT_TRUE(table_->CreatePool("t", Spec(PoolKind::kThread, 8), "", "token:a").ok());

  auto grow = table_->ResizePool("a1", 4);
  EXPECT_EQ(grow.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(grow.status().message(), HasSubstr("growing pool 'a1' from 2 to 4"));
  ASSERT_TRUE(table_->ResizePool("a1", 3).ok());
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 3);
  ASSERT_TRUE(table_->ResizePool("a1", 1).ok());
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 1);
  ASSERT_TRUE(table_->DeletePool("a1", true).ok());
  EXPECT_EQ(policy_->LiveProcesses("token:a"), 0);
  EXPECT_TRUE(table_->CreatePool("a2", Spec(PoolKind::kCommand, 3), "", "token:a").ok());
}

}  // namespace
}  // namespace spindle::pool
