#include "spindle/trigger/trigger_table.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/labels.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"
#include "spindle/trigger/cron.h"

namespace spindle::trigger {

const char* TriggerStateName(TriggerState state) {
  switch (state) {
    case TriggerState::kActive:
      return "ACTIVE";
    case TriggerState::kPaused:
      return "PAUSED";
    case TriggerState::kCompleted:
      return "COMPLETED";
    default:
      return "UNSPECIFIED";
  }
}

const char* RunStateName(RunState state) {
  switch (state) {
    case RunState::kSkipped:
      return "SKIPPED";
    case RunState::kQueued:
      return "QUEUED";
    case RunState::kRunning:
      return "RUNNING";
    case RunState::kSucceeded:
      return "SUCCEEDED";
    case RunState::kFailed:
      return "FAILED";
    case RunState::kTimedOut:
      return "TIMED_OUT";
    case RunState::kCancelled:
      return "CANCELLED";
    default:
      return "UNSPECIFIED";
  }
}

bool IsFinal(RunState state) {
  return state == RunState::kSkipped || state == RunState::kSucceeded ||
         state == RunState::kFailed || state == RunState::kTimedOut ||
         state == RunState::kCancelled;
}

namespace {

constexpr int kShards = 16;
constexpr int64_t kMinIntervalMs = 1'000;
constexpr int64_t kMaxJitterMs = 3'600'000;
constexpr size_t kMaxRequestIds = 10'000;
constexpr size_t kMaxRequestIdBytes = 64;

absl::Status TriggerNotFound(absl::string_view name) {
  return NotFound("TRIGGER_NOT_FOUND", absl::StrCat("trigger '", name, "' does not exist"));
}

absl::Status CheckRequestId(absl::string_view request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return InvalidArgument(
        "INVALID_ARGUMENT",
        absl::StrCat("request_id: ", request_id.size(), " bytes, at most ", kMaxRequestIdBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> PageSize(int32_t page_size) {
  if (page_size < 0 || page_size > 1000) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("page_size ", page_size, " is out of range 0..1000"));
  }
  return page_size == 0 ? 100 : page_size;
}

// A bounded map of idempotency keys, oldest forgotten first.
template <typename V>
class RequestIds {
 public:
  std::optional<V> Find(const std::string& id) const {
    auto it = map_.find(id);
    return it == map_.end() ? std::nullopt : std::optional<V>(it->second);
  }
  void Add(const std::string& id, V value) {
    if (id.empty() || !map_.emplace(id, std::move(value)).second) {
      return;
    }
    order_.push_back(id);
    while (order_.size() > kMaxRequestIds) {
      map_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  absl::flat_hash_map<std::string, V> map_;
  std::deque<std::string> order_;
};

struct Run {
  RunView view;
  bool start_recorded = false;
  bool cancel_requested = false;
  std::optional<RunOutcome> early_outcome;  // Reported before the start was recorded.
  ActionRunner::Started started;
};

struct Trigger {
  std::string name;
  int shard = 0;
  uint64_t generation = 0;
  TriggerSpec spec;
  std::optional<CronSchedule> cron;
  TriggerState state = TriggerState::kActive;
  absl::Time created_at;
  absl::Time grid_base;                         // Interval schedules: the first fire time.
  absl::Time next_fire = absl::InfinitePast();  // InfinitePast: none.
  TimerService::TimerId timer = 0;
  bool one_shot_fired = false;
  int64_t run_count = 0;
  int64_t skipped_count = 0;
  int64_t failed_count = 0;
  int32_t running = 0;
  int64_t next_number = 1;
  std::map<int64_t, Run> runs;  // By number: oldest first.
  int64_t queued = 0;           // Number of the QUEUED run; 0: none.
  RequestIds<int64_t> fire_requests;
  SessionHooks::HookId session_hook = 0;
  bool deleted = false;

  bool one_shot() const {
    return spec.schedule.kind == Schedule::Kind::kAt ||
           spec.schedule.kind == Schedule::Kind::kDelay;
  }
  Run* FindRun(int64_t number) {
    auto it = runs.find(number);
    return it == runs.end() ? nullptr : &it->second;
  }
};

struct StartWork {
  std::shared_ptr<Trigger> trigger;
  int64_t number = 0;
  Action action;
};

struct StopWork {
  Action action;
  ActionRunner::Started started;
};

// What to do once the shard lock is released.
struct Effects {
  std::vector<StartWork> starts;
  std::vector<StopWork> stops;
  std::vector<std::pair<std::string, SessionHooks::HookId>> remove_hooks;
  bool empty() const { return starts.empty() && stops.empty() && remove_hooks.empty(); }
};

struct Watcher {
  std::string name;
  LabelSelector selector;
  bool final_only = false;
  absl::AnyInvocable<void(const RunEvent&)> on_event;
};

}  // namespace

class TriggerTable::Impl : public std::enable_shared_from_this<TriggerTable::Impl> {
 public:
  Impl(TriggerTableOptions options, TimerService& timers, ActionRunner& runner,
       SessionHooks* sessions, TriggerObserver* observer)
      : options_(std::move(options)),
        timers_(timers),
        runner_(runner),
        sessions_(sessions),
        observer_(observer) {
    if (!options_.jitter) {
      options_.jitter = [this](int64_t max_ms) {
        absl::MutexLock lock(&random_mu_);
        return absl::Uniform<int64_t>(absl::IntervalClosed, random_, 0, max_ms);
      };
    }
  }

  absl::StatusOr<Created> Create(absl::string_view name, TriggerSpec spec,
                                 absl::string_view request_id);
  absl::StatusOr<TriggerView> Get(absl::string_view name) const;
  absl::StatusOr<Page> List(const TriggerFilter& filter, int32_t page_size,
                            absl::string_view page_token) const;
  absl::StatusOr<TriggerView> Pause(absl::string_view name);
  absl::StatusOr<TriggerView> Resume(absl::string_view name);
  absl::StatusOr<RunView> Fire(absl::string_view name, absl::string_view request_id);
  absl::Status Delete(absl::string_view name, bool cancel_running, absl::string_view request_id,
                      uint64_t only_generation = 0);
  absl::StatusOr<RunPage> ListRuns(absl::string_view name, const std::vector<RunState>& states,
                                   int32_t page_size, absl::string_view page_token) const;
  absl::Status CheckWatch(absl::string_view name, absl::string_view label_selector) const;
  uint64_t Watch(std::string name, std::string label_selector, bool final_only,
                 absl::AnyInvocable<void(const RunEvent&)> on_event);
  void Unwatch(uint64_t watch);
  TriggerTableStats Stats() const;
  void Shutdown();

 private:
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<Trigger>> triggers ABSL_GUARDED_BY(mu);
  };

  int ShardOf(absl::string_view name) const {
    return static_cast<int>(absl::HashOf(name) % kShards);
  }

  TriggerView ViewLocked(const Trigger& t) const;
  // The first fire time at or after `now` (creation, resume); InfiniteFuture when none.
  absl::Time FirstFireLocked(Trigger& t, absl::Time now) const;
  // The fire time after a fire at `scheduled`.
  absl::Time NextFireLocked(const Trigger& t, absl::Time scheduled, absl::Time now) const;
  // Arms the timer for `next`, or completes the trigger when `next` is past its end.
  void ScheduleLocked(const std::shared_ptr<Trigger>& t, absl::Time next);
  void CancelTimerLocked(Trigger& t);
  void CompleteLocked(Trigger& t);
  void OnTimer(const std::shared_ptr<Trigger>& t, const std::shared_ptr<TimerService::TimerId>& id);
  // Records a fire and decides what it does. Returns the run's number.
  int64_t FireLocked(const std::shared_ptr<Trigger>& t, absl::Time scheduled_at, bool manual,
                     Effects& fx);
  void StartLocked(const std::shared_ptr<Trigger>& t, Run& run, Effects& fx);
  void FinalizeLocked(const std::shared_ptr<Trigger>& t, Run& run, RunState state,
                      std::string error, std::string detail, Effects& fx);
  void StartQueuedLocked(const std::shared_ptr<Trigger>& t, Effects& fx);
  void RequestStopLocked(Trigger& t, Run& run, Effects& fx);
  void EvictLocked(Trigger& t);
  void EmitLocked(const Trigger& t, const Run& run);
  void EmitDeletedLocked(const Trigger& t);

  // Runs effects (starting actions, stopping runs) without locks; repeats until none are left.
  void Apply(Effects fx);
  void RecordStart(const std::shared_ptr<Trigger>& t, int64_t number,
                   absl::StatusOr<ActionRunner::Started> started, Effects& fx);
  void OnRunDone(const std::shared_ptr<Trigger>& t, int64_t number, RunOutcome outcome);

  TriggerTableOptions options_;
  TimerService& timers_;
  ActionRunner& runner_;
  SessionHooks* const sessions_;
  TriggerObserver* const observer_;

  Shard shards_[kShards];
  std::atomic<int64_t> count_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> shut_down_{false};

  absl::Mutex requests_mu_;
  RequestIds<std::string> create_requests_ ABSL_GUARDED_BY(requests_mu_);
  RequestIds<bool> delete_requests_ ABSL_GUARDED_BY(requests_mu_);

  mutable absl::Mutex watchers_mu_;
  std::map<uint64_t, Watcher> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  uint64_t next_watch_ ABSL_GUARDED_BY(watchers_mu_) = 0;

  absl::Mutex random_mu_;
  absl::BitGen random_ ABSL_GUARDED_BY(random_mu_);
};

// ---- validation ----

absl::Status TriggerTable::ValidateAndDefault(TriggerSpec& spec) {
  Schedule& schedule = spec.schedule;
  switch (schedule.kind) {
    case Schedule::Kind::kNone:
      return InvalidArgument("INVALID_ARGUMENT",
                             "spec.schedule: set one of at, delay_ms, interval_ms, cron");
    case Schedule::Kind::kAt:
      break;
    case Schedule::Kind::kDelay:
      if (schedule.delay_ms < 1) {
        return InvalidArgument(
            "INVALID_ARGUMENT",
            absl::StrCat("spec.schedule.delay_ms ", schedule.delay_ms, " must be >= 1"));
      }
      break;
    case Schedule::Kind::kInterval:
      if (schedule.interval_ms < kMinIntervalMs) {
        return InvalidArgument("INVALID_ARGUMENT",
                               absl::StrCat("spec.schedule.interval_ms ", schedule.interval_ms,
                                            " must be >= ", kMinIntervalMs));
      }
      break;
    case Schedule::Kind::kCron: {
      if (schedule.cron_timezone.empty()) {
        schedule.cron_timezone = "UTC";
      }
      absl::StatusOr<CronSchedule> cron =
          CronSchedule::Parse(schedule.cron_expression, schedule.cron_timezone);
      if (!cron.ok()) {
        return cron.status();
      }
      break;
    }
  }
  if (spec.action.kind == Action::Kind::kNone) {
    return InvalidArgument("INVALID_ARGUMENT", "spec.action: set one of spawn, pool_task");
  }
  if (spec.max_runs < 0) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("spec.max_runs ", spec.max_runs, " must be >= 0"));
  }
  if (spec.start_time != absl::InfinitePast() && spec.end_time != absl::InfiniteFuture() &&
      spec.end_time <= spec.start_time) {
    return InvalidArgument("INVALID_ARGUMENT", "spec.end_time must be after spec.start_time");
  }
  if (spec.jitter_ms < 0 || spec.jitter_ms > kMaxJitterMs) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("spec.jitter_ms ", spec.jitter_ms,
                                                            " is out of range 0..", kMaxJitterMs));
  }
  if (schedule.kind == Schedule::Kind::kInterval && spec.jitter_ms >= schedule.interval_ms) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat("spec.jitter_ms ", spec.jitter_ms,
                                        " must be less than interval_ms ", schedule.interval_ms));
  }
  if (spec.overlap == OverlapPolicy::kUnspecified) {
    spec.overlap = OverlapPolicy::kSkip;
  }
  SPINDLE_RETURN_IF_ERROR(ValidateLabels("spec.labels", spec.labels));
  if (!spec.session_id.empty() && spec.session_id.size() > 256) {
    return InvalidArgument("INVALID_ARGUMENT", "spec.session_id: too long");
  }
  return absl::OkStatus();
}

