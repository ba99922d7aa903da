// TriggerTable with a manual clock and a fake action runner: schedules (delay, at, interval,
// cron), jitter, overlap policies, bounds, pause/resume/fire, deletion, history, watches,
// idempotency, sessions and validation.
#include "spindle/trigger/trigger_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "spindle/common/status.h"
#include "tests/fakes/manual_timer_service.h"

namespace spindle::trigger {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records starts; the test ends runs by hand with Finish().
class FakeRunner final : public ActionRunner {
 public:
  absl::StatusOr<Started> Start(const std::string& trigger, int64_t number, const Action& action,
                                Done done) override {
    absl::MutexLock lock(&mu_);
    if (!fail_next_.ok()) {
      absl::Status error = fail_next_;
      fail_next_ = absl::OkStatus();
      return error;
    }
    const std::string id = absl::StrCat(trigger, "#", number);
    if (finish_inline_) {
      std::move(done)(RunOutcome{RunState::kSucceeded, "", "inline"});
    } else {
      pending_.emplace(id, std::move(done));
    }
    started_.push_back(id);
    return Started{id, ""};
  }

  void Stop(const Action& action, const Started& started) override {
    absl::MutexLock lock(&mu_);
    stopped_.push_back(started.process_id);
  }

  // Ends run `id` ("name#number") with `state`.
  void Finish(const std::string& id, RunState state, std::string error = "") {
    Done done;
    {
      absl::MutexLock lock(&mu_);
      auto it = pending_.find(id);
      ASSERT_NE(it, pending_.end()) << id;
      done = std::move(it->second);
      pending_.erase(it);
    }
    std::move(done)(RunOutcome{state, std::move(error), "detail"});
  }

  std::vector<std::string> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  std::vector<std::string> stopped() {
    absl::MutexLock lock(&mu_);
    return stopped_;
  }
  void FailNext(absl::Status error) {
    absl::MutexLock lock(&mu_);
    fail_next_ = std::move(error);
  }
  void FinishInline(bool inline_finish) {
    absl::MutexLock lock(&mu_);
    finish_inline_ = inline_finish;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Done> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> stopped_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
  bool finish_inline_ ABSL_GUARDED_BY(mu_) = false;
};

class FakeSessions final : public SessionHooks {
 public:
  absl::Status CheckAlive(absl::string_view session_id) const override {
    return session_id == "s1" ? absl::OkStatus() : NotFound("SESSION_NOT_FOUND", "no such session");
  }
  absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                               absl::AnyInvocable<void() &&> on_end) override {
    SPINDLE_RETURN_IF_ERROR(CheckAlive(session_id));
    hooks_.emplace(++next_, std::move(on_end));
    return next_;
  }
  void RemoveHook(absl::string_view session_id, HookId hook) override { hooks_.erase(hook); }
  void End() {
    auto hooks = std::move(hooks_);
    hooks_.clear();
    for (auto& [id, hook] : hooks) std::move(hook)();
  }
  size_t hooks() const { return hooks_.size(); }

 private:
  std::map<HookId, absl::AnyInvocable<void() &&>> hooks_;
  HookId next_ = 0;
};

class CountingObserver final : public TriggerObserver {
 public:
  void OnRunFinal(RunState state) override { ++finals[state]; }
  std::map<RunState, int> finals;
};

class TriggerTableTest : public ::testing::Test {
 protected:
  TriggerTableTest() : table_(Options(), timers_, runner_, &sessions_, &observer_) {}

  TriggerTableOptions Options() {
    TriggerTableOptions options;
    options.jitter = [this](int64_t max_ms) { return std::min(max_ms, jitter_ms_); };
    options.max_triggers = 20;
    return options;
  }

  static TriggerSpec Spec(Schedule schedule) {
    TriggerSpec spec;
    spec.schedule = std::move(schedule);
    spec.action = {Action::Kind::kSpawn, "spawn /bin/true"};
    return spec;
  }
  static Schedule Delay(int64_t ms) { return {.kind = Schedule::Kind::kDelay, .delay_ms = ms}; }
  static Schedule Every(int64_t ms) {
    return {.kind = Schedule::Kind::kInterval, .interval_ms = ms};
  }

