// PoolTable with real processes and threads on real time (RealTimerService): every kind, the
// queue bound, priorities, retries, timeouts, cancel, close/join/terminate, resize, recycle, a
// worker killed mid-task, sessions and events.
#include "spindle/pool/pool_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <set>

#include "absl/synchronization/notification.h"
#include "spindle/common/status.h"
#include "tests/lib/pool/real_timer_service.h"
#include "tests/lib/queue/fake_session_hooks.h"

namespace spindle::pool {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kBound = absl::Seconds(20);

process::ProcessCommand Sh(const std::string& script) {
  process::ProcessCommand c;
  c.argv = {"/bin/sh", "-c", script};
  return c;
}

TaskSpec CommandTask(const std::string& script) {
  TaskSpec spec;
  spec.work = TaskCommand{Sh(script), "", false};
  return spec;
}

TaskSpec CallTask(const std::string& function, std::vector<std::string> args = {},
                  std::string input = "") {
  TaskSpec spec;
  spec.work = TaskCall{function, std::move(args), std::move(input)};
  return spec;
}

TaskSpec PayloadTask(const std::string& payload) {
  TaskSpec spec;
  spec.work = payload;
  return spec;
}

PoolSpec ThreadSpec(int size) {
  PoolSpec spec;
  spec.kind = PoolKind::kThread;
  spec.size = size;
  return spec;
}

PoolSpec CommandSpec(int size) {
  PoolSpec spec;
  spec.kind = PoolKind::kCommand;
  spec.size = size;
  return spec;
}

PoolSpec WorkerPoolSpec(int size, const std::string& handler) {
  PoolSpec spec;
  spec.kind = PoolKind::kWorker;
  spec.size = size;
  WorkerSpec worker;
  worker.command.argv = {"/usr/bin/python3", SPINDLE_WORKER_PY, handler};
  spec.worker = worker;
  return spec;
}

class PoolTableTest : public ::testing::Test {
 protected:
  PoolTableTest()
      : functions_(std::make_shared<FunctionRegistry>()),
        table_(std::make_unique<PoolTable>(timers_, &sessions_, process::MakeLinuxSpawner(),
                                           functions_)) {}