// ---- schedule arithmetic ----

absl::Time TriggerTable::Impl::FirstFireLocked(Trigger& t, absl::Time now) const {
  const TriggerSpec& spec = t.spec;
  const absl::Time not_before =
      spec.start_time == absl::InfinitePast() ? now : std::max(now, spec.start_time);
  switch (spec.schedule.kind) {
    case Schedule::Kind::kAt:
      if (t.one_shot_fired) return absl::InfiniteFuture();
      return std::max(spec.schedule.at, spec.start_time);
    case Schedule::Kind::kDelay:
      if (t.one_shot_fired) return absl::InfiniteFuture();
      return std::max(t.created_at + absl::Milliseconds(spec.schedule.delay_ms), spec.start_time);
    case Schedule::Kind::kInterval: {
      const absl::Duration interval = absl::Milliseconds(spec.schedule.interval_ms);
      if (not_before <= t.grid_base) return t.grid_base;
      absl::Duration rest;
      const int64_t steps = absl::IDivDuration(not_before - t.grid_base, interval, &rest);
      absl::Time next = t.grid_base + steps * interval;
      if (next < not_before) next += interval;
      return next;
    }
    case Schedule::Kind::kCron:
      return t.cron->Next(not_before - absl::Nanoseconds(1));
    default:
      return absl::InfiniteFuture();
  }
}

