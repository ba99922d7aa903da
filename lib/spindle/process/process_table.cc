#include "spindle/process/process_table.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/labels.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/task.h"
#include "spindle/process/cgroup.h"
#include "spindle/process/output_ring.h"
#include "spindle/process/proc_usage.h"
#include "spindle/process/process_tree.h"
#include "spindle/process/signals.h"

extern char** environ;

namespace spindle::process {

const char* StateName(ProcessState state) {
  switch (state) {
    case ProcessState::kStarting:
      return "STARTING";
    case ProcessState::kRunning:
      return "RUNNING";
    case ProcessState::kBackoff:
      return "BACKOFF";
    case ProcessState::kStopping:
      return "STOPPING";
    case ProcessState::kExited:
      return "EXITED";
    case ProcessState::kFatal:
      return "FATAL";
    default:
      return "UNSPECIFIED";
  }
}

const char* ExitReasonName(ExitReason reason) {
  switch (reason) {
    case ExitReason::kExited:
      return "exited";
    case ExitReason::kSignaled:
      return "signaled";
    case ExitReason::kTerminated:
      return "terminated";
    case ExitReason::kTimedOut:
      return "timed_out";
    case ExitReason::kSessionEnded:
      return "session_ended";
    case ExitReason::kCallerGone:
      return "caller_gone";
    case ExitReason::kStartFailed:
      return "start_failed";
    default:
      return "unspecified";
  }
}

bool IsFinal(ProcessState state) {
  return state == ProcessState::kExited || state == ProcessState::kFatal;
}

namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kReadChunk = 64 * 1024;
constexpr absl::Duration kRequestIdRetention = absl::Minutes(10);

absl::Status Invalid(absl::string_view message) {
  return InvalidArgument("INVALID_ARGUMENT", message);
}

absl::Status NotFoundId(absl::string_view id) {
  return NotFound("PROCESS_NOT_FOUND", absl::StrCat("process '", id, "' not found"));
}

bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

ProcessUsage UsageFrom(const struct rusage& ru) {
  ProcessUsage u;
  u.user_cpu_ms = ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000;
  u.system_cpu_ms = ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
  u.max_rss_bytes = ru.ru_maxrss * 1024;
  u.minor_faults = ru.ru_minflt;
  u.major_faults = ru.ru_majflt;
  u.voluntary_context_switches = ru.ru_nvcsw;
  u.involuntary_context_switches = ru.ru_nivcsw;
  return u;
}

int PidfdSignal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

// Callbacks and events gathered under a record's lock, run after it is released.
struct Pending {
  std::vector<ProcessEvent> events;
  std::vector<absl::AnyInvocable<void() &&>> calls;
  bool empty() const { return events.empty() && calls.empty(); }
};

struct Waiter {
  WaitCondition until;
  ProcessTable::ViewCallback done;
};

struct ChangeWaiter {
  int64_t stdout_offset;
  int64_t stderr_offset;
  absl::AnyInvocable<void() &&> changed;
};

struct StdinWrite {
  std::string data;
  size_t pos = 0;
  bool close = false;
  absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done;
};

}  // namespace

// One process. Everything below `mu` is guarded by it.
struct Record {
  Record(std::string id_in, uint64_t seq_in) : id(std::move(id_in)), seq(seq_in) {}

  const std::string id;
  const uint64_t seq;
  ProcessSpec spec;  // Constant after Spawn (stdin_data kept for restarts of DATA).
  // Constant after Spawn, but for the cgroup_* fields: set for each run by StartRunLocked.
  SpawnOptions options;
  std::string owner;          // Constant after Spawn: the identity counted by the spawn policy.
  int stop_signal = SIGTERM;  // Constant after Spawn.
  absl::Duration kill_grace;  // Constant after Spawn.
  SessionHooks::HookId session_hook = 0;

  // Serialises event delivery of this record: taken before `mu` is released, so events reach
  // watchers in the order they happened.
  absl::Mutex event_mu;
  mutable absl::Mutex mu;
  ProcessStatus status ABSL_GUARDED_BY(mu);
  std::unique_ptr<OutputRing> out ABSL_GUARDED_BY(mu);
  std::unique_ptr<OutputRing> err ABSL_GUARDED_BY(mu);
  bool forgotten ABSL_GUARDED_BY(mu) = false;
  uint64_t final_seq ABSL_GUARDED_BY(mu) = 0;

  // The current run (valid while run_live).
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
  bool run_live ABSL_GUARDED_BY(mu) = false;    // Spawned and not yet finished.
  bool run_exited ABSL_GUARDED_BY(mu) = false;  // Reaped.
  pid_t pid ABSL_GUARDED_BY(mu) = 0;
  UniqueFd pidfd ABSL_GUARDED_BY(mu);
  // This process's cgroup directory (shared by its runs); empty: none (cgroups off, or removed
  // after the last member left).
  std::string cgroup ABSL_GUARDED_BY(mu);
  absl::Time run_started ABSL_GUARDED_BY(mu);
  std::unique_ptr<coro::CancellationSource> run_cancel ABSL_GUARDED_BY(mu);
  int open_readers ABSL_GUARDED_BY(mu) = 0;
  siginfo_t exit_info ABSL_GUARDED_BY(mu) = {};
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stop_for_good ABSL_GUARDED_BY(mu) = false;
  bool then_restart ABSL_GUARDED_BY(mu) = false;
  bool sent_kill ABSL_GUARDED_BY(mu) = false;
  ExitReason stop_reason ABSL_GUARDED_BY(mu) = ExitReason::kUnspecified;
  TimerService::TimerId timeout_timer ABSL_GUARDED_BY(mu) = 0;
  TimerService::TimerId kill_timer ABSL_GUARDED_BY(mu) = 0;
  TimerService::TimerId uptime_timer ABSL_GUARDED_BY(mu) = 0;
  TimerService::TimerId backoff_timer ABSL_GUARDED_BY(mu) = 0;
  int32_t unstable_runs ABSL_GUARDED_BY(mu) = 0;

  // Stdin.
  UniqueFd stdin_fd ABSL_GUARDED_BY(mu);
  uint64_t stdin_lease ABSL_GUARDED_BY(mu) = 0;
  bool stdin_writer_active ABSL_GUARDED_BY(mu) = false;
  std::optional<StdinWrite> stdin_write ABSL_GUARDED_BY(mu);

  std::map<ProcessTable::WaitId, Waiter> waiters ABSL_GUARDED_BY(mu);
  std::map<ProcessTable::WaitId, ChangeWaiter> change_waiters ABSL_GUARDED_BY(mu);
  std::vector<absl::AnyInvocable<void(absl::StatusOr<ProcessView>) &&>> restart_waiters
      ABSL_GUARDED_BY(mu);
};

class ProcessTable::Impl : public std::enable_shared_from_this<ProcessTable::Impl> {
 public:
  Impl(ProcessTableOptions options, std::unique_ptr<Spawner> spawner, coro::Executor& executor,
       TimerService& timers, SessionHooks* sessions, ProcessObserver* observer)
      : options_(std::move(options)),
        spawner_(std::move(spawner)),
        executor_(executor),
        timers_(timers),
        sessions_(sessions),
        observer_(observer),
        rng_(std::random_device{}()) {}

  void Start() {
    // Writing to a pipe whose reader exited must be an EPIPE error, not the end of spindled.
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
    ScheduleHousekeeping();
  }

  // The PATH a spawned process inherits from spindled (before the spec's own env changes).
  std::optional<std::string> InheritedPath() const {
    if (options_.base_env.has_value()) {
      for (const std::string& entry : *options_.base_env) {
        if (absl::StartsWith(entry, "PATH=")) return entry.substr(5);
      }
      return std::nullopt;
    }
    const char* path = ::getenv("PATH");
    return path == nullptr ? std::nullopt : std::optional<std::string>(path);
  }

  const ProcessTableOptions options_;
  const std::unique_ptr<Spawner> spawner_;
  coro::Executor& executor_;
  TimerService& timers_;
  SessionHooks* const sessions_;
  ProcessObserver* const observer_;