  absl::StatusOr<std::vector<TaskView>> Submit(const std::string& pool, std::vector<TaskSpec> specs,
                                               PoolTable::SubmitOptions options = {}) {
    absl::Notification done;
    absl::StatusOr<PoolTable::SubmitResult> result;
    table_->Submit(pool, std::move(specs), std::move(options),
                   [&](absl::StatusOr<PoolTable::SubmitResult> r) {
                     result = std::move(r);
                     done.Notify();
                   });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound));
    if (!result.ok()) return result.status();
    return result->tasks;
  }

  // A THREAD pool of one worker and max_queued 1, its worker held by a long sleep (cancel the
  // returned task to free it) and its queue full.
  std::string FullPool(const std::string& pool) {
    PoolSpec spec = ThreadSpec(1);
    spec.max_queued = 1;
    EXPECT_TRUE(table_->CreatePool(pool, spec, "").ok());
    std::string running = SubmitOne(pool, CallTask("sleep", {"60000"}));
    EXPECT_TRUE(
        Eventually([&] { return table_->GetTask(running, false)->state == TaskState::kRunning; }));
    SubmitOne(pool, CallTask("echo"));
    return running;
  }

  std::string SubmitOne(const std::string& pool, TaskSpec spec) {
    auto tasks = Submit(pool, {std::move(spec)});
    EXPECT_TRUE(tasks.ok()) << tasks.status();
    return tasks.ok() ? (*tasks)[0].id : "";
  }

  TaskView Wait(const std::string& task_id) {
    absl::Notification done;
    absl::StatusOr<TaskView> result;
    bool finished = false;
    table_->WaitTask(task_id, absl::Now() + kBound, [&](absl::StatusOr<TaskView> r, bool is_done) {
      result = std::move(r);
      finished = is_done;
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound + absl::Seconds(5)));
    EXPECT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(finished) << task_id;
    return result.ok() ? *result : TaskView{};
  }

  bool Join(const std::string& pool) {
    absl::Notification done;
    bool joined = false;
    table_->JoinPool(pool, absl::Now() + kBound, [&](absl::StatusOr<PoolView> v, bool j) {
      joined = v.ok() && j;
      done.Notify();
    });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(kBound + absl::Seconds(5)));
    return joined;
  }

  // Polls `condition` (a state another thread changes) with a bound.
  template <typename F>
  bool Eventually(F condition) {
    const absl::Time give_up = absl::Now() + kBound;
    while (absl::Now() < give_up) {
      if (condition()) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  spindle::testing::RealTimerService timers_;
  spindle::testing::FakeSessionHooks sessions_;
  std::shared_ptr<FunctionRegistry> functions_;
  std::unique_ptr<PoolTable> table_;
};

TEST_F(PoolTableTest, BadSpecsAreInvalidArgumentNamingTheField) {
  PoolSpec spec = ThreadSpec(2000);
  auto r = table_->CreatePool("p", spec, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("spec.size"));
  spec = PoolSpec{};
  r = table_->CreatePool("p", spec, "");
  EXPECT_THAT(r.status().message(), HasSubstr("spec.kind"));
  spec = PoolSpec{};
  spec.kind = PoolKind::kWorker;
  r = table_->CreatePool("p", spec, "");
  EXPECT_THAT(r.status().message(), HasSubstr("spec.worker"));
  r = table_->CreatePool("bad name", ThreadSpec(1), "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(r.status()), "INVALID_NAME");
}

TEST_F(PoolTableTest, CreateIsIdempotentForTheSameSpecOnly) {
  auto first = table_->CreatePool("p", ThreadSpec(2), "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);
  auto again = table_->CreatePool("p", ThreadSpec(2), "");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  auto other = table_->CreatePool("p", ThreadSpec(3), "");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Reason(other.status()), "POOL_EXISTS");
}

TEST_F(PoolTableTest, MissingWorkerExecutableIsFailedPrecondition) {
  PoolSpec spec = WorkerPoolSpec(1, "echo");
  spec.worker->command.argv = {"/nonexistent/worker"};
  auto r = table_->CreatePool("p", spec, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(r.status()), "EXEC_FAILED");
  EXPECT_EQ(table_->GetPool("p", false).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTableTest, ThreadPoolRunsBuiltins) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(2), "").ok());
  TaskView echo = Wait(SubmitOne("p", CallTask("echo", {}, "hi")));
  EXPECT_EQ(echo.state, TaskState::kSucceeded);
  EXPECT_EQ(echo.result->output, "hi");
  TaskView crc = Wait(SubmitOne("p", CallTask("checksum", {}, "123456789")));
  EXPECT_EQ(crc.result->output, "crc32:cbf43926");  // The CRC-32 check value.
  TaskView fail = Wait(SubmitOne("p", CallTask("fail", {"boom"})));
  EXPECT_EQ(fail.state, TaskState::kFailed);
  EXPECT_EQ(fail.result->error, "boom");
  EXPECT_EQ(fail.result->error_reason, "FUNCTION_ERROR");
  auto unknown = Submit("p", {CallTask("nope")});
  EXPECT_EQ(Reason(unknown.status()), "FUNCTION_NOT_FOUND");
  auto wrong = Submit("p", {PayloadTask("x")});
  EXPECT_EQ(Reason(wrong.status()), "WRONG_TASK_KIND");
}

TEST_F(PoolTableTest, CancelStopsARunningSleepAndRemovesAQueuedTask) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(1), "").ok());
  std::string running = SubmitOne("p", CallTask("sleep", {"60000"}));
  std::string queued = SubmitOne("p", CallTask("sleep", {"60000"}));
  ASSERT_TRUE(
      Eventually([&] { return table_->GetTask(running, false)->state == TaskState::kRunning; }));
  auto q = table_->CancelTask(queued, std::nullopt);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->state, TaskState::kCancelled);
  EXPECT_EQ(q->result->attempts, 0);
  ASSERT_TRUE(table_->CancelTask(running, std::nullopt).ok());
  TaskView r = Wait(running);
  EXPECT_EQ(r.state, TaskState::kCancelled);
  EXPECT_EQ(r.result->error_reason, "CANCELLED");
  EXPECT_EQ(table_->CancelTask(running, std::nullopt)->state, TaskState::kCancelled);
}