absl::Time TriggerTable::Impl::NextFireLocked(const Trigger& t, absl::Time scheduled,
                                              absl::Time now) const {
  const TriggerSpec& spec = t.spec;
  switch (spec.schedule.kind) {
    case Schedule::Kind::kInterval: {
      // The next grid point after `scheduled` that is not in the past (no catch-up).
      const absl::Duration interval = absl::Milliseconds(spec.schedule.interval_ms);
      absl::Time next = scheduled + interval;
      if (next < now) {
        absl::Duration rest;
        const int64_t steps = absl::IDivDuration(now - t.grid_base, interval, &rest);
        next = t.grid_base + steps * interval;
        while (next <= scheduled || next < now) next += interval;
      }
      return next;
    }
    case Schedule::Kind::kCron:
      return t.cron->Next(std::max(scheduled, now));
    default:
      return absl::InfiniteFuture();  // One-shots fire once.
  }
}

void TriggerTable::Impl::CancelTimerLocked(Trigger& t) {
  if (t.timer != 0) {
    timers_.Cancel(t.timer);
    t.timer = 0;
  }
  t.next_fire = absl::InfinitePast();
}

void TriggerTable::Impl::CompleteLocked(Trigger& t) {
  CancelTimerLocked(t);
  t.state = TriggerState::kCompleted;
}

void TriggerTable::Impl::ScheduleLocked(const std::shared_ptr<Trigger>& tp, absl::Time next) {
  Trigger& t = *tp;
  CancelTimerLocked(t);
  if (next == absl::InfiniteFuture() || next > t.spec.end_time ||
      (t.spec.max_runs > 0 && t.run_count >= t.spec.max_runs)) {
    CompleteLocked(t);
    return;
  }
  t.next_fire = next;
  if (t.state != TriggerState::kActive || shut_down_.load(std::memory_order_acquire)) {
    return;
  }
  const int64_t jitter = t.spec.jitter_ms > 0 ? options_.jitter(t.spec.jitter_ms) : 0;
  std::weak_ptr<Impl> weak_self = weak_from_this();
  std::weak_ptr<Trigger> weak_trigger = tp;
  // The id is only known once Schedule returns and the callback may run at once on another
  // thread: it reads the id under the shard lock, which is held here until the id is stored.
  auto id = std::make_shared<TimerService::TimerId>(0);
  t.timer = timers_.Schedule(next + absl::Milliseconds(jitter), [weak_self, weak_trigger, id]() {
    auto self = weak_self.lock();
    auto trigger = weak_trigger.lock();
    if (self != nullptr && trigger != nullptr) {
      self->OnTimer(trigger, id);
    }
  });
  *id = t.timer;
}

