#include "spindle/process/process_table.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/process/process_tree.h"
#include "tests/fakes/manual_timer_service.h"

namespace spindle::process {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

class ProcessTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto executor = coro::Executor::Create({.threads = 2, .name = "ptest"});
    ASSERT_TRUE(executor.ok());
    executor_ = std::move(*executor);
    MakeTable(ProcessTableOptions{});
  }
  void TearDown() override {
    table_.reset();
    executor_->Shutdown();
  }
  void MakeTable(ProcessTableOptions options) {
    table_.reset();
    table_ = std::make_unique<ProcessTable>(std::move(options), MakeLinuxSpawner(), *executor_,
                                            timers_, nullptr, nullptr);
  }

  static ProcessSpec Cmd(std::vector<std::string> argv) {
    ProcessSpec spec;
    spec.command.argv = std::move(argv);
    return spec;
  }

  // Waits until the process is final and returns it.
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

  // Polls until `state` (bounded), advancing nothing.
  bool WaitState(const std::string& id, ProcessState state) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      auto v = table_->Get(id);
      if (v.ok() && v->status.state == state) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  std::string ReadAll(const std::string& id, OutputStream stream) {
    std::string out;
    int64_t offset = 0;
    while (true) {
      auto chunk = table_->ReadOutput(id, stream, offset, 1 << 20);
      if (!chunk.ok() || !chunk->has_value()) break;
      if ((*chunk)->is_gap()) {
        offset += (*chunk)->dropped_bytes;
        continue;
      }
      out += (*chunk)->data;
      offset += static_cast<int64_t>((*chunk)->data.size());
    }
    return out;
  }

  testing::ManualTimerService timers_;
  std::unique_ptr<coro::Executor> executor_;
  std::unique_ptr<ProcessTable> table_;
};

TEST_F(ProcessTableTest, SpawnCollectsOutputAndExitCode) {
  auto p = table_->Spawn(Cmd({"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->id.empty());
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.state, ProcessState::kExited);
  ASSERT_TRUE(v.status.exit.has_value());
  EXPECT_EQ(v.status.exit->reason, ExitReason::kExited);
  EXPECT_EQ(v.status.exit->exit_code, 3);
  EXPECT_EQ(v.status.exit->message, "exited with code 3");
  EXPECT_EQ(v.status.stdout_bytes, 6);
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStdout), "hello\n");
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStderr), "oops\n");
  EXPECT_EQ(v.status.pid, 0);
}

TEST_F(ProcessTableTest, LiveProcessReportsItsUsageFromProc) {
  // Burns some CPU, then waits; exec keeps the process (and its counters).
  auto p = table_->Spawn(Cmd({"/bin/sh", "-c",
                              "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; "
                              "echo busy-done; exec sleep 100"}));
  ASSERT_TRUE(p.ok()) << p.status();
  absl::Time deadline = absl::Now() + kWait;
  while (ReadAll(p->id, OutputStream::kStdout).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto live = table_->Get(p->id);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->status.state, ProcessState::kRunning);
  EXPECT_GT(live->status.usage.user_cpu_ms + live->status.usage.system_cpu_ms, 0);
  EXPECT_GT(live->status.usage.max_rss_bytes, 0);
  EXPECT_GT(live->status.usage.minor_faults, 0);
  auto listed = table_->List({}, 0, "");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->processes.size(), 1u);
  EXPECT_GE(listed->processes[0].status.usage.user_cpu_ms, live->status.usage.user_cpu_ms);

  auto gone = std::make_shared<absl::Notification>();
  ASSERT_TRUE(table_
                  ->Terminate(p->id, SIGKILL, absl::ZeroDuration(), ExitReason::kTerminated,
                              [gone](ProcessView) { gone->Notify(); })
                  .ok());
  ASSERT_TRUE(gone->WaitForNotificationWithTimeout(kWait));
  // The final usage (wait4) covers at least what was read live.
  ProcessView final_view = *table_->Get(p->id);
  EXPECT_GE(final_view.status.usage.user_cpu_ms + final_view.status.usage.system_cpu_ms,
            live->status.usage.user_cpu_ms + live->status.usage.system_cpu_ms);
}