  static constexpr int kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<Record>> records ABSL_GUARDED_BY(mu);
  };
  Shard shards_[kShards];
  std::atomic<uint64_t> next_seq_{1};
  std::atomic<uint64_t> next_wait_{1};
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> total_{0};
  std::atomic<bool> shut_down_{false};

  absl::Mutex names_mu_;
  absl::flat_hash_map<std::string, int> live_names_ ABSL_GUARDED_BY(names_mu_);

  absl::Mutex tracked_mu_;
  absl::flat_hash_map<pid_t, int> tracked_ ABSL_GUARDED_BY(tracked_mu_);

  absl::Mutex finished_mu_;
  struct Finished {
    absl::Time at;
    std::string id;
    uint64_t final_seq;
  };
  std::deque<Finished> finished_ ABSL_GUARDED_BY(finished_mu_);

  absl::Mutex requests_mu_;
  struct RequestEntry {
    std::string process_id;
    absl::Time expires;
  };
  absl::flat_hash_map<std::string, RequestEntry> requests_ ABSL_GUARDED_BY(requests_mu_);

  struct Watcher {
    ProcessFilter filter;
    LabelSelector selector;
    absl::AnyInvocable<void(const ProcessEvent&)> on_event;
    absl::Mutex call_mu;
    bool removed ABSL_GUARDED_BY(call_mu) = false;
  };
  absl::Mutex watchers_mu_;
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  std::atomic<uint64_t> next_watch_{1};

  absl::Mutex timer_mu_;
  TimerService::TimerId housekeeping_timer_ ABSL_GUARDED_BY(timer_mu_) = 0;

  absl::Mutex rng_mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_);

  OrphanReaper reaper_;

  // Cgroups whose rmdir failed because descendants outlived their process, retried at
  // housekeeping. The record decides (under its mu) whether the directory is still its own; an
  // expired record no longer needs it. Lock order: a record's mu, then cgroups_mu_.
  absl::Mutex cgroups_mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<Record>> busy_cgroups_
      ABSL_GUARDED_BY(cgroups_mu_);

  // ---- lookup ----
  Shard& ShardFor(absl::string_view id) {
    return shards_[absl::Hash<absl::string_view>{}(id) % kShards];
  }
  const Shard& ShardFor(absl::string_view id) const {
    return shards_[absl::Hash<absl::string_view>{}(id) % kShards];
  }
  std::shared_ptr<Record> Find(absl::string_view id) const {
    const Shard& shard = ShardFor(id);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.records.find(id);
    return it == shard.records.end() ? nullptr : it->second;
  }
  absl::StatusOr<std::shared_ptr<Record>> FindOrError(absl::string_view id) const {
    if (id.empty()) {
      return Invalid("process_id: must not be empty");
    }
    auto rec = Find(id);
    if (rec == nullptr) {
      return NotFoundId(id);
    }
    return rec;
  }
  std::vector<std::shared_ptr<Record>> All() const {
    std::vector<std::shared_ptr<Record>> out;
    for (const Shard& shard : shards_) {
      absl::MutexLock lock(&shard.mu);
      for (const auto& [id, rec] : shard.records) {
        out.push_back(rec);
      }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
    return out;
  }

  bool IsTracked(pid_t pid) {
    absl::MutexLock lock(&tracked_mu_);
    return tracked_.contains(pid);
  }
  std::function<bool(pid_t)> TrackedFn() {
    return [this](pid_t pid) { return IsTracked(pid); };
  }

  // ---- views and events ----
  static ProcessView ViewLocked(const Record& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    ProcessView view;
    view.id = rec.id;
    view.spec = rec.spec;
    view.spec.stdin_data.clear();
    view.status = rec.status;
    if (rec.out != nullptr) {
      view.status.stdout_bytes = rec.out->end_offset();
      view.status.stdout_dropped_bytes = rec.out->start_offset();
    }
    if (rec.err != nullptr) {
      view.status.stderr_bytes = rec.err->end_offset();
      view.status.stderr_dropped_bytes = rec.err->start_offset();
    }
    view.status.stdin_open = rec.stdin_fd.valid() && rec.run_live && !rec.run_exited &&
                             rec.spec.stdin_mode == StdinMode::kPipe;
    return view;
  }

  void SetState(Record& rec, ProcessState state, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    ProcessState previous = rec.status.state;
    if (previous == state) {
      return;
    }
    rec.status.state = state;
    if (state != ProcessState::kBackoff) {
      rec.status.next_restart_at = absl::InfinitePast();
    }
    ProcessEvent event;
    event.type = EventType::kStateChanged;
    event.previous_state = previous;
    event.time = timers_.Now();
    event.process = ViewLocked(rec);
    pending.events.push_back(std::move(event));
    ResolveWaiters(rec, pending);
  }

  void ResolveWaiters(Record& rec, Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    ProcessState s = rec.status.state;
    bool final = IsFinal(s);
    bool running = final || s == ProcessState::kRunning;
    for (auto it = rec.waiters.begin(); it != rec.waiters.end();) {
      bool reached = it->second.until == WaitCondition::kRunning ? running : final;
      if (reached) {
        pending.calls.push_back(
            [cb = std::move(it->second.done), view = ViewLocked(rec)]() mutable {
              std::move(cb)(std::move(view));
            });
        it = rec.waiters.erase(it);
      } else {
        ++it;
      }
    }
    NotifyChange(rec, pending);
  }

  static bool ChangeReady(const Record& rec, const ChangeWaiter& w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    if (rec.forgotten || IsFinal(rec.status.state)) {
      return true;
    }
    if (w.stdout_offset >= 0 && rec.out != nullptr && rec.out->end_offset() > w.stdout_offset) {
      return true;
    }
    if (w.stderr_offset >= 0 && rec.err != nullptr && rec.err->end_offset() > w.stderr_offset) {
      return true;
    }
    return false;
  }

  void NotifyChange(Record& rec, Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    for (auto it = rec.change_waiters.begin(); it != rec.change_waiters.end();) {
      if (ChangeReady(rec, it->second)) {
        pending.calls.push_back(std::move(it->second.changed));
        it = rec.change_waiters.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Releases rec.mu and delivers what was gathered under it, events in order.
  void UnlockAndRun(Record& rec, Pending& pending) ABSL_UNLOCK_FUNCTION(rec.mu) {
    if (pending.events.empty()) {
      rec.mu.Unlock();
    } else {
      rec.event_mu.Lock();
      rec.mu.Unlock();
      Dispatch(pending.events);
      rec.event_mu.Unlock();
    }
    for (auto& call : pending.calls) {
      std::move(call)();
    }
    pending.calls.clear();
    pending.events.clear();
  }

  void Dispatch(const std::vector<ProcessEvent>& events) {
    std::vector<std::shared_ptr<Watcher>> watchers;
    {
      absl::MutexLock lock(&watchers_mu_);
      if (watchers_.empty()) {
        return;
      }
      for (auto& [id, w] : watchers_) {
        watchers.push_back(w);
      }
    }
    for (const ProcessEvent& event : events) {
      for (auto& w : watchers) {
        if (!MatchesParsed(w->filter, w->selector, event.process)) {
          continue;
        }
        absl::MutexLock lock(&w->call_mu);
        if (!w->removed) {
          w->on_event(event);
        }
      }
    }
  }

  static bool MatchesParsed(const ProcessFilter& filter, const LabelSelector& selector,
                            const ProcessView& view) {
    if (!filter.states.empty() && std::find(filter.states.begin(), filter.states.end(),
                                            view.status.state) == filter.states.end()) {
      return false;
    }
    if (!filter.name_prefix.empty() && !absl::StartsWith(view.spec.name, filter.name_prefix)) {
      return false;
    }
    if (!filter.session_id.empty() && view.spec.session_id != filter.session_id) {
      return false;
    }
    return selector.Matches(view.spec.labels);
  }

  // ---- spawn ----
  void BuildOptions(Record& rec) {
    const ProcessSpec& spec = rec.spec;
    SpawnOptions& o = rec.options;
    o.argv = spec.command.argv;
    o.executable = spec.command.executable;
    std::map<std::string, std::string> env;
    if (!spec.command.env.clean) {
      if (options_.base_env.has_value()) {
        for (const std::string& entry : *options_.base_env) {
          size_t eq = entry.find('=');
          if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
        }
      } else {
        for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
          absl::string_view entry(*e);
          size_t eq = entry.find('=');
          if (eq != absl::string_view::npos) {
            env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
          }
        }
      }
      // The spawn policy scrubs spindled's own environment to its allowed names.
      if (options_.spawn_policy != nullptr) {
        std::erase_if(env, [&](const auto& entry) {
          return !options_.spawn_policy->InheritsVariable(entry.first);
        });
      }
    }
    for (const std::string& key : spec.command.env.unset) env.erase(key);
    if (spec.pty.has_value()) env["TERM"] = spec.pty->term;
    for (const auto& [k, v] : spec.command.env.set) env[k] = v;
    env[std::string(kProcessCookieVar)] = rec.id;
    o.env.clear();
    for (const auto& [k, v] : env) o.env.push_back(absl::StrCat(k, "=", v));
    o.cwd = spec.command.cwd.empty() ? options_.default_cwd : spec.command.cwd;
    o.stdin_mode = spec.stdin_mode == StdinMode::kNone ? SpawnOptions::Stdin::kNull
                                                       : SpawnOptions::Stdin::kPipe;
    o.stdout_mode = spec.stdout_mode == OutputMode::kDiscard ? SpawnOptions::Output::kNull
                                                             : SpawnOptions::Output::kPipe;
    o.stderr_mode = spec.stderr_mode == OutputMode::kDiscard ? SpawnOptions::Output::kNull
                    : spec.stderr_mode == OutputMode::kMerge
                        ? SpawnOptions::Output::kMergeIntoStdout
                        : SpawnOptions::Output::kPipe;
    o.new_session = spec.new_session;
    if (spec.pty.has_value()) {
      o.pty = std::make_pair(static_cast<int>(spec.pty->rows), static_cast<int>(spec.pty->cols));
    }
    const ProcessLimits& l = spec.limits;
    auto add = [&](int resource, const std::optional<int64_t>& v) {
      if (v.has_value()) o.rlimits.emplace_back(resource, static_cast<rlim_t>(*v));
    };
    add(RLIMIT_CPU, l.cpu_seconds);
    add(RLIMIT_AS, l.address_space_bytes);
    add(RLIMIT_NOFILE, l.open_files);
    add(RLIMIT_NPROC, l.processes);
    add(RLIMIT_CORE, l.core_bytes);
    add(RLIMIT_FSIZE, l.file_size_bytes);
    o.nice = l.nice;
    if (spec.run_as.uid.has_value()) {
      o.uid = *spec.run_as.uid;
      o.gid = spec.run_as.gid.value_or(*spec.run_as.uid);
      o.groups = std::vector<gid_t>(spec.run_as.supplementary_gids.begin(),
                                    spec.run_as.supplementary_gids.end());
    } else if (spec.run_as.gid.has_value()) {
      o.gid = *spec.run_as.gid;
    }
    if (!spec.run_as.supplementary_gids.empty()) {
      o.groups = std::vector<gid_t>(spec.run_as.supplementary_gids.begin(),
                                    spec.run_as.supplementary_gids.end());
    }
  }

  absl::Duration Since(absl::Time t) { return timers_.Now() - t; }

  // Starts a run of `rec`. On error nothing was started.
  absl::Status StartRunLocked(const std::shared_ptr<Record>& rec_ptr, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    absl::StatusOr<UniqueFd> cgroup_procs = JoinableCgroupLocked(rec);
    if (!cgroup_procs.ok()) {
      return cgroup_procs.status();
    }
    rec.options.cgroup_procs_fd = cgroup_procs->get();
    rec.options.cgroup_required = options_.cgroups != nullptr && options_.cgroups->required();
    rec.options.cgroup_dir = rec.cgroup;
    absl::Time begin = absl::Now();
    absl::StatusOr<SpawnedChild> child = spawner_->Spawn(rec.options);
    rec.options.cgroup_procs_fd = -1;
    cgroup_procs->Reset();
    if (!child.ok() || !child->joined_cgroup) {
      // Nobody joined: the run is tracked through /proc and the cookie only.
      ReleaseCgroupLocked(rec_ptr);
    }
    if (observer_ != nullptr) {
      observer_->OnSpawn(child.ok()                                ? "ok"
                         : Reason(child.status()) == "EXEC_FAILED" ? "exec_failed"
                                                                   : "error",
                         absl::Now() - begin);
    }
    if (!child.ok()) {
      return child.status();
    }
    rec.generation++;
    const uint64_t gen = rec.generation;
    rec.run_live = true;
    rec.run_exited = false;
    rec.stopping = false;
    rec.stop_for_good = false;
    rec.then_restart = false;
    rec.sent_kill = false;
    rec.stop_reason = ExitReason::kUnspecified;
    rec.pid = child->pid;
    rec.pidfd = std::move(child->pidfd);
    rec.run_started = timers_.Now();
    rec.status.pid = child->pid;
    rec.status.process_group_id = child->pid;
    rec.status.started_at = rec.run_started;
    rec.status.ended_at = absl::InfinitePast();
    rec.status.usage = ProcessUsage{};
    rec.run_cancel = std::make_unique<coro::CancellationSource>(executor_.shutdown_token());
    coro::CancellationToken token = rec.run_cancel->token();
    {
      absl::MutexLock lock(&tracked_mu_);
      tracked_[child->pid]++;
    }
    rec.stdin_fd = std::move(child->stdin_fd);
    rec.stdin_lease = 0;
    rec.stdin_writer_active = false;
    rec.stdin_write.reset();
    rec.status.stdin_bytes = 0;

    bool restarting = rec.spec.restart.mode != RestartMode::kNever &&
                      rec.spec.restart.min_uptime_ms.value_or(0) > 0;
    SetState(rec, restarting ? ProcessState::kStarting : ProcessState::kRunning, pending);

    std::weak_ptr<Impl> weak_impl = weak_from_this();
    std::weak_ptr<Record> weak_rec = rec_ptr;
    if (restarting) {
      rec.uptime_timer =
          timers_.Schedule(rec.run_started + absl::Milliseconds(*rec.spec.restart.min_uptime_ms),
                           [weak_impl, weak_rec, gen]() {
                             auto impl = weak_impl.lock();
                             auto r = weak_rec.lock();
                             if (impl && r) impl->OnUptimeReached(*r, gen);
                           });
    }
    if (rec.spec.timeout_ms > 0) {
      rec.timeout_timer = timers_.Schedule(
          rec.run_started + absl::Milliseconds(rec.spec.timeout_ms), [weak_impl, weak_rec, gen]() {
            auto impl = weak_impl.lock();
            auto r = weak_rec.lock();
            if (impl && r) impl->OnTimeout(r, gen);
          });
    }
    auto self = shared_from_this();
    if (child->stdout_fd.valid()) {
      rec.open_readers++;
      executor_.Spawn(
          ReadLoop(self, rec_ptr, gen, OutputStream::kStdout, child->stdout_fd.Release(), token));
    }
    if (child->stderr_fd.valid()) {
      rec.open_readers++;
      executor_.Spawn(
          ReadLoop(self, rec_ptr, gen, OutputStream::kStderr, child->stderr_fd.Release(), token));
    }
    executor_.Spawn(ExitLoop(self, rec_ptr, gen, rec.pidfd.get(), token));
    if (rec.spec.stdin_mode == StdinMode::kData) {
      StdinWrite w;
      w.data = rec.spec.stdin_data;
      w.close = true;
      StartStdinWriteLocked(rec_ptr, std::move(w), pending);
    }
    return absl::OkStatus();
  }

  // ---- cgroups ----
  // An fd of the cgroup.procs of `rec`'s cgroup (made on first use) for the next child to join;
  // an invalid fd without cgroups. In auto mode a cgroup that cannot be made or opened only costs
  // the airtight kill (the run is tracked as without cgroups); with --cgroups=required it fails
  // the spawn.
  absl::StatusOr<UniqueFd> JoinableCgroupLocked(Record& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    if (options_.cgroups == nullptr) {
      return UniqueFd();
    }
    if (rec.cgroup.empty()) {
      absl::StatusOr<std::string> dir = options_.cgroups->MakeProcessCgroup(rec.id);
      if (!dir.ok()) {
        return options_.cgroups->required() ? dir.status() : absl::StatusOr<UniqueFd>(UniqueFd());
      }
      rec.cgroup = *std::move(dir);
    }
    absl::StatusOr<UniqueFd> fd = OpenCgroupProcs(rec.cgroup);
    if (!fd.ok() && !options_.cgroups->required()) {
      return UniqueFd();
    }
    return fd;
  }

  // Removes `rec`'s cgroup once no run is live and its last member is gone; while descendants
  // that outlived the process keep it, housekeeping retries.
  void ReleaseCgroupLocked(const std::shared_ptr<Record>& rec_ptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    if (rec.cgroup.empty()) {
      return;
    }
    absl::MutexLock lock(&cgroups_mu_);
    if (RemoveCgroup(rec.cgroup)) {
      busy_cgroups_.erase(rec.cgroup);
      rec.cgroup.clear();
    } else {
      busy_cgroups_[rec.cgroup] = rec_ptr;
    }
  }

  // Retries the removal of cgroups that still had members. A record's directory is only removed
  // between runs (under its mu), so a child about to join never loses its cgroup.
  void RetryBusyCgroups() {
    std::vector<std::pair<std::string, std::weak_ptr<Record>>> busy;
    {
      absl::MutexLock lock(&cgroups_mu_);
      busy.assign(busy_cgroups_.begin(), busy_cgroups_.end());
    }
    for (auto& [dir, weak_rec] : busy) {
      if (std::shared_ptr<Record> rec = weak_rec.lock()) {
        absl::MutexLock rec_lock(&rec->mu);
        if (rec->cgroup != dir) {
          absl::MutexLock lock(&cgroups_mu_);
          busy_cgroups_.erase(dir);
        } else if (!rec->run_live) {
          ReleaseCgroupLocked(rec);
        }
        continue;
      }
      absl::MutexLock lock(&cgroups_mu_);  // Forgotten: the directory is nobody's any more.
      if (RemoveCgroup(dir)) {
        busy_cgroups_.erase(dir);
      }
    }
  }

  // ---- coroutines ----
  static coro::Task<void> ReadLoop(std::shared_ptr<Impl> impl, std::shared_ptr<Record> rec,
                                   uint64_t gen, OutputStream stream, int fd,
                                   coro::CancellationToken token) {
    UniqueFd owned(fd);
    std::string buffer(kReadChunk, '\0');
    bool cancelled = false;
    while (true) {
      // Read what is there (bounded per turn, so one chatty child cannot hog a worker).
      bool eof = false;
      for (int turn = 0; turn < 16; ++turn) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n > 0) {
          impl->Append(*rec, stream, absl::string_view(buffer.data(), static_cast<size_t>(n)));
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        eof = true;  // 0 (EOF) or an error (EIO on a pty whose slave closed).
        break;
      }
      if (eof || cancelled) break;
      absl::Status s = co_await impl->executor_.WaitReadable(fd, token);
      if (!s.ok()) {
        cancelled = true;  // One last non-blocking drain above, then stop.
      }
    }
    owned.Reset();
    impl->OnReaderDone(rec, gen);
  }

  static coro::Task<void> ExitLoop(std::shared_ptr<Impl> impl, std::shared_ptr<Record> rec,
                                   uint64_t gen, int pidfd, coro::CancellationToken token) {
    absl::Status s = co_await impl->executor_.WaitProcessExit(pidfd, token);
    if (!s.ok()) {
      // Only the executor's shutdown cancels this wait: the child must not outlive us unreaped.
      PidfdSignal(pidfd, SIGKILL);
    }
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    struct rusage usage {};
    long rc;
    do {
      rc = ::syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, &usage);
    } while (rc < 0 && errno == EINTR);
    impl->OnExited(rec, gen, info, usage);
  }

  static coro::Task<void> StdinLoop(std::shared_ptr<Impl> impl, std::shared_ptr<Record> rec,
                                    uint64_t gen, int fd, coro::CancellationToken token) {
    while (true) {
      absl::Status s = co_await impl->executor_.WaitWritable(fd, token);
      if (!impl->ContinueStdinWrite(rec, gen, s)) {
        break;
      }
    }
  }

  void Append(Record& rec, OutputStream stream, absl::string_view data) {
    Pending pending;
    int64_t dropped = 0;
    rec.mu.Lock();
    OutputRing* ring = stream == OutputStream::kStdout ? rec.out.get() : rec.err.get();
    if (ring != nullptr) {
      int64_t before = ring->start_offset();
      ring->Append(data);
      dropped = ring->start_offset() - before;
      NotifyChange(rec, pending);
    }
    UnlockAndRun(rec, pending);
    if (observer_ != nullptr) {
      observer_->OnOutput(stream, static_cast<int64_t>(data.size()));
      if (dropped > 0) observer_->OnOutputDropped(dropped);
    }
  }

  void OnReaderDone(const std::shared_ptr<Record>& rec, uint64_t gen) {
    Pending pending;
    rec->mu.Lock();
    if (rec->generation == gen) {
      rec->open_readers--;
      MaybeFinishRunLocked(rec, pending);
    }
    UnlockAndRun(*rec, pending);
  }

  void OnExited(const std::shared_ptr<Record>& rec, uint64_t gen, const siginfo_t& info,
                const struct rusage& usage) {
    Pending pending;
    std::unique_ptr<coro::CancellationSource> cancel;
    rec->mu.Lock();
    pid_t pid = rec->pid;
    if (rec->generation == gen) {
      rec->run_exited = true;
      rec->exit_info = info;
      rec->status.usage = UsageFrom(usage);
      rec->status.ended_at = timers_.Now();
      rec->pidfd.Reset();
      // Descendants that outlived the process: when it was being stopped, they go too.
      if (rec->stopping) {
        ::kill(-pid, SIGKILL);
        SignalAll(FindTree(0, rec->id, TrackedFn()), SIGKILL);
        if (!rec->cgroup.empty()) {
          KillCgroup(rec->cgroup);
        }
      }
      // Stop the readers (after a last drain: the child's final output is in the pipes) and a
      // pending stdin write.
      if (!rec->stdin_writer_active) {
        rec->stdin_fd.Reset();
        if (rec->stdin_write.has_value()) rec->stdin_write.reset();
      }
      cancel = std::move(rec->run_cancel);
      MaybeFinishRunLocked(rec, pending);
    }
    UnlockAndRun(*rec, pending);
    {
      absl::MutexLock lock(&tracked_mu_);
      auto it = tracked_.find(pid);
      if (it != tracked_.end() && --it->second == 0) tracked_.erase(it);
    }
    if (cancel != nullptr) {
      // Tokens keep the shared state alive; the source may go once it cancelled.
      cancel->Cancel(Cancelled("process exited"));
    }
  }

  void CancelTimersLocked(Record& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    for (TimerService::TimerId* t :
         {&rec.timeout_timer, &rec.kill_timer, &rec.uptime_timer, &rec.backoff_timer}) {
      if (*t != 0) {
        timers_.Cancel(*t);
        *t = 0;
      }
    }
  }

  int64_t BackoffMs(const Record& rec, int32_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    const RestartPolicy& p = rec.spec.restart;
    double delay =
        static_cast<double>(p.initial_backoff_ms) * std::pow(p.multiplier, std::max(0, n - 1));
    delay = std::min(delay, static_cast<double>(p.max_backoff_ms));
    double jitter = p.jitter.value_or(0.2);
    if (jitter > 0) {
      absl::MutexLock lock(&rng_mu_);
      std::uniform_real_distribution<double> dist(-jitter, jitter);
      delay *= 1.0 + dist(rng_);
    }
    return std::max<int64_t>(0, static_cast<int64_t>(delay));
  }

  // Finishes the run once it was reaped and its pipes drained: exit status, restart decision.
  void MaybeFinishRunLocked(const std::shared_ptr<Record>& rec_ptr, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    if (!rec.run_live || !rec.run_exited || rec.open_readers > 0) {
      return;
    }
    rec.run_live = false;
    CancelTimersLocked(rec);
    ReleaseCgroupLocked(rec_ptr);
    const siginfo_t& info = rec.exit_info;
    ProcessExit exit;
    bool killed = info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED;
    if (killed) {
      exit.exit_code = -1;
      exit.signal_number = info.si_status;
      exit.core_dumped = info.si_code == CLD_DUMPED;
    } else {
      exit.exit_code = info.si_status;
    }
    absl::Duration uptime = rec.status.ended_at - rec.run_started;
    std::string how = killed ? absl::StrCat("killed by ", SignalName(exit.signal_number),
                                            exit.core_dumped ? " (core dumped)" : "")
                             : absl::StrCat("exited with code ", exit.exit_code);
    if (rec.stopping) {
      exit.reason = rec.stop_reason;
      switch (rec.stop_reason) {
        case ExitReason::kTimedOut:
          exit.message = absl::StrCat(how, " after timeout of ", rec.spec.timeout_ms, " ms");
          break;
        case ExitReason::kSessionEnded:
          exit.message = absl::StrCat(how, " after its session ended");
          break;
        case ExitReason::kCallerGone:
          exit.message = absl::StrCat(how, " after its caller went away");
          break;
        default:
          exit.message = absl::StrCat(how, " after termination");
      }
    } else {
      exit.reason = killed ? ExitReason::kSignaled : ExitReason::kExited;
      exit.message = how;
    }
    if (observer_ != nullptr) {
      pending.calls.push_back([obs = observer_, reason = exit.reason]() { obs->OnExit(reason); });
    }
    rec.status.pid = 0;
    rec.status.process_group_id = 0;
    rec.stopping = false;
    const RestartPolicy& policy = rec.spec.restart;
    bool success =
        !killed && std::find(policy.success_exit_codes.begin(), policy.success_exit_codes.end(),
                             exit.exit_code) != policy.success_exit_codes.end();
    bool failed = !success || exit.reason == ExitReason::kTimedOut;
    if (failed) {
      rec.status.last_failure = exit.message;
    }
    rec.status.exit = exit;

    if (rec.then_restart) {
      rec.then_restart = false;
      rec.status.restart_count++;
      rec.status.start_failures = 0;
      rec.unstable_runs = 0;
      absl::Status started = StartRunLocked(rec_ptr, pending);
      auto waiters = std::move(rec.restart_waiters);
      rec.restart_waiters.clear();
      if (!started.ok()) {
        FailStartLocked(rec, started, pending);
      }
      absl::StatusOr<ProcessView> result =
          started.ok() ? absl::StatusOr<ProcessView>(ViewLocked(rec)) : started;
      for (auto& w : waiters) {
        pending.calls.push_back([w = std::move(w), result]() mutable { std::move(w)(result); });
      }
      return;
    }

    ProcessState next = ProcessState::kExited;
    bool wants_restart = !rec.stop_for_good && (policy.mode == RestartMode::kAlways ||
                                                (policy.mode == RestartMode::kOnFailure && failed));
    if (wants_restart) {
      bool unstable = uptime < absl::Milliseconds(policy.min_uptime_ms.value_or(0));
      if (unstable) {
        rec.status.start_failures++;
        rec.unstable_runs++;
      } else {
        rec.status.start_failures = 0;
        rec.unstable_runs = 0;
      }
      if (unstable && rec.status.start_failures > policy.max_start_failures.value_or(3)) {
        next = ProcessState::kFatal;
        rec.status.last_failure = absl::StrCat("exited too quickly ", rec.status.start_failures,
                                               " times in a row (last: ", exit.message, ")");
      } else if (policy.max_restarts > 0 && rec.status.restart_count >= policy.max_restarts) {
        next = ProcessState::kExited;
      } else {
        next = ProcessState::kBackoff;
      }
    }
    if (next == ProcessState::kBackoff) {
      int64_t delay = BackoffMs(rec, std::max(1, rec.unstable_runs));
      std::weak_ptr<Impl> weak_impl = weak_from_this();
      std::weak_ptr<Record> weak_rec = rec_ptr;
      uint64_t gen = rec.generation;
      SetState(rec, ProcessState::kBackoff, pending);
      rec.status.next_restart_at = timers_.Now() + absl::Milliseconds(delay);
      rec.backoff_timer =
          timers_.Schedule(rec.status.next_restart_at, [weak_impl, weak_rec, gen]() {
            auto impl = weak_impl.lock();
            auto r = weak_rec.lock();
            if (impl && r) impl->OnBackoffDone(r, gen);
          });
      return;
    }
    BecomeFinalLocked(rec_ptr, next, pending);
  }

  void FailStartLocked(Record& rec, const absl::Status& error, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    ProcessExit exit;
    exit.reason = ExitReason::kStartFailed;
    exit.exit_code = -1;
    exit.message = absl::StrCat("exec failed: ", error.message());
    rec.status.exit = exit;
    rec.status.last_failure = exit.message;
    if (observer_ != nullptr) {
      pending.calls.push_back([obs = observer_]() { obs->OnExit(ExitReason::kStartFailed); });
    }
  }

  void BecomeFinalLocked(const std::shared_ptr<Record>& rec_ptr, ProcessState state,
                         Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    CancelTimersLocked(rec);
    rec.final_seq++;
    SetState(rec, state, pending);
    live_.fetch_sub(1);
    if (options_.spawn_policy != nullptr) options_.spawn_policy->ReleaseProcesses(rec.owner, 1);
    if (!rec.spec.name.empty()) {
      absl::MutexLock lock(&names_mu_);
      auto it = live_names_.find(rec.spec.name);
      if (it != live_names_.end() && --it->second == 0) live_names_.erase(it);
    }
    if (rec.session_hook != 0 && sessions_ != nullptr) {
      pending.calls.push_back([sessions = sessions_, session = rec.spec.session_id,
                               hook = rec.session_hook]() { sessions->RemoveHook(session, hook); });
      rec.session_hook = 0;
    }
    {
      absl::MutexLock lock(&finished_mu_);
      finished_.push_back({timers_.Now(), rec.id, rec.final_seq});
    }
    std::weak_ptr<Impl> weak = weak_from_this();
    pending.calls.push_back([weak]() {
      if (auto impl = weak.lock()) impl->EnforceRetention(/*make_room=*/false);
    });
  }

  // A final process becomes live again (RestartProcess).
  void BecomeLiveAgainLocked(Record& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    live_.fetch_add(1);
    if (!rec.spec.name.empty()) {
      absl::MutexLock lock(&names_mu_);
      live_names_[rec.spec.name]++;
    }
  }

  void OnUptimeReached(Record& rec, uint64_t gen) {
    Pending pending;
    rec.mu.Lock();
    rec.uptime_timer = 0;
    if (rec.generation == gen && rec.run_live && rec.status.state == ProcessState::kStarting) {
      rec.status.start_failures = 0;
      rec.unstable_runs = 0;
      SetState(rec, ProcessState::kRunning, pending);
    }
    UnlockAndRun(rec, pending);
  }

  void OnTimeout(const std::shared_ptr<Record>& rec, uint64_t gen) {
    Pending pending;
    rec->mu.Lock();
    rec->timeout_timer = 0;
    if (rec->generation == gen && rec->run_live && !rec->run_exited && !rec->stopping) {
      BeginStopLocked(rec, rec->stop_signal, rec->kill_grace, ExitReason::kTimedOut,
                      /*for_good=*/false, pending);
    }
    UnlockAndRun(*rec, pending);
  }

  void OnBackoffDone(const std::shared_ptr<Record>& rec, uint64_t gen) {
    Pending pending;
    rec->mu.Lock();
    rec->backoff_timer = 0;
    if (rec->generation == gen && rec->status.state == ProcessState::kBackoff) {
      rec->status.restart_count++;
      absl::Status started = StartRunLocked(rec, pending);
      if (!started.ok()) {
        FailStartLocked(*rec, started, pending);
        BecomeFinalLocked(rec, ProcessState::kFatal, pending);
      }
    }
    UnlockAndRun(*rec, pending);
  }

  void OnKillTimer(const std::shared_ptr<Record>& rec, uint64_t gen) {
    rec->mu.Lock();
    rec->kill_timer = 0;
    if (rec->generation == gen && rec->run_live && !rec->run_exited) {
      KillTreeLocked(*rec, SIGKILL);
      rec->sent_kill = true;
    }
    rec->mu.Unlock();
  }

  int KillTreeLocked(Record& rec, int signal) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    // Find the tree before signalling anyone: once the root dies, its children are reparented and
    // no longer found under it.
    std::vector<pid_t> others = TreeOthersLocked(rec);
    int delivered = 0;
    // The root first: signalled after its children, a root waiting on them could see them die and
    // exit on its own before its signal arrives, and the run would not end by that signal.
    if (rec.pidfd.valid() && PidfdSignal(rec.pidfd.get(), signal) == 0) delivered++;
    if (rec.pid > 0) ::kill(-rec.pid, signal);
    if (signal == SIGKILL && !rec.cgroup.empty()) {
      delivered += KillCgroup(rec.cgroup);  // Atomic against forks; the root is a member too.
    }
    delivered += SignalAll(others, signal);
    return delivered;
  }

  // Every descendant of the live run but its root: the /proc tree, the cookie carriers and the
  // members of its cgroup (which include those that escaped both).
  std::vector<pid_t> TreeOthersLocked(const Record& rec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    std::vector<pid_t> tree = FindTree(rec.pid, rec.id, TrackedFn());
    if (!rec.cgroup.empty()) {
      absl::flat_hash_set<pid_t> known(tree.begin(), tree.end());
      for (pid_t member : CgroupMembers(rec.cgroup)) {
        if (known.insert(member).second) tree.push_back(member);
      }
    }
    std::erase(tree, rec.pid);
    return tree;
  }

  void BeginStopLocked(const std::shared_ptr<Record>& rec_ptr, int signal, absl::Duration grace,
                       ExitReason reason, bool for_good, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    rec.stop_for_good = rec.stop_for_good || for_good;
    if (rec.stopping) {
      return;
    }
    rec.stopping = true;
    rec.stop_reason = reason;
    SetState(rec, ProcessState::kStopping, pending);
    if (grace <= absl::ZeroDuration()) {
      KillTreeLocked(rec, SIGKILL);
      rec.sent_kill = true;
      return;
    }
    KillTreeLocked(rec, signal);
    std::weak_ptr<Impl> weak_impl = weak_from_this();
    std::weak_ptr<Record> weak_rec = rec_ptr;
    uint64_t gen = rec.generation;
    rec.kill_timer = timers_.Schedule(timers_.Now() + grace, [weak_impl, weak_rec, gen]() {
      auto impl = weak_impl.lock();
      auto r = weak_rec.lock();
      if (impl && r) impl->OnKillTimer(r, gen);
    });
  }

  // ---- stdin ----
  void StartStdinWriteLocked(const std::shared_ptr<Record>& rec_ptr, StdinWrite w, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec_ptr->mu) {
    Record& rec = *rec_ptr;
    rec.stdin_write = std::move(w);
    if (!StdinProgressLocked(rec, pending)) {
      return;  // Done (or failed) at once.
    }
    if (rec.stdin_writer_active) {
      return;  // The running StdinLoop picks this write up when the pipe is writable.
    }
    rec.stdin_writer_active = true;
    executor_.Spawn(StdinLoop(shared_from_this(), rec_ptr, rec.generation, rec.stdin_fd.get(),
                              rec.run_cancel->token()));
  }

  // Writes what the pipe takes. Returns true when the write must wait for the pipe.
  bool StdinProgressLocked(Record& rec, Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    StdinWrite& w = *rec.stdin_write;
    while (w.pos < w.data.size()) {
      ssize_t n = ::write(rec.stdin_fd.get(), w.data.data() + w.pos, w.data.size() - w.pos);
      if (n > 0) {
        w.pos += static_cast<size_t>(n);
        rec.status.stdin_bytes += n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      int err = errno;
      absl::Status error =
          err == EPIPE ? FailedPrecondition(
                             "STDIN_BROKEN_PIPE",
                             absl::StrCat("process '", rec.id, "' closed its stdin (stdin_offset ",
                                          rec.status.stdin_bytes, ")"))
                       : FailedPrecondition("STDIN_BROKEN_PIPE",
                                            absl::StrCat("writing stdin of process '", rec.id,
                                                         "': ", std::strerror(err)));
      // How far the stream got: ErrorInfo.metadata["stdin_offset"] for the client.
      error.SetPayload("spindle.dev/stdin_offset",
                       absl::Cord(absl::StrCat(rec.status.stdin_bytes)));
      CompleteStdinLocked(rec, error, pending);
      rec.stdin_fd.Reset();
      return false;
    }
    if (w.close) {
      if (rec.spec.pty.has_value()) {
        char eot = 4;
        ssize_t ignored = ::write(rec.stdin_fd.get(), &eot, 1);
        (void)ignored;
      } else {
        rec.stdin_fd.Reset();
      }
    }
    CompleteStdinLocked(rec, rec.status.stdin_bytes, pending);
    return false;
  }

  void CompleteStdinLocked(Record& rec, absl::StatusOr<int64_t> result, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rec.mu) {
    StdinWrite w = std::move(*rec.stdin_write);
    rec.stdin_write.reset();
    if (w.done) {
      pending.calls.push_back(
          [done = std::move(w.done), result]() mutable { std::move(done)(result); });
    }
  }

  // Called by StdinLoop after each wait; returns whether to wait again.
  bool ContinueStdinWrite(const std::shared_ptr<Record>& rec, uint64_t gen,
                          const absl::Status& waited) {
    Pending pending;
    rec->mu.Lock();
    bool again = false;
    if (rec->generation != gen || !rec->stdin_write.has_value()) {
      rec->stdin_writer_active = false;
      if (rec->run_exited) rec->stdin_fd.Reset();
    } else if (!waited.ok() || rec->run_exited) {
      CompleteStdinLocked(
          *rec,
          FailedPrecondition("PROCESS_EXITED", absl::StrCat("process '", rec->id,
                                                            "' exited before reading its stdin")),
          pending);
      rec->stdin_writer_active = false;
      if (rec->run_exited) rec->stdin_fd.Reset();
    } else {
      again = StdinProgressLocked(*rec, pending);
      if (!again) {
        rec->stdin_writer_active = false;
        if (rec->run_exited) rec->stdin_fd.Reset();
      }
    }
    UnlockAndRun(*rec, pending);
    return again;
  }

  // ---- retention and housekeeping ----
  void Forget(const std::shared_ptr<Record>& rec) {
    Pending pending;
    rec->mu.Lock();
    if (rec->forgotten) {
      rec->mu.Unlock();
      return;
    }
    rec->forgotten = true;
    ReleaseCgroupLocked(rec);
    ProcessEvent event;
    event.type = EventType::kDeleted;
    event.time = timers_.Now();
    event.process = ViewLocked(*rec);
    pending.events.push_back(std::move(event));
    NotifyChange(*rec, pending);
    {
      Shard& shard = ShardFor(rec->id);
      absl::MutexLock lock(&shard.mu);
      shard.records.erase(rec->id);
    }
    total_.fetch_sub(1);
    UnlockAndRun(*rec, pending);
  }

  // Forgets final processes beyond the count, older than the age, and (make_room) the oldest one
  // so that a new process fits under max_processes. Returns whether room was made.
  bool EnforceRetention(bool make_room) {
    absl::Time now = timers_.Now();
    bool made_room = false;
    while (true) {
      Finished entry;
      {
        absl::MutexLock lock(&finished_mu_);
        if (finished_.empty()) break;
        bool over_count = static_cast<int64_t>(finished_.size()) > options_.retain_finished;
        bool too_old = now - finished_.front().at >= options_.retain_age;
        bool room = make_room && !made_room && total_.load() >= options_.max_processes;
        if (!over_count && !too_old && !room) break;
        entry = std::move(finished_.front());
        finished_.pop_front();
      }
      auto rec = Find(entry.id);
      if (rec == nullptr) continue;
      bool still_final;
      {
        absl::MutexLock lock(&rec->mu);
        still_final = IsFinal(rec->status.state) && rec->final_seq == entry.final_seq;
      }
      if (still_final) {
        Forget(rec);
        if (make_room) made_room = true;
      }
    }
    return made_room;
  }

  void ScheduleHousekeeping() {
    std::weak_ptr<Impl> weak = weak_from_this();
    absl::MutexLock lock(&timer_mu_);
    if (shut_down_.load()) return;
    housekeeping_timer_ =
        timers_.Schedule(timers_.Now() + options_.housekeeping_interval, [weak]() {
          if (auto impl = weak.lock()) impl->Housekeeping();
        });
  }

  void Housekeeping() {
    if (options_.reap_orphans) {
      reaper_.Sweep(TrackedFn());
    }
    RetryBusyCgroups();
    EnforceRetention(false);
    {
      absl::Time now = timers_.Now();
      absl::MutexLock lock(&requests_mu_);
      for (auto it = requests_.begin(); it != requests_.end();) {
        if (it->second.expires < now) {
          requests_.erase(it++);
        } else {
          ++it;
        }
      }
    }
    ScheduleHousekeeping();
  }

  void ShutdownAll() {
    if (shut_down_.exchange(true)) return;
    {
      absl::MutexLock lock(&timer_mu_);
      if (housekeeping_timer_ != 0) timers_.Cancel(housekeeping_timer_);
    }
    for (auto& rec : All()) {
      absl::MutexLock lock(&rec->mu);
      CancelTimersLocked(*rec);
      if (rec->run_live && !rec->run_exited) {
        rec->stopping = true;
        rec->stop_for_good = true;
        rec->stop_reason = ExitReason::kTerminated;
        KillTreeLocked(*rec, SIGKILL);
      }
    }
    absl::MutexLock lock(&watchers_mu_);
    watchers_.clear();
  }
};