TEST_F(PoolTableTest, CommandPoolBoundsConcurrency) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(3), "").ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(SubmitOne("p", CommandTask("sleep 0.05")));
  std::vector<std::pair<absl::Time, int>> edges;
  for (const auto& id : ids) {
    TaskView t = Wait(id);
    ASSERT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
    edges.emplace_back(t.started_at, +1);
    edges.emplace_back(t.ended_at, -1);
  }
  std::sort(edges.begin(), edges.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second < b.second;
  });
  int running = 0, peak = 0;
  for (const auto& [time, delta] : edges) {
    running += delta;
    peak = std::max(peak, running);
  }
  EXPECT_LE(peak, 3);
  EXPECT_GE(peak, 2);
}

TEST_F(PoolTableTest, CommandTaskKeepsOutputExitCodeAndStdin) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(1), "").ok());
  TaskSpec spec = CommandTask("cat; echo err >&2; exit 4");
  std::get<TaskCommand>(spec.work).stdin_data = "from stdin\n";
  auto tasks = Submit("p", {spec});
  ASSERT_TRUE(tasks.ok());
  TaskView t = Wait((*tasks)[0].id);
  EXPECT_EQ(t.state, TaskState::kFailed);
  ASSERT_TRUE(t.result->exit.has_value());
  EXPECT_EQ(t.result->exit->exit_code, 4);
  EXPECT_EQ(t.result->error, "exit code 4");
  EXPECT_EQ(t.result->error_reason, "EXIT_CODE");
  EXPECT_EQ(t.result->stdout_data, "from stdin\n");
  EXPECT_EQ(t.result->stderr_data, "err\n");
}

TEST_F(PoolTableTest, MissingCommandFailsTheTaskWithExecFailed) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(1), "").ok());
  TaskSpec spec;
  TaskCommand c;
  c.command.argv = {"/nonexistent/program"};
  spec.work = c;
  TaskView t = Wait(SubmitOne("p", spec));
  EXPECT_EQ(t.state, TaskState::kFailed);
  EXPECT_EQ(t.result->error_reason, "EXEC_FAILED");
}

TEST_F(PoolTableTest, TimeoutKillsAHungCommandTree) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(1), "").ok());
  TaskSpec spec = CommandTask("sleep 60 & sleep 60; wait");
  spec.timeout_ms = 200;
  const absl::Time start = absl::Now();
  TaskView t = Wait(SubmitOne("p", spec));
  EXPECT_EQ(t.state, TaskState::kTimedOut);
  EXPECT_EQ(t.result->error_reason, "TIMED_OUT");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(PoolTableTest, RetriesWithBackoffExceptNonRetryableExitCodes) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(2), "").ok());
  TaskSpec spec = CommandTask("exit 3");
  RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_backoff_ms = 10;
  spec.retry = retry;
  TaskView t = Wait(SubmitOne("p", spec));
  EXPECT_EQ(t.state, TaskState::kFailed);
  EXPECT_EQ(t.result->attempts, 3);
  retry.non_retryable_exit_codes = {3};
  spec.retry = retry;
  TaskView once = Wait(SubmitOne("p", spec));
  EXPECT_EQ(once.result->attempts, 1);
  EXPECT_EQ(table_->GetPool("p", false)->stats.task_retries, 2);
}

TEST_F(PoolTableTest, HigherPriorityRunsFirst) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(1), "").ok());
  std::string blocker = SubmitOne("p", CallTask("sleep", {"200"}));
  ASSERT_TRUE(
      Eventually([&] { return table_->GetTask(blocker, false)->state == TaskState::kRunning; }));
  TaskSpec low = CallTask("echo");
  TaskSpec high = CallTask("echo");
  high.priority = 5;
  std::string low_id = SubmitOne("p", low);
  std::string high_id = SubmitOne("p", high);
  EXPECT_LT(Wait(high_id).started_at, Wait(low_id).started_at);
}

TEST_F(PoolTableTest, FullQueueIsResourceExhaustedOrWaitsForRoom) {
  const std::string running = FullPool("p");
  auto full = Submit("p", {CallTask("echo")});
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(full.status()), "POOL_QUEUE_FULL");
  PoolTable::SubmitOptions wait;
  wait.wait = true;
  absl::Notification done;
  absl::StatusOr<PoolTable::SubmitResult> waited;
  table_->Submit("p", {CallTask("echo")}, wait, [&](absl::StatusOr<PoolTable::SubmitResult> r) {
    waited = std::move(r);
    done.Notify();
  });
  EXPECT_FALSE(done.HasBeenNotified());  // waits for room
  ASSERT_TRUE(table_->CancelTask(running, std::nullopt).ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kBound));
  ASSERT_TRUE(waited.ok()) << waited.status();
  ASSERT_TRUE(waited->submitted);
  EXPECT_EQ(Wait(waited->tasks[0].id).state, TaskState::kSucceeded);
}