// ---- firing and runs ----

void TriggerTable::Impl::OnTimer(const std::shared_ptr<Trigger>& t,
                                 const std::shared_ptr<TimerService::TimerId>& id) {
  Effects fx;
  {
    absl::MutexLock lock(&shards_[t->shard].mu);
    if (t->deleted || t->timer == 0 || t->timer != *id || t->state != TriggerState::kActive) {
      return;
    }
    t->timer = 0;
    const absl::Time scheduled = t->next_fire;
    const absl::Time now = timers_.Now();
    FireLocked(t, scheduled, /*manual=*/false, fx);
    if (t->one_shot()) {
      t->one_shot_fired = true;
      CompleteLocked(*t);
    } else {
      ScheduleLocked(t, NextFireLocked(*t, scheduled, now));
    }
  }
  Apply(std::move(fx));
}

int64_t TriggerTable::Impl::FireLocked(const std::shared_ptr<Trigger>& self,
                                       absl::Time scheduled_at, bool manual, Effects& fx) {
  Trigger& t = *self;
  Run run;
  run.view.trigger = t.name;
  run.view.number = t.next_number++;
  run.view.manual = manual;
  run.view.scheduled_at = scheduled_at;
  const absl::Time now = timers_.Now();
  bool start = true;
  if (t.running > 0 || t.queued != 0) {
    switch (t.spec.overlap) {
      case OverlapPolicy::kQueue:
        if (t.queued == 0) {
          run.view.state = RunState::kQueued;
          t.queued = run.view.number;
        } else {
          run.view.state = RunState::kSkipped;
          run.view.error = absl::StrCat("run ", t.queued, " is already queued");
        }
        start = false;
        break;
      case OverlapPolicy::kAllow:
        break;
      case OverlapPolicy::kReplace:
        for (auto& [number, other] : t.runs) {
          if (other.view.state == RunState::kRunning) {
            RequestStopLocked(t, other, fx);
          }
        }
        break;
      default: {
        int64_t previous = 0;
        for (const auto& [number, other] : t.runs) {
          if (other.view.state == RunState::kRunning) previous = number;
        }
        run.view.state = RunState::kSkipped;
        run.view.error = absl::StrCat("previous run ", previous, " still running");
        start = false;
        break;
      }
    }
  }
  if (!manual && run.view.state != RunState::kSkipped) {
    ++t.run_count;
  }
  const int64_t number = run.view.number;
  Run& stored = t.runs.emplace(number, std::move(run)).first->second;
  if (start) {
    StartLocked(self, stored, fx);
  } else if (stored.view.state == RunState::kSkipped) {
    ++t.skipped_count;
    stored.view.ended_at = now;
    if (observer_ != nullptr) observer_->OnRunFinal(RunState::kSkipped);
    EmitLocked(t, stored);
  } else {
    EmitLocked(t, stored);  // QUEUED.
  }
  EvictLocked(t);
  return number;
}

void TriggerTable::Impl::StartLocked(const std::shared_ptr<Trigger>& t, Run& run, Effects& fx) {
  run.view.state = RunState::kRunning;
  run.view.started_at = timers_.Now();
  ++t->running;
  // The RUNNING event goes out when the start is recorded (with the process or task id).
  fx.starts.push_back({t, run.view.number, t->spec.action});
}

void TriggerTable::Impl::RequestStopLocked(Trigger& t, Run& run, Effects& fx) {
  if (run.cancel_requested) return;
  run.cancel_requested = true;
  if (run.start_recorded) {
    fx.stops.push_back({t.spec.action, run.started});
  }
  // Otherwise RecordStart stops it once it is started.
}

void TriggerTable::Impl::FinalizeLocked(const std::shared_ptr<Trigger>& t, Run& run, RunState state,
                                        std::string error, std::string detail, Effects& fx) {
  if (IsFinal(run.view.state)) return;
  const bool was_running = run.view.state == RunState::kRunning;
  if (run.cancel_requested) {
    state = RunState::kCancelled;
    if (error.empty()) error = "stopped by the trigger (overlap REPLACE or delete)";
  }
  run.view.state = state;
  run.view.error = std::move(error);
  run.view.detail = std::move(detail);
  run.view.ended_at = timers_.Now();
  if (state == RunState::kFailed || state == RunState::kTimedOut) {
    ++t->failed_count;
  }
  if (observer_ != nullptr) observer_->OnRunFinal(state);
  EmitLocked(*t, run);
  if (was_running) {
    --t->running;
    StartQueuedLocked(t, fx);
  }
  EvictLocked(*t);
}

void TriggerTable::Impl::StartQueuedLocked(const std::shared_ptr<Trigger>& t, Effects& fx) {
  if (t->running > 0 || t->queued == 0 || t->deleted) return;
  Run* queued = t->FindRun(t->queued);
  t->queued = 0;
  if (queued != nullptr && queued->view.state == RunState::kQueued) {
    StartLocked(t, *queued, fx);
  }
}