TEST_F(ProcessTableTest, ExecFailureIsAnErrorAndKeepsNoRecord) {
  auto p = table_->Spawn(Cmd({"/nonexistent/binary"}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(p.status()), "EXEC_FAILED");
  EXPECT_EQ(table_->Stats().total, 0);
}

TEST_F(ProcessTableTest, InvalidSpecsNameTheField) {
  ProcessSpec negative = Cmd({"/bin/true"});
  negative.limits.open_files = -1;
  auto p = table_->Spawn(negative);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("spec.limits.open_files: -1"), absl::string_view::npos);

  ProcessSpec empty;
  EXPECT_EQ(table_->Spawn(empty).status().code(), absl::StatusCode::kInvalidArgument);
  ProcessSpec merge = Cmd({"/bin/true"});
  merge.stdout_mode = OutputMode::kMerge;
  EXPECT_EQ(table_->Spawn(merge).status().code(), absl::StatusCode::kInvalidArgument);
  ProcessSpec signal = Cmd({"/bin/true"});
  signal.stop_signal.name = "SIGBOGUS";
  EXPECT_EQ(Reason(table_->Spawn(signal).status()), "INVALID_SIGNAL");
  ProcessSpec session = Cmd({"/bin/true"});
  session.session_id = "s1";
  EXPECT_EQ(Reason(table_->Spawn(session).status()), "SESSIONS_UNAVAILABLE");
}

TEST_F(ProcessTableTest, UnknownIdIsNotFound) {
  EXPECT_EQ(table_->Get("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Reason(table_->Signal("nope", SIGTERM, SignalTarget::kProcess).status()),
            "PROCESS_NOT_FOUND");
}

TEST_F(ProcessTableTest, TimeoutKillsTheProcess) {
  ProcessSpec spec = Cmd({"/bin/sleep", "100"});
  spec.timeout_ms = 500;
  spec.kill_grace_ms = 1000;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok()) << p.status();
  timers_.Advance(absl::Milliseconds(500));
  ProcessView v = WaitFinal(p->id);
  ASSERT_TRUE(v.status.exit.has_value());
  EXPECT_EQ(v.status.exit->reason, ExitReason::kTimedOut);
  EXPECT_EQ(v.status.exit->signal_number, SIGTERM);
}

TEST_F(ProcessTableTest, TerminateKillsWholeTreeAfterGrace) {
  // The shell ignores TERM and starts a grandchild in another process group that ignores it too.
  // The grandchild says so once its trap is set: a TERM before that would end it (and then the
  // shell's wait) before the grace is over.
  auto p =
      table_->Spawn(Cmd({"/bin/sh", "-c",
                         "trap '' TERM; setsid sh -c 'trap \"\" TERM; echo ready; sleep 100' & "
                         "wait"}));
  ASSERT_TRUE(p.ok()) << p.status();
  // Wait until the grandchild ignores TERM.
  absl::Time deadline = absl::Now() + kWait;
  while (ReadAll(p->id, OutputStream::kStdout).find("ready") == std::string::npos &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::vector<pid_t> before;
  for (int i = 0; i < 2000 && before.size() < 2; ++i) {
    before = {};
    for (pid_t c : ChildrenOf(p->status.pid)) before.push_back(c);
    for (size_t j = 0; j < before.size(); ++j) {
      for (pid_t g : ChildrenOf(before[j])) before.push_back(g);
    }
    if (before.size() < 2) absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(before.size(), 2u);
  auto gone = std::make_shared<absl::Notification>();
  auto t = table_->Terminate(p->id, 0, absl::Seconds(1), ExitReason::kTerminated,
                             [gone](ProcessView) { gone->Notify(); });
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->status.state, ProcessState::kStopping);
  timers_.Advance(absl::Seconds(1));  // Grace over: SIGKILL.
  ASSERT_TRUE(gone->WaitForNotificationWithTimeout(kWait));
  ProcessView v = *table_->Get(p->id);
  EXPECT_EQ(v.status.exit->reason, ExitReason::kTerminated);
  EXPECT_EQ(v.status.exit->signal_number, SIGKILL);
  // Every member got SIGKILL: each dies (zombies of the test wait for init: state 'Z').
  auto state_of = [](pid_t pid) {
    std::string stat_path = "/proc/" + std::to_string(pid) + "/stat";
    FILE* f = std::fopen(stat_path.c_str(), "r");
    if (f == nullptr) return 'X';
    char state = 'X';
    int ignored_pid = 0;
    char comm[256];
    if (std::fscanf(f, "%d %255s %c", &ignored_pid, comm, &state) != 3) state = 'X';
    std::fclose(f);
    return state;
  };
  for (pid_t pid : before) {
    absl::Time until = absl::Now() + absl::Seconds(5);
    while (state_of(pid) != 'Z' && state_of(pid) != 'X' && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    char state = state_of(pid);
    EXPECT_TRUE(state == 'Z' || state == 'X') << "pid " << pid << " state " << state;
  }
}

TEST_F(ProcessTableTest, StdinRoundTripsThroughCat) {
  ProcessSpec spec = Cmd({"/bin/cat"});
  spec.stdin_mode = StdinMode::kPipe;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok());
  auto lease = table_->AcquireStdin(p->id);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(Reason(table_->AcquireStdin(p->id).status()), "STDIN_BUSY");
  std::string big(300000, 'z');  // More than a pipe holds: exercises the async writer.
  auto written = std::make_shared<absl::Notification>();
  auto result = std::make_shared<absl::StatusOr<int64_t>>(0);
  table_->WriteStdin(p->id, *lease, "abc" + big, std::nullopt, true,
                     [written, result](absl::StatusOr<int64_t> r) {
                       *result = r;
                       written->Notify();
                     });
  ASSERT_TRUE(written->WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(result->ok()) << result->status();
  EXPECT_EQ(**result, 300003);
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.exit->exit_code, 0);
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStdout), "abc" + big);
  EXPECT_EQ(v.status.stdin_bytes, 300003);
}