// ---------------------------------------------------------------------------------------------

ProcessTable::ProcessTable(ProcessTableOptions options, std::unique_ptr<Spawner> spawner,
                           coro::Executor& executor, TimerService& timers, SessionHooks* sessions,
                           ProcessObserver* observer)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(spawner), executor, timers,
                                   sessions, observer)) {
  impl_->Start();
}

ProcessTable::~ProcessTable() { Shutdown(); }

void ProcessTable::Shutdown() { impl_->ShutdownAll(); }

absl::Status ProcessTable::ValidateAndDefault(ProcessSpec& spec, bool for_run,
                                              int64_t max_run_output_bytes) const {
  const ProcessTableOptions& opt = impl_->options_;
  ProcessCommand& cmd = spec.command;
  if (cmd.argv.empty()) {
    return Invalid("spec.command.argv: must not be empty");
  }
  if (cmd.argv.size() > 4096) {
    return Invalid(
        absl::StrCat("spec.command.argv: ", cmd.argv.size(), " entries is more than 4096"));
  }
  size_t total = 0;
  for (size_t i = 0; i < cmd.argv.size(); ++i) {
    if (HasNul(cmd.argv[i])) {
      return Invalid(absl::StrCat("spec.command.argv[", i, "]: contains a NUL byte"));
    }
    total += cmd.argv[i].size() + 1;
  }
  if (cmd.argv[0].empty() && cmd.executable.empty()) {
    return Invalid("spec.command.argv[0]: must not be empty");
  }
  if (total > static_cast<size_t>(kMiB)) {
    return Invalid("spec.command.argv: more than 1 MiB in total");
  }
  if (cmd.executable.size() > 4096 || HasNul(cmd.executable)) {
    return Invalid("spec.command.executable: longer than 4096 bytes or contains NUL");
  }
  if (!cmd.cwd.empty() && (cmd.cwd.front() != '/' || cmd.cwd.size() > 4096 || HasNul(cmd.cwd))) {
    return Invalid(absl::StrCat("spec.command.cwd: '", cmd.cwd,
                                "' must be an absolute path of at most 4096 bytes"));
  }
  auto check_key = [](absl::string_view field, absl::string_view key) -> absl::Status {
    if (key.empty() || key.size() > 1024 || absl::StrContains(key, '=') || HasNul(key)) {
      return Invalid(absl::StrCat(field, ": variable name '", key,
                                  "' must be 1..1024 bytes without '=' or NUL"));
    }
    return absl::OkStatus();
  };
  if (cmd.env.set.size() > 1024 || cmd.env.unset.size() > 1024) {
    return Invalid("spec.command.env: more than 1024 entries");
  }
  for (const auto& [k, v] : cmd.env.set) {
    SPINDLE_RETURN_IF_ERROR(check_key("spec.command.env.set", k));
    if (v.size() > 32 * 1024 || HasNul(v)) {
      return Invalid(absl::StrCat("spec.command.env.set['", k,
                                  "']: value longer than 32 KiB or contains NUL"));
    }
  }
  for (const auto& k : cmd.env.unset) {
    SPINDLE_RETURN_IF_ERROR(check_key("spec.command.env.unset", k));
  }
  if (!spec.name.empty()) {
    SPINDLE_RETURN_IF_ERROR(ValidateName("spec.name", spec.name));
  }
  SPINDLE_RETURN_IF_ERROR(ValidateLabels("spec.labels", spec.labels));
  if (spec.stdin_mode == StdinMode::kUnspecified) {
    spec.stdin_mode = spec.pty.has_value() ? StdinMode::kPipe : StdinMode::kNone;
  }
  if (!spec.stdin_data.empty() && spec.stdin_mode != StdinMode::kData) {
    return Invalid("spec.stdin_data: must be empty unless stdin_mode is DATA");
  }
  if (spec.stdin_data.size() > static_cast<size_t>(4 * kMiB)) {
    return Invalid(
        absl::StrCat("spec.stdin_data: ", spec.stdin_data.size(), " bytes is more than 4 MiB"));
  }
  if (spec.stdout_mode == OutputMode::kUnspecified) spec.stdout_mode = OutputMode::kCapture;
  if (spec.stdout_mode == OutputMode::kMerge) {
    return Invalid("spec.stdout_mode: MERGE is only valid for stderr_mode");
  }
  if (spec.stderr_mode == OutputMode::kUnspecified) spec.stderr_mode = OutputMode::kCapture;
  if (spec.output_buffer_bytes == 0) spec.output_buffer_bytes = opt.default_output_buffer_bytes;
  if (spec.output_buffer_bytes < 4096 || spec.output_buffer_bytes > opt.max_output_buffer_bytes) {
    return Invalid(absl::StrCat("spec.output_buffer_bytes: ", spec.output_buffer_bytes,
                                " must be 0 or 4096..", opt.max_output_buffer_bytes));
  }
  const ProcessLimits& l = spec.limits;
  auto check_limit = [](absl::string_view field, const std::optional<int64_t>& v,
                        int64_t min) -> absl::Status {
    if (v.has_value() && *v < min) {
      return InvalidArgument("INVALID_LIMIT",
                             absl::StrCat("spec.limits.", field, ": ", *v, " must be >= ", min));
    }
    return absl::OkStatus();
  };
  SPINDLE_RETURN_IF_ERROR(check_limit("cpu_seconds", l.cpu_seconds, 1));
  SPINDLE_RETURN_IF_ERROR(check_limit("address_space_bytes", l.address_space_bytes, kMiB));
  SPINDLE_RETURN_IF_ERROR(check_limit("open_files", l.open_files, 3));
  SPINDLE_RETURN_IF_ERROR(check_limit("processes", l.processes, 1));
  SPINDLE_RETURN_IF_ERROR(check_limit("core_bytes", l.core_bytes, 0));
  SPINDLE_RETURN_IF_ERROR(check_limit("file_size_bytes", l.file_size_bytes, 0));
  if (l.nice.has_value() && (*l.nice < -20 || *l.nice > 19)) {
    return InvalidArgument("INVALID_LIMIT",
                           absl::StrCat("spec.limits.nice: ", *l.nice, " must be -20..19"));
  }
  if (spec.run_as.supplementary_gids.size() > 64) {
    return Invalid("spec.run_as.supplementary_gids: more than 64");
  }
  if (spec.timeout_ms < 0) {
    return Invalid(absl::StrCat("spec.timeout_ms: ", spec.timeout_ms, " must be >= 0"));
  }
  if (!spec.kill_grace_ms.has_value()) spec.kill_grace_ms = 10000;
  if (*spec.kill_grace_ms < 0 || *spec.kill_grace_ms > 3600000) {
    return Invalid(
        absl::StrCat("spec.kill_grace_ms: ", *spec.kill_grace_ms, " must be 0..3600000"));
  }
  if (spec.stop_signal.IsSet()) {
    SPINDLE_RETURN_IF_ERROR(ResolveSignal("spec.stop_signal", spec.stop_signal).status());
  } else {
    spec.stop_signal.name = "SIGTERM";
  }
  RestartPolicy& r = spec.restart;
  if (r.mode == RestartMode::kUnspecified) r.mode = RestartMode::kNever;
  if (r.initial_backoff_ms == 0) r.initial_backoff_ms = 1000;
  if (r.initial_backoff_ms < 10 || r.initial_backoff_ms > 3600000) {
    return Invalid(absl::StrCat("spec.restart.initial_backoff_ms: ", r.initial_backoff_ms,
                                " must be 0 or 10..3600000"));
  }
  if (r.max_backoff_ms == 0) r.max_backoff_ms = std::max<int64_t>(60000, r.initial_backoff_ms);
  if (r.max_backoff_ms < r.initial_backoff_ms || r.max_backoff_ms > 86400000) {
    return Invalid(absl::StrCat("spec.restart.max_backoff_ms: ", r.max_backoff_ms,
                                " must be initial_backoff_ms..86400000"));
  }
  if (r.multiplier == 0) r.multiplier = 2.0;
  if (!(r.multiplier >= 1.0 && r.multiplier <= 10.0)) {
    return Invalid(absl::StrCat("spec.restart.multiplier: ", r.multiplier, " must be 1.0..10.0"));
  }
  if (!r.jitter.has_value()) r.jitter = 0.2;
  if (!(*r.jitter >= 0.0 && *r.jitter <= 1.0)) {
    return Invalid(absl::StrCat("spec.restart.jitter: ", *r.jitter, " must be 0.0..1.0"));
  }
  if (r.max_restarts < 0 || r.max_restarts > 1000000) {
    return Invalid(
        absl::StrCat("spec.restart.max_restarts: ", r.max_restarts, " must be 0..1000000"));
  }
  if (!r.max_start_failures.has_value()) r.max_start_failures = 3;
  if (*r.max_start_failures < 0 || *r.max_start_failures > 1000) {
    return Invalid(absl::StrCat("spec.restart.max_start_failures: ", *r.max_start_failures,
                                " must be 0..1000"));
  }
  if (!r.min_uptime_ms.has_value()) r.min_uptime_ms = 1000;
  if (*r.min_uptime_ms < 0 || *r.min_uptime_ms > 86400000) {
    return Invalid(
        absl::StrCat("spec.restart.min_uptime_ms: ", *r.min_uptime_ms, " must be 0..86400000"));
  }
  if (r.success_exit_codes.size() > 256) {
    return Invalid("spec.restart.success_exit_codes: more than 256");
  }
  for (int32_t code : r.success_exit_codes) {
    if (code < 0 || code > 255) {
      return Invalid(absl::StrCat("spec.restart.success_exit_codes: ", code, " must be 0..255"));
    }
  }
  if (r.success_exit_codes.empty()) r.success_exit_codes = {0};
  if (spec.pty.has_value()) {
    ProcessPty& p = *spec.pty;
    if (p.rows == 0) p.rows = 24;
    if (p.cols == 0) p.cols = 80;
    if (p.rows > 65535 || p.cols > 65535) {
      return Invalid("spec.pty: rows and cols must be 1..65535");
    }
    if (p.term.empty()) p.term = "xterm-256color";
    if (p.term.size() > 64) return Invalid("spec.pty.term: longer than 64 bytes");
    if (spec.stdin_mode == StdinMode::kData) {
      return Invalid("spec.stdin_mode: DATA cannot be used with a pty (use PIPE or NONE)");
    }
  }
  if (for_run) {
    if (spec.stdin_mode == StdinMode::kPipe) {
      return Invalid("spec.stdin_mode: PIPE is not allowed in Run (use DATA)");
    }
    if (spec.restart.mode != RestartMode::kNever) {
      return Invalid("spec.restart.mode: Run allows only NEVER");
    }
    int64_t buffers = (spec.stdout_mode == OutputMode::kCapture ? spec.output_buffer_bytes : 0) +
                      (spec.stderr_mode == OutputMode::kCapture ? spec.output_buffer_bytes : 0);
    if (buffers > max_run_output_bytes) {
      return Invalid(absl::StrCat("spec.output_buffer_bytes: ", spec.output_buffer_bytes,
                                  " per stream does not fit one Run response (at most ",
                                  max_run_output_bytes, " bytes for both)"));
    }
  }
  if (opt.spawn_policy != nullptr) {
    SPINDLE_RETURN_IF_ERROR(opt.spawn_policy->ApplyToSpec(spec, impl_->InheritedPath()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ProcessView> ProcessTable::Spawn(ProcessSpec spec, absl::string_view request_id,
                                                absl::string_view identity) {
  Impl& impl = *impl_;
  if (impl.shut_down_.load()) {
    return Unavailable("SHUTTING_DOWN", "the server is shutting down");
  }
  if (request_id.size() > 64) {
    return Invalid("request_id: longer than 64 bytes");
  }
  if (!request_id.empty()) {
    std::string original;
    {
      absl::MutexLock lock(&impl.requests_mu_);
      auto it = impl.requests_.find(request_id);
      if (it != impl.requests_.end()) original = it->second.process_id;
    }
    if (!original.empty()) return Get(original);
  }
  SPINDLE_RETURN_IF_ERROR(ValidateAndDefault(spec, false, 0));
  if (spec.run_as.IsSet() && !impl.options_.allow_run_as) {
    return PermissionDenied("RUN_AS_NOT_ALLOWED",
                            "spec.run_as: spindled is not allowed to run processes as another "
                            "user (it does not run as root)");
  }
  if (!spec.session_id.empty()) {
    if (impl.sessions_ == nullptr) {
      return FailedPrecondition("SESSIONS_UNAVAILABLE",
                                absl::StrCat("spec.session_id '", spec.session_id,
                                             "': this server has no session service"));
    }
    absl::Status alive = impl.sessions_->CheckAlive(spec.session_id);
    if (!alive.ok() && alive.code() != absl::StatusCode::kNotFound &&
        alive.code() != absl::StatusCode::kAborted) {
      return alive;
    }
    if (!alive.ok()) {
      return NotFound(Reason(alive).empty() ? "SESSION_NOT_FOUND" : Reason(alive),
                      absl::StrCat("spec.session_id: ", alive.message()));
    }
  }
  // Room: live processes are a hard limit; retained ones yield.
  if (impl.live_.load() >= impl.options_.max_processes) {
    return ResourceExhausted(
        "TOO_MANY_PROCESSES",
        absl::StrCat("too many processes: ", impl.live_.load(), " are alive (max_processes ",
                     impl.options_.max_processes, ")"));
  }
  if (impl.total_.load() >= impl.options_.max_processes) {
    impl.EnforceRetention(/*make_room=*/true);
  }
  SpawnPolicy* const policy = impl.options_.spawn_policy.get();
  if (policy != nullptr) {
    SPINDLE_RETURN_IF_ERROR(policy->AcquireProcesses(identity, 1, "a new process"));
  }
  if (spec.unique_name && !spec.name.empty()) {
    absl::MutexLock lock(&impl.names_mu_);
    if (impl.live_names_.contains(spec.name)) {
      if (policy != nullptr) policy->ReleaseProcesses(identity, 1);
      return AlreadyExists("NAME_IN_USE",
                           absl::StrCat("spec.name: a live process is named '", spec.name, "'"));
    }
    impl.live_names_[spec.name]++;
  } else if (!spec.name.empty()) {
    absl::MutexLock lock(&impl.names_mu_);
    impl.live_names_[spec.name]++;
  }
  uint64_t seq = impl.next_seq_.fetch_add(1);
  uint32_t salt;
  {
    absl::MutexLock lock(&impl.rng_mu_);
    salt = static_cast<uint32_t>(impl.rng_());
  }
  auto rec =
      std::make_shared<Record>(absl::StrCat("p", seq, "-", absl::Hex(salt, absl::kZeroPad8)), seq);
  rec->spec = std::move(spec);
  rec->owner = std::string(identity);
  rec->stop_signal = *ResolveSignal("spec.stop_signal", rec->spec.stop_signal);
  rec->kill_grace = absl::Milliseconds(*rec->spec.kill_grace_ms);
  impl.BuildOptions(*rec);
  impl.live_.fetch_add(1);

  Pending pending;
  rec->mu.Lock();
  rec->status.created_at = impl.timers_.Now();
  if (rec->spec.stdout_mode == OutputMode::kCapture) {
    rec->out = std::make_unique<OutputRing>(rec->spec.output_buffer_bytes);
  }
  if (rec->spec.stderr_mode == OutputMode::kCapture && !rec->spec.pty.has_value()) {
    rec->err = std::make_unique<OutputRing>(rec->spec.output_buffer_bytes);
  }
  {
    Impl::Shard& shard = impl.ShardFor(rec->id);
    absl::MutexLock lock(&shard.mu);
    shard.records.emplace(rec->id, rec);
  }
  impl.total_.fetch_add(1);
  ProcessEvent spawned;
  spawned.type = EventType::kSpawned;
  spawned.time = impl.timers_.Now();
  spawned.process = Impl::ViewLocked(*rec);
  pending.events.push_back(spawned);
  absl::Status started = impl.StartRunLocked(rec, pending);
  if (!started.ok()) {
    rec->forgotten = true;
    {
      Impl::Shard& shard = impl.ShardFor(rec->id);
      absl::MutexLock lock(&shard.mu);
      shard.records.erase(rec->id);
    }
    impl.total_.fetch_sub(1);
    impl.live_.fetch_sub(1);
    if (policy != nullptr) policy->ReleaseProcesses(identity, 1);
    if (!rec->spec.name.empty()) {
      absl::MutexLock lock(&impl.names_mu_);
      auto it = impl.live_names_.find(rec->spec.name);
      if (it != impl.live_names_.end() && --it->second == 0) impl.live_names_.erase(it);
    }
    rec->mu.Unlock();
    return started;
  }
  ProcessView view = Impl::ViewLocked(*rec);
  impl.UnlockAndRun(*rec, pending);

  if (!rec->spec.session_id.empty()) {
    std::weak_ptr<Impl> weak = impl_;
    std::string id = rec->id;
    absl::StatusOr<SessionHooks::HookId> hook =
        impl.sessions_->OnEnd(rec->spec.session_id, [weak, id]() {
          if (auto impl = weak.lock()) {
            if (auto r = impl->Find(id)) {
              Pending pending;
              r->mu.Lock();
              r->session_hook = 0;
              if (r->run_live && !r->run_exited) {
                impl->BeginStopLocked(r, r->stop_signal, r->kill_grace, ExitReason::kSessionEnded,
                                      true, pending);
              } else if (r->status.state == ProcessState::kBackoff) {
                impl->BecomeFinalLocked(r, ProcessState::kExited, pending);
              }
              impl->UnlockAndRun(*r, pending);
            }
          }
        });
    if (hook.ok()) {
      absl::MutexLock lock(&rec->mu);
      rec->session_hook = *hook;
    } else {
      (void)Terminate(rec->id, 0, std::nullopt, ExitReason::kSessionEnded);
    }
  }
  if (!request_id.empty()) {
    absl::MutexLock lock(&impl.requests_mu_);
    impl.requests_[request_id] = {rec->id, impl.timers_.Now() + kRequestIdRetention};
  }
  return view;
}

namespace {

// A live process's usage so far, from /proc (the usage of a run is otherwise known at its end).
void FillLiveUsage(ProcessView& view) {
  const ProcessState state = view.status.state;
  if (state != ProcessState::kRunning && state != ProcessState::kStopping) {
    return;
  }
  if (std::optional<ProcessUsage> usage = ReadLiveUsage(view.status.pid, ::getpid())) {
    view.status.usage = *usage;
  }
}

}  // namespace

absl::StatusOr<ProcessView> ProcessTable::Get(absl::string_view id) const {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  ProcessView view;
  {
    absl::MutexLock lock(&rec->mu);
    view = Impl::ViewLocked(*rec);
  }
  FillLiveUsage(view);
  return view;
}

absl::Status ProcessTable::ValidateFilter(const ProcessFilter& filter) const {
  SPINDLE_RETURN_IF_ERROR(LabelSelector::Parse("label_selector", filter.label_selector).status());
  SPINDLE_RETURN_IF_ERROR(ValidatePrefix("name_prefix", filter.name_prefix));
  return absl::OkStatus();
}

bool ProcessTable::Matches(const ProcessFilter& filter, const ProcessView& view) const {
  auto selector = LabelSelector::Parse("label_selector", filter.label_selector);
  return selector.ok() && Impl::MatchesParsed(filter, *selector, view);
}

absl::StatusOr<ProcessTable::Page> ProcessTable::List(const ProcessFilter& filter,
                                                      int32_t page_size,
                                                      absl::string_view page_token) const {
  if (page_size < 0 || page_size > 1000) {
    return Invalid(absl::StrCat("page_size: ", page_size, " must be 0..1000"));
  }
  if (page_size == 0) page_size = 100;
  uint64_t after = 0;
  if (!page_token.empty()) {
    absl::string_view digits = page_token;
    if (!absl::ConsumePrefix(&digits, "s") || !absl::SimpleAtoi(digits, &after)) {
      return Invalid(absl::StrCat("page_token: '", page_token, "' is not a valid token"));
    }
  }
  SPINDLE_ASSIGN_OR_RETURN(auto selector,
                           LabelSelector::Parse("label_selector", filter.label_selector));
  SPINDLE_RETURN_IF_ERROR(ValidatePrefix("name_prefix", filter.name_prefix));
  Page page;
  for (const auto& rec : impl_->All()) {
    if (rec->seq <= after) continue;
    ProcessView view;
    {
      absl::MutexLock lock(&rec->mu);
      view = Impl::ViewLocked(*rec);
    }
    if (!Impl::MatchesParsed(filter, selector, view)) continue;
    if (static_cast<int32_t>(page.processes.size()) == page_size) {
      page.next_page_token = absl::StrCat("s", after);
      break;
    }
    after = rec->seq;
    FillLiveUsage(view);
    page.processes.push_back(std::move(view));
  }
  return page;
}

absl::StatusOr<ProcessTable::WaitId> ProcessTable::Wait(absl::string_view id, WaitCondition until,
                                                        ViewCallback done) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  if (until == WaitCondition::kUnspecified) until = WaitCondition::kFinal;
  rec->mu.Lock();
  ProcessState s = rec->status.state;
  bool reached = IsFinal(s) || (until == WaitCondition::kRunning && s == ProcessState::kRunning);
  if (reached) {
    ProcessView view = Impl::ViewLocked(*rec);
    rec->mu.Unlock();
    std::move(done)(std::move(view));
    return 0;
  }
  WaitId wait = impl_->next_wait_.fetch_add(1);
  rec->waiters.emplace(wait, Waiter{until, std::move(done)});
  rec->mu.Unlock();
  return wait;
}

bool ProcessTable::CancelWait(absl::string_view id, WaitId wait) {
  auto rec = impl_->Find(id);
  if (rec == nullptr || wait == 0) return false;
  absl::MutexLock lock(&rec->mu);
  return rec->waiters.erase(wait) > 0;
}

absl::StatusOr<ProcessTable::WaitId> ProcessTable::WaitChange(
    absl::string_view id, int64_t stdout_offset, int64_t stderr_offset,
    absl::AnyInvocable<void() &&> changed) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  rec->mu.Lock();
  ChangeWaiter w{stdout_offset, stderr_offset, std::move(changed)};
  if (Impl::ChangeReady(*rec, w)) {
    rec->mu.Unlock();
    std::move(w.changed)();
    return 0;
  }
  WaitId wait = impl_->next_wait_.fetch_add(1);
  rec->change_waiters.emplace(wait, std::move(w));
  rec->mu.Unlock();
  return wait;
}

bool ProcessTable::CancelWaitChange(absl::string_view id, WaitId wait) {
  auto rec = impl_->Find(id);
  if (rec == nullptr || wait == 0) return false;
  absl::MutexLock lock(&rec->mu);
  return rec->change_waiters.erase(wait) > 0;
}

absl::StatusOr<std::optional<OutputChunk>> ProcessTable::ReadOutput(absl::string_view id,
                                                                    OutputStream stream,
                                                                    int64_t offset,
                                                                    int64_t max_bytes) const {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  absl::MutexLock lock(&rec->mu);
  const OutputRing* ring = stream == OutputStream::kStdout ? rec->out.get() : rec->err.get();
  if (ring == nullptr) return std::optional<OutputChunk>();
  OutputChunk chunk;
  chunk.stream = stream;
  chunk.offset = offset;
  chunk.data = ring->Read(offset, max_bytes, &chunk.dropped_bytes);
  if (chunk.data.empty() && chunk.dropped_bytes == 0) return std::optional<OutputChunk>();
  return std::optional<OutputChunk>(std::move(chunk));
}

absl::StatusOr<int> ProcessTable::Signal(absl::string_view id, int signal, SignalTarget target) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  absl::MutexLock lock(&rec->mu);
  if (!rec->run_live || rec->run_exited) {
    return FailedPrecondition("PROCESS_EXITED",
                              absl::StrCat("process '", id, "' has no live run (state ",
                                           StateName(rec->status.state), ")"));
  }
  switch (target) {
    case SignalTarget::kGroup:
      if (::kill(-rec->pid, signal) < 0) {
        return FailedPrecondition(
            "PROCESS_EXITED", absl::StrCat("process group ", rec->pid, ": ", std::strerror(errno)));
      }
      return static_cast<int>(ChildrenOf(rec->pid).size()) + 1;
    case SignalTarget::kTree: {
      std::vector<pid_t> tree = impl_->TreeOthersLocked(*rec);
      tree.push_back(rec->pid);
      return SignalAll(tree, signal);
    }
    default:
      if (PidfdSignal(rec->pidfd.get(), signal) < 0) {
        return FailedPrecondition("PROCESS_EXITED",
                                  absl::StrCat("process '", id, "': ", std::strerror(errno)));
      }
      return 1;
  }
}

absl::StatusOr<ProcessView> ProcessTable::Terminate(absl::string_view id, int signal,
                                                    std::optional<absl::Duration> grace,
                                                    ExitReason reason, ViewCallback gone) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  Pending pending;
  rec->mu.Lock();
  if (rec->status.state == ProcessState::kBackoff) {
    ProcessExit exit = rec->status.exit.value_or(ProcessExit{});
    exit.reason = reason;
    exit.message = absl::StrCat("stopped in BACKOFF (", exit.message, ")");
    rec->status.exit = exit;
    impl_->BecomeFinalLocked(rec, ProcessState::kExited, pending);
  } else if (rec->run_live) {
    if (rec->run_exited) {
      rec->stop_for_good = true;  // Finishing now: make sure it is not restarted.
    } else {
      impl_->BeginStopLocked(rec, signal == 0 ? rec->stop_signal : signal,
                             grace.value_or(rec->kill_grace), reason, /*for_good=*/true, pending);
    }
  }
  ProcessView view = Impl::ViewLocked(*rec);
  if (gone) {
    if (IsFinal(rec->status.state)) {
      pending.calls.push_back(
          [gone = std::move(gone), view]() mutable { std::move(gone)(std::move(view)); });
    } else {
      rec->waiters.emplace(impl_->next_wait_.fetch_add(1),
                           Waiter{WaitCondition::kFinal, std::move(gone)});
    }
  }
  impl_->UnlockAndRun(*rec, pending);
  return view;
}