TEST_F(PoolTableTest, RepeatedRequestIdReturnsTheOriginalTask) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(1), "").ok());
  PoolTable::SubmitOptions options;
  options.request_id = "r1";
  auto a = Submit("p", {CallTask("echo")}, options);
  auto b = Submit("p", {CallTask("echo")}, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)[0].id, (*b)[0].id);
  EXPECT_EQ(table_->GetPool("p", false)->stats.tasks_submitted, 1);
}

TEST_F(PoolTableTest, RetryOfASubmitWaitingForRoomTakesItsWaitOverAndSubmitsOnce) {
  const std::string running = FullPool("p");  // stays full while both submits arrive
  PoolTable::SubmitOptions wait;
  wait.wait = true;
  wait.request_id = "submit-1";
  absl::Notification first_done, retry_done;
  absl::StatusOr<PoolTable::SubmitResult> first, retry;
  const PoolTable::WaiterId first_id =
      table_->Submit("p", {CallTask("echo")}, wait, [&](absl::StatusOr<PoolTable::SubmitResult> r) {
        first = std::move(r);
        first_done.Notify();
      });
  ASSERT_NE(first_id, 0);
  EXPECT_EQ(table_->GetPool("p", false)->stats.submits_waiting, 1);
  table_->Submit("p", {CallTask("echo")}, wait, [&](absl::StatusOr<PoolTable::SubmitResult> r) {
    retry = std::move(r);
    retry_done.Notify();
  });
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(kBound));
  EXPECT_EQ(table_->GetPool("p", false)->stats.submits_waiting, 1);  // one wait, not two
  EXPECT_EQ(first.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(first.status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(table_->CancelWait(first_id));  // the first call's id no longer withdraws it
  EXPECT_FALSE(retry_done.HasBeenNotified());
  ASSERT_TRUE(table_->CancelTask(running, std::nullopt).ok());
  ASSERT_TRUE(retry_done.WaitForNotificationWithTimeout(kBound));
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_TRUE(retry->submitted);
  ASSERT_EQ(retry->tasks.size(), 1u);
  EXPECT_EQ(table_->GetPool("p", false)->stats.submits_waiting, 0);
  EXPECT_EQ(Wait(retry->tasks[0].id).state, TaskState::kSucceeded);
  EXPECT_EQ(table_->GetPool("p", false)->stats.tasks_submitted, 3);  // once, not twice
  auto again = Submit("p", {CallTask("echo")}, wait);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)[0].id, retry->tasks[0].id);
}

TEST_F(PoolTableTest, CloseAndJoinWaitForEveryTask) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(2), "").ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(SubmitOne("p", CommandTask("sleep 0.02")));
  ASSERT_TRUE(table_->ClosePool("p").ok());
  EXPECT_EQ(Submit("p", {CommandTask("true")}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Join("p"));
  for (const auto& id : ids) EXPECT_EQ(table_->GetTask(id, false)->state, TaskState::kSucceeded);
  EXPECT_EQ(table_->GetPool("p", false)->state, PoolState::kClosed);
  EXPECT_TRUE(table_->DeletePool("p", false).ok());
  EXPECT_EQ(table_->GetTask(ids[0], false).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PoolTableTest, JoinOnAnOpenPoolIsFailedPrecondition) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(1), "").ok());
  absl::Status status;
  table_->JoinPool("p", absl::InfiniteFuture(),
                   [&](absl::StatusOr<PoolView> v, bool) { status = v.status(); });
  EXPECT_EQ(Reason(status), "POOL_OPEN");
}