void TriggerTable::Impl::EvictLocked(Trigger& t) {
  // The oldest final runs go first; runs in progress stay whatever their age.
  for (auto it = t.runs.begin();
       it != t.runs.end() && static_cast<int64_t>(t.runs.size()) > options_.retained_runs;) {
    if (IsFinal(it->second.view.state)) {
      it = t.runs.erase(it);
    } else {
      ++it;
    }
  }
}

void TriggerTable::Impl::EmitLocked(const Trigger& t, const Run& run) {
  absl::MutexLock lock(&watchers_mu_);
  if (watchers_.empty()) return;
  RunEvent event;
  event.kind = RunEvent::Kind::kRun;
  event.run = run.view;
  event.labels = t.spec.labels;
  const bool final = IsFinal(run.view.state);
  for (auto& [id, watcher] : watchers_) {
    if ((!watcher.name.empty() && watcher.name != t.name) || (watcher.final_only && !final) ||
        !watcher.selector.Matches(t.spec.labels)) {
      continue;
    }
    watcher.on_event(event);
  }
}

void TriggerTable::Impl::EmitDeletedLocked(const Trigger& t) {
  absl::MutexLock lock(&watchers_mu_);
  RunEvent event;
  event.kind = RunEvent::Kind::kTriggerDeleted;
  event.run.trigger = t.name;
  event.labels = t.spec.labels;
  for (auto& [id, watcher] : watchers_) {
    if (watcher.name == t.name) {
      watcher.on_event(event);
    }
  }
}

void TriggerTable::Impl::Apply(Effects fx) {
  while (!fx.empty()) {
    Effects next;
    for (auto& [session, hook] : fx.remove_hooks) {
      if (sessions_ != nullptr) sessions_->RemoveHook(session, hook);
    }
    for (StopWork& stop : fx.stops) {
      runner_.Stop(stop.action, stop.started);
    }
    for (StartWork& start : fx.starts) {
      std::weak_ptr<Impl> weak_self = weak_from_this();
      std::weak_ptr<Trigger> weak_trigger = start.trigger;
      const int64_t number = start.number;
      absl::StatusOr<ActionRunner::Started> started =
          runner_.Start(start.trigger->name, number, start.action,
                        [weak_self, weak_trigger, number](RunOutcome outcome) mutable {
                          auto self = weak_self.lock();
                          auto trigger = weak_trigger.lock();
                          if (self != nullptr && trigger != nullptr) {
                            self->OnRunDone(trigger, number, std::move(outcome));
                          }
                        });
      RecordStart(start.trigger, number, std::move(started), next);
    }
    fx = std::move(next);
  }
}

void TriggerTable::Impl::RecordStart(const std::shared_ptr<Trigger>& t, int64_t number,
                                     absl::StatusOr<ActionRunner::Started> started, Effects& fx) {
  absl::MutexLock lock(&shards_[t->shard].mu);
  Run* run = t->FindRun(number);
  if (run == nullptr || IsFinal(run->view.state)) return;
  if (!started.ok()) {
    run->cancel_requested = false;
    FinalizeLocked(t, *run, RunState::kFailed, std::string(started.status().message()), "", fx);
    return;
  }
  run->start_recorded = true;
  run->started = *started;
  run->view.process_id = started->process_id;
  run->view.task_id = started->task_id;
  EmitLocked(*t, *run);  // RUNNING.
  if (run->early_outcome.has_value()) {
    RunOutcome outcome = std::move(*run->early_outcome);
    run->early_outcome.reset();
    FinalizeLocked(t, *run, outcome.state, std::move(outcome.error), std::move(outcome.detail), fx);
  } else if (run->cancel_requested) {
    fx.stops.push_back({t->spec.action, run->started});
  }
}

void TriggerTable::Impl::OnRunDone(const std::shared_ptr<Trigger>& t, int64_t number,
                                   RunOutcome outcome) {
  Effects fx;
  {
    absl::MutexLock lock(&shards_[t->shard].mu);
    Run* run = t->FindRun(number);
    if (run == nullptr || IsFinal(run->view.state)) return;
    if (!run->start_recorded) {
      run->early_outcome = std::move(outcome);
      return;
    }
    FinalizeLocked(t, *run, outcome.state, std::move(outcome.error), std::move(outcome.detail), fx);
  }
  Apply(std::move(fx));
}

// ---- operations ----

TriggerView TriggerTable::Impl::ViewLocked(const Trigger& t) const {
  TriggerView view;
  view.name = t.name;
  view.spec = t.spec;
  view.state = t.state;
  view.next_run_at = t.state == TriggerState::kActive ? t.next_fire : absl::InfinitePast();
  view.run_count = t.run_count;
  view.skipped_count = t.skipped_count;
  view.failed_count = t.failed_count;
  view.running = t.running;
  if (!t.runs.empty()) view.last_run = t.runs.rbegin()->second.view;
  view.created_at = t.created_at;
  return view;
}