void ProcessTable::Restart(absl::string_view id, std::optional<absl::Duration> grace,
                           absl::AnyInvocable<void(absl::StatusOr<ProcessView>) &&> done) {
  auto found = impl_->FindOrError(id);
  if (!found.ok()) {
    std::move(done)(found.status());
    return;
  }
  auto rec = *found;
  Pending pending;
  rec->mu.Lock();
  if (rec->run_live) {
    rec->restart_waiters.push_back(std::move(done));
    if (!rec->run_exited && !rec->stopping) {
      impl_->BeginStopLocked(rec, rec->stop_signal, grace.value_or(rec->kill_grace),
                             ExitReason::kTerminated, true, pending);
    }
    rec->then_restart = true;
    impl_->UnlockAndRun(*rec, pending);
    return;
  }
  bool was_final = IsFinal(rec->status.state);
  impl_->CancelTimersLocked(*rec);
  if (was_final) {
    if (impl_->live_.load() >= impl_->options_.max_processes) {
      rec->mu.Unlock();
      std::move(done)(ResourceExhausted("TOO_MANY_PROCESSES", "too many live processes"));
      return;
    }
    if (rec->spec.unique_name && !rec->spec.name.empty()) {
      absl::MutexLock lock(&impl_->names_mu_);
      if (impl_->live_names_.contains(rec->spec.name)) {
        rec->mu.Unlock();
        std::move(done)(AlreadyExists(
            "NAME_IN_USE", absl::StrCat("a live process is named '", rec->spec.name, "'")));
        return;
      }
    }
    // Live again: it counts for the identity it was spawned for.
    if (impl_->options_.spawn_policy != nullptr) {
      absl::Status room =
          impl_->options_.spawn_policy->AcquireProcesses(rec->owner, 1, "restarting it");
      if (!room.ok()) {
        rec->mu.Unlock();
        std::move(done)(std::move(room));
        return;
      }
    }
    impl_->BecomeLiveAgainLocked(*rec);
  }
  rec->status.restart_count++;
  rec->status.start_failures = 0;
  rec->unstable_runs = 0;
  absl::Status started = impl_->StartRunLocked(rec, pending);
  absl::StatusOr<ProcessView> result;
  if (!started.ok()) {
    impl_->FailStartLocked(*rec, started, pending);
    impl_->BecomeFinalLocked(rec, ProcessState::kFatal, pending);
    result = started;
  } else {
    result = Impl::ViewLocked(*rec);
  }
  impl_->UnlockAndRun(*rec, pending);
  std::move(done)(std::move(result));
}