TEST_F(PoolTableTest, TerminateCancelsQueuedAndKillsRunning) {
  ASSERT_TRUE(table_->CreatePool("p", CommandSpec(1), "").ok());
  std::string running = SubmitOne("p", CommandTask("sleep 60"));
  std::string queued = SubmitOne("p", CommandTask("sleep 60"));
  ASSERT_TRUE(
      Eventually([&] { return table_->GetTask(running, false)->state == TaskState::kRunning; }));
  ASSERT_TRUE(table_->TerminatePool("p", 100).ok());
  EXPECT_TRUE(Join("p"));
  EXPECT_EQ(Wait(running).state, TaskState::kCancelled);
  EXPECT_EQ(Wait(queued).state, TaskState::kCancelled);
  EXPECT_EQ(Wait(queued).result->error_reason, "POOL_TERMINATED");
  EXPECT_EQ(table_->GetPool("p", false)->state, PoolState::kTerminated);
}

TEST_F(PoolTableTest, WorkerPoolAnswersOverTheFraming) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(2, "echo"), "").ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(SubmitOne("p", PayloadTask("payload-" + std::to_string(i))));
  for (int i = 0; i < 20; ++i) {
    TaskView t = Wait(ids[i]);
    ASSERT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
    EXPECT_EQ(t.result->output, "payload-" + std::to_string(i));
  }
}

TEST_F(PoolTableTest, WorkerErrorFrameFailsTheTask) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(1, "fail"), "").ok());
  TaskView t = Wait(SubmitOne("p", PayloadTask("bad input")));
  EXPECT_EQ(t.state, TaskState::kFailed);
  EXPECT_EQ(t.result->error_reason, "WORKER_ERROR");
  EXPECT_THAT(t.result->error, HasSubstr("bad input"));
}

TEST_F(PoolTableTest, WorkerKilledMidTaskIsReplacedAndTheTaskRetried) {
  PoolSpec spec = WorkerPoolSpec(1, "sleep_ms");
  spec.retry.max_attempts = 2;
  spec.retry.initial_backoff_ms = 10;
  ASSERT_TRUE(table_->CreatePool("p", spec, "").ok());
  std::string id = SubmitOne("p", PayloadTask("1500"));
  int32_t pid = 0;
  ASSERT_TRUE(Eventually([&] {
    auto pool = table_->GetPool("p", true);
    for (const auto& w : pool->workers) {
      if (w.state == WorkerState::kBusy && w.task_id == id) pid = w.pid;
    }
    return pid > 0;
  }));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  TaskView t = Wait(id);
  EXPECT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
  EXPECT_EQ(t.result->attempts, 2);
  PoolView pool = *table_->GetPool("p", true);
  EXPECT_EQ(pool.stats.worker_restarts, 1);
  EXPECT_THAT(pool.last_worker_error, HasSubstr("SIGKILL"));
  ASSERT_EQ(pool.workers.size(), 1u);
  EXPECT_NE(pool.workers[0].pid, pid);
}

TEST_F(PoolTableTest, CrashingWorkerFailsItsTaskNotThePool) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(1, "crash"), "").ok());
  TaskView t = Wait(SubmitOne("p", PayloadTask("x")));
  EXPECT_EQ(t.state, TaskState::kFailed);
  EXPECT_EQ(t.result->error_reason, "WORKER_LOST");
  EXPECT_EQ(table_->GetPool("p", false)->state, PoolState::kOpen);
}

TEST_F(PoolTableTest, MaxTasksPerWorkerRecyclesWorkers) {
  PoolSpec spec = WorkerPoolSpec(1, "pid");
  spec.max_tasks_per_worker = 2;
  ASSERT_TRUE(table_->CreatePool("p", spec, "").ok());
  std::vector<std::string> outputs;
  for (int i = 0; i < 6; ++i) {
    TaskView t = Wait(SubmitOne("p", PayloadTask("")));
    ASSERT_EQ(t.state, TaskState::kSucceeded);
    outputs.push_back(t.result->output);
  }
  EXPECT_EQ(std::set<std::string>(outputs.begin(), outputs.end()).size(), 3u);
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_GE(table_->GetPool("p", false)->stats.worker_recycles, 2);
}