absl::StatusOr<TriggerTable::Created> TriggerTable::Impl::Create(absl::string_view name,
                                                                 TriggerSpec spec,
                                                                 absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(CheckRequestId(request_id));
  SPINDLE_RETURN_IF_ERROR(ValidateAndDefault(spec));
  if (shut_down_.load(std::memory_order_acquire)) {
    return Unavailable("SHUTTING_DOWN", "the trigger table is shutting down");
  }
  if (!request_id.empty()) {
    std::optional<std::string> original;
    {
      absl::MutexLock lock(&requests_mu_);
      original = create_requests_.Find(std::string(request_id));
    }
    if (original.has_value()) {
      absl::StatusOr<TriggerView> view = Get(*original);
      if (view.ok()) return Created{*std::move(view), false};
    }
  }
  auto trigger = std::make_shared<Trigger>();
  trigger->name = std::string(name);
  trigger->shard = ShardOf(name);
  trigger->generation = ++generation_;
  trigger->spec = spec;
  if (spec.schedule.kind == Schedule::Kind::kCron) {
    trigger->cron =
        *CronSchedule::Parse(spec.schedule.cron_expression, spec.schedule.cron_timezone);
  }
  // Bind to the session first (no lock held); undone if the name turns out to exist.
  SessionHooks::HookId hook = 0;
  if (!spec.session_id.empty()) {
    if (sessions_ == nullptr) {
      return FailedPrecondition("SESSIONS_UNAVAILABLE",
                                "spec.session_id: this server has no session service");
    }
    std::weak_ptr<Impl> weak_self = weak_from_this();
    const std::string trigger_name(name);
    const uint64_t generation = trigger->generation;
    SPINDLE_ASSIGN_OR_RETURN(
        hook, sessions_->OnEnd(spec.session_id, [weak_self, trigger_name, generation]() {
          if (auto self = weak_self.lock()) {
            (void)self->Delete(trigger_name, /*cancel_running=*/false, "", generation);
          }
        }));
    trigger->session_hook = hook;
  }
  const auto undo_hook = [&] {
    if (hook != 0) sessions_->RemoveHook(spec.session_id, hook);
  };
  Shard& shard = shards_[trigger->shard];
  TriggerView view;
  {
    absl::ReleasableMutexLock lock(&shard.mu);
    auto it = shard.triggers.find(name);
    if (it != shard.triggers.end()) {
      const bool same = it->second->spec == spec;
      view = ViewLocked(*it->second);
      lock.Release();
      undo_hook();
      if (!same) {
        return AlreadyExists("TRIGGER_EXISTS",
                             absl::StrCat("trigger '", name, "' exists with other settings"));
      }
      return Created{std::move(view), false};
    }
    if (count_.load(std::memory_order_relaxed) >= options_.max_triggers) {
      lock.Release();
      undo_hook();
      return ResourceExhausted(
          "TOO_MANY_TRIGGERS",
          absl::StrCat("the server holds ", options_.max_triggers, " triggers, its limit"));
    }
    count_.fetch_add(1, std::memory_order_relaxed);
    const absl::Time now = timers_.Now();
    trigger->created_at = now;
    trigger->grid_base = spec.schedule.kind == Schedule::Kind::kInterval
                             ? (spec.start_time != absl::InfinitePast()
                                    ? spec.start_time
                                    : now + absl::Milliseconds(spec.schedule.interval_ms))
                             : now;
    trigger->state = spec.paused ? TriggerState::kPaused : TriggerState::kActive;
    shard.triggers.emplace(trigger->name, trigger);
    const absl::Time first = FirstFireLocked(*trigger, now);
    if (trigger->state == TriggerState::kActive) {
      ScheduleLocked(trigger, first);
    } else if (first == absl::InfiniteFuture() || first > spec.end_time) {
      CompleteLocked(*trigger);
    }
    view = ViewLocked(*trigger);
  }
  if (!request_id.empty()) {
    absl::MutexLock lock(&requests_mu_);
    create_requests_.Add(std::string(request_id), std::string(name));
  }
  return Created{std::move(view), true};
}

absl::StatusOr<TriggerView> TriggerTable::Impl::Get(absl::string_view name) const {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  const Shard& shard = shards_[ShardOf(name)];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.triggers.find(name);
  if (it == shard.triggers.end()) return TriggerNotFound(name);
  return ViewLocked(*it->second);
}

absl::StatusOr<TriggerTable::Page> TriggerTable::Impl::List(const TriggerFilter& filter,
                                                            int32_t page_size,
                                                            absl::string_view page_token) const {
  SPINDLE_ASSIGN_OR_RETURN(const int32_t size, PageSize(page_size));
  if (!page_token.empty()) {
    absl::Status token = ValidateName("page_token", page_token);
    if (!token.ok()) {
      return InvalidArgument("INVALID_PAGE_TOKEN",
                             absl::StrCat("page_token '", page_token, "' is not valid"));
    }
  }
  SPINDLE_RETURN_IF_ERROR(ValidatePrefix("name_prefix", filter.name_prefix));
  SPINDLE_ASSIGN_OR_RETURN(LabelSelector selector,
                           LabelSelector::Parse("label_selector", filter.label_selector));
  std::vector<TriggerView> matching;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, trigger] : shard.triggers) {
      if (!page_token.empty() && name <= page_token) continue;
      if (!absl::StartsWith(name, filter.name_prefix)) continue;
      if (!filter.states.empty() && std::find(filter.states.begin(), filter.states.end(),
                                              trigger->state) == filter.states.end()) {
        continue;
      }
      if (!selector.Matches(trigger->spec.labels)) continue;
      matching.push_back(ViewLocked(*trigger));
    }
  }
  std::sort(matching.begin(), matching.end(),
            [](const TriggerView& a, const TriggerView& b) { return a.name < b.name; });
  Page page;
  if (matching.size() > static_cast<size_t>(size)) {
    matching.resize(size);
    page.next_page_token = matching.back().name;
  }
  page.triggers = std::move(matching);
  return page;
}