TEST_F(ProcessTableTest, StdinDataIsFedAndClosed) {
  ProcessSpec spec = Cmd({"/bin/cat"});
  spec.stdin_mode = StdinMode::kData;
  spec.stdin_data = "given up front";
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok());
  WaitFinal(p->id);
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStdout), "given up front");
}

TEST_F(ProcessTableTest, BigOutputKeepsOnlyTheRing) {
  ProcessSpec spec = Cmd({"/bin/sh", "-c", "head -c 20000000 /dev/zero"});
  spec.output_buffer_bytes = 65536;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok());
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.stdout_bytes, 20000000);
  EXPECT_EQ(v.status.stdout_dropped_bytes, 20000000 - 65536);
  auto gap = table_->ReadOutput(p->id, OutputStream::kStdout, 0, 100);
  ASSERT_TRUE(gap.ok() && gap->has_value());
  EXPECT_EQ((*gap)->dropped_bytes, 20000000 - 65536);
}

TEST_F(ProcessTableTest, WaitChangeFiresOnNewOutput) {
  ProcessSpec spec = Cmd({"/bin/cat"});
  spec.stdin_mode = StdinMode::kPipe;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok());
  auto changed = std::make_shared<absl::Notification>();
  auto w = table_->WaitChange(p->id, 0, -1, [changed]() { changed->Notify(); });
  ASSERT_TRUE(w.ok());
  EXPECT_NE(*w, 0u);
  EXPECT_FALSE(changed->HasBeenNotified());
  auto lease = table_->AcquireStdin(p->id);
  ASSERT_TRUE(lease.ok());
  table_->WriteStdin(p->id, *lease, "x\n", std::nullopt, false, [](absl::StatusOr<int64_t>) {});
  ASSERT_TRUE(changed->WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStdout), "x\n");
  ASSERT_TRUE(table_->CloseStdin(p->id, *lease).ok());
  WaitFinal(p->id);
}

TEST_F(ProcessTableTest, CancelledWaitIsNeverCalled) {
  auto p = table_->Spawn(Cmd({"/bin/sleep", "100"}));
  ASSERT_TRUE(p.ok());
  bool called = false;
  auto w = table_->Wait(p->id, WaitCondition::kFinal, [&called](ProcessView) { called = true; });
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(table_->CancelWait(p->id, *w));
  EXPECT_FALSE(table_->CancelWait(p->id, *w));
  EXPECT_EQ(table_->Get(p->id)->status.state, ProcessState::kRunning);
  ASSERT_TRUE(table_->Terminate(p->id, 0, absl::ZeroDuration(), ExitReason::kTerminated).ok());
  WaitFinal(p->id);
  EXPECT_FALSE(called);
}