TEST_F(PoolTableTest, ShortTasksAreHandedAheadAndNoneIsLostOrRepeated) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(2, "echo"), "").ok());
  std::vector<TaskSpec> specs;
  for (int i = 0; i < 300; ++i) specs.push_back(PayloadTask("item-" + std::to_string(i)));
  Wait(SubmitOne("p", PayloadTask("first")));  // One ended attempt: the pool knows tasks are short.
  auto tasks = Submit("p", std::move(specs));
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  for (int i = 0; i < 300; ++i) {
    TaskView t = Wait((*tasks)[i].id);
    ASSERT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
    EXPECT_EQ(t.result->output, "item-" + std::to_string(i));
    EXPECT_EQ(t.result->attempts, 1);
  }
  PoolView pool = *table_->GetPool("p", false);
  EXPECT_GT(pool.stats.tasks_handed_ahead, 0);
  EXPECT_EQ(pool.stats.tasks_queued, 0);
  EXPECT_EQ(pool.stats.tasks_running, 0);
  EXPECT_EQ(pool.stats.tasks_succeeded, 301);
}

class HandAheadTest : public PoolTableTest {
 protected:
  // A pool of one sleep_ms worker whose recent tasks were short, so the next task submitted
  // behind a running one is handed ahead to the worker.
  void SetUpPool(PoolSpec spec) {
    ASSERT_TRUE(table_->CreatePool("p", std::move(spec), "").ok());
    for (int i = 0; i < 8; ++i) {
      ASSERT_EQ(Wait(SubmitOne("p", PayloadTask("0"))).state, TaskState::kSucceeded);
    }
  }

  // Submits `first` then "0" behind it; returns their ids once the second is handed ahead.
  std::pair<std::string, std::string> RunningAndHandedAhead(TaskSpec first) {
    const int64_t before = table_->GetPool("p", false)->stats.tasks_handed_ahead;
    auto tasks = Submit("p", {std::move(first), PayloadTask("0")});
    EXPECT_TRUE(tasks.ok()) << tasks.status();
    if (!tasks.ok()) return {};
    EXPECT_TRUE(Eventually(
        [&] { return table_->GetPool("p", false)->stats.tasks_handed_ahead == before + 1; }));
    EXPECT_EQ(table_->GetTask((*tasks)[1].id, false)->state, TaskState::kQueued);
    return {(*tasks)[0].id, (*tasks)[1].id};
  }

  int32_t WorkerPid() {
    auto pool = table_->GetPool("p", true);
    return pool.ok() && pool->workers.size() == 1 ? pool->workers[0].pid : 0;
  }
};

TEST_F(HandAheadTest, CancelledWhileHandedAheadItNeverStartsAndItsWorkerIsReplaced) {
  SetUpPool(WorkerPoolSpec(1, "sleep_ms"));
  auto [running, ahead] = RunningAndHandedAhead(PayloadTask("300"));
  const int32_t pid = WorkerPid();
  auto cancelled = table_->CancelTask(ahead, std::nullopt);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state, TaskState::kCancelled);
  EXPECT_EQ(cancelled->result->attempts, 0);
  EXPECT_EQ(Wait(running).state, TaskState::kSucceeded);
  // The worker had the cancelled task's frame: it is stopped and replaced, not counted as a crash.
  EXPECT_EQ(Wait(SubmitOne("p", PayloadTask("0"))).state, TaskState::kSucceeded);
  EXPECT_NE(WorkerPid(), pid);
  PoolView pool = *table_->GetPool("p", false);
  EXPECT_EQ(pool.stats.worker_restarts, 0);
  EXPECT_EQ(pool.stats.tasks_queued, 0);
  EXPECT_EQ(table_->GetTask(ahead, false)->state, TaskState::kCancelled);
}

TEST_F(HandAheadTest, WorkerDyingWithATaskHandedAheadGivesItBackToTheQueue) {
  SetUpPool(WorkerPoolSpec(1, "sleep_ms"));  // No retries: the running task fails.
  auto [running, ahead] = RunningAndHandedAhead(PayloadTask("5000"));
  const int32_t pid = WorkerPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  TaskView lost = Wait(running);
  EXPECT_EQ(lost.state, TaskState::kFailed);
  EXPECT_EQ(lost.result->error_reason, "WORKER_LOST");
  TaskView t = Wait(ahead);
  EXPECT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
  EXPECT_EQ(t.result->attempts, 1);
}