absl::StatusOr<TriggerView> TriggerTable::Impl::Pause(absl::string_view name) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  Shard& shard = shards_[ShardOf(name)];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.triggers.find(name);
  if (it == shard.triggers.end()) return TriggerNotFound(name);
  Trigger& t = *it->second;
  if (t.state == TriggerState::kCompleted) {
    return FailedPrecondition("TRIGGER_COMPLETED",
                              absl::StrCat("trigger '", name, "' is completed"));
  }
  if (t.state == TriggerState::kActive) {
    CancelTimerLocked(t);
    t.state = TriggerState::kPaused;
  }
  return ViewLocked(t);
}

absl::StatusOr<TriggerView> TriggerTable::Impl::Resume(absl::string_view name) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  Shard& shard = shards_[ShardOf(name)];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.triggers.find(name);
  if (it == shard.triggers.end()) return TriggerNotFound(name);
  const std::shared_ptr<Trigger>& tp = it->second;
  Trigger& t = *tp;
  if (t.state == TriggerState::kCompleted) {
    return FailedPrecondition("TRIGGER_COMPLETED",
                              absl::StrCat("trigger '", name, "' is completed"));
  }
  if (t.state == TriggerState::kPaused) {
    t.state = TriggerState::kActive;
    const absl::Time now = timers_.Now();
    absl::Time next = FirstFireLocked(t, now);
    if (t.one_shot() && next != absl::InfiniteFuture()) {
      next = std::max(next, now);  // A one-shot whose time passed fires at once.
    }
    ScheduleLocked(tp, next);
  }
  return ViewLocked(t);
}

absl::StatusOr<RunView> TriggerTable::Impl::Fire(absl::string_view name,
                                                 absl::string_view request_id) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(CheckRequestId(request_id));
  Shard& shard = shards_[ShardOf(name)];
  std::shared_ptr<Trigger> trigger;
  int64_t number = 0;
  Effects fx;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.triggers.find(name);
    if (it == shard.triggers.end()) return TriggerNotFound(name);
    trigger = it->second;
    std::optional<int64_t> earlier = trigger->fire_requests.Find(std::string(request_id));
    if (earlier.has_value()) {
      Run* run = trigger->FindRun(*earlier);
      if (run != nullptr) return run->view;
    }
    number = FireLocked(trigger, timers_.Now(), /*manual=*/true, fx);
    trigger->fire_requests.Add(std::string(request_id), number);
  }
  Apply(std::move(fx));
  absl::MutexLock lock(&shard.mu);
  Run* run = trigger->FindRun(number);
  if (run == nullptr) return TriggerNotFound(name);
  return run->view;
}

absl::Status TriggerTable::Impl::Delete(absl::string_view name, bool cancel_running,
                                        absl::string_view request_id, uint64_t only_generation) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(CheckRequestId(request_id));
  Shard& shard = shards_[ShardOf(name)];
  Effects fx;
  {
    absl::ReleasableMutexLock lock(&shard.mu);
    auto it = shard.triggers.find(name);
    if (it == shard.triggers.end() ||
        (only_generation != 0 && it->second->generation != only_generation)) {
      lock.Release();
      if (!request_id.empty()) {
        absl::MutexLock requests(&requests_mu_);
        if (delete_requests_.Find(std::string(request_id)).has_value()) {
          return absl::OkStatus();
        }
      }
      return TriggerNotFound(name);
    }
    std::shared_ptr<Trigger> t = it->second;
    shard.triggers.erase(it);
    count_.fetch_sub(1, std::memory_order_relaxed);
    t->deleted = true;
    CancelTimerLocked(*t);
    if (t->session_hook != 0 && only_generation == 0) {
      fx.remove_hooks.emplace_back(t->spec.session_id, t->session_hook);
    }
    if (cancel_running) {
      // Finalizing evicts old runs from the map: collect the numbers first.
      std::vector<int64_t> live;
      for (const auto& [number, run] : t->runs) {
        if (!IsFinal(run.view.state)) live.push_back(number);
      }
      t->queued = 0;  // A cancelled queued run must not start.
      for (int64_t number : live) {
        Run* run = t->FindRun(number);
        if (run == nullptr) continue;
        if (run->view.state == RunState::kRunning) {
          RequestStopLocked(*t, *run, fx);
        } else if (run->view.state == RunState::kQueued) {
          run->cancel_requested = true;
          FinalizeLocked(t, *run, RunState::kCancelled, "the trigger was deleted", "", fx);
        }
      }
    }
    t->queued = 0;
    EmitDeletedLocked(*t);
  }
  if (!request_id.empty()) {
    absl::MutexLock lock(&requests_mu_);
    delete_requests_.Add(std::string(request_id), true);
  }
  Apply(std::move(fx));
  return absl::OkStatus();
}