TEST_F(ProcessTableTest, SignalByNameAndTargets) {
  auto p = table_->Spawn(Cmd({"/bin/sleep", "100"}));
  ASSERT_TRUE(p.ok());
  auto delivered = table_->Signal(p->id, SIGUSR1, SignalTarget::kProcess);
  ASSERT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(*delivered, 1);
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.exit->reason, ExitReason::kSignaled);
  EXPECT_EQ(v.status.exit->signal_number, SIGUSR1);
  EXPECT_EQ(Reason(table_->Signal(p->id, SIGTERM, SignalTarget::kProcess).status()),
            "PROCESS_EXITED");
}

TEST_F(ProcessTableTest, RestartPolicyBacksOffThenGoesFatal) {
  ProcessSpec spec = Cmd({"/bin/sh", "-c", "exit 1"});
  spec.restart.mode = RestartMode::kOnFailure;
  spec.restart.initial_backoff_ms = 100;
  spec.restart.jitter = 0.0;
  spec.restart.max_start_failures = 2;
  spec.restart.min_uptime_ms = 1000;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitState(p->id, ProcessState::kBackoff));
  ProcessView v = *table_->Get(p->id);
  EXPECT_EQ(v.status.start_failures, 1);
  EXPECT_EQ(v.status.next_restart_at - timers_.Now(), absl::Milliseconds(100));
  timers_.Advance(absl::Milliseconds(100));
  ASSERT_TRUE(WaitState(p->id, ProcessState::kBackoff));
  // Wait until the second failed run was counted (state goes BACKOFF again after STARTING).
  absl::Time deadline = absl::Now() + kWait;
  while (table_->Get(p->id)->status.restart_count < 1 ||
         table_->Get(p->id)->status.state != ProcessState::kBackoff) {
    ASSERT_LT(absl::Now(), deadline);
    absl::SleepFor(absl::Milliseconds(5));
  }
  v = *table_->Get(p->id);
  EXPECT_EQ(v.status.start_failures, 2);
  EXPECT_EQ(v.status.next_restart_at - timers_.Now(), absl::Milliseconds(200));  // Doubled.
  timers_.Advance(absl::Milliseconds(200));
  v = WaitFinal(p->id);
  EXPECT_EQ(v.status.state, ProcessState::kFatal);
  EXPECT_EQ(v.status.restart_count, 2);
  EXPECT_NE(v.status.last_failure.find("exited too quickly 3 times"), std::string::npos)
      << v.status.last_failure;
}

TEST_F(ProcessTableTest, RestartAlwaysStopsAtMaxRestarts) {
  ProcessSpec spec = Cmd({"/bin/true"});
  spec.restart.mode = RestartMode::kAlways;
  spec.restart.initial_backoff_ms = 10;
  spec.restart.jitter = 0.0;
  spec.restart.min_uptime_ms = 0;
  spec.restart.max_restarts = 3;
  auto p = table_->Spawn(spec);
  ASSERT_TRUE(p.ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WaitState(p->id, ProcessState::kBackoff));
    timers_.Advance(absl::Milliseconds(10));
    absl::Time deadline = absl::Now() + kWait;
    while (table_->Get(p->id)->status.restart_count < i + 1) {
      ASSERT_LT(absl::Now(), deadline);
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.state, ProcessState::kExited);
  EXPECT_EQ(v.status.restart_count, 3);
}

TEST_F(ProcessTableTest, ManualRestartKeepsIdAndOffsets) {
  auto p = table_->Spawn(Cmd({"/bin/echo", "run"}));
  ASSERT_TRUE(p.ok());
  WaitFinal(p->id);
  auto done = std::make_shared<absl::Notification>();
  auto result = std::make_shared<absl::StatusOr<ProcessView>>();
  table_->Restart(p->id, std::nullopt, [done, result](absl::StatusOr<ProcessView> r) {
    *result = std::move(r);
    done->Notify();
  });
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(result->ok()) << result->status();
  EXPECT_EQ((*result)->status.restart_count, 1);
  ProcessView v = WaitFinal(p->id);
  EXPECT_EQ(v.status.stdout_bytes, 8);
  EXPECT_EQ(ReadAll(p->id, OutputStream::kStdout), "run\nrun\n");
}