void ProcessTable::Delete(absl::string_view id, bool force, StatusCallback done) {
  auto found = impl_->FindOrError(id);
  if (!found.ok()) {
    std::move(done)(found.status());
    return;
  }
  auto rec = *found;
  bool final;
  {
    absl::MutexLock lock(&rec->mu);
    final = IsFinal(rec->status.state);
  }
  if (final) {
    impl_->Forget(rec);
    std::move(done)(absl::OkStatus());
    return;
  }
  if (!force) {
    std::move(done)(
        FailedPrecondition("PROCESS_RUNNING", absl::StrCat("process '", id,
                                                           "' is not final; terminate it first or "
                                                           "delete with force")));
    return;
  }
  std::weak_ptr<Impl> weak = impl_;
  auto terminated = Terminate(id, 0, std::nullopt, ExitReason::kTerminated,
                              [weak, rec, done = std::move(done)](ProcessView) mutable {
                                if (auto impl = weak.lock()) impl->Forget(rec);
                                std::move(done)(absl::OkStatus());
                              });
  (void)terminated;
}

absl::StatusOr<uint64_t> ProcessTable::AcquireStdin(absl::string_view id) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  absl::MutexLock lock(&rec->mu);
  if (rec->spec.stdin_mode != StdinMode::kPipe) {
    return FailedPrecondition("STDIN_NOT_PIPE",
                              absl::StrCat("process '", id, "' was not spawned with stdin PIPE"));
  }
  if (!rec->run_live || rec->run_exited) {
    return FailedPrecondition("PROCESS_EXITED", absl::StrCat("process '", id, "' has exited"));
  }
  if (!rec->stdin_fd.valid()) {
    return FailedPrecondition("STDIN_CLOSED",
                              absl::StrCat("stdin of process '", id, "' is closed"));
  }
  if (rec->stdin_lease != 0) {
    return FailedPrecondition("STDIN_BUSY",
                              absl::StrCat("stdin of process '", id, "' has another writer"));
  }
  rec->stdin_lease = impl_->next_wait_.fetch_add(1);
  return rec->stdin_lease;
}