absl::StatusOr<TriggerTable::RunPage> TriggerTable::Impl::ListRuns(
    absl::string_view name, const std::vector<RunState>& states, int32_t page_size,
    absl::string_view page_token) const {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_ASSIGN_OR_RETURN(const int32_t size, PageSize(page_size));
  int64_t before = INT64_MAX;  // Runs with smaller numbers only.
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &before) || before < 1)) {
    return InvalidArgument("INVALID_PAGE_TOKEN",
                           absl::StrCat("page_token '", page_token, "' is not valid"));
  }
  const Shard& shard = shards_[ShardOf(name)];
  absl::MutexLock lock(&shard.mu);
  auto it = shard.triggers.find(name);
  if (it == shard.triggers.end()) return TriggerNotFound(name);
  const Trigger& t = *it->second;
  RunPage page;
  for (auto it = t.runs.rbegin(); it != t.runs.rend(); ++it) {
    const Run* run = &it->second;
    if (run->view.number >= before) continue;
    if (!states.empty() &&
        std::find(states.begin(), states.end(), run->view.state) == states.end()) {
      continue;
    }
    if (page.runs.size() == static_cast<size_t>(size)) {
      page.next_page_token = absl::StrCat(page.runs.back().number);
      break;
    }
    page.runs.push_back(run->view);
  }
  return page;
}

absl::Status TriggerTable::Impl::CheckWatch(absl::string_view name,
                                            absl::string_view label_selector) const {
  SPINDLE_RETURN_IF_ERROR(LabelSelector::Parse("label_selector", label_selector).status());
  if (name.empty()) return absl::OkStatus();
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  const Shard& shard = shards_[ShardOf(name)];
  absl::MutexLock lock(&shard.mu);
  if (!shard.triggers.contains(name)) return TriggerNotFound(name);
  return absl::OkStatus();
}

uint64_t TriggerTable::Impl::Watch(std::string name, std::string label_selector, bool final_only,
                                   absl::AnyInvocable<void(const RunEvent&)> on_event) {
  absl::StatusOr<LabelSelector> selector = LabelSelector::Parse("label_selector", label_selector);
  absl::MutexLock lock(&watchers_mu_);
  const uint64_t id = ++next_watch_;
  watchers_.emplace(id,
                    Watcher{std::move(name), selector.ok() ? *std::move(selector) : LabelSelector(),
                            final_only, std::move(on_event)});
  return id;
}

void TriggerTable::Impl::Unwatch(uint64_t watch) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(watch);
}

TriggerTableStats TriggerTable::Impl::Stats() const {
  TriggerTableStats stats;
  for (const Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, trigger] : shard.triggers) {
      switch (trigger->state) {
        case TriggerState::kActive:
          ++stats.active;
          break;
        case TriggerState::kPaused:
          ++stats.paused;
          break;
        case TriggerState::kCompleted:
          ++stats.completed;
          break;
        default:
          break;
      }
      stats.running_runs += trigger->running;
    }
  }
  absl::MutexLock lock(&watchers_mu_);
  stats.watchers = static_cast<int64_t>(watchers_.size());
  return stats;
}

void TriggerTable::Impl::Shutdown() {
  if (shut_down_.exchange(true)) return;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (auto& [name, trigger] : shard.triggers) {
      if (trigger->timer != 0) {
        timers_.Cancel(trigger->timer);
        trigger->timer = 0;
      }
    }
  }
}

// ---- the facade ----

TriggerTable::TriggerTable(TriggerTableOptions options, TimerService& timers, ActionRunner& runner,
                           SessionHooks* sessions, TriggerObserver* observer)
    : impl_(std::make_shared<Impl>(std::move(options), timers, runner, sessions, observer)) {}

TriggerTable::~TriggerTable() { impl_->Shutdown(); }

absl::StatusOr<TriggerTable::Created> TriggerTable::Create(absl::string_view name, TriggerSpec spec,
                                                           absl::string_view request_id) {
  return impl_->Create(name, std::move(spec), request_id);
}
absl::StatusOr<TriggerView> TriggerTable::Get(absl::string_view name) const {
  return impl_->Get(name);
}
absl::StatusOr<TriggerTable::Page> TriggerTable::List(const TriggerFilter& filter,
                                                      int32_t page_size,
                                                      absl::string_view page_token) const {
  return impl_->List(filter, page_size, page_token);
}
absl::StatusOr<TriggerView> TriggerTable::Pause(absl::string_view name) {
  return impl_->Pause(name);
}
absl::StatusOr<TriggerView> TriggerTable::Resume(absl::string_view name) {
  return impl_->Resume(name);
}
absl::StatusOr<RunView> TriggerTable::Fire(absl::string_view name, absl::string_view request_id) {
  return impl_->Fire(name, request_id);
}
absl::Status TriggerTable::Delete(absl::string_view name, bool cancel_running,
                                  absl::string_view request_id) {
  return impl_->Delete(name, cancel_running, request_id);
}
absl::StatusOr<TriggerTable::RunPage> TriggerTable::ListRuns(absl::string_view name,
                                                             const std::vector<RunState>& states,
                                                             int32_t page_size,
                                                             absl::string_view page_token) const {
  return impl_->ListRuns(name, states, page_size, page_token);
}
absl::Status TriggerTable::CheckWatch(absl::string_view name,
                                      absl::string_view label_selector) const {
  return impl_->CheckWatch(name, label_selector);
}
uint64_t TriggerTable::Watch(std::string name, std::string label_selector, bool final_only,
                             absl::AnyInvocable<void(const RunEvent&)> on_event) {
  return impl_->Watch(std::move(name), std::move(label_selector), final_only, std::move(on_event));
}
void TriggerTable::Unwatch(uint64_t watch) { impl_->Unwatch(watch); }
TriggerTableStats TriggerTable::Stats() const { return impl_->Stats(); }
void TriggerTable::Shutdown() { impl_->Shutdown(); }

}  // namespace spindle::trigger