TEST_F(ProcessTableTest, MaxProcessesCountsLiveOnesAndEvictsFinishedOnes) {
  ProcessTableOptions options;
  options.max_processes = 2;
  MakeTable(options);
  auto a = table_->Spawn(Cmd({"/bin/sleep", "100"}));
  auto b = table_->Spawn(Cmd({"/bin/true"}));
  ASSERT_TRUE(a.ok() && b.ok());
  WaitFinal(b->id);
  auto c = table_->Spawn(Cmd({"/bin/sleep", "100"}));  // Evicts b.
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(table_->Get(b->id).status().code(), absl::StatusCode::kNotFound);
  auto d = table_->Spawn(Cmd({"/bin/true"}));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(Reason(d.status()), "TOO_MANY_PROCESSES");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(ProcessTableTest, DeleteNeedsForceForLiveProcesses) {
  auto p = table_->Spawn(Cmd({"/bin/sleep", "100"}));
  ASSERT_TRUE(p.ok());
  absl::Status status;
  table_->Delete(p->id, false, [&status](absl::Status s) { status = s; });
  EXPECT_EQ(Reason(status), "PROCESS_RUNNING");
  auto done = std::make_shared<absl::Notification>();
  ASSERT_TRUE(table_->Terminate(p->id, 0, absl::ZeroDuration(), ExitReason::kTerminated).ok());
  table_->Delete(p->id, true, [done](absl::Status) { done->Notify(); });
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(table_->Get(p->id).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessTableTest, ListFiltersAndPages) {
  for (int i = 0; i < 5; ++i) {
    ProcessSpec spec = Cmd({"/bin/true"});
    spec.name = i % 2 == 0 ? "even/" + std::to_string(i) : "odd/" + std::to_string(i);
    spec.labels["parity"] = i % 2 == 0 ? "even" : "odd";
    ASSERT_TRUE(table_->Spawn(spec).ok());
  }
  ProcessFilter filter;
  filter.label_selector = "parity=even";
  auto page = table_->List(filter, 2, "");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->processes.size(), 2u);
  EXPECT_EQ(page->processes[0].spec.name, "even/0");
  ASSERT_FALSE(page->next_page_token.empty());
  auto next = table_->List(filter, 2, page->next_page_token);
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->processes.size(), 1u);
  EXPECT_EQ(next->processes[0].spec.name, "even/4");
  EXPECT_TRUE(next->next_page_token.empty());
  ProcessFilter prefix;
  prefix.name_prefix = "odd/";
  EXPECT_EQ(table_->List(prefix, 0, "")->processes.size(), 2u);
  ProcessFilter bad;
  bad.label_selector = "Bad Key";
  EXPECT_EQ(table_->List(bad, 0, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_->List({}, 0, "garbage").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ProcessTableTest, WatchSeesSpawnAndStateChangesInOrder) {
  absl::Mutex mu;
  std::vector<std::pair<EventType, ProcessState>> events;
  uint64_t watch = table_->Watch({}, [&](const ProcessEvent& e) {
    absl::MutexLock lock(&mu);
    events.emplace_back(e.type, e.process.status.state);
  });
  auto p = table_->Spawn(Cmd({"/bin/true"}));
  ASSERT_TRUE(p.ok());
  WaitFinal(p->id);
  table_->Unwatch(watch);
  absl::MutexLock lock(&mu);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].first, EventType::kSpawned);
  EXPECT_EQ(events.back().second, ProcessState::kExited);
}

TEST_F(ProcessTableTest, RequestIdReturnsTheOriginal) {
  auto a = table_->Spawn(Cmd({"/bin/true"}), "req-1");
  auto b = table_->Spawn(Cmd({"/bin/true"}), "req-1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id, b->id);
}

TEST_F(ProcessTableTest, UniqueNameRefusesADuplicateLiveName) {
  ProcessSpec spec = Cmd({"/bin/sleep", "100"});
  spec.name = "web";
  spec.unique_name = true;
  auto a = table_->Spawn(spec);
  ASSERT_TRUE(a.ok());
  auto b = table_->Spawn(spec);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Reason(b.status()), "NAME_IN_USE");
}

}  // namespace
}  // namespace spindle::process
