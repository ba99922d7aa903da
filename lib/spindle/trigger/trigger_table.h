// TriggerTable: named triggers that start runs at a time, after a delay, every interval or on a
// cron schedule (see protos/spindle/v1/scheduler.proto for the client-visible contract).
//
// What it does:
//  - Each ACTIVE trigger has one timer on the TimerService at its next fire time plus a random
//    jitter (0..jitter_ms). When it fires, a run is recorded (numbered per trigger) and its action
//    started through the ActionRunner, subject to the overlap policy (SKIP, QUEUE, ALLOW,
//    REPLACE); the next fire time is computed from the schedule (no catch-up of missed times).
//  - max_runs, start_time and end_time bound the schedule; a trigger with no fire time left is
//    COMPLETED. Pause/Resume stop and restart the timer; Fire starts a manual run at once.
//  - Runs end when the runner reports their outcome; the last `retained_runs` final runs are
//    kept per trigger (runs in progress are always kept).
//  - Watchers get every run as it changes (fired: RUNNING/QUEUED/SKIPPED; final), and the end of
//    a trigger when it is deleted, in order per trigger.
//  - A trigger bound to a session is deleted when the session ends (runs in progress continue).
//
// The action is opaque (Action::encoded); the ActionRunner (services/scheduler: spawn a process,
// submit a pool task) starts and stops runs and reports how they ended.
//
// Callbacks (runner done, timers, session ends) may arrive on any thread; the table holds no lock
// while calling the runner. Watch callbacks run with the trigger's shard lock held (that keeps
// them in order): they must be short, must not block and must not call back into the table.
//
// Thread-safety: thread-safe. Triggers are sharded by name.
// Lifetime: the timer service, the runner and the session hooks must outlive the table; Shutdown
// (also run by the destructor) cancels every timer and detaches late callbacks.
#ifndef SPINDLE_TRIGGER_TRIGGER_TABLE_H_
#define SPINDLE_TRIGGER_TRIGGER_TABLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/trigger/types.h"

namespace spindle::trigger {

class ActionRunner {
 public:
  struct Started {
    std::string process_id;
    std::string task_id;
  };
  using Done = absl::AnyInvocable<void(RunOutcome) &&>;

  virtual ~ActionRunner() = default;

  // Starts run `number` of `trigger`. On success, `done` is called exactly once when the run
  // ends (on any thread, possibly before Start returns). On error the run is FAILED with the
  // error's message and `done` is never called.
  virtual absl::StatusOr<Started> Start(const std::string& trigger, int64_t number,
                                        const Action& action, Done done) = 0;

  // Stops a started run (terminate the process tree, cancel the task). Its `done` still reports
  // the end (the table records it as CANCELLED).
  virtual void Stop(const Action& action, const Started& started) = 0;
};

// Metrics hooks; called with table locks held, must be thread-safe and must not block.
class TriggerObserver {
 public:
  virtual ~TriggerObserver() = default;
  // A run reached a final state (SKIPPED included).
  virtual void OnRunFinal(RunState state) {}
};

struct TriggerTableOptions {
  // RESOURCE_EXHAUSTED (TOO_MANY_TRIGGERS) beyond.
  int64_t max_triggers = 10'000;
  // Final runs kept per trigger (at least 100 by the API).
  int64_t retained_runs = 100;
  // Returns a uniform random value in [0, max_ms]; null: absl::BitGen.
  absl::AnyInvocable<int64_t(int64_t max_ms)> jitter;
};

class TriggerTable {
 public:
  // `sessions` may be null (a spec with session_id is then FAILED_PRECONDITION
  // SESSIONS_UNAVAILABLE). `observer` may be null.
  TriggerTable(TriggerTableOptions options, TimerService& timers, ActionRunner& runner,
               SessionHooks* sessions, TriggerObserver* observer);
  ~TriggerTable();
  TriggerTable(const TriggerTable&) = delete;
  TriggerTable& operator=(const TriggerTable&) = delete;

  // Checks a spec and fills its defaults (overlap SKIP, cron timezone UTC). INVALID_ARGUMENT
  // naming the field (INVALID_CRON, UNKNOWN_TIMEZONE, ...). The action is checked by the caller.
  static absl::Status ValidateAndDefault(TriggerSpec& spec);

  struct Created {
    TriggerView trigger;
    bool created = false;
  };
  // Validates and creates. A name that exists with an equal spec, or a repeated request_id,
  // returns the original (created = false); other settings: ALREADY_EXISTS (TRIGGER_EXISTS).
  // INVALID_ARGUMENT (INVALID_NAME, ...); RESOURCE_EXHAUSTED (TOO_MANY_TRIGGERS); the session
  // hooks' errors for session_id.
  absl::StatusOr<Created> Create(absl::string_view name, TriggerSpec spec,
                                 absl::string_view request_id = "");

  // NOT_FOUND (TRIGGER_NOT_FOUND).
  absl::StatusOr<TriggerView> Get(absl::string_view name) const;

  struct Page {
    std::vector<TriggerView> triggers;
    std::string next_page_token;
  };
  // By name. INVALID_ARGUMENT for a bad page size (0 = 100, at most 1,000), token, selector or
  // prefix.
  absl::StatusOr<Page> List(const TriggerFilter& filter, int32_t page_size,
                            absl::string_view page_token) const;

  // NOT_FOUND; FAILED_PRECONDITION (TRIGGER_COMPLETED). Idempotent.
  absl::StatusOr<TriggerView> Pause(absl::string_view name);
  absl::StatusOr<TriggerView> Resume(absl::string_view name);

  // Starts a manual run now (the overlap policy applies) and returns it as started. A repeated
  // request_id returns the run it started. NOT_FOUND.
  absl::StatusOr<RunView> Fire(absl::string_view name, absl::string_view request_id = "");

  // Deletes; with `cancel_running`, stops runs in progress (they end CANCELLED). NOT_FOUND, also
  // on a retry unless the same request_id is used.
  absl::Status Delete(absl::string_view name, bool cancel_running,
                      absl::string_view request_id = "");

  struct RunPage {
    std::vector<RunView> runs;
    std::string next_page_token;
  };
  // Newest first. NOT_FOUND; INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<RunPage> ListRuns(absl::string_view name, const std::vector<RunState>& states,
                                   int32_t page_size, absl::string_view page_token) const;

  // Checks a watch's filters: INVALID_ARGUMENT for a bad name or selector; NOT_FOUND when `name`
  // is set and unknown.
  absl::Status CheckWatch(absl::string_view name, absl::string_view label_selector) const;
  // Calls `on_event` for every matching event until Unwatch (which waits for a running callback
  // to return). REQUIRES: CheckWatch passed.
  uint64_t Watch(std::string name, std::string label_selector, bool final_only,
                 absl::AnyInvocable<void(const RunEvent&)> on_event);
  void Unwatch(uint64_t watch);

  TriggerTableStats Stats() const;

  // Cancels every timer; later timer, runner and session callbacks do nothing. Idempotent.
  void Shutdown();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace spindle::trigger

#endif  // SPINDLE_TRIGGER_TRIGGER_TABLE_H_