void ProcessTable::ReleaseStdin(absl::string_view id, uint64_t lease) {
  auto rec = impl_->Find(id);
  if (rec == nullptr) return;
  absl::ReleasableMutexLock lock(&rec->mu);
  if (rec->stdin_lease != lease) return;
  rec->stdin_lease = 0;
  Pending pending;
  if (rec->stdin_write.has_value()) {
    // The owner went away with a write the pipe has not taken yet: drop the rest of it.
    impl_->CompleteStdinLocked(*rec, Cancelled("the stdin writer went away"), pending);
  }
  lock.Release();
  for (auto& call : pending.calls) std::move(call)();
}

void ProcessTable::WriteStdin(absl::string_view id, uint64_t lease, std::string data,
                              std::optional<int64_t> offset, bool close,
                              absl::AnyInvocable<void(absl::StatusOr<int64_t>) &&> done) {
  auto found = impl_->FindOrError(id);
  if (!found.ok()) {
    std::move(done)(found.status());
    return;
  }
  auto rec = *found;
  Pending pending;
  rec->mu.Lock();
  absl::Status error;
  if (rec->stdin_lease != lease) {
    error = FailedPrecondition("STDIN_BUSY",
                               absl::StrCat("stdin of process '", id, "' has another writer"));
  } else if (!rec->run_live || rec->run_exited) {
    error = FailedPrecondition("PROCESS_EXITED", absl::StrCat("process '", id, "' has exited"));
  } else if (!rec->stdin_fd.valid()) {
    error =
        FailedPrecondition("STDIN_CLOSED", absl::StrCat("stdin of process '", id, "' is closed"));
  } else if (rec->stdin_write.has_value()) {
    error = FailedPrecondition("STDIN_BUSY", "a write is already in progress");
  } else if (offset.has_value() && *offset > rec->status.stdin_bytes) {
    error = Invalid(
        absl::StrCat("offset: ", *offset, " is past the stdin position ", rec->status.stdin_bytes));
  } else if (offset.has_value() && *offset < 0) {
    error = Invalid(absl::StrCat("offset: ", *offset, " must be >= 0"));
  }
  if (!error.ok()) {
    rec->mu.Unlock();
    std::move(done)(error);
    return;
  }
  if (offset.has_value()) {
    int64_t skip = rec->status.stdin_bytes - *offset;
    data.erase(0, static_cast<size_t>(std::min<int64_t>(skip, static_cast<int64_t>(data.size()))));
  }
  StdinWrite w;
  w.data = std::move(data);
  w.close = close;
  w.done = std::move(done);
  impl_->StartStdinWriteLocked(rec, std::move(w), pending);
  impl_->UnlockAndRun(*rec, pending);
}