  TriggerView MustCreate(const std::string& name, TriggerSpec spec) {
    auto created = table_.Create(name, std::move(spec));
    EXPECT_TRUE(created.ok()) << created.status();
    EXPECT_TRUE(created.ok() && created->created);
    return created.ok() ? created->trigger : TriggerView{};
  }
  TriggerView MustGet(const std::string& name) {
    auto view = table_.Get(name);
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? *view : TriggerView{};
  }
  std::vector<RunState> RunStates(const std::string& name) {
    auto page = table_.ListRuns(name, {}, 0, "");
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<RunState> states;
    if (page.ok()) {
      for (auto it = page->runs.rbegin(); it != page->runs.rend(); ++it) {
        states.push_back(it->state);  // Oldest first.
      }
    }
    return states;
  }

  testing::ManualTimerService timers_;
  FakeRunner runner_;
  FakeSessions sessions_;
  CountingObserver observer_;
  int64_t jitter_ms_ = 0;
  TriggerTable table_;
};

TEST_F(TriggerTableTest, DelayTriggerFiresOnceThenCompletes) {
  const absl::Time start = timers_.Now();
  TriggerView view = MustCreate("once", Spec(Delay(5000)));
  EXPECT_EQ(view.state, TriggerState::kActive);
  EXPECT_EQ(view.next_run_at, start + absl::Seconds(5));
  timers_.Advance(absl::Milliseconds(4999));
  EXPECT_TRUE(runner_.started().empty());
  timers_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(runner_.started(), ElementsAre("once#1"));
  view = MustGet("once");
  EXPECT_EQ(view.state, TriggerState::kCompleted);
  EXPECT_EQ(view.next_run_at, absl::InfinitePast());
  EXPECT_EQ(view.run_count, 1);
  EXPECT_EQ(view.running, 1);
  ASSERT_TRUE(view.last_run.has_value());
  EXPECT_EQ(view.last_run->state, RunState::kRunning);
  EXPECT_EQ(view.last_run->process_id, "once#1");
  EXPECT_EQ(view.last_run->scheduled_at, start + absl::Seconds(5));

  runner_.Finish("once#1", RunState::kSucceeded);
  view = MustGet("once");
  EXPECT_EQ(view.running, 0);
  EXPECT_EQ(view.last_run->state, RunState::kSucceeded);
  EXPECT_EQ(view.last_run->detail, "detail");
  EXPECT_EQ(observer_.finals[RunState::kSucceeded], 1);
  timers_.Advance(absl::Hours(1));
  EXPECT_EQ(runner_.started().size(), 1u);
}

TEST_F(TriggerTableTest, AtInThePastFiresAtOnce) {
  Schedule at{.kind = Schedule::Kind::kAt, .at = timers_.Now() - absl::Hours(1)};
  MustCreate("late", Spec(at));
  timers_.RunDue();
  EXPECT_THAT(runner_.started(), ElementsAre("late#1"));
}

TEST_F(TriggerTableTest, IntervalKeepsToItsGrid) {
  const absl::Time start = timers_.Now();
  MustCreate("tick", Spec(Every(10'000)));
  EXPECT_EQ(MustGet("tick").next_run_at, start + absl::Seconds(10));
  timers_.Advance(absl::Seconds(10));
  runner_.Finish("tick#1", RunState::kSucceeded);
  timers_.Advance(absl::Seconds(10));
  runner_.Finish("tick#2", RunState::kFailed, "exit 1");
  EXPECT_EQ(MustGet("tick").next_run_at, start + absl::Seconds(30));
  EXPECT_EQ(MustGet("tick").failed_count, 1);
  EXPECT_THAT(RunStates("tick"), ElementsAre(RunState::kSucceeded, RunState::kFailed));
}

TEST_F(TriggerTableTest, IntervalStartsAtStartTime) {
  TriggerSpec spec = Spec(Every(60'000));
  spec.start_time = timers_.Now() + absl::Seconds(5);
  MustCreate("later", spec);
  EXPECT_EQ(MustGet("later").next_run_at, spec.start_time);
}

TEST_F(TriggerTableTest, CronTriggerFiresAtCronTimes) {
  // The manual clock starts at 2023-11-14 22:13:20 UTC.
  TriggerSpec spec = Spec({.kind = Schedule::Kind::kCron, .cron_expression = "*/5 * * * *"});
  TriggerView view = MustCreate("cron", spec);
  const absl::Time first =
      absl::FromCivil(absl::CivilMinute(2023, 11, 14, 22, 15), absl::UTCTimeZone());
  EXPECT_EQ(view.next_run_at, first);
  EXPECT_EQ(view.spec.schedule.cron_timezone, "UTC");
  timers_.Advance(first - timers_.Now());
  EXPECT_THAT(runner_.started(), ElementsAre("cron#1"));
  EXPECT_EQ(MustGet("cron").next_run_at, first + absl::Minutes(5));
}

TEST_F(TriggerTableTest, JitterDelaysTheFireButNotItsScheduledTime) {
  jitter_ms_ = 3000;
  const absl::Time start = timers_.Now();
  TriggerSpec spec = Spec(Every(10'000));
  spec.jitter_ms = 5000;
  MustCreate("jittery", spec);
  timers_.Advance(absl::Seconds(12));
  EXPECT_TRUE(runner_.started().empty());
  timers_.Advance(absl::Seconds(1));
  ASSERT_THAT(runner_.started(), ElementsAre("jittery#1"));
  TriggerView view = MustGet("jittery");
  EXPECT_EQ(view.last_run->scheduled_at, start + absl::Seconds(10));
  EXPECT_EQ(view.last_run->started_at, start + absl::Seconds(13));
  EXPECT_EQ(view.next_run_at, start + absl::Seconds(20));
}

TEST_F(TriggerTableTest, OverlapSkipRecordsASkippedRun) {
  MustCreate("skip", Spec(Every(1000)));
  timers_.Advance(absl::Seconds(2));
  EXPECT_THAT(runner_.started(), ElementsAre("skip#1"));
  EXPECT_THAT(RunStates("skip"), ElementsAre(RunState::kRunning, RunState::kSkipped));
  auto runs = table_.ListRuns("skip", {RunState::kSkipped}, 0, "");
  ASSERT_TRUE(runs.ok());
  EXPECT_EQ(runs->runs[0].error, "previous run 1 still running");
  TriggerView view = MustGet("skip");
  EXPECT_EQ(view.skipped_count, 1);
  EXPECT_EQ(view.run_count, 1);  // Skipped runs do not count.
  EXPECT_EQ(observer_.finals[RunState::kSkipped], 1);
}

TEST_F(TriggerTableTest, OverlapQueueStartsTheQueuedRunWhenTheRunningOneEnds) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kQueue;
  MustCreate("queue", spec);
  timers_.Advance(absl::Seconds(3));
  EXPECT_THAT(RunStates("queue"),
              ElementsAre(RunState::kRunning, RunState::kQueued, RunState::kSkipped));
  runner_.Finish("queue#1", RunState::kSucceeded);
  EXPECT_THAT(runner_.started(), ElementsAre("queue#1", "queue#2"));
  EXPECT_THAT(RunStates("queue"),
              ElementsAre(RunState::kSucceeded, RunState::kRunning, RunState::kSkipped));
}

TEST_F(TriggerTableTest, OverlapAllowRunsSideBySide) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kAllow;
  MustCreate("allow", spec);
  timers_.Advance(absl::Seconds(2));
  EXPECT_THAT(runner_.started(), ElementsAre("allow#1", "allow#2"));
  EXPECT_EQ(MustGet("allow").running, 2);
}

TEST_F(TriggerTableTest, OverlapReplaceStopsTheRunningOne) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kReplace;
  MustCreate("replace", spec);
  timers_.Advance(absl::Seconds(2));
  EXPECT_THAT(runner_.stopped(), ElementsAre("replace#1"));
  runner_.Finish("replace#1", RunState::kFailed, "killed by SIGTERM");
  EXPECT_THAT(RunStates("replace"), ElementsAre(RunState::kCancelled, RunState::kRunning));
  EXPECT_EQ(MustGet("replace").failed_count, 0);
}

TEST_F(TriggerTableTest, MaxRunsCompletesTheTrigger) {
  TriggerSpec spec = Spec(Every(1000));
  spec.max_runs = 2;
  spec.overlap = OverlapPolicy::kAllow;
  MustCreate("two", spec);
  timers_.Advance(absl::Seconds(5));
  EXPECT_EQ(runner_.started().size(), 2u);
  EXPECT_EQ(MustGet("two").state, TriggerState::kCompleted);
}

TEST_F(TriggerTableTest, EndTimeCompletesTheTrigger) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kAllow;
  spec.end_time = timers_.Now() + absl::Milliseconds(2500);
  MustCreate("ends", spec);
  timers_.Advance(absl::Seconds(5));
  EXPECT_EQ(runner_.started().size(), 2u);
  EXPECT_EQ(MustGet("ends").state, TriggerState::kCompleted);
}

TEST_F(TriggerTableTest, PausedTimeIsNotCaughtUp) {
  const absl::Time start = timers_.Now();
  TriggerSpec spec = Spec(Every(10'000));
  spec.overlap = OverlapPolicy::kAllow;
  MustCreate("pausable", spec);
  auto paused = table_.Pause("pausable");
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(paused->state, TriggerState::kPaused);
  EXPECT_EQ(paused->next_run_at, absl::InfinitePast());
  EXPECT_TRUE(table_.Pause("pausable").ok());  // Idempotent.
  timers_.Advance(absl::Seconds(35));
  EXPECT_TRUE(runner_.started().empty());
  auto resumed = table_.Resume("pausable");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->state, TriggerState::kActive);
  EXPECT_EQ(resumed->next_run_at, start + absl::Seconds(40));
  timers_.Advance(absl::Seconds(5));
  EXPECT_EQ(runner_.started().size(), 1u);
}

TEST_F(TriggerTableTest, CreatedPausedDoesNotFireUntilResumed) {
  TriggerSpec spec = Spec(Delay(1000));
  spec.paused = true;
  EXPECT_EQ(MustCreate("held", spec).state, TriggerState::kPaused);
  timers_.Advance(absl::Seconds(10));
  EXPECT_TRUE(runner_.started().empty());
  ASSERT_TRUE(table_.Resume("held").ok());
  timers_.RunDue();  // The one-shot's time passed: it fires at once.
  EXPECT_THAT(runner_.started(), ElementsAre("held#1"));
  EXPECT_EQ(table_.Pause("held").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(table_.Resume("held").status()), "TRIGGER_COMPLETED");
}

TEST_F(TriggerTableTest, FireStartsAManualRunThatDoesNotCount) {
  TriggerSpec spec = Spec(Every(60'000));
  spec.paused = true;
  MustCreate("manual", spec);
  auto run = table_.Fire("manual", "req-1");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->state, RunState::kRunning);
  EXPECT_TRUE(run->manual);
  EXPECT_EQ(run->process_id, "manual#1");
  auto again = table_.Fire("manual", "req-1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->number, 1);  // Same request id: same run.
  EXPECT_EQ(runner_.started().size(), 1u);
  EXPECT_EQ(MustGet("manual").run_count, 0);
  auto skipped = table_.Fire("manual");
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(skipped->state, RunState::kSkipped);
  EXPECT_EQ(table_.Fire("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TriggerTableTest, ActionThatCannotStartFailsTheRun) {
  runner_.FailNext(FailedPrecondition("EXEC_FAILED", "exec failed: No such file or directory"));
  MustCreate("broken", Spec(Delay(1)));
  timers_.Advance(absl::Seconds(1));
  TriggerView view = MustGet("broken");
  EXPECT_EQ(view.last_run->state, RunState::kFailed);
  EXPECT_EQ(view.last_run->error, "exec failed: No such file or directory");
  EXPECT_EQ(view.failed_count, 1);
  EXPECT_EQ(view.running, 0);
}

TEST_F(TriggerTableTest, RunEndingBeforeItsStartIsRecordedIsReportedInOrder) {
  runner_.FinishInline(true);
  std::vector<RunState> seen;
  table_.Watch("", "", false, [&](const RunEvent& event) { seen.push_back(event.run.state); });
  MustCreate("fast", Spec(Delay(1)));
  timers_.Advance(absl::Seconds(1));
  EXPECT_THAT(seen, ElementsAre(RunState::kRunning, RunState::kSucceeded));
  EXPECT_EQ(MustGet("fast").running, 0);
}

TEST_F(TriggerTableTest, WatchFiltersByNameSelectorAndFinality) {
  TriggerSpec a = Spec(Every(1000));
  a.labels = {{"team", "etl"}};
  MustCreate("a", a);
  MustCreate("b", Spec(Every(1000)));
  std::vector<std::string> by_name, by_label, finals;
  ASSERT_TRUE(table_.CheckWatch("a", "").ok());
  EXPECT_EQ(table_.CheckWatch("zzz", "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(table_.CheckWatch("", "Bad Key").code(), absl::StatusCode::kInvalidArgument);
  const auto record = [](std::vector<std::string>& into) {
    return [&into](const RunEvent& event) {
      into.push_back(event.kind == RunEvent::Kind::kTriggerDeleted
                         ? event.run.trigger + ":deleted"
                         : absl::StrCat(event.run.trigger, "#", event.run.number, ":",
                                        RunStateName(event.run.state)));
    };
  };
  const uint64_t w1 = table_.Watch("a", "", false, record(by_name));
  table_.Watch("", "team=etl", false, record(by_label));
  table_.Watch("", "", true, record(finals));
  timers_.Advance(absl::Seconds(1));
  runner_.Finish("a#1", RunState::kSucceeded);
  runner_.Finish("b#1", RunState::kTimedOut);
  EXPECT_THAT(by_name, ElementsAre("a#1:RUNNING", "a#1:SUCCEEDED"));
  EXPECT_THAT(by_label, ElementsAre("a#1:RUNNING", "a#1:SUCCEEDED"));
  EXPECT_THAT(finals, ElementsAre("a#1:SUCCEEDED", "b#1:TIMED_OUT"));
  ASSERT_TRUE(table_.Delete("a", false).ok());
  EXPECT_EQ(by_name.back(), "a:deleted");
  table_.Unwatch(w1);
  EXPECT_EQ(table_.Stats().watchers, 2);
}

TEST_F(TriggerTableTest, CreateIsIdempotentForTheSameSpec) {
  TriggerSpec spec = Spec(Every(5000));
  MustCreate("same", spec);
  auto again = table_.Create("same", spec);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  TriggerSpec other = Spec(Every(6000));
  auto clash = table_.Create("same", other);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Reason(clash.status()), "TRIGGER_EXISTS");
  auto first = table_.Create("by-request", spec, "r1");
  ASSERT_TRUE(first.ok() && first->created);
  auto retry = table_.Create("by-request", other, "r1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->created);
}

TEST_F(TriggerTableTest, DeleteWithCancelRunningStopsRuns) {
  MustCreate("doomed", Spec(Every(1000)));
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(table_.Delete("doomed", /*cancel_running=*/true, "d1").ok());
  EXPECT_THAT(runner_.stopped(), ElementsAre("doomed#1"));
  EXPECT_EQ(table_.Get("doomed").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(table_.Delete("doomed", false, "d1").ok());  // Retry with the request id.
  EXPECT_EQ(Reason(table_.Delete("doomed", false)), "TRIGGER_NOT_FOUND");
  runner_.Finish("doomed#1", RunState::kFailed);  // Late report: harmless.
  timers_.Advance(absl::Seconds(5));
  EXPECT_EQ(runner_.started().size(), 1u);
}

TEST_F(TriggerTableTest, ListPagesByNameWithFilters) {
  for (const char* name : {"c", "a", "b", "d"}) {
    TriggerSpec spec = Spec(Every(1000));
    if (std::string(name) == "b") spec.labels = {{"tier", "gold"}};
    if (std::string(name) == "d") spec.paused = true;
    MustCreate(name, spec);
  }
  auto first = table_.List({}, 2, "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->triggers.size(), 2u);
  EXPECT_EQ(first->triggers[0].name, "a");
  EXPECT_EQ(first->next_page_token, "b");
  auto second = table_.List({}, 2, first->next_page_token);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->triggers[0].name, "c");
  EXPECT_TRUE(second->next_page_token.empty());
  auto gold = table_.List({.label_selector = "tier=gold"}, 0, "");
  ASSERT_TRUE(gold.ok());
  ASSERT_EQ(gold->triggers.size(), 1u);
  EXPECT_EQ(gold->triggers[0].name, "b");
  auto paused = table_.List({.states = {TriggerState::kPaused}}, 0, "");
  ASSERT_TRUE(paused.ok());
  ASSERT_EQ(paused->triggers.size(), 1u);
  EXPECT_EQ(paused->triggers[0].name, "d");
  EXPECT_EQ(table_.List({}, 5000, "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_.List({.label_selector = "=x"}, 0, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TriggerTableTest, RunsAreListedNewestFirstAndPaged) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kAllow;
  MustCreate("many", spec);
  timers_.Advance(absl::Seconds(5));
  auto page = table_.ListRuns("many", {}, 2, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->runs.size(), 2u);
  EXPECT_EQ(page->runs[0].number, 5);
  EXPECT_EQ(page->runs[1].number, 4);
  auto next = table_.ListRuns("many", {}, 10, page->next_page_token);
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->runs.size(), 3u);
  EXPECT_EQ(next->runs[0].number, 3);
  EXPECT_EQ(table_.ListRuns("many", {}, 0, "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_.ListRuns("none", {}, 0, "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TriggerTableTest, RunHistoryIsBounded) {
  TriggerSpec spec = Spec(Every(1000));
  spec.overlap = OverlapPolicy::kSkip;
  MustCreate("long", spec);
  timers_.Advance(absl::Seconds(300));
  auto page = table_.ListRuns("long", {}, 1000, "");
  ASSERT_TRUE(page.ok());
  EXPECT_LE(page->runs.size(), 101u);
  EXPECT_EQ(page->runs.back().number, 1);  // The running one is kept.
  EXPECT_EQ(page->runs.front().number, 300);
}

TEST_F(TriggerTableTest, SessionEndDeletesTheTrigger) {
  TriggerSpec spec = Spec(Every(1000));
  spec.session_id = "s1";
  MustCreate("bound", spec);
  EXPECT_EQ(sessions_.hooks(), 1u);
  sessions_.End();
  EXPECT_EQ(table_.Get("bound").status().code(), absl::StatusCode::kNotFound);
  spec.session_id = "unknown";
  EXPECT_EQ(table_.Create("bound2", spec).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TriggerTableTest, TooManyTriggers) {
  for (int i = 0; i < 20; ++i) {
    MustCreate(absl::StrCat("t", i), Spec(Every(1000)));
  }
  auto over = table_.Create("t20", Spec(Every(1000)));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(over.status()), "TOO_MANY_TRIGGERS");
  EXPECT_EQ(table_.Stats().active, 20);
}

TEST_F(TriggerTableTest, RejectsBadSpecsNamingTheField) {
  const auto error = [&](TriggerSpec spec, std::string name = "x") {
    absl::Status status = table_.Create(name, std::move(spec)).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return Reason(status) + " " + std::string(status.message());
  };
  EXPECT_THAT(error(Spec({})), HasSubstr("spec.schedule"));
  EXPECT_THAT(error(Spec(Every(999))), HasSubstr("spec.schedule.interval_ms 999"));
  EXPECT_THAT(error(Spec(Delay(0))), HasSubstr("spec.schedule.delay_ms 0"));
  TriggerSpec no_action = Spec(Delay(1));
  no_action.action = {};
  EXPECT_THAT(error(no_action), HasSubstr("spec.action"));
  TriggerSpec jitter = Spec(Every(1000));
  jitter.jitter_ms = 1000;
  EXPECT_THAT(error(jitter), HasSubstr("spec.jitter_ms 1000"));
  TriggerSpec backwards = Spec(Every(1000));
  backwards.start_time = timers_.Now();
  backwards.end_time = timers_.Now() - absl::Seconds(1);
  EXPECT_THAT(error(backwards), HasSubstr("spec.end_time"));
  TriggerSpec negative = Spec(Every(1000));
  negative.max_runs = -1;
  EXPECT_THAT(error(negative), HasSubstr("spec.max_runs -1"));
  EXPECT_THAT(error(Spec({.kind = Schedule::Kind::kCron, .cron_expression = "* * * *"})),
              HasSubstr("INVALID_CRON"));
  EXPECT_THAT(error(Spec({.kind = Schedule::Kind::kCron,
                          .cron_expression = "* * * * *",
                          .cron_timezone = "Nowhere/Town"})),
              HasSubstr("UNKNOWN_TIMEZONE"));
  TriggerSpec labels = Spec(Every(1000));
  labels.labels = {{"Bad Key", "v"}};
  EXPECT_THAT(error(labels), HasSubstr("spec.labels"));
  EXPECT_THAT(error(Spec(Every(1000)), "bad name"), HasSubstr("INVALID_NAME"));
}

}  // namespace
}  // namespace spindle::trigger