TEST_F(HandAheadTest, TimedOutTaskAheadOfAnotherLeavesItToTheNextWorker) {
  SetUpPool(WorkerPoolSpec(1, "sleep_ms"));
  TaskSpec hung = PayloadTask("60000");
  hung.timeout_ms = 200;
  auto [running, ahead] = RunningAndHandedAhead(std::move(hung));
  EXPECT_EQ(Wait(running).state, TaskState::kTimedOut);
  TaskView t = Wait(ahead);
  EXPECT_EQ(t.state, TaskState::kSucceeded) << t.result->error;
  EXPECT_EQ(t.result->attempts, 1);
}

TEST_F(HandAheadTest, TerminateCancelsATaskHandedAhead) {
  SetUpPool(WorkerPoolSpec(1, "sleep_ms"));
  auto [running, ahead] = RunningAndHandedAhead(PayloadTask("60000"));
  ASSERT_TRUE(table_->TerminatePool("p", 0).ok());
  EXPECT_EQ(Wait(running).state, TaskState::kCancelled);
  TaskView t = Wait(ahead);
  EXPECT_EQ(t.state, TaskState::kCancelled);
  EXPECT_EQ(t.result->error_reason, "POOL_TERMINATED");
  EXPECT_EQ(t.result->attempts, 0);
}

TEST_F(HandAheadTest, LongTasksAreNotHandedAhead) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(1, "sleep_ms"), "").ok());
  ASSERT_EQ(Wait(SubmitOne("p", PayloadTask("60"))).state, TaskState::kSucceeded);
  auto tasks = Submit("p", {PayloadTask("60"), PayloadTask("0")});
  ASSERT_TRUE(tasks.ok());
  for (const auto& t : *tasks) EXPECT_EQ(Wait(t.id).state, TaskState::kSucceeded);
  EXPECT_EQ(table_->GetPool("p", false)->stats.tasks_handed_ahead, 0);
}

TEST_F(PoolTableTest, ResizeUpAndDownUnderLoadLosesNoTask) {
  ASSERT_TRUE(table_->CreatePool("p", WorkerPoolSpec(2, "sleep_ms"), "").ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(SubmitOne("p", PayloadTask("10")));
  ASSERT_TRUE(table_->ResizePool("p", 4).ok());
  ASSERT_TRUE(table_->ResizePool("p", 1).ok());
  for (const auto& id : ids) EXPECT_EQ(Wait(id).state, TaskState::kSucceeded);
  EXPECT_TRUE(Eventually([&] { return table_->GetPool("p", false)->stats.workers == 1; }));
}

TEST_F(PoolTableTest, SessionBoundTaskIsCancelledWhenTheSessionEnds) {
  sessions_.Open("s1");
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(1), "").ok());
  PoolTable::SubmitOptions options;
  options.session_id = "s1";
  auto tasks = Submit("p", {CallTask("sleep", {"60000"})}, options);
  ASSERT_TRUE(tasks.ok());
  sessions_.End("s1");
  TaskView t = Wait((*tasks)[0].id);
  EXPECT_EQ(t.state, TaskState::kCancelled);
  EXPECT_EQ(t.result->error_reason, "SESSION_ENDED");
}

TEST_F(PoolTableTest, SubscriptionSeesEveryEventInOrder) {
  ASSERT_TRUE(table_->CreatePool("p", ThreadSpec(2), "").ok());
  std::atomic<int> notified{0};
  auto sub = table_->Subscribe("p", [&] { notified++; });
  ASSERT_TRUE(sub.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SubmitOne("p", CallTask("echo")));
  for (const auto& id : ids) Wait(id);
  auto read = (*sub)->Read(0, 100);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->events.size(), 15u);
  for (size_t i = 0; i < read->events.size(); ++i) {
    EXPECT_EQ(read->events[i].sequence, static_cast<int64_t>(i + 1));
  }
  int succeeded = 0;
  for (const auto& e : read->events) succeeded += e.type == TaskEventType::kSucceeded;
  EXPECT_EQ(succeeded, 5);
  EXPECT_GT(notified.load(), 0);
}

TEST_F(PoolTableTest, UnknownIdsAreNotFound) {
  EXPECT_EQ(Reason(table_->GetPool("nope", false).status()), "POOL_NOT_FOUND");
  EXPECT_EQ(Reason(table_->GetTask("p9-1", false).status()), "TASK_NOT_FOUND");
  EXPECT_EQ(Reason(table_->GetTask("garbage", false).status()), "TASK_NOT_FOUND");
  EXPECT_EQ(table_->GetTask("", false).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spindle::pool