absl::StatusOr<ProcessView> ProcessTable::CloseStdin(absl::string_view id, uint64_t lease) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  absl::MutexLock lock(&rec->mu);
  if (rec->spec.stdin_mode != StdinMode::kPipe) {
    return FailedPrecondition("STDIN_NOT_PIPE",
                              absl::StrCat("process '", id, "' was not spawned with stdin PIPE"));
  }
  if (rec->stdin_lease != 0 && rec->stdin_lease != lease) {
    return FailedPrecondition(
        "STDIN_BUSY", absl::StrCat("stdin of process '", id, "' is owned by another stream"));
  }
  if (rec->stdin_fd.valid() && !rec->stdin_writer_active) {
    if (rec->spec.pty.has_value()) {
      char eot = 4;
      ssize_t ignored = ::write(rec->stdin_fd.get(), &eot, 1);
      (void)ignored;
    } else {
      rec->stdin_fd.Reset();
    }
  }
  return Impl::ViewLocked(*rec);
}

absl::Status ProcessTable::Resize(absl::string_view id, int rows, int cols) {
  SPINDLE_ASSIGN_OR_RETURN(auto rec, impl_->FindOrError(id));
  absl::MutexLock lock(&rec->mu);
  if (!rec->spec.pty.has_value()) {
    return FailedPrecondition("NO_PTY", absl::StrCat("process '", id, "' has no pty"));
  }
  if (!rec->stdin_fd.valid()) {
    return FailedPrecondition("PROCESS_EXITED", absl::StrCat("process '", id, "' has exited"));
  }
  struct winsize size {};
  size.ws_row = static_cast<unsigned short>(rows);
  size.ws_col = static_cast<unsigned short>(cols);
  ::ioctl(rec->stdin_fd.get(), TIOCSWINSZ, &size);
  return absl::OkStatus();
}

uint64_t ProcessTable::Watch(ProcessFilter filter,
                             absl::AnyInvocable<void(const ProcessEvent&)> on_event) {
  auto w = std::make_shared<Impl::Watcher>();
  w->selector =
      LabelSelector::Parse("label_selector", filter.label_selector).value_or(LabelSelector());
  w->filter = std::move(filter);
  w->on_event = std::move(on_event);
  uint64_t id = impl_->next_watch_.fetch_add(1);
  absl::MutexLock lock(&impl_->watchers_mu_);
  impl_->watchers_.emplace(id, std::move(w));
  return id;
}

void ProcessTable::Unwatch(uint64_t watch) {
  std::shared_ptr<Impl::Watcher> w;
  {
    absl::MutexLock lock(&impl_->watchers_mu_);
    auto it = impl_->watchers_.find(watch);
    if (it == impl_->watchers_.end()) return;
    w = std::move(it->second);
    impl_->watchers_.erase(it);
  }
  absl::MutexLock lock(&w->call_mu);
  w->removed = true;
}

ProcessTableStats ProcessTable::Stats() const {
  ProcessTableStats stats;
  for (const auto& rec : impl_->All()) {
    absl::MutexLock lock(&rec->mu);
    stats.by_state[static_cast<int>(rec->status.state)]++;
    stats.total++;
    stats.waiters += static_cast<int64_t>(rec->waiters.size() + rec->change_waiters.size());
    if (!IsFinal(rec->status.state)) stats.live++;
  }
  return stats;
}

}  // namespace spindle::process
