#include "spindle/pool/pool_table.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/labels.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"
#include "spindle/pool/deferred.h"
#include "spindle/pool/framing.h"
#include "spindle/pool/io_loop.h"
#include "spindle/process/process_tree.h"
#include "spindle/process/signals.h"

extern char** environ;

namespace spindle::pool {

using internal::Deferred;
using process::UniqueFd;

const char* PoolStateName(PoolState s) {
  switch (s) {
    case PoolState::kOpen:
      return "OPEN";
    case PoolState::kDraining:
      return "DRAINING";
    case PoolState::kClosed:
      return "CLOSED";
    case PoolState::kTerminating:
      return "TERMINATING";
    case PoolState::kTerminated:
      return "TERMINATED";
    default:
      return "UNSPECIFIED";
  }
}
const char* TaskStateName(TaskState s) {
  switch (s) {
    case TaskState::kQueued:
      return "QUEUED";
    case TaskState::kRunning:
      return "RUNNING";
    case TaskState::kBackoff:
      return "BACKOFF";
    case TaskState::kSucceeded:
      return "SUCCEEDED";
    case TaskState::kFailed:
      return "FAILED";
    case TaskState::kCancelled:
      return "CANCELLED";
    case TaskState::kTimedOut:
      return "TIMED_OUT";
    default:
      return "UNSPECIFIED";
  }
}
const char* WorkerStateName(WorkerState s) {
  switch (s) {
    case WorkerState::kStarting:
      return "STARTING";
    case WorkerState::kIdle:
      return "IDLE";
    case WorkerState::kBusy:
      return "BUSY";
    case WorkerState::kStopping:
      return "STOPPING";
    default:
      return "UNSPECIFIED";
  }
}
const char* PoolKindName(PoolKind k) {
  switch (k) {
    case PoolKind::kCommand:
      return "COMMAND";
    case PoolKind::kWorker:
      return "WORKER";
    case PoolKind::kThread:
      return "THREAD";
    default:
      return "UNSPECIFIED";
  }
}
bool IsFinal(TaskState s) {
  return s == TaskState::kSucceeded || s == TaskState::kFailed || s == TaskState::kCancelled ||
         s == TaskState::kTimedOut;
}
bool IsFinal(PoolState s) { return s == PoolState::kClosed || s == PoolState::kTerminated; }

namespace {

absl::Status Invalid(absl::string_view message) {
  return InvalidArgument("INVALID_ARGUMENT", message);
}

absl::Status PoolNotFound(absl::string_view name) {
  return NotFound("POOL_NOT_FOUND", absl::StrCat("pool '", name, "' not found"));
}
absl::Status TaskNotFound(absl::string_view id) {
  return NotFound("TASK_NOT_FOUND", absl::StrCat("task '", id, "' not found"));
}

// "p<uid>-<seq>".
bool ParseTaskId(absl::string_view id, uint64_t* uid, uint64_t* seq) {
  if (!absl::ConsumePrefix(&id, "p")) return false;
  size_t dash = id.find('-');
  if (dash == absl::string_view::npos) return false;
  return absl::SimpleAtoi(id.substr(0, dash), uid) && absl::SimpleAtoi(id.substr(dash + 1), seq);
}

std::string ExitText(const process::ProcessExit& exit) {
  if (exit.signal_number != 0) {
    return absl::StrCat("killed by ", process::SignalName(exit.signal_number));
  }
  return absl::StrCat("exit code ", exit.exit_code);
}

process::ProcessUsage UsageFrom(const struct rusage& ru) {
  process::ProcessUsage u;
  u.user_cpu_ms = ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000;
  u.system_cpu_ms = ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
  u.max_rss_bytes = ru.ru_maxrss * 1024;
  u.minor_faults = ru.ru_minflt;
  u.major_faults = ru.ru_majflt;
  u.voluntary_context_switches = ru.ru_nvcsw;
  u.involuntary_context_switches = ru.ru_nivcsw;
  return u;
}

// Keeps the last `cap` bytes of a stream.
struct Tail {
  std::string data;
  int64_t dropped = 0;
  void Append(absl::string_view bytes, size_t cap) {
    data.append(bytes.data(), bytes.size());
    if (data.size() > cap) {
      size_t drop = data.size() - cap;
      data.erase(0, drop);
      dropped += static_cast<int64_t>(drop);
    }
  }
};

// Reads everything readable from a non-blocking fd. Returns false on EOF or error.
bool DrainFd(int fd, std::string& out) {
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      out.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

void KillTree(pid_t pid, const std::string& cookie, int signal) {
  if (pid <= 0) return;
  std::vector<pid_t> tree = process::FindTree(pid, cookie, [](pid_t) { return false; });
  ::kill(-pid, signal);  // Its process group (setpgid at spawn).
  process::SignalAll(tree, signal);
}

struct ResolvedRetry {
  int32_t max_attempts = 1;
  int64_t initial_backoff_ms = 1000;
  int64_t max_backoff_ms = 60000;
  double multiplier = 2.0;
  double jitter = 0.2;
  std::vector<int32_t> non_retryable;
  bool on_failed = true, on_timed_out = false, on_worker_lost = true;
};

ResolvedRetry Resolve(const RetryPolicy& p) {
  ResolvedRetry r;
  r.max_attempts = std::max(1, p.max_attempts);
  if (p.initial_backoff_ms > 0) r.initial_backoff_ms = p.initial_backoff_ms;
  if (p.max_backoff_ms > 0) r.max_backoff_ms = p.max_backoff_ms;
  if (p.multiplier > 0) r.multiplier = p.multiplier;
  if (p.jitter.has_value()) r.jitter = *p.jitter;
  r.non_retryable = p.non_retryable_exit_codes;
  if (!p.retry_on.empty()) {
    r.on_failed = r.on_timed_out = r.on_worker_lost = false;
    for (RetryCondition c : p.retry_on) {
      if (c == RetryCondition::kFailed) r.on_failed = true;
      if (c == RetryCondition::kTimedOut) r.on_timed_out = true;
      if (c == RetryCondition::kWorkerLost) r.on_worker_lost = true;
    }
  }
  return r;
}

// How one attempt ended, before the retry policy decides.
struct AttemptEnd {
  enum Kind { kOk, kFailed, kTimedOut, kWorkerLost, kStopped } kind = kOk;
  std::string error;
  std::string error_reason;
  std::string output;
  std::optional<process::ProcessExit> exit;
  Tail out, err;
  process::ProcessUsage usage;
  bool no_retry = false;  // e.g. exec failure, non-retryable exit code
};

std::string SpecKey(const PoolSpec& s) {
  auto command_key = [](const process::ProcessCommand& c) {
    std::string env;
    for (const auto& [k, v] : c.env.set) absl::StrAppend(&env, k, "=", v, ";");
    return absl::StrCat(absl::StrJoin(c.argv, "\x1f"), "|", c.executable, "|", c.env.clean, "|",
                        env, "|", absl::StrJoin(c.env.unset, ","), "|", c.cwd);
  };
  auto retry_key = [](const RetryPolicy& r) {
    std::string on;
    for (auto c : r.retry_on) absl::StrAppend(&on, static_cast<int>(c), ",");
    return absl::StrCat(r.max_attempts, "/", r.initial_backoff_ms, "/", r.max_backoff_ms, "/",
                        r.multiplier, "/", r.jitter.value_or(-1), "/",
                        absl::StrJoin(r.non_retryable_exit_codes, ","), "/", on);
  };
  std::string labels;
  for (const auto& [k, v] : s.labels) absl::StrAppend(&labels, k, "=", v, ";");
  std::string key =
      absl::StrCat(static_cast<int>(s.kind), "|", s.size, "|", s.max_queued, "|",
                   s.default_task_timeout_ms, "|", retry_key(s.retry), "|", s.max_tasks_per_worker,
                   "|", labels, "|", s.kill_grace_ms, "|", s.max_output_bytes, "|", s.session_id,
                   "|", s.run_as.uid.value_or(~0u), "|", s.run_as.gid.value_or(~0u));
  if (s.worker.has_value()) {
    absl::StrAppend(&key, "|W:", command_key(s.worker->command), "|", s.worker->start_timeout_ms,
                    "|", s.worker->stop_grace_ms);
  }
  const auto& l = s.limits;
  absl::StrAppend(&key, "|L:", l.cpu_seconds.value_or(-1), ",", l.address_space_bytes.value_or(-1),
                  ",", l.open_files.value_or(-1), ",", l.processes.value_or(-1), ",",
                  l.core_bytes.value_or(-1), ",", l.file_size_bytes.value_or(-1), ",",
                  l.nice.value_or(-100));
  return key;
}

absl::Status ValidateCommand(const std::string& field, const process::ProcessCommand& c) {
  if (c.argv.empty()) {
    return Invalid(absl::StrCat(field, ".argv: required (at least the program)"));
  }
  if (c.argv.size() > 4096) {
    return Invalid(absl::StrCat(field, ".argv: ", c.argv.size(), " entries, at most 4096"));
  }
  size_t total = 0;
  for (size_t i = 0; i < c.argv.size(); ++i) {
    if (c.argv[i].find('\0') != std::string::npos) {
      return Invalid(absl::StrCat(field, ".argv[", i, "]: contains NUL"));
    }
    total += c.argv[i].size();
  }
  if (c.argv[0].empty()) {
    return Invalid(absl::StrCat(field, ".argv[0]: empty program"));
  }
  if (total > (1 << 20)) {
    return Invalid(absl::StrCat(field, ".argv: ", total, " bytes, at most 1 MiB"));
  }
  if (!c.cwd.empty() && c.cwd[0] != '/') {
    return Invalid(absl::StrCat(field, ".cwd: '", c.cwd, "' is not absolute"));
  }
  for (const auto& [k, v] : c.env.set) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return Invalid(absl::StrCat(field, ".env.set: bad variable '", k, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const std::string& field, int64_t value, int64_t lo, int64_t hi,
                        absl::string_view note = "") {
  if (value < lo || value > hi) {
    return Invalid(absl::StrCat(field, ": ", value, " out of range ", lo, "..", hi, note));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Validation helpers.

absl::Status PoolTable::ValidateRetryPolicy(const std::string& field, const RetryPolicy& p) {
  SPINDLE_RETURN_IF_ERROR(CheckRange(field + ".max_attempts", p.max_attempts, 0, 100));
  if (p.initial_backoff_ms != 0) {
    SPINDLE_RETURN_IF_ERROR(
        CheckRange(field + ".initial_backoff_ms", p.initial_backoff_ms, 1, 3'600'000));
  }
  if (p.max_backoff_ms != 0) {
    int64_t lo = p.initial_backoff_ms == 0 ? 1000 : p.initial_backoff_ms;
    SPINDLE_RETURN_IF_ERROR(
        CheckRange(field + ".max_backoff_ms", p.max_backoff_ms, lo, 86'400'000));
  }
  if (p.multiplier != 0 && (!(p.multiplier >= 1.0) || p.multiplier > 10.0)) {
    return Invalid(absl::StrCat(field, ".multiplier: ", p.multiplier, " out of range 1.0..10.0"));
  }
  if (p.jitter.has_value() && (!(*p.jitter >= 0.0) || *p.jitter > 1.0)) {
    return Invalid(absl::StrCat(field, ".jitter: ", *p.jitter, " out of range 0.0..1.0"));
  }
  if (p.non_retryable_exit_codes.size() > 256) {
    return Invalid(absl::StrCat(field, ".non_retryable_exit_codes: more than 256 entries"));
  }
  for (size_t i = 0; i < p.non_retryable_exit_codes.size(); ++i) {
    SPINDLE_RETURN_IF_ERROR(CheckRange(absl::StrCat(field, ".non_retryable_exit_codes[", i, "]"),
                                       p.non_retryable_exit_codes[i], 0, 255));
  }
  if (p.retry_on.size() > 3) {
    return Invalid(absl::StrCat(field, ".retry_on: more than 3 entries"));
  }
  for (size_t i = 0; i < p.retry_on.size(); ++i) {
    int v = static_cast<int>(p.retry_on[i]);
    if (v < 1 || v > 3) {
      return Invalid(absl::StrCat(field, ".retry_on[", i, "]: ", v,
                                  " is not FAILED, TIMED_OUT or WORKER_LOST"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Pool.

struct Waiter {
  enum Kind { kJoin, kTask, kSubmit } kind;
  absl::AnyInvocable<void(absl::StatusOr<PoolView>, bool) &&> join_done;
  uint64_t task_seq = 0;
  absl::AnyInvocable<void(absl::StatusOr<TaskView>, bool) &&> task_done;
  std::vector<TaskSpec> specs;
  PoolTable::SubmitOptions submit_options;
  absl::AnyInvocable<void(absl::StatusOr<PoolTable::SubmitResult>) &&> submit_done;
  TimerService::TimerId timer = 0;
};

struct Task {
  std::string id;
  uint64_t seq = 0;
  TaskSpec spec;
  TaskState state = TaskState::kQueued;
  int32_t attempt = 0;
  absl::Time submitted_at, queued_at, started_at = absl::InfinitePast(),
                                      ended_at = absl::InfinitePast(),
                                      next_attempt_at = absl::InfinitePast();
  std::string worker_id;
  std::string session_id;
  std::string last_error;
  std::string request_id;
  std::optional<TaskResult> result;
  int64_t timeout_ms = 0;
  ResolvedRetry retry;
  uint64_t worker_num = 0;
  // Queued, but its frame is already in the stdin pipe of worker `worker_num`, which starts it
  // when its running task ends (worker pools with short tasks; see Pool::HandAhead).
  bool handed_ahead = false;
  TimerService::TimerId timeout_timer = 0, backoff_timer = 0;
  // Set when the running attempt is being stopped on purpose (CANCELLED, TIMED_OUT,
  // POOL_TERMINATED, SESSION_ENDED, STREAM_ENDED).
  std::string stop_reason, stop_message;
  std::function<void(const TaskView&)> on_final;
  std::vector<PoolTable::WaiterId> waiters;
  SessionHooks::HookId session_hook = 0;
};

struct Worker {
  uint64_t num = 0;
  std::string id;
  WorkerState state = WorkerState::kStarting;
  absl::Time started_at;
  int64_t tasks_done = 0;
  uint64_t task_seq = 0;   // Running task; 0 = none.
  uint64_t ahead_seq = 0;  // Task handed ahead (its frame sent, not started); 0 = none.
  bool retire = false;     // Exit after the current task (shrink, drain).
  bool recycle = false;    // Retiring because of max_tasks_per_worker.
  bool lost = false;       // Died unexpectedly.
  // Processes.
  pid_t pid = 0;
  std::string cookie;
  UniqueFd pidfd, in, out, err;
  IoLoop::HandlerId h_pid = 0, h_in = 0, h_out = 0, h_err = 0;
  std::string wbuf;
  size_t woff = 0;
  FrameReader reader;
  Tail out_tail, err_tail;
  TimerService::TimerId start_timer = 0, kill_timer = 0, stop_timer = 0;
  bool killed = false;  // We signalled it.
  // Threads.
  std::shared_ptr<absl::Notification> cancel;
  bool thread_stop = false;
};

struct PoolTable::Impl {
  Impl(TimerService& t, SessionHooks* s, std::unique_ptr<process::Spawner> sp,
       std::shared_ptr<FunctionRegistry> f, PoolTableOptions o)
      : timers(t),
        sessions(s),
        spawner(std::move(sp)),
        functions(std::move(f)),
        options(std::move(o)) {
    if (options.base_env.has_value()) {
      base_env = *options.base_env;
    } else {
      for (char** e = environ; e != nullptr && *e != nullptr; ++e) base_env.emplace_back(*e);
    }
  }

  TimerService& timers;
  SessionHooks* sessions;
  std::unique_ptr<process::Spawner> spawner;
  std::shared_ptr<FunctionRegistry> functions;
  PoolTableOptions options;
  std::vector<std::string> base_env;
  IoLoop io;

  static constexpr int kShards = 16;
  struct Shard {
    absl::Mutex mu;
    std::map<std::string, std::shared_ptr<Pool>> pools ABSL_GUARDED_BY(mu);
  };
  Shard shards[kShards];
  Shard& ShardOf(const std::string& name) {
    return shards[std::hash<std::string>{}(name) % kShards];
  }

  absl::Mutex mu;  // Everything below.
  absl::flat_hash_map<uint64_t, std::shared_ptr<Pool>> by_uid ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::string> create_request_ids ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<PoolTable::WaiterId, std::weak_ptr<Pool>> waiters ABSL_GUARDED_BY(mu);
  std::vector<std::shared_ptr<Pool>> dying ABSL_GUARDED_BY(mu);  // Deleted, still terminating.
  int64_t pool_count ABSL_GUARDED_BY(mu) = 0;
  int64_t worker_budget_used ABSL_GUARDED_BY(mu) = 0;
  // Creator identity of each pool whose processes the spawn policy counts, by pool uid.
  absl::flat_hash_map<uint64_t, std::string> policy_owners ABSL_GUARDED_BY(mu);
  uint64_t next_uid ABSL_GUARDED_BY(mu) = 1;
  std::atomic<uint64_t> next_waiter{1};

  // Threads of THREAD pools; joined on destruction.
  absl::Mutex threads_mu;
  std::vector<std::thread> threads ABSL_GUARDED_BY(threads_mu);

  std::shared_ptr<Pool> ByUid(uint64_t uid) {
    absl::MutexLock lock(&mu);
    auto it = by_uid.find(uid);
    return it == by_uid.end() ? nullptr : it->second;
  }
  std::shared_ptr<Pool> ByName(const std::string& name) {
    Shard& s = ShardOf(name);
    absl::MutexLock lock(&s.mu);
    auto it = s.pools.find(name);
    return it == s.pools.end() ? nullptr : it->second;
  }
  PoolTable::WaiterId RegisterWaiter(const std::shared_ptr<Pool>& pool) {
    PoolTable::WaiterId id = next_waiter.fetch_add(1);
    absl::MutexLock lock(&mu);
    waiters.emplace(id, pool);
    return id;
  }
  void ForgetWaiter(PoolTable::WaiterId id) {
    absl::MutexLock lock(&mu);
    waiters.erase(id);
  }
  // Gives `count` processes of pool `uid` back to its creator's spawn-policy count.
  void ReleasePolicyCount(uint64_t uid, int64_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto owner = policy_owners.find(uid);
    if (owner != policy_owners.end()) options.spawn_policy->ReleaseProcesses(owner->second, count);
  }
  // The PATH spawned processes inherit (the spawn policy resolves bare program names with it).
  std::optional<std::string> InheritedPath() const {
    for (const std::string& entry : base_env) {
      if (absl::StartsWith(entry, "PATH=")) return entry.substr(5);
    }
    return std::nullopt;
  }
  std::vector<std::string> BuildEnv(const process::ProcessCommand& c, const std::string& cookie) {
    std::map<std::string, std::string> env;
    if (!c.env.clean) {
      for (const std::string& entry : base_env) {
        size_t eq = entry.find('=');
        if (eq == std::string::npos) continue;
        // The spawn policy scrubs spindled's own environment to its allowed names.
        if (options.spawn_policy != nullptr &&
            !options.spawn_policy->InheritsVariable(absl::string_view(entry).substr(0, eq))) {
          continue;
        }
        env[entry.substr(0, eq)] = entry.substr(eq + 1);
      }
    }
    for (const auto& k : c.env.unset) env.erase(k);
    for (const auto& [k, v] : c.env.set) env[k] = v;
    env[std::string(process::kProcessCookieVar)] = cookie;
    std::vector<std::string> out;
    out.reserve(env.size());
    for (const auto& [k, v] : env) out.push_back(absl::StrCat(k, "=", v));
    return out;
  }
};

class PoolTable::Pool : public std::enable_shared_from_this<PoolTable::Pool> {
 public:
  Pool(PoolTable::Impl* table, uint64_t uid, std::string name, PoolSpec spec)
      : table_(table),
        uid_(uid),
        name_(std::move(name)),
        spec_(std::move(spec)),
        spec_key_(SpecKey(spec_)),
        created_at_(table->timers.Now()) {}

  const std::string& name() const { return name_; }
  uint64_t uid() const { return uid_; }
  const std::string& spec_key() const { return spec_key_; }

  absl::Mutex mu_;

  // ---- lifecycle ----
  absl::Status Start() {
    Deferred d;
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < spec_.size; ++i) {
      absl::Status s = AddWorker(d);
      if (!s.ok()) {
        if (i == 0 || spec_.kind != PoolKind::kWorker) {
          StopEverything(d, 0);
          return s;
        }
      }
    }
    return absl::OkStatus();
  }

  PoolView View(bool include_workers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PoolView v;
    v.name = name_;
    v.spec = spec_;
    v.state = state_;
    v.created_at = created_at_;
    v.closed_at = closed_at_;
    v.last_worker_error = last_worker_error_;
    v.stats = stats_;
    v.stats.workers = static_cast<int32_t>(workers_.size());
    v.stats.workers_starting = v.stats.workers_idle = v.stats.workers_busy =
        v.stats.workers_stopping = 0;
    for (const auto& [num, w] : workers_) {
      switch (w->state) {
        case WorkerState::kStarting:
          ++v.stats.workers_starting;
          break;
        case WorkerState::kIdle:
          ++v.stats.workers_idle;
          break;
        case WorkerState::kBusy:
          ++v.stats.workers_busy;
          break;
        case WorkerState::kStopping:
          ++v.stats.workers_stopping;
          break;
        default:
          break;
      }
      if (include_workers) {
        WorkerView wv;
        wv.id = w->id;
        wv.state = w->state;
        wv.pid = w->pid;
        if (w->task_seq != 0) {
          auto it = tasks_.find(w->task_seq);
          if (it != tasks_.end()) wv.task_id = it->second->id;
        }
        wv.tasks_done = w->tasks_done;
        wv.started_at = w->started_at;
        v.workers.push_back(std::move(wv));
      }
    }
    v.stats.tasks_queued = static_cast<int64_t>(queue_.size()) + handed_ahead_count_;
    v.stats.tasks_backoff = backoff_count_;
    v.stats.tasks_running = running_count_;
    v.stats.submits_waiting = static_cast<int32_t>(
        std::count_if(submit_queue_.begin(), submit_queue_.end(),
                      [this](PoolTable::WaiterId id) { return waiters_.contains(id); }));
    if (!queue_.empty()) {
      absl::Time oldest = absl::InfiniteFuture();
      // The queue is ordered by priority; scan for the oldest (bounded by max_queued).
      for (const auto& [key, seq] : queue_) {
        auto it = tasks_.find(seq);
        if (it != tasks_.end()) oldest = std::min(oldest, it->second->queued_at);
      }
      v.stats.oldest_queued_age_ms = absl::ToInt64Milliseconds(table_->timers.Now() - oldest);
    }
    return v;
  }
  PoolView ViewLocked(bool include_workers) {
    absl::MutexLock lock(&mu_);
    return View(include_workers);
  }

  absl::Status ValidateTaskLocked(const std::string& field, const TaskSpec& spec) {
    absl::MutexLock lock(&mu_);
    return ValidateTask(field, spec);
  }

  absl::StatusOr<PoolView> Resize(int32_t size) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    if (state_ != PoolState::kOpen) {
      return FailedPrecondition("POOL_NOT_OPEN",
                                absl::StrCat("pool '", name_, "' is ", PoolStateName(state_)));
    }
    spec_.size = size;
    spec_key_ = SpecKey(spec_);
    Rebalance(d);
    Dispatch(d);
    return View(false);
  }

  absl::StatusOr<PoolView> Close() {
    Deferred d;
    absl::MutexLock lock(&mu_);
    if (state_ == PoolState::kOpen) {
      state_ = PoolState::kDraining;
      closed_at_ = table_->timers.Now();
      FailSubmitWaiters(d);
      CheckDone(d);
    }
    return View(false);
  }

  absl::StatusOr<PoolView> Terminate(std::optional<int64_t> grace_ms) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    TerminateLocked(d, grace_ms.value_or(spec_.kill_grace_ms));
    return View(false);
  }

  void TerminateLocked(Deferred& d, int64_t grace_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (state_ == PoolState::kTerminating || state_ == PoolState::kTerminated) return;
    if (state_ == PoolState::kOpen) closed_at_ = table_->timers.Now();
    if (state_ == PoolState::kClosed) return;  // Nothing left to stop; it stays CLOSED.
    state_ = PoolState::kTerminating;
    FailSubmitWaiters(d);
    StopEverything(d, grace_ms);
    CheckDone(d);
  }

  // Cancels every queued/backoff task, stops running ones and every worker.
  void StopEverything(Deferred& d, int64_t grace_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<uint64_t> pending;
    for (const auto& [key, seq] : queue_) pending.push_back(seq);
    for (const auto& [seq, t] : tasks_) {
      if (t->state == TaskState::kBackoff || t->handed_ahead) pending.push_back(seq);
    }
    for (uint64_t seq : pending) {
      Task& t = *tasks_.at(seq);
      FinishWithoutRunning(d, t, "POOL_TERMINATED", "cancelled by TerminatePool");
    }
    std::vector<uint64_t> nums;
    for (const auto& [num, w] : workers_) nums.push_back(num);
    for (uint64_t num : nums) {
      auto it = workers_.find(num);
      if (it == workers_.end()) continue;
      Worker& w = *it->second;
      if (w.task_seq != 0) {
        Task& t = *tasks_.at(w.task_seq);
        if (t.stop_reason.empty()) {
          t.stop_reason = "POOL_TERMINATED";
          t.stop_message = "cancelled by TerminatePool";
        }
      }
      w.retire = true;
      StopWorker(d, w, grace_ms, /*hard=*/true);
    }
  }

  void OnDeleted(Deferred& d) {
    absl::MutexLock lock(&mu_);
    deleted_ = true;
    if (session_hook_ != 0 && table_->sessions != nullptr) {
      auto* sessions = table_->sessions;
      d.Add([sessions, sid = spec_.session_id, hook = session_hook_] {
        sessions->RemoveHook(sid, hook);
      });
      session_hook_ = 0;
    }
    NotifySubscribers(d);
  }

  bool Finished() {
    absl::MutexLock lock(&mu_);
    return IsFinal(state_);
  }
  PoolState state() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return state_; }

  PoolTable::WaiterId Join(absl::Time deadline,
                           absl::AnyInvocable<void(absl::StatusOr<PoolView>, bool) &&> done) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    if (state_ == PoolState::kOpen) {
      d.Add([done = std::move(done), name = name_]() mutable {
        std::move(done)(
            FailedPrecondition("POOL_OPEN", absl::StrCat("pool '", name,
                                                         "' is OPEN: close or terminate it first")),
            false);
      });
      return 0;
    }
    if (IsFinal(state_)) {
      d.Add([done = std::move(done), v = View(false)]() mutable { std::move(done)(v, true); });
      return 0;
    }
    PoolTable::WaiterId id = table_->RegisterWaiter(shared_from_this());
    Waiter& w = waiters_[id];
    w.kind = Waiter::kJoin;
    w.join_done = std::move(done);
    ArmWaiterTimer(id, w, deadline);
    join_waiters_.push_back(id);
    return id;
  }

  // ---- tasks ----
  PoolTable::WaiterId Submit(std::vector<TaskSpec> specs, PoolTable::SubmitOptions options,
                             absl::AnyInvocable<void(absl::StatusOr<SubmitResult>) &&> done) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto fail = [&](absl::Status s) {
      d.Add([done = std::move(done), s]() mutable { std::move(done)(s); });
      return PoolTable::WaiterId{0};
    };
    if (!options.request_id.empty()) {
      auto it = request_ids_.find(options.request_id);
      if (it != request_ids_.end()) {
        SubmitResult r;
        r.submitted = true;
        for (uint64_t seq : it->second) {
          auto t = tasks_.find(seq);
          if (t != tasks_.end()) r.tasks.push_back(TaskViewOf(*t->second, false, false));
        }
        d.Add([done = std::move(done), r = std::move(r)]() mutable { std::move(done)(r); });
        return 0;
      }
      // The first submit with this id still waits for room: its retry takes that wait over
      // (a second waiter would submit the tasks twice).
      for (PoolTable::WaiterId& queued : submit_queue_) {
        auto wit = waiters_.find(queued);
        if (wit != waiters_.end() && wit->second.submit_options.request_id == options.request_id) {
          return TakeOverSubmit(d, queued, std::move(options), std::move(done));
        }
      }
    }
    if (state_ != PoolState::kOpen) {
      return fail(FailedPrecondition(
          "POOL_NOT_OPEN", absl::StrCat("pool '", name_, "' is ", PoolStateName(state_))));
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      std::string field = i < options.fields.size() ? options.fields[i]
                          : specs.size() == 1       ? std::string("task")
                                                    : absl::StrCat("tasks[", i, "]");
      absl::Status s = ValidateTask(field, specs[i]);
      if (s.ok() && table_->options.spawn_policy != nullptr &&
          std::holds_alternative<TaskCommand>(specs[i].work)) {
        // What the task will run: the resolved executable and the policy's cwd default.
        s = table_->options.spawn_policy->ApplyToCommand(
            field + ".command.command", std::get<TaskCommand>(specs[i].work).command,
            table_->InheritedPath());
      }
      if (!s.ok()) return fail(s);
    }
    if (specs.size() > static_cast<size_t>(spec_.max_queued)) {
      return fail(Invalid(absl::StrCat("tasks: ", specs.size(), " tasks, more than the pool's ",
                                       "max_queued of ", spec_.max_queued)));
    }
    if (!options.session_id.empty() && table_->sessions != nullptr) {
      absl::Status s = table_->sessions->CheckAlive(options.session_id);
      if (!s.ok()) return fail(s);
    } else if (!options.session_id.empty()) {
      return fail(NotFound("SESSION_NOT_FOUND",
                           absl::StrCat("session '", options.session_id, "' not found")));
    }
    if (!HasRoom(specs.size()) || !submit_queue_.empty()) {
      if (!options.wait) {
        return fail(ResourceExhausted(
            "POOL_QUEUE_FULL", absl::StrCat("pool '", name_, "': queue full (", queue_.size(),
                                            " of max_queued ", spec_.max_queued, ")")));
      }
      PoolTable::WaiterId id = table_->RegisterWaiter(shared_from_this());
      Waiter& w = waiters_[id];
      w.kind = Waiter::kSubmit;
      w.specs = std::move(specs);
      w.submit_options = std::move(options);
      w.submit_done = std::move(done);
      ArmWaiterTimer(id, w, w.submit_options.deadline);
      submit_queue_.push_back(id);
      return id;
    }
    SubmitResult r = Enqueue(d, std::move(specs), options);
    d.Add([done = std::move(done), r = std::move(r)]() mutable { std::move(done)(r); });
    Dispatch(d);
    return 0;
  }

  absl::StatusOr<TaskView> GetTask(uint64_t seq, const std::string& id, bool include_input) {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second->id != id) return TaskNotFound(id);
    return TaskViewOf(*it->second, include_input, true);
  }

  PoolTable::WaiterId WaitTask(uint64_t seq, const std::string& id, absl::Time deadline,
                               absl::AnyInvocable<void(absl::StatusOr<TaskView>, bool) &&> done) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second->id != id) {
      d.Add([done = std::move(done), id]() mutable { std::move(done)(TaskNotFound(id), false); });
      return 0;
    }
    Task& t = *it->second;
    if (IsFinal(t.state)) {
      d.Add([done = std::move(done), v = TaskViewOf(t, false, true)]() mutable {
        std::move(done)(v, true);
      });
      return 0;
    }
    PoolTable::WaiterId wid = table_->RegisterWaiter(shared_from_this());
    Waiter& w = waiters_[wid];
    w.kind = Waiter::kTask;
    w.task_seq = seq;
    w.task_done = std::move(done);
    ArmWaiterTimer(wid, w, deadline);
    t.waiters.push_back(wid);
    return wid;
  }

  absl::StatusOr<TaskView> Cancel(uint64_t seq, const std::string& id,
                                  std::optional<int64_t> grace_ms, const std::string& reason,
                                  const std::string& message) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second->id != id) return TaskNotFound(id);
    Task& t = *it->second;
    if (t.state == TaskState::kCancelled) return TaskViewOf(t, false, true);
    if (IsFinal(t.state)) {
      return FailedPrecondition("TASK_FINISHED", absl::StrCat("task '", id, "' already finished ",
                                                              TaskStateName(t.state)));
    }
    CancelLocked(d, t, grace_ms.value_or(spec_.kill_grace_ms), reason, message);
    Dispatch(d);
    CheckDone(d);
    return TaskViewOf(t, false, true);
  }

  void CancelLocked(Deferred& d, Task& t, int64_t grace_ms, const std::string& reason,
                    const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t.state == TaskState::kQueued || t.state == TaskState::kBackoff) {
      FinishWithoutRunning(d, t, reason, message);
      return;
    }
    if (t.state != TaskState::kRunning || !t.stop_reason.empty()) return;
    t.stop_reason = reason;
    t.stop_message = message;
    auto wit = workers_.find(t.worker_num);
    if (wit == workers_.end()) return;
    Worker& w = *wit->second;
    StopAttempt(d, w, grace_ms);
  }

  absl::StatusOr<TaskPage> ListTasks(const TaskFilter& filter, const LabelSelector& selector,
                                     int32_t page_size, uint64_t after, bool include_output) {
    absl::MutexLock lock(&mu_);
    TaskPage page;
    size_t limit = page_size <= 0 ? 100 : static_cast<size_t>(std::min(page_size, 1000));
    for (auto it = tasks_.upper_bound(after); it != tasks_.end(); ++it) {
      const Task& t = *it->second;
      if (!filter.states.empty() &&
          std::find(filter.states.begin(), filter.states.end(), t.state) == filter.states.end()) {
        continue;
      }
      if (!filter.session_id.empty() && t.session_id != filter.session_id) continue;
      if (!selector.Matches(t.spec.labels)) continue;
      if (page.tasks.size() == limit) {
        page.next_page_token = absl::StrCat(page.tasks.empty() ? after : LastSeq(page), "");
        break;
      }
      page.tasks.push_back(TaskViewOf(t, false, include_output));
    }
    return page;
  }

  int64_t TaskCount() {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(tasks_.size());
  }

  // ---- events ----
  uint64_t AddSubscriber(std::function<void()> notify) {
    absl::MutexLock lock(&mu_);
    uint64_t id = next_subscriber_++;
    subscribers_[id] = std::make_shared<std::function<void()>>(std::move(notify));
    return id;
  }
  void RemoveSubscriber(uint64_t id) {
    absl::MutexLock lock(&mu_);
    subscribers_.erase(id);
  }
  absl::StatusOr<EventSubscription::ReadResult> ReadEvents(int64_t after, size_t max) {
    absl::MutexLock lock(&mu_);
    EventSubscription::ReadResult r;
    const int64_t oldest = events_.empty() ? next_event_seq_ : events_.front().sequence;
    if (after + 1 < oldest && after < next_event_seq_ - 1) {
      return Error(absl::StatusCode::kOutOfRange, "EVENTS_EXPIRED",
                   absl::StrCat("pool '", name_, "': events after ", after,
                                " were discarded; the oldest retained is ", oldest));
    }
    int64_t start = std::max<int64_t>(after + 1, oldest);
    for (int64_t s = start; s < next_event_seq_ && r.events.size() < max; ++s) {
      r.events.push_back(events_[static_cast<size_t>(s - oldest)]);
    }
    r.pool_deleted = deleted_ && r.events.empty();
    return r;
  }
  int64_t BeforeOldest() {
    absl::MutexLock lock(&mu_);
    return (events_.empty() ? next_event_seq_ : events_.front().sequence) - 1;
  }
  int64_t LastSequence() {
    absl::MutexLock lock(&mu_);
    return next_event_seq_ - 1;
  }

  // ---- waiters ----
  bool CancelWaiter(PoolTable::WaiterId id) {
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return false;
    RemoveWaiter(id, it->second);
    return true;
  }

  void OnWaiterTimer(PoolTable::WaiterId id) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    Waiter w = std::move(it->second);
    w.timer = 0;
    RemoveWaiter(id, w);
    switch (w.kind) {
      case Waiter::kJoin:
        d.Add([done = std::move(w.join_done), v = View(false)]() mutable {
          std::move(done)(v, false);
        });
        break;
      case Waiter::kTask: {
        auto t = tasks_.find(w.task_seq);
        absl::StatusOr<TaskView> v = t == tasks_.end() ? absl::StatusOr<TaskView>(TaskNotFound(""))
                                                       : TaskViewOf(*t->second, false, true);
        d.Add([done = std::move(w.task_done), v = std::move(v)]() mutable {
          std::move(done)(v, false);
        });
        break;
      }
      case Waiter::kSubmit:
        d.Add([done = std::move(w.submit_done)]() mutable { std::move(done)(SubmitResult{}); });
        // The next waiter in line may fit now.
        DrainSubmitWaiters(d);
        Dispatch(d);
        break;
    }
  }

  // ---- session ----
  void BindSession(SessionHooks::HookId hook) {
    absl::MutexLock lock(&mu_);
    session_hook_ = hook;
  }

  // ---- I/O and timers (called from the IoLoop and TimerService threads) ----
  void OnIo(uint64_t num, int which, uint32_t events) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(num);
    if (it == workers_.end()) return;
    Worker& w = *it->second;
    if (which == 0) {
      OnExit(d, w);
    } else if (which == 1) {
      ReadStdout(d, w);
    } else if (which == 2) {
      ReadStderr(w);
    } else if (which == 3) {
      Flush(d, w);
    }
  }

  void OnTaskTimeout(uint64_t seq, int32_t attempt) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(seq);
    if (it == tasks_.end()) return;
    Task& t = *it->second;
    if (t.state != TaskState::kRunning || t.attempt != attempt || !t.stop_reason.empty()) return;
    t.timeout_timer = 0;
    t.stop_reason = "TIMED_OUT";
    t.stop_message = absl::StrCat("timed out after ", t.timeout_ms, " ms");
    auto wit = workers_.find(t.worker_num);
    if (wit != workers_.end()) StopAttempt(d, *wit->second, spec_.kill_grace_ms);
  }

  void OnBackoffDone(uint64_t seq) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || it->second->state != TaskState::kBackoff) return;
    Task& t = *it->second;
    t.backoff_timer = 0;
    --backoff_count_;
    t.state = TaskState::kQueued;
    t.queued_at = table_->timers.Now();
    t.next_attempt_at = absl::InfinitePast();
    queue_.emplace(QueueKey(t), t.seq);
    Emit(d, t, TaskEventType::kQueued);
    Dispatch(d);
    CheckDone(d);
  }

  void OnWorkerTimer(uint64_t num, int kind) {
    Deferred d;
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(num);
    if (it == workers_.end()) return;
    Worker& w = *it->second;
    if (kind == 0) {  // start timeout
      w.start_timer = 0;
      if (w.state == WorkerState::kStarting) {
        last_worker_error_ = absl::StrCat("worker ", w.id, " sent no ready frame within ",
                                          spec_.worker->start_timeout_ms, " ms", StderrExcerpt(w));
        w.lost = true;
        Signal(w, SIGKILL);
      }
    } else if (kind == 1) {  // SIGKILL after grace
      w.kill_timer = 0;
      Signal(w, SIGKILL);
    } else if (kind == 2) {  // graceful stop: stdin closed, now SIGTERM, then SIGKILL
      w.stop_timer = 0;
      Signal(w, SIGTERM);
      ArmKill(w, spec_.worker.has_value() ? spec_.worker->stop_grace_ms : spec_.kill_grace_ms);
    } else if (kind == 3) {  // delayed replacement after start failures
      // (num is not a worker for this kind; handled in OnRespawnTimer)
    }
  }

  void OnRespawnTimer() {
    Deferred d;
    absl::MutexLock lock(&mu_);
    respawn_timer_ = 0;
    Rebalance(d);
    Dispatch(d);
  }

  // THREAD kind: the body of one pool thread.
  void ThreadMain(uint64_t num) {
    while (true) {
      std::shared_ptr<const Function> fn;
      std::vector<std::string> args;
      std::string input;
      std::shared_ptr<absl::Notification> cancel;
      {
        Deferred d;
        absl::MutexLock lock(&mu_);
        Worker* w = workers_.at(num).get();
        mu_.Await(absl::Condition(
            +[](Worker* w) { return w->task_seq != 0 || w->thread_stop; }, w));
        if (w->task_seq == 0) {
          RemoveWorker(d, *w);
          return;
        }
        Task& t = *tasks_.at(w->task_seq);
        const TaskCall& call = std::get<TaskCall>(t.spec.work);
        fn = table_->functions->Find(call.function);
        args = call.args;
        input = call.input;
        cancel = w->cancel;
      }
      absl::StatusOr<std::string> result =
          fn == nullptr ? absl::StatusOr<std::string>(absl::NotFoundError("function gone"))
                        : (*fn)(CallContext(args, input, cancel));
      Deferred d;
      absl::MutexLock lock(&mu_);
      Worker& w = *workers_.at(num);
      AttemptEnd end;
      if (result.ok()) {
        if (static_cast<int64_t>(result->size()) > table_->options.max_task_output_bytes) {
          end.kind = AttemptEnd::kFailed;
          end.error_reason = "OUTPUT_TOO_LARGE";
          end.error = absl::StrCat("output of ", result->size(), " bytes is over the limit of ",
                                   table_->options.max_task_output_bytes);
          end.no_retry = true;
        } else {
          end.output = *std::move(result);
        }
      } else {
        end.kind = AttemptEnd::kFailed;
        end.error_reason = "FUNCTION_ERROR";
        end.error = std::string(result.status().message());
      }
      EndAttempt(d, w, std::move(end));
    }
  }

 private:
  // ---- helpers (all REQUIRE mu_) ----
  bool HasRoom(size_t n) { return queue_.size() + n <= static_cast<size_t>(spec_.max_queued); }

  uint64_t LastSeq(const TaskPage& page) {
    uint64_t uid, seq = 0;
    ParseTaskId(page.tasks.back().id, &uid, &seq);
    return seq;
  }

  absl::Status ValidateTask(const std::string& field, const TaskSpec& spec) {
    const char* want = spec_.kind == PoolKind::kWorker    ? "payload"
                       : spec_.kind == PoolKind::kCommand ? "command"
                                                          : "call";
    auto wrong = [&](const char* got) {
      return InvalidArgument("WRONG_TASK_KIND", absl::StrCat(field, ".", got, ": pool '", name_,
                                                             "' is a ", PoolKindName(spec_.kind),
                                                             " pool; its tasks need `", want, "`"));
    };
    switch (spec.work.index()) {
      case 0:
        return InvalidArgument(
            "WRONG_TASK_KIND",
            absl::StrCat(field, ": work missing; pool '", name_, "' is a ",
                         PoolKindName(spec_.kind), " pool and needs `", want, "`"));
      case 1:
        if (spec_.kind != PoolKind::kWorker) return wrong("payload");
        if (std::get<1>(spec.work).size() > (4u << 20)) {
          return Invalid(absl::StrCat(field, ".payload: ", std::get<1>(spec.work).size(),
                                      " bytes, at most 4 MiB"));
        }
        break;
      case 2: {
        if (spec_.kind != PoolKind::kCommand) return wrong("command");
        const TaskCommand& c = std::get<2>(spec.work);
        SPINDLE_RETURN_IF_ERROR(ValidateCommand(field + ".command.command", c.command));
        if (table_->options.spawn_policy != nullptr) {
          process::ProcessCommand checked = c.command;  // Submit applies it for real.
          SPINDLE_RETURN_IF_ERROR(table_->options.spawn_policy->ApplyToCommand(
              field + ".command.command", checked, table_->InheritedPath()));
        }
        if (c.stdin_data.size() > (4u << 20)) {
          return Invalid(absl::StrCat(field, ".command.stdin_data: more than 4 MiB"));
        }
        break;
      }
      case 3: {
        if (spec_.kind != PoolKind::kThread) return wrong("call");
        const TaskCall& c = std::get<3>(spec.work);
        if (c.function.empty() || c.function.size() > 128) {
          return Invalid(
              absl::StrCat(field, ".call.function: '", c.function, "' must be 1..128 bytes"));
        }
        if (table_->functions->Find(c.function) == nullptr) {
          return InvalidArgument("FUNCTION_NOT_FOUND",
                                 absl::StrCat(field, ".call.function: '", c.function,
                                              "' is not a registered function"));
        }
        if (c.args.size() > 1024) {
          return Invalid(absl::StrCat(field, ".call.args: more than 1024 arguments"));
        }
        if (c.input.size() > (4u << 20)) {
          return Invalid(absl::StrCat(field, ".call.input: more than 4 MiB"));
        }
        break;
      }
    }
    SPINDLE_RETURN_IF_ERROR(CheckRange(field + ".priority", spec.priority, -10, 10));
    SPINDLE_RETURN_IF_ERROR(ValidateLabels(field + ".labels", spec.labels));
    if (spec.timeout_ms.has_value() && *spec.timeout_ms < 0) {
      return Invalid(absl::StrCat(field, ".timeout_ms: ", *spec.timeout_ms, " is negative"));
    }
    if (spec.retry.has_value()) {
      SPINDLE_RETURN_IF_ERROR(ValidateRetryPolicy(field + ".retry", *spec.retry));
    }
    return absl::OkStatus();
  }

  SubmitResult Enqueue(Deferred& d, std::vector<TaskSpec> specs,
                       const PoolTable::SubmitOptions& options) {
    SubmitResult r;
    r.submitted = true;
    const absl::Time now = table_->timers.Now();
    std::vector<uint64_t> seqs;
    for (TaskSpec& spec : specs) {
      auto t = std::make_unique<Task>();
      t->seq = next_task_seq_++;
      t->id = absl::StrCat("p", uid_, "-", t->seq);
      t->timeout_ms = spec.timeout_ms.value_or(spec_.default_task_timeout_ms);
      t->retry = Resolve(spec.retry.value_or(spec_.retry));
      t->spec = std::move(spec);
      t->submitted_at = t->queued_at = now;
      t->session_id = options.session_id;
      t->request_id = options.request_id;
      if (options.on_final) {
        t->on_final = [fn = options.on_final, i = seqs.size()](const TaskView& v) { fn(i, v); };
      }
      if (!options.session_id.empty() && table_->sessions != nullptr) {
        std::weak_ptr<Pool> weak = shared_from_this();
        auto hook = table_->sessions->OnEnd(options.session_id, [weak, seq = t->seq, id = t->id] {
          if (auto pool = weak.lock()) {
            pool->Cancel(seq, id, std::nullopt, "SESSION_ENDED", "cancelled: its session ended")
                .IgnoreError();
          }
        });
        if (hook.ok()) t->session_hook = *hook;
      }
      ++stats_.tasks_submitted;
      queue_.emplace(QueueKey(*t), t->seq);
      seqs.push_back(t->seq);
      Task& ref = *t;
      tasks_.emplace(t->seq, std::move(t));
      Emit(d, ref, TaskEventType::kQueued);
      r.tasks.push_back(TaskViewOf(ref, options.include_input_in_views, false));
    }
    if (!options.request_id.empty()) request_ids_[options.request_id] = std::move(seqs);
    return r;
  }

  // A retry (same request id) of the submit waiting as `queued` takes its wait over: the first
  // call is answered ABORTED REQUEST_SUPERSEDED, the wait keeps its place in line under a new id
  // (the first call's id no longer cancels it), the retry's deadline and callback.
  PoolTable::WaiterId TakeOverSubmit(Deferred& d, PoolTable::WaiterId& queued,
                                     PoolTable::SubmitOptions retry,
                                     absl::AnyInvocable<void(absl::StatusOr<SubmitResult>) &&> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = waiters_.find(queued);
    Waiter w = std::move(it->second);
    waiters_.erase(it);
    table_->ForgetWaiter(queued);
    if (w.timer != 0) table_->timers.Cancel(std::exchange(w.timer, 0));
    absl::Status superseded = Aborted(
        "REQUEST_SUPERSEDED", absl::StrCat("a retry with request_id '", retry.request_id,
                                           "' took over this submit's wait on pool '", name_, "'"));
    d.Add(
        [first = std::move(w.submit_done), superseded]() mutable { std::move(first)(superseded); });
    w.submit_done = std::move(done);
    w.submit_options.deadline = retry.deadline;
    const PoolTable::WaiterId id = table_->RegisterWaiter(shared_from_this());
    queued = id;
    Waiter& taken = waiters_[id] = std::move(w);
    ArmWaiterTimer(id, taken, taken.submit_options.deadline);
    return id;
  }

  void DrainSubmitWaiters(Deferred& d) {
    while (!submit_queue_.empty() && state_ == PoolState::kOpen) {
      PoolTable::WaiterId id = submit_queue_.front();
      auto it = waiters_.find(id);
      if (it == waiters_.end()) {
        submit_queue_.pop_front();
        continue;
      }
      if (!HasRoom(it->second.specs.size())) return;
      Waiter w = std::move(it->second);
      RemoveWaiter(id, w);
      SubmitResult r = Enqueue(d, std::move(w.specs), w.submit_options);
      d.Add([done = std::move(w.submit_done), r = std::move(r)]() mutable { std::move(done)(r); });
    }
  }

  void FailSubmitWaiters(Deferred& d) {
    while (!submit_queue_.empty()) {
      PoolTable::WaiterId id = submit_queue_.front();
      auto it = waiters_.find(id);
      if (it == waiters_.end()) {
        submit_queue_.pop_front();
        continue;
      }
      Waiter w = std::move(it->second);
      RemoveWaiter(id, w);
      d.Add([done = std::move(w.submit_done), name = name_]() mutable {
        std::move(done)(
            FailedPrecondition("POOL_NOT_OPEN", absl::StrCat("pool '", name, "' was closed")));
      });
    }
  }

  void ArmWaiterTimer(PoolTable::WaiterId id, Waiter& w, absl::Time deadline) {
    if (deadline == absl::InfiniteFuture()) return;
    std::weak_ptr<Pool> weak = shared_from_this();
    w.timer = table_->timers.Schedule(deadline, [weak, id] {
      if (auto pool = weak.lock()) pool->OnWaiterTimer(id);
    });
  }

  void RemoveWaiter(PoolTable::WaiterId id, Waiter& w) {
    if (w.timer != 0) table_->timers.Cancel(w.timer);
    if (w.kind == Waiter::kJoin) {
      join_waiters_.erase(std::remove(join_waiters_.begin(), join_waiters_.end(), id),
                          join_waiters_.end());
    } else if (w.kind == Waiter::kTask) {
      auto t = tasks_.find(w.task_seq);
      if (t != tasks_.end()) {
        auto& v = t->second->waiters;
        v.erase(std::remove(v.begin(), v.end(), id), v.end());
      }
    } else {
      submit_queue_.erase(std::remove(submit_queue_.begin(), submit_queue_.end(), id),
                          submit_queue_.end());
    }
    waiters_.erase(id);
    table_->ForgetWaiter(id);
  }

  TaskView TaskViewOf(const Task& t, bool include_input, bool include_output) {
    TaskView v;
    v.id = t.id;
    v.pool = name_;
    v.spec = t.spec;
    if (!include_input) {
      if (auto* p = std::get_if<std::string>(&v.spec.work)) p->clear();
      if (auto* c = std::get_if<TaskCommand>(&v.spec.work)) c->stdin_data.clear();
      if (auto* c = std::get_if<TaskCall>(&v.spec.work)) c->input.clear();
    }
    if (!v.spec.timeout_ms.has_value()) v.spec.timeout_ms = t.timeout_ms;
    v.state = t.state;
    v.attempt = t.attempt;
    v.submitted_at = t.submitted_at;
    v.started_at = t.started_at;
    v.ended_at = t.ended_at;
    v.worker_id = t.worker_id;
    v.session_id = t.session_id;
    v.last_error = t.last_error;
    v.next_attempt_at = t.next_attempt_at;
    v.result = t.result;
    if (v.result.has_value() && !include_output) {
      v.result->stdout_data.clear();
      v.result->stderr_data.clear();
      v.result->output.clear();
    }
    return v;
  }

  void Emit(Deferred& d, const Task& t, TaskEventType type, const std::string& error = "") {
    TaskEvent e;
    e.sequence = next_event_seq_++;
    e.type = type;
    e.task_id = t.id;
    e.pool = name_;
    e.time = table_->timers.Now();
    e.attempt = t.attempt;
    if (type != TaskEventType::kQueued) e.worker_id = t.worker_id;
    e.labels = t.spec.labels;
    if (type == TaskEventType::kSucceeded || type == TaskEventType::kFailed ||
        type == TaskEventType::kCancelled || type == TaskEventType::kTimedOut) {
      e.result = t.result;
    }
    if (type == TaskEventType::kRetried) {
      e.error = error;
      e.next_attempt_at = t.next_attempt_at;
    }
    events_.push_back(std::move(e));
    while (static_cast<int64_t>(events_.size()) > table_->options.max_events_per_pool) {
      events_.pop_front();
    }
    NotifySubscribers(d);
  }

  void NotifySubscribers(Deferred& d) {
    if (notify_pending_ || subscribers_.empty()) return;
    notify_pending_ = true;
    std::vector<std::shared_ptr<std::function<void()>>> subs;
    for (auto& [id, fn] : subscribers_) subs.push_back(fn);
    d.Add([self = shared_from_this(), subs = std::move(subs)] {
      {
        absl::MutexLock lock(&self->mu_);
        self->notify_pending_ = false;
      }
      for (auto& fn : subs) (*fn)();
    });
  }

  // Assigns queued tasks to idle workers.
  void Dispatch(Deferred& d) {
    while (!queue_.empty()) {
      Worker* idle = nullptr;
      for (auto& [num, w] : workers_) {
        if (w->state == WorkerState::kIdle && !w->retire) {
          idle = w.get();
          break;
        }
      }
      if (idle == nullptr) break;
      auto qit = queue_.begin();
      Task& t = *tasks_.at(qit->second);
      queue_.erase(qit);
      StartAttempt(d, *idle, t);
    }
    HandAhead(d);
    DrainSubmitWaiters(d);
  }

  // Worker pools whose tasks are short give each busy worker its next task ahead of time: the
  // frame waits in the worker's stdin pipe, so the worker reads it the moment it has written its
  // result instead of idling for the round trip through the pool (worth 5-10% of a 1 ms task).
  // Only while the pool's recent tasks ran under kHandAheadBelow: a task handed ahead cannot be
  // taken back, and behind a long task it would wait while another worker sits idle.
  static constexpr absl::Duration kHandAheadBelow = absl::Milliseconds(20);

  void HandAhead(Deferred& d) {
    if (spec_.kind != PoolKind::kWorker || queue_.empty() || recent_run_ < absl::ZeroDuration() ||
        recent_run_ >= kHandAheadBelow) {
      return;
    }
    for (auto& [num, wp] : workers_) {
      if (queue_.empty()) return;
      Worker& w = *wp;
      if (w.state != WorkerState::kBusy || w.task_seq == 0 || w.ahead_seq != 0 || w.retire ||
          w.killed || !w.in.valid()) {
        continue;
      }
      // The running task is the worker's last before it is recycled: nothing to hand ahead.
      if (spec_.max_tasks_per_worker > 0 && w.tasks_done + 1 >= spec_.max_tasks_per_worker) {
        continue;
      }
      if (!tasks_.at(w.task_seq)->stop_reason.empty()) continue;  // Being stopped.
      auto qit = queue_.begin();
      Task& t = *tasks_.at(qit->second);
      queue_.erase(qit);
      t.handed_ahead = true;
      t.worker_num = w.num;
      w.ahead_seq = t.seq;
      ++handed_ahead_count_;
      ++stats_.tasks_handed_ahead;
      AppendFrame(kFrameTask, std::get<std::string>(t.spec.work), w.wbuf);
      Flush(d, w);
    }
  }

  // Takes back the task handed ahead to `w`: nullptr when there is none or it was cancelled
  // meanwhile (its frame is still in the worker's pipe).
  Task* TakeHandedAhead(Worker& w) {
    const uint64_t seq = std::exchange(w.ahead_seq, 0);
    if (seq == 0) return nullptr;
    auto it = tasks_.find(seq);
    if (it == tasks_.end() || !it->second->handed_ahead) return nullptr;
    it->second->handed_ahead = false;
    --handed_ahead_count_;
    return it->second.get();
  }

  // A task handed ahead to a worker that will not run it goes back to its place in the queue.
  void Requeue(Task& t) {
    t.worker_num = 0;
    queue_.emplace(QueueKey(t), t.seq);
  }

  void StartAttempt(Deferred& d, Worker& w, Task& t, bool frame_sent = false) {
    const absl::Time now = table_->timers.Now();
    t.state = TaskState::kRunning;
    ++t.attempt;
    t.started_at = now;
    t.worker_id = w.id;
    t.worker_num = w.num;
    t.stop_reason.clear();
    t.stop_message.clear();
    ++running_count_;
    w.state = WorkerState::kBusy;
    w.task_seq = t.seq;
    if (table_->options.observe_queue_wait) {
      d.Add([fn = table_->options.observe_queue_wait, name = name_, waited = now - t.queued_at] {
        fn(name, waited);
      });
    }
    Emit(d, t, TaskEventType::kStarted);
    if (t.timeout_ms > 0) {
      std::weak_ptr<Pool> weak = shared_from_this();
      t.timeout_timer = table_->timers.Schedule(now + absl::Milliseconds(t.timeout_ms),
                                                [weak, seq = t.seq, attempt = t.attempt] {
                                                  if (auto pool = weak.lock())
                                                    pool->OnTaskTimeout(seq, attempt);
                                                });
    }
    switch (spec_.kind) {
      case PoolKind::kWorker:
        if (!frame_sent) {
          AppendFrame(kFrameTask, std::get<std::string>(t.spec.work), w.wbuf);
          Flush(d, w);
        }
        break;
      case PoolKind::kThread:
        w.cancel = std::make_shared<absl::Notification>();
        break;  // The thread's Await sees task_seq.
      case PoolKind::kCommand: {
        absl::Status s = SpawnCommand(w, t);
        if (!s.ok()) {
          AttemptEnd end;
          end.kind = AttemptEnd::kFailed;
          end.error_reason = Reason(s) == "EXEC_FAILED" ? "EXEC_FAILED" : "SPAWN_FAILED";
          end.error = absl::StrCat("exec failed: ", s.message());
          end.no_retry = Reason(s) == "EXEC_FAILED";
          process::ProcessExit exit;
          exit.reason = process::ExitReason::kStartFailed;
          exit.message = end.error;
          end.exit = exit;
          EndAttempt(d, w, std::move(end));
        }
        break;
      }
      default:
        break;
    }
  }

  process::SpawnOptions BaseOptions(const process::ProcessCommand& c, const std::string& cookie) {
    process::SpawnOptions o;
    o.argv = c.argv;
    o.executable = c.executable;
    o.env = table_->BuildEnv(c, cookie);
    o.cwd = c.cwd;
    const auto& l = spec_.limits;
    if (l.cpu_seconds) o.rlimits.emplace_back(RLIMIT_CPU, *l.cpu_seconds);
    if (l.address_space_bytes) o.rlimits.emplace_back(RLIMIT_AS, *l.address_space_bytes);
    if (l.open_files) o.rlimits.emplace_back(RLIMIT_NOFILE, *l.open_files);
    if (l.processes) o.rlimits.emplace_back(RLIMIT_NPROC, *l.processes);
    if (l.core_bytes) o.rlimits.emplace_back(RLIMIT_CORE, *l.core_bytes);
    if (l.file_size_bytes) o.rlimits.emplace_back(RLIMIT_FSIZE, *l.file_size_bytes);
    if (l.nice) o.nice = *l.nice;
    if (spec_.run_as.uid) o.uid = *spec_.run_as.uid;
    if (spec_.run_as.gid) o.gid = *spec_.run_as.gid;
    if (!spec_.run_as.supplementary_gids.empty()) {
      o.groups = std::vector<gid_t>(spec_.run_as.supplementary_gids.begin(),
                                    spec_.run_as.supplementary_gids.end());
    }
    return o;
  }

  absl::Status Watch(Worker& w) {
    std::weak_ptr<Pool> weak = shared_from_this();
    auto handler = [weak, num = w.num](int which) {
      return [weak, num, which](uint32_t events) {
        if (auto pool = weak.lock()) pool->OnIo(num, which, events);
      };
    };
    SPINDLE_ASSIGN_OR_RETURN(w.h_pid, table_->io.Add(w.pidfd.get(), EPOLLIN, handler(0)));
    if (w.out.valid()) {
      SPINDLE_ASSIGN_OR_RETURN(w.h_out, table_->io.Add(w.out.get(), EPOLLIN, handler(1)));
    }
    if (w.err.valid()) {
      SPINDLE_ASSIGN_OR_RETURN(w.h_err, table_->io.Add(w.err.get(), EPOLLIN, handler(2)));
    }
    return absl::OkStatus();
  }

  absl::Status SpawnCommand(Worker& w, Task& t) {
    const TaskCommand& c = std::get<TaskCommand>(t.spec.work);
    w.cookie = absl::StrCat("pool:", name_, ":", t.id);
    process::SpawnOptions o = BaseOptions(c.command, w.cookie);
    o.stdin_mode = c.stdin_data.empty() ? process::SpawnOptions::Stdin::kNull
                                        : process::SpawnOptions::Stdin::kPipe;
    o.stderr_mode = c.merge_stderr ? process::SpawnOptions::Output::kMergeIntoStdout
                                   : process::SpawnOptions::Output::kPipe;
    SPINDLE_ASSIGN_OR_RETURN(process::SpawnedChild child, table_->spawner->Spawn(o));
    w.pid = child.pid;
    w.pidfd = std::move(child.pidfd);
    w.in = std::move(child.stdin_fd);
    w.out = std::move(child.stdout_fd);
    w.err = std::move(child.stderr_fd);
    w.out_tail = {};
    w.err_tail = {};
    w.killed = false;
    SPINDLE_RETURN_IF_ERROR(Watch(w));
    if (w.in.valid()) {
      w.wbuf = c.stdin_data;
      w.woff = 0;
      Deferred unused;
      Flush(unused, w);
    }
    return absl::OkStatus();
  }

  // Writes pending stdin bytes; closes stdin for COMMAND tasks when all are written.
  void Flush(Deferred& d, Worker& w) {
    if (!w.in.valid()) {
      w.wbuf.clear();
      w.woff = 0;
      return;
    }
    while (w.woff < w.wbuf.size()) {
      ssize_t n = ::write(w.in.get(), w.wbuf.data() + w.woff, w.wbuf.size() - w.woff);
      if (n > 0) {
        w.woff += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (w.h_in == 0) {
          std::weak_ptr<Pool> weak = shared_from_this();
          auto h = table_->io.Add(w.in.get(), EPOLLOUT, [weak, num = w.num](uint32_t) {
            if (auto pool = weak.lock()) pool->OnIo(num, 3, 0);
          });
          if (h.ok()) w.h_in = *h;
        }
        return;
      }
      // EPIPE or another error: the reader is gone; its exit will be seen on the pidfd.
      w.wbuf.clear();
      w.woff = 0;
      CloseStdin(w);
      return;
    }
    w.wbuf.clear();
    w.woff = 0;
    if (w.h_in != 0) {
      table_->io.Remove(w.h_in);
      w.h_in = 0;
    }
    if (spec_.kind == PoolKind::kCommand) CloseStdin(w);
  }

  void CloseStdin(Worker& w) {
    if (w.h_in != 0) {
      table_->io.Remove(w.h_in);
      w.h_in = 0;
    }
    w.in.Reset();
  }

  void ReadStdout(Deferred& d, Worker& w) {
    std::string data;
    bool open = DrainFd(w.out.get(), data);
    if (spec_.kind == PoolKind::kCommand) {
      w.out_tail.Append(data, static_cast<size_t>(spec_.max_output_bytes));
    } else if (!data.empty()) {
      w.reader.Append(data);
      ProcessFrames(d, w);
    }
    if (!open && w.h_out != 0) {
      table_->io.Remove(w.h_out);
      w.h_out = 0;
    }
  }

  void ReadStderr(Worker& w) {
    std::string data;
    bool open = DrainFd(w.err.get(), data);
    size_t cap =
        spec_.kind == PoolKind::kCommand ? static_cast<size_t>(spec_.max_output_bytes) : 4096;
    w.err_tail.Append(data, cap);
    if (!open && w.h_err != 0) {
      table_->io.Remove(w.h_err);
      w.h_err = 0;
    }
  }

  std::string StderrExcerpt(const Worker& w) {
    if (w.err_tail.data.empty()) return "";
    std::string tail = w.err_tail.data.size() > 1024
                           ? w.err_tail.data.substr(w.err_tail.data.size() - 1024)
                           : w.err_tail.data;
    return absl::StrCat("; stderr: ", tail);
  }

  void ProcessFrames(Deferred& d, Worker& w) {
    while (true) {
      auto next = w.reader.Next();
      if (!next.ok()) {
        last_worker_error_ = absl::StrCat("worker ", w.id, ": ", next.status().message());
        w.lost = true;
        Signal(w, SIGKILL);
        return;
      }
      if (!next->has_value()) return;
      Frame frame = std::move(**next);
      if (frame.type == kFrameReady) {
        if (w.state == WorkerState::kStarting) {
          if (w.start_timer != 0) {
            table_->timers.Cancel(w.start_timer);
            w.start_timer = 0;
          }
          consecutive_start_failures_ = 0;
          w.state = w.retire ? WorkerState::kStopping : WorkerState::kIdle;
          if (w.retire) {
            StopWorker(d, w, spec_.kill_grace_ms, false);
          } else {
            Dispatch(d);
          }
        }
        continue;
      }
      if ((frame.type == kFrameOk || frame.type == kFrameError) && w.state == WorkerState::kBusy) {
        AttemptEnd end;
        if (static_cast<int64_t>(frame.payload.size()) > table_->options.max_task_output_bytes) {
          end.kind = AttemptEnd::kFailed;
          end.error_reason = "OUTPUT_TOO_LARGE";
          end.error =
              absl::StrCat("result of ", frame.payload.size(), " bytes is over the limit of ",
                           table_->options.max_task_output_bytes);
          end.no_retry = true;
        } else if (frame.type == kFrameOk) {
          end.output = std::move(frame.payload);
        } else {
          end.kind = AttemptEnd::kFailed;
          end.error_reason = "WORKER_ERROR";
          end.error = frame.payload;
          end.output = std::move(frame.payload);
        }
        EndAttempt(d, w, std::move(end));
        continue;
      }
      if ((frame.type == kFrameOk || frame.type == kFrameError) && w.killed) {
        continue;  // Sent before our signal landed, e.g. for a task cancelled while handed ahead.
      }
      last_worker_error_ = absl::StrCat("worker ", w.id, " sent an unexpected '",
                                        std::string(1, frame.type), "' frame");
      w.lost = true;
      Signal(w, SIGKILL);
      return;
    }
  }

  void Signal(Worker& w, int signal) {
    if (w.pid <= 0) return;
    w.killed = true;
    KillTree(w.pid, w.cookie, signal);
  }

  void ArmKill(Worker& w, int64_t grace_ms) {
    if (w.kill_timer != 0) return;
    std::weak_ptr<Pool> weak = shared_from_this();
    w.kill_timer = table_->timers.Schedule(table_->timers.Now() + absl::Milliseconds(grace_ms),
                                           [weak, num = w.num] {
                                             if (auto pool = weak.lock())
                                               pool->OnWorkerTimer(num, 1);
                                           });
  }

  // Stops the running attempt of `w` (cancel, timeout, terminate).
  void StopAttempt(Deferred& d, Worker& w, int64_t grace_ms) {
    switch (spec_.kind) {
      case PoolKind::kThread:
        if (w.cancel) w.cancel->Notify();
        break;
      case PoolKind::kCommand:
      case PoolKind::kWorker:
        if (grace_ms <= 0) {
          Signal(w, SIGKILL);
        } else {
          Signal(w, SIGTERM);
          ArmKill(w, grace_ms);
        }
        if (spec_.kind == PoolKind::kWorker) {
          w.retire = true;  // Its state is unknown after a kill; replace it.
        }
        break;
      default:
        break;
    }
  }

  // Asks a worker to exit. `hard`: kill (terminate); otherwise graceful (close stdin).
  void StopWorker(Deferred& d, Worker& w, int64_t grace_ms, bool hard) {
    switch (spec_.kind) {
      case PoolKind::kThread:
        w.thread_stop = true;
        if (w.task_seq != 0 && hard && w.cancel) w.cancel->Notify();
        if (w.task_seq == 0) w.state = WorkerState::kStopping;
        break;
      case PoolKind::kCommand:
        if (w.task_seq == 0) {
          RemoveWorker(d, w);
        } else if (hard) {
          StopAttempt(d, w, grace_ms);
        }
        break;
      case PoolKind::kWorker:
        if (w.task_seq != 0) {
          if (hard) StopAttempt(d, w, grace_ms);
          return;
        }
        w.state = WorkerState::kStopping;
        if (hard) {
          if (grace_ms <= 0) {
            Signal(w, SIGKILL);
          } else {
            CloseStdin(w);
            Signal(w, SIGTERM);
            ArmKill(w, grace_ms);
          }
        } else if (w.in.valid()) {
          CloseStdin(w);
          std::weak_ptr<Pool> weak = shared_from_this();
          w.stop_timer = table_->timers.Schedule(
              table_->timers.Now() + absl::Milliseconds(spec_.worker->stop_grace_ms),
              [weak, num = w.num] {
                if (auto pool = weak.lock()) pool->OnWorkerTimer(num, 2);
              });
        }
        break;
      default:
        break;
    }
  }

  void OnExit(Deferred& d, Worker& w) {
    int status = 0;
    struct rusage ru {};
    pid_t r = ::wait4(w.pid, &status, WNOHANG | __WALL, &ru);
    if (r == 0) return;  // Not yet (spurious).
    process::ProcessExit exit;
    if (r == w.pid && WIFEXITED(status)) {
      exit.reason = process::ExitReason::kExited;
      exit.exit_code = WEXITSTATUS(status);
    } else if (r == w.pid && WIFSIGNALED(status)) {
      exit.reason = w.killed ? process::ExitReason::kTerminated : process::ExitReason::kSignaled;
      exit.signal_number = WTERMSIG(status);
      exit.core_dumped = WCOREDUMP(status);
    } else {
      exit.reason = process::ExitReason::kSignaled;
      exit.message = "exit status unknown (reaped elsewhere)";
    }
    if (exit.message.empty()) {
      exit.message = exit.signal_number != 0
                         ? absl::StrCat("killed by ", process::SignalName(exit.signal_number))
                         : absl::StrCat("exited with code ", exit.exit_code);
    }
    // Collect what is left in the pipes.
    if (w.out.valid()) ReadStdout(d, w);
    if (w.err.valid()) ReadStderr(w);
    if (spec_.kind == PoolKind::kCommand) {
      CommandExited(d, w, exit, UsageFrom(ru));
    } else {
      WorkerExited(d, w, exit);
    }
  }

  void ReleaseProcess(Worker& w) {
    for (IoLoop::HandlerId* h : {&w.h_pid, &w.h_in, &w.h_out, &w.h_err}) {
      if (*h != 0) table_->io.Remove(*h);
      *h = 0;
    }
    for (TimerService::TimerId* t : {&w.kill_timer, &w.stop_timer, &w.start_timer}) {
      if (*t != 0) table_->timers.Cancel(*t);
      *t = 0;
    }
    w.pidfd.Reset();
    w.in.Reset();
    w.out.Reset();
    w.err.Reset();
    w.pid = 0;
    w.wbuf.clear();
    w.woff = 0;
  }

  void CommandExited(Deferred& d, Worker& w, const process::ProcessExit& exit,
                     const process::ProcessUsage& usage) {
    AttemptEnd end;
    end.exit = exit;
    end.usage = usage;
    end.out = std::move(w.out_tail);
    end.err = std::move(w.err_tail);
    if (exit.reason == process::ExitReason::kExited && exit.exit_code == 0) {
      end.kind = AttemptEnd::kOk;
    } else {
      end.kind = AttemptEnd::kFailed;
      end.error = ExitText(exit);
      end.error_reason = exit.signal_number != 0 ? "SIGNALED" : "EXIT_CODE";
    }
    ReleaseProcess(w);
    if (w.task_seq != 0) EndAttempt(d, w, std::move(end));
  }

  void WorkerExited(Deferred& d, Worker& w, const process::ProcessExit& exit) {
    const bool was_starting = w.state == WorkerState::kStarting;
    const bool expected = w.state == WorkerState::kStopping && !w.lost;
    std::string excerpt = StderrExcerpt(w);
    if (w.task_seq != 0) {
      AttemptEnd end;
      end.kind = AttemptEnd::kWorkerLost;
      end.error_reason = "WORKER_LOST";
      end.error = absl::StrCat("worker died: ", ExitText(exit), excerpt);
      end.exit = exit;
      w.lost = true;
      EndAttempt(d, w, std::move(end), /*worker_gone=*/true);
    }
    if (!expected) {
      if (was_starting) {
        ++consecutive_start_failures_;
        if (last_worker_error_.empty() || !w.lost) {
          last_worker_error_ = absl::StrCat(
              "worker ", w.id, " exited before its ready frame: ", ExitText(exit), excerpt);
        }
      } else if (w.lost || state_ == PoolState::kOpen || state_ == PoolState::kDraining) {
        last_worker_error_ = absl::StrCat("worker ", w.id, " died: ", ExitText(exit), excerpt);
      }
      if (state_ == PoolState::kOpen || state_ == PoolState::kDraining) ++stats_.worker_restarts;
    }
    RemoveWorker(d, w);
  }

  // Erases a worker (its process is gone or it never had one).
  void RemoveWorker(Deferred& d, Worker& w) {
    if (Task* ahead = TakeHandedAhead(w)) Requeue(*ahead);
    ReleaseProcess(w);
    const uint64_t num = w.num;
    workers_.erase(num);
    if (deleted_ || state_ == PoolState::kTerminating || state_ == PoolState::kDraining) {
      CheckDone(d);
    }
    if (state_ == PoolState::kOpen || (state_ == PoolState::kDraining && HasWork())) {
      Rebalance(d);
    }
    Dispatch(d);
  }

  // Higher priority first, then submission order.
  static std::pair<int64_t, uint64_t> QueueKey(const Task& t) {
    return {-static_cast<int64_t>(t.spec.priority), t.seq};
  }

  bool HasWork() {
    return !queue_.empty() || handed_ahead_count_ > 0 || backoff_count_ > 0 || running_count_ > 0;
  }

  int32_t ActiveWorkers() {
    int32_t n = 0;
    for (const auto& [num, w] : workers_) {
      if (!w->retire && w->state != WorkerState::kStopping) ++n;
    }
    return n;
  }

  // Brings the number of active workers to spec_.size (grow at once, shrink idle first).
  void Rebalance(Deferred& d) {
    int32_t active = ActiveWorkers();
    while (active < spec_.size) {
      if (spec_.kind == PoolKind::kWorker && consecutive_start_failures_ > 0) {
        if (respawn_timer_ != 0) return;
        int shift = std::min(consecutive_start_failures_ - 1, 6);
        absl::Duration delay = std::min(absl::Milliseconds(100) * (1 << shift), absl::Seconds(5));
        if (respawn_pending_) {
          respawn_pending_ = false;
        } else {
          std::weak_ptr<Pool> weak = shared_from_this();
          respawn_pending_ = true;
          respawn_timer_ = table_->timers.Schedule(table_->timers.Now() + delay, [weak] {
            if (auto pool = weak.lock()) pool->OnRespawnTimer();
          });
          return;
        }
      }
      if (!AddWorker(d).ok()) return;
      ++active;
    }
    if (active > spec_.size) {
      // Starting and idle first, then busy ones after their task.
      for (WorkerState pick : {WorkerState::kStarting, WorkerState::kIdle, WorkerState::kBusy}) {
        std::vector<uint64_t> nums;
        for (auto& [num, w] : workers_) {
          if (w->state == pick && !w->retire) nums.push_back(num);
        }
        for (uint64_t num : nums) {
          if (active <= spec_.size) return;
          auto it = workers_.find(num);
          if (it == workers_.end()) continue;
          it->second->retire = true;
          --active;
          if (pick != WorkerState::kBusy) StopWorker(d, *it->second, spec_.kill_grace_ms, false);
        }
      }
    }
  }

  absl::Status AddWorker(Deferred& d) {
    auto w = std::make_unique<Worker>();
    w->num = next_worker_num_++;
    w->id = absl::StrCat("w-", w->num);
    w->started_at = table_->timers.Now();
    Worker& ref = *w;
    switch (spec_.kind) {
      case PoolKind::kCommand:
        ref.state = WorkerState::kIdle;
        workers_.emplace(ref.num, std::move(w));
        break;
      case PoolKind::kThread: {
        ref.state = WorkerState::kIdle;
        workers_.emplace(ref.num, std::move(w));
        auto self = shared_from_this();
        absl::MutexLock lock(&table_->threads_mu);
        table_->threads.emplace_back([self, num = ref.num] { self->ThreadMain(num); });
        break;
      }
      case PoolKind::kWorker: {
        ref.cookie = absl::StrCat("pool:", name_, ":", ref.id);
        process::SpawnOptions o = BaseOptions(spec_.worker->command, ref.cookie);
        o.stdin_mode = process::SpawnOptions::Stdin::kPipe;
        auto child = table_->spawner->Spawn(o);
        if (!child.ok()) {
          last_worker_error_ = absl::StrCat("worker start failed: ", child.status().message());
          ++consecutive_start_failures_;
          return child.status();
        }
        ref.pid = child->pid;
        ref.pidfd = std::move(child->pidfd);
        ref.in = std::move(child->stdin_fd);
        ref.out = std::move(child->stdout_fd);
        ref.err = std::move(child->stderr_fd);
        ref.state = WorkerState::kStarting;
        workers_.emplace(ref.num, std::move(w));
        absl::Status s = Watch(ref);
        if (!s.ok()) {
          Signal(ref, SIGKILL);
          return s;
        }
        std::weak_ptr<Pool> weak = shared_from_this();
        ref.start_timer = table_->timers.Schedule(
            table_->timers.Now() + absl::Milliseconds(spec_.worker->start_timeout_ms),
            [weak, num = ref.num] {
              if (auto pool = weak.lock()) pool->OnWorkerTimer(num, 0);
            });
        break;
      }
      default:
        return Invalid("bad kind");
    }
    return absl::OkStatus();
  }

  // Ends the running attempt on `w`.
  void EndAttempt(Deferred& d, Worker& w, AttemptEnd end, bool worker_gone = false) {
    auto it = tasks_.find(w.task_seq);
    w.task_seq = 0;
    ++w.tasks_done;
    if (!worker_gone && w.state == WorkerState::kBusy) w.state = WorkerState::kIdle;
    w.cancel.reset();
    if (it == tasks_.end()) return;
    Task& t = *it->second;
    --running_count_;
    if (t.timeout_timer != 0) {
      table_->timers.Cancel(t.timeout_timer);
      t.timeout_timer = 0;
    }
    const absl::Time now = table_->timers.Now();
    TaskResult result;
    result.exit = end.exit;
    result.stdout_data = std::move(end.out.data);
    result.stdout_dropped_bytes = end.out.dropped;
    result.stderr_data = std::move(end.err.data);
    result.stderr_dropped_bytes = end.err.dropped;
    result.output = std::move(end.output);
    result.usage = end.usage;
    TaskState outcome = TaskState::kSucceeded;
    bool retryable = false;
    if (!t.stop_reason.empty()) {
      if (t.stop_reason == "TIMED_OUT") {
        outcome = TaskState::kTimedOut;
        retryable = t.retry.on_timed_out;
      } else {
        outcome = TaskState::kCancelled;
      }
      result.error = t.stop_message;
      result.error_reason = t.stop_reason;
    } else if (end.kind != AttemptEnd::kOk) {
      outcome = TaskState::kFailed;
      result.error = end.error;
      result.error_reason = end.error_reason;
      retryable = end.kind == AttemptEnd::kWorkerLost ? t.retry.on_worker_lost : t.retry.on_failed;
      if (end.no_retry) retryable = false;
      if (end.exit.has_value() && end.exit->reason == process::ExitReason::kExited &&
          std::find(t.retry.non_retryable.begin(), t.retry.non_retryable.end(),
                    end.exit->exit_code) != t.retry.non_retryable.end()) {
        retryable = false;
      }
    }
    const absl::Duration ran = now - t.started_at;
    // An exponentially weighted mean of the last few run times decides HandAhead.
    recent_run_ = recent_run_ < absl::ZeroDuration() ? ran : (recent_run_ * 3 + ran) / 4;
    if (table_->options.observe_task_done) {
      d.Add([fn = table_->options.observe_task_done, name = name_, outcome, ran] {
        fn(name, outcome, ran);
      });
    }
    if (outcome != TaskState::kSucceeded && outcome != TaskState::kCancelled && retryable &&
        t.attempt < t.retry.max_attempts &&
        (state_ == PoolState::kOpen || state_ == PoolState::kDraining)) {
      double delay_ms = static_cast<double>(t.retry.initial_backoff_ms) *
                        std::pow(t.retry.multiplier, t.attempt - 1);
      delay_ms = std::min(delay_ms, static_cast<double>(t.retry.max_backoff_ms));
      if (t.retry.jitter > 0) {
        thread_local std::mt19937_64 rng{std::random_device{}()};
        std::uniform_real_distribution<double> dist(-t.retry.jitter, t.retry.jitter);
        delay_ms *= 1.0 + dist(rng);
      }
      delay_ms = std::max(delay_ms, 1.0);
      t.state = TaskState::kBackoff;
      t.last_error = result.error;
      t.next_attempt_at = now + absl::Milliseconds(delay_ms);
      ++backoff_count_;
      ++stats_.task_retries;
      std::weak_ptr<Pool> weak = shared_from_this();
      t.backoff_timer = table_->timers.Schedule(t.next_attempt_at, [weak, seq = t.seq] {
        if (auto pool = weak.lock()) pool->OnBackoffDone(seq);
      });
      Emit(d, t, TaskEventType::kRetried, result.error);
    } else {
      Finalize(d, t, outcome, std::move(result));
    }
    AfterTask(d, w, worker_gone);
    Dispatch(d);
    CheckDone(d);
  }

  // Worker bookkeeping after a task: recycle or retire.
  void AfterTask(Deferred& d, Worker& w, bool worker_gone) {
    if (worker_gone) return;
    if (w.ahead_seq != 0) {
      Task* ahead = TakeHandedAhead(w);
      if (ahead != nullptr && !w.killed) {
        // The worker has already read its frame: the attempt starts now.
        StartAttempt(d, w, *ahead, /*frame_sent=*/true);
        return;
      }
      if (ahead != nullptr) {
        Requeue(*ahead);  // The worker is being killed; another one runs it.
      } else if (!w.killed) {
        // Cancelled while handed ahead: the worker is running it now. Stop that worker; a new one
        // takes its place.
        w.retire = true;
        w.state = WorkerState::kStopping;
        Signal(w, SIGKILL);
        if (state_ == PoolState::kOpen || (state_ == PoolState::kDraining && HasWork())) {
          Rebalance(d);
        }
        return;
      }
    }
    if (spec_.kind == PoolKind::kWorker && spec_.max_tasks_per_worker > 0 &&
        w.tasks_done >= spec_.max_tasks_per_worker && !w.retire) {
      w.retire = true;
      w.recycle = true;
      ++stats_.worker_recycles;
      if (state_ == PoolState::kOpen || (state_ == PoolState::kDraining && HasWork())) {
        Rebalance(d);  // The replacement starts now.
      }
    }
    if (w.retire && w.task_seq == 0) {
      if (spec_.kind == PoolKind::kWorker && w.killed) {
        w.state = WorkerState::kStopping;  // Killed for a cancel/timeout: its exit removes it.
        return;
      }
      StopWorker(d, w, spec_.kill_grace_ms, false);
    } else if (spec_.kind == PoolKind::kWorker && w.killed && w.task_seq == 0) {
      w.retire = true;
      w.state = WorkerState::kStopping;
    }
  }

  void Finalize(Deferred& d, Task& t, TaskState outcome, TaskResult result) {
    const absl::Time now = table_->timers.Now();
    t.state = outcome;
    t.ended_at = now;
    result.outcome = outcome;
    result.attempts = t.attempt;
    result.worker_id = t.worker_id;
    result.submitted_at = t.submitted_at;
    result.started_at = t.started_at;
    result.ended_at = now;
    t.result = std::move(result);
    TaskEventType type = TaskEventType::kSucceeded;
    switch (outcome) {
      case TaskState::kSucceeded:
        ++stats_.tasks_succeeded;
        break;
      case TaskState::kFailed:
        ++stats_.tasks_failed;
        type = TaskEventType::kFailed;
        break;
      case TaskState::kCancelled:
        ++stats_.tasks_cancelled;
        type = TaskEventType::kCancelled;
        break;
      case TaskState::kTimedOut:
        ++stats_.tasks_timed_out;
        type = TaskEventType::kTimedOut;
        break;
      default:
        break;
    }
    Emit(d, t, type);
    if (t.session_hook != 0 && table_->sessions != nullptr) {
      d.Add([sessions = table_->sessions, sid = t.session_id, hook = t.session_hook] {
        sessions->RemoveHook(sid, hook);
      });
      t.session_hook = 0;
    }
    if (t.on_final || !t.waiters.empty()) {
      TaskView view = TaskViewOf(t, false, true);
      if (t.on_final) {
        d.Add([fn = std::move(t.on_final), view] { fn(view); });
        t.on_final = nullptr;
      }
      for (PoolTable::WaiterId id : t.waiters) {
        auto it = waiters_.find(id);
        if (it == waiters_.end()) continue;
        Waiter w = std::move(it->second);
        if (w.timer != 0) table_->timers.Cancel(w.timer);
        waiters_.erase(it);
        table_->ForgetWaiter(id);
        d.Add([done = std::move(w.task_done), view]() mutable { std::move(done)(view, true); });
      }
      t.waiters.clear();
    }
    finished_.push_back(t.seq);
    while (static_cast<int64_t>(finished_.size()) > table_->options.max_finished_tasks_per_pool) {
      uint64_t old = finished_.front();
      finished_.pop_front();
      auto it = tasks_.find(old);
      if (it == tasks_.end()) continue;
      if (!it->second->request_id.empty()) request_ids_.erase(it->second->request_id);
      tasks_.erase(it);
    }
  }

  void FinishWithoutRunning(Deferred& d, Task& t, const std::string& reason,
                            const std::string& message) {
    if (t.state == TaskState::kQueued && t.handed_ahead) {
      // Its frame stays in the worker's pipe; the worker is stopped if it gets to it (AfterTask).
      t.handed_ahead = false;
      --handed_ahead_count_;
    } else if (t.state == TaskState::kQueued) {
      queue_.erase(QueueKey(t));
    } else if (t.state == TaskState::kBackoff) {
      --backoff_count_;
      if (t.backoff_timer != 0) table_->timers.Cancel(t.backoff_timer);
      t.backoff_timer = 0;
    }
    TaskResult r;
    r.error = message;
    r.error_reason = reason;
    Finalize(d, t, TaskState::kCancelled, std::move(r));
    DrainSubmitWaiters(d);
  }

  // Moves DRAINING/TERMINATING on when their work is done.
  void CheckDone(Deferred& d) {
    if (state_ == PoolState::kDraining && !HasWork()) {
      std::vector<uint64_t> nums;
      for (auto& [num, w] : workers_) {
        if (!w->retire || w->task_seq == 0) nums.push_back(num);
      }
      for (uint64_t num : nums) {
        auto it = workers_.find(num);
        if (it == workers_.end()) continue;
        Worker& w = *it->second;
        if (w.state == WorkerState::kStopping && (w.retire || w.thread_stop)) continue;
        w.retire = true;
        StopWorker(d, w, spec_.kill_grace_ms, false);
      }
      if (workers_.empty()) Settle(d, PoolState::kClosed);
    } else if (state_ == PoolState::kTerminating && workers_.empty() && running_count_ == 0) {
      Settle(d, PoolState::kTerminated);
    }
  }

  void Settle(Deferred& d, PoolState final_state) {
    if (state_ == final_state) return;
    state_ = final_state;
    if (respawn_timer_ != 0) {
      table_->timers.Cancel(respawn_timer_);
      respawn_timer_ = 0;
    }
    PoolView v = View(false);
    for (PoolTable::WaiterId id : std::vector<PoolTable::WaiterId>(join_waiters_)) {
      auto it = waiters_.find(id);
      if (it == waiters_.end()) continue;
      Waiter w = std::move(it->second);
      RemoveWaiter(id, w);
      d.Add([done = std::move(w.join_done), v]() mutable { std::move(done)(v, true); });
    }
    join_waiters_.clear();
    d.Add([table = table_, self = shared_from_this()] {
      absl::MutexLock lock(&table->mu);
      table->dying.erase(std::remove(table->dying.begin(), table->dying.end(), self),
                         table->dying.end());
    });
  }

  PoolTable::Impl* const table_;
  const uint64_t uid_;
  const std::string name_;
  PoolSpec spec_ ABSL_GUARDED_BY(mu_);
  std::string spec_key_;
  const absl::Time created_at_;
  PoolState state_ ABSL_GUARDED_BY(mu_) = PoolState::kOpen;
  absl::Time closed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_worker_error_ ABSL_GUARDED_BY(mu_);
  PoolStats stats_ ABSL_GUARDED_BY(mu_);
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
  SessionHooks::HookId session_hook_ ABSL_GUARDED_BY(mu_) = 0;

  std::map<uint64_t, std::unique_ptr<Task>> tasks_ ABSL_GUARDED_BY(mu_);
  // (-priority, seq) -> seq.
  std::map<std::pair<int64_t, uint64_t>, uint64_t> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> finished_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<uint64_t>> request_ids_ ABSL_GUARDED_BY(mu_);
  int64_t backoff_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t handed_ahead_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Mean run time of the pool's recent attempts; negative until one has ended.
  absl::Duration recent_run_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  int64_t running_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_task_seq_ ABSL_GUARDED_BY(mu_) = 1;

  std::map<uint64_t, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_worker_num_ ABSL_GUARDED_BY(mu_) = 1;
  int consecutive_start_failures_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId respawn_timer_ ABSL_GUARDED_BY(mu_) = 0;
  bool respawn_pending_ ABSL_GUARDED_BY(mu_) = false;

  absl::flat_hash_map<PoolTable::WaiterId, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::vector<PoolTable::WaiterId> join_waiters_ ABSL_GUARDED_BY(mu_);
  std::deque<PoolTable::WaiterId> submit_queue_ ABSL_GUARDED_BY(mu_);

  std::deque<TaskEvent> events_ ABSL_GUARDED_BY(mu_);
  int64_t next_event_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<std::function<void()>>> subscribers_ ABSL_GUARDED_BY(mu_);
  uint64_t next_subscriber_ ABSL_GUARDED_BY(mu_) = 1;
  bool notify_pending_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------------------------
// EventSubscription.

namespace {

class PoolSubscription final : public EventSubscription {
 public:
  PoolSubscription(std::shared_ptr<PoolTable::Pool> pool, uint64_t id)
      : pool_(std::move(pool)), id_(id) {}
  ~PoolSubscription() override { pool_->RemoveSubscriber(id_); }
  absl::StatusOr<ReadResult> Read(int64_t after_sequence, size_t max) override {
    return pool_->ReadEvents(after_sequence, max);
  }
  int64_t LastSequence() override { return pool_->LastSequence(); }
  int64_t BeforeOldest() override { return pool_->BeforeOldest(); }

 private:
  std::shared_ptr<PoolTable::Pool> pool_;
  uint64_t id_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// PoolTable.

PoolTable::PoolTable(TimerService& timers, SessionHooks* sessions,
                     std::unique_ptr<process::Spawner> spawner,
                     std::shared_ptr<FunctionRegistry> functions, PoolTableOptions options)
    : impl_(std::make_unique<Impl>(timers, sessions, std::move(spawner), functions,
                                   std::move(options))),
      functions_(std::move(functions)) {}

PoolTable::~PoolTable() {
  std::vector<std::shared_ptr<Pool>> pools;
  {
    absl::MutexLock lock(&impl_->mu);
    for (auto& [uid, pool] : impl_->by_uid) pools.push_back(pool);
    for (auto& pool : impl_->dying) pools.push_back(pool);
  }
  for (auto& pool : pools) {
    pool->Terminate(0).IgnoreError();
  }
  // Threads exit once their function returns; processes were SIGKILLed. Wait (bounded) for the
  // pools to settle so no callback outlives the table.
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  for (auto& pool : pools) {
    while (!pool->Finished() && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&impl_->threads_mu);
    threads.swap(impl_->threads);
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->by_uid.clear();
    impl_->dying.clear();
  }
  for (auto& shard : impl_->shards) {
    absl::MutexLock lock(&shard.mu);
    shard.pools.clear();
  }
}

namespace {

absl::Status ValidateAndDefault(PoolSpec& spec) {
  if (spec.kind == PoolKind::kUnspecified) {
    return Invalid("spec.kind: required (POOL_KIND_COMMAND, POOL_KIND_WORKER or POOL_KIND_THREAD)");
  }
  int kind = static_cast<int>(spec.kind);
  if (kind < 1 || kind > 3) {
    return Invalid(absl::StrCat("spec.kind: unknown kind ", kind));
  }
  SPINDLE_RETURN_IF_ERROR(CheckRange("spec.size", spec.size, 0, 1024, " (0 = number of cores)"));
  if (spec.size == 0)
    spec.size = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (spec.kind == PoolKind::kWorker) {
    if (!spec.worker.has_value()) {
      return Invalid("spec.worker: required for a WORKER pool");
    }
    SPINDLE_RETURN_IF_ERROR(ValidateCommand("spec.worker.command", spec.worker->command));
    if (spec.worker->start_timeout_ms == 0) spec.worker->start_timeout_ms = 30'000;
    SPINDLE_RETURN_IF_ERROR(
        CheckRange("spec.worker.start_timeout_ms", spec.worker->start_timeout_ms, 1, 3'600'000));
    if (spec.worker->stop_grace_ms == 0) spec.worker->stop_grace_ms = 5'000;
    SPINDLE_RETURN_IF_ERROR(
        CheckRange("spec.worker.stop_grace_ms", spec.worker->stop_grace_ms, 1, 3'600'000));
  } else if (spec.worker.has_value()) {
    return Invalid(
        absl::StrCat("spec.worker: only for WORKER pools, not ", PoolKindName(spec.kind)));
  }
  if (spec.max_queued == 0) spec.max_queued = 10'000;
  SPINDLE_RETURN_IF_ERROR(CheckRange("spec.max_queued", spec.max_queued, 1, 1'000'000));
  if (spec.default_task_timeout_ms < 0) {
    return Invalid(absl::StrCat("spec.default_task_timeout_ms: ", spec.default_task_timeout_ms,
                                " is negative"));
  }
  SPINDLE_RETURN_IF_ERROR(PoolTable::ValidateRetryPolicy("spec.retry", spec.retry));
  if (spec.max_tasks_per_worker < 0) {
    return Invalid(
        absl::StrCat("spec.max_tasks_per_worker: ", spec.max_tasks_per_worker, " is negative"));
  }
  SPINDLE_RETURN_IF_ERROR(ValidateLabels("spec.labels", spec.labels));
  if (spec.kill_grace_ms == 0) spec.kill_grace_ms = 5'000;
  SPINDLE_RETURN_IF_ERROR(CheckRange("spec.kill_grace_ms", spec.kill_grace_ms, 1, 3'600'000));
  if (spec.max_output_bytes == 0) spec.max_output_bytes = 65'536;
  SPINDLE_RETURN_IF_ERROR(CheckRange("spec.max_output_bytes", spec.max_output_bytes, 1, 1 << 20));
  const auto& l = spec.limits;
  for (auto [field, value] :
       {std::pair{"cpu_seconds", l.cpu_seconds},
        std::pair{"address_space_bytes", l.address_space_bytes},
        std::pair{"open_files", l.open_files}, std::pair{"processes", l.processes},
        std::pair{"core_bytes", l.core_bytes}, std::pair{"file_size_bytes", l.file_size_bytes}}) {
    if (value.has_value() && *value < 0) {
      return Invalid(absl::StrCat("spec.limits.", field, ": ", *value, " is negative"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PoolTable::CreateResult> PoolTable::CreatePool(const std::string& name,
                                                              PoolSpec spec,
                                                              const std::string& request_id,
                                                              const std::string& identity) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  if (!request_id.empty()) {
    std::string existing;
    {
      absl::MutexLock lock(&impl_->mu);
      auto it = impl_->create_request_ids.find(request_id);
      if (it != impl_->create_request_ids.end()) existing = it->second;
    }
    if (!existing.empty()) {
      if (auto pool = impl_->ByName(existing)) return CreateResult{pool->ViewLocked(false), false};
    }
  }
  SPINDLE_RETURN_IF_ERROR(ValidateAndDefault(spec));
  process::SpawnPolicy* const policy =
      spec.kind == PoolKind::kThread ? nullptr : impl_->options.spawn_policy.get();
  if (policy != nullptr) {
    if (spec.worker.has_value()) {
      SPINDLE_RETURN_IF_ERROR(policy->ApplyToCommand("spec.worker.command", spec.worker->command,
                                                     impl_->InheritedPath()));
    }
    SPINDLE_RETURN_IF_ERROR(policy->ApplyToLimits("spec.limits", spec.limits));
    SPINDLE_RETURN_IF_ERROR(policy->ApplyToRunAs("spec.run_as", spec.run_as));
  }
  if (!spec.session_id.empty()) {
    if (impl_->sessions == nullptr) {
      return NotFound("SESSION_NOT_FOUND",
                      absl::StrCat("spec.session_id: session '", spec.session_id, "' not found"));
    }
    SPINDLE_RETURN_IF_ERROR(impl_->sessions->CheckAlive(spec.session_id));
  }
  Impl::Shard& shard = impl_->ShardOf(name);
  std::shared_ptr<Pool> pool;
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.pools.find(name);
    if (it != shard.pools.end()) {
      if (it->second->spec_key() == SpecKey(spec)) {
        return CreateResult{it->second->ViewLocked(false), false};
      }
      return AlreadyExists("POOL_EXISTS",
                           absl::StrCat("pool '", name, "' exists with other settings"));
    }
    {
      absl::MutexLock table_lock(&impl_->mu);
      if (impl_->pool_count >= impl_->options.max_pools) {
        return ResourceExhausted("TOO_MANY_POOLS",
                                 absl::StrCat("at most ", impl_->options.max_pools, " pools"));
      }
      if (impl_->worker_budget_used + spec.size > impl_->options.max_total_workers) {
        return ResourceExhausted(
            "TOO_MANY_POOLS",
            absl::StrCat("spec.size: ", spec.size, " workers would exceed the server's limit of ",
                         impl_->options.max_total_workers, " pool workers (",
                         impl_->worker_budget_used, " in use)"));
      }
      if (policy != nullptr) {
        SPINDLE_RETURN_IF_ERROR(policy->AcquireProcesses(
            identity, spec.size, absl::StrCat("pool '", name, "' of size ", spec.size)));
      }
      pool = std::make_shared<Pool>(impl_.get(), impl_->next_uid++, name, spec);
      if (policy != nullptr && !identity.empty()) impl_->policy_owners[pool->uid()] = identity;
      ++impl_->pool_count;
      impl_->worker_budget_used += spec.size;
      impl_->by_uid.emplace(pool->uid(), pool);
      if (!request_id.empty()) impl_->create_request_ids[request_id] = name;
    }
    shard.pools.emplace(name, pool);
  }
  absl::Status started = pool->Start();
  if (!started.ok()) {
    {
      absl::MutexLock lock(&shard.mu);
      shard.pools.erase(name);
    }
    absl::MutexLock table_lock(&impl_->mu);
    impl_->by_uid.erase(pool->uid());
    --impl_->pool_count;
    impl_->worker_budget_used -= spec.size;
    impl_->ReleasePolicyCount(pool->uid(), spec.size);
    impl_->policy_owners.erase(pool->uid());
    if (!request_id.empty()) impl_->create_request_ids.erase(request_id);
    impl_->dying.push_back(pool);
    return started;
  }
  if (!spec.session_id.empty()) {
    std::weak_ptr<Pool> weak = pool;
    auto hook = impl_->sessions->OnEnd(spec.session_id, [this, weak, name] {
      if (auto p = weak.lock()) {
        // Only the pool this hook was made for.
        if (impl_->ByName(name) == p) DeletePool(name, true).IgnoreError();
      }
    });
    if (hook.ok()) pool->BindSession(*hook);
  }
  return CreateResult{pool->ViewLocked(false), true};
}

absl::StatusOr<PoolView> PoolTable::GetPool(const std::string& name, bool include_workers) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  auto pool = impl_->ByName(name);
  if (pool == nullptr) return PoolNotFound(name);
  return pool->ViewLocked(include_workers);
}

absl::Status PoolTable::ValidateTask(const std::string& pool_name, const std::string& field,
                                     const TaskSpec& spec) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("pool", pool_name));
  auto pool = impl_->ByName(pool_name);
  if (pool == nullptr) return PoolNotFound(pool_name);
  return pool->ValidateTaskLocked(field, spec);
}

absl::StatusOr<PoolTable::PoolPage> PoolTable::ListPools(const std::vector<PoolState>& states,
                                                         const std::string& label_selector,
                                                         const std::string& name_prefix,
                                                         int32_t page_size,
                                                         const std::string& page_token) {
  SPINDLE_RETURN_IF_ERROR(CheckRange("page_size", page_size, 0, 1000));
  SPINDLE_RETURN_IF_ERROR(ValidatePrefix("name_prefix", name_prefix));
  SPINDLE_ASSIGN_OR_RETURN(auto selector, LabelSelector::Parse("label_selector", label_selector));
  if (!page_token.empty() && !ValidateName("page_token", page_token).ok()) {
    return Invalid(absl::StrCat("page_token: '", page_token, "' is not a token from ListPools"));
  }
  size_t limit = page_size == 0 ? 100 : static_cast<size_t>(page_size);
  std::vector<std::shared_ptr<Pool>> pools;
  for (auto& shard : impl_->shards) {
    absl::MutexLock lock(&shard.mu);
    for (auto& [name, pool] : shard.pools) {
      if (name > page_token && absl::StartsWith(name, name_prefix)) pools.push_back(pool);
    }
  }
  std::sort(pools.begin(), pools.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });
  PoolPage page;
  for (auto& pool : pools) {
    PoolView v = pool->ViewLocked(false);
    if (!states.empty() && std::find(states.begin(), states.end(), v.state) == states.end()) {
      continue;
    }
    if (!selector.Matches(v.spec.labels)) continue;
    if (page.pools.size() == limit) {
      page.next_page_token = page.pools.back().name;
      break;
    }
    page.pools.push_back(std::move(v));
  }
  return page;
}

absl::StatusOr<PoolView> PoolTable::ResizePool(const std::string& name, int32_t size) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  SPINDLE_RETURN_IF_ERROR(CheckRange("size", size, 0, 1024, " (0 = number of cores)"));
  if (size == 0) size = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  auto pool = impl_->ByName(name);
  if (pool == nullptr) return PoolNotFound(name);
  int32_t old_size = pool->ViewLocked(false).spec.size;
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->worker_budget_used - old_size + size > impl_->options.max_total_workers) {
      return ResourceExhausted(
          "TOO_MANY_POOLS",
          absl::StrCat("size: ", size, " workers would exceed the server's limit of ",
                       impl_->options.max_total_workers, " pool workers"));
    }
    auto owner = impl_->policy_owners.find(pool->uid());
    if (owner != impl_->policy_owners.end() && size > old_size) {
      SPINDLE_RETURN_IF_ERROR(impl_->options.spawn_policy->AcquireProcesses(
          owner->second, size - old_size,
          absl::StrCat("growing pool '", name, "' from ", old_size, " to ", size)));
    }
    impl_->worker_budget_used += size - old_size;
  }
  auto result = pool->Resize(size);
  absl::MutexLock lock(&impl_->mu);
  if (!result.ok()) {
    impl_->worker_budget_used -= size - old_size;
    if (size > old_size) impl_->ReleasePolicyCount(pool->uid(), size - old_size);
  } else if (size < old_size) {
    impl_->ReleasePolicyCount(pool->uid(), old_size - size);
  }
  return result;
}

absl::StatusOr<PoolView> PoolTable::ClosePool(const std::string& name) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  auto pool = impl_->ByName(name);
  if (pool == nullptr) return PoolNotFound(name);
  return pool->Close();
}

absl::StatusOr<PoolView> PoolTable::TerminatePool(const std::string& name,
                                                  std::optional<int64_t> grace_ms) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  if (grace_ms.has_value()) {
    SPINDLE_RETURN_IF_ERROR(CheckRange("grace_ms", *grace_ms, 0, 3'600'000));
  }
  auto pool = impl_->ByName(name);
  if (pool == nullptr) return PoolNotFound(name);
  return pool->Terminate(grace_ms);
}

absl::Status PoolTable::DeletePool(const std::string& name, bool force) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", name));
  auto pool = impl_->ByName(name);
  if (pool == nullptr) return PoolNotFound(name);
  if (!pool->Finished()) {
    if (!force) {
      return FailedPrecondition(
          "POOL_NOT_FINISHED",
          absl::StrCat("pool '", name, "' still has work: close and join it, or use force"));
    }
    pool->Terminate(std::nullopt).IgnoreError();
  }
  Impl::Shard& shard = impl_->ShardOf(name);
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.pools.find(name);
    if (it == shard.pools.end() || it->second != pool) return PoolNotFound(name);
    shard.pools.erase(it);
  }
  int32_t size = pool->ViewLocked(false).spec.size;
  const bool finished = pool->Finished();
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->by_uid.erase(pool->uid());
    --impl_->pool_count;
    impl_->worker_budget_used -= size;
    impl_->ReleasePolicyCount(pool->uid(), size);
    impl_->policy_owners.erase(pool->uid());
    if (!finished) impl_->dying.push_back(pool);
    for (auto it = impl_->create_request_ids.begin(); it != impl_->create_request_ids.end();) {
      if (it->second == name) {
        impl_->create_request_ids.erase(it++);
      } else {
        ++it;
      }
    }
  }
  Deferred d;
  pool->OnDeleted(d);
  return absl::OkStatus();
}

PoolTable::WaiterId PoolTable::JoinPool(
    const std::string& name, absl::Time deadline,
    absl::AnyInvocable<void(absl::StatusOr<PoolView>, bool) &&> done) {
  if (absl::Status s = ValidateName("name", name); !s.ok()) {
    std::move(done)(s, false);
    return 0;
  }
  auto pool = impl_->ByName(name);
  if (pool == nullptr) {
    std::move(done)(PoolNotFound(name), false);
    return 0;
  }
  return pool->Join(deadline, std::move(done));
}

PoolTable::WaiterId PoolTable::Submit(
    const std::string& pool_name, std::vector<TaskSpec> specs, SubmitOptions options,
    absl::AnyInvocable<void(absl::StatusOr<SubmitResult>) &&> done) {
  if (absl::Status s = ValidateName("pool", pool_name); !s.ok()) {
    std::move(done)(s);
    return 0;
  }
  if (specs.empty()) {
    std::move(done)(Invalid("tasks: empty batch"));
    return 0;
  }
  auto pool = impl_->ByName(pool_name);
  if (pool == nullptr) {
    std::move(done)(PoolNotFound(pool_name));
    return 0;
  }
  return pool->Submit(std::move(specs), std::move(options), std::move(done));
}

namespace {
absl::Status CheckTaskId(const std::string& id) {
  if (id.empty()) return Invalid("task_id: required");
  if (id.size() > 64) return Invalid(absl::StrCat("task_id: longer than 64 bytes"));
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<TaskView> PoolTable::GetTask(const std::string& task_id, bool include_input) {
  SPINDLE_RETURN_IF_ERROR(CheckTaskId(task_id));
  uint64_t uid, seq;
  if (!ParseTaskId(task_id, &uid, &seq)) return TaskNotFound(task_id);
  auto pool = impl_->ByUid(uid);
  if (pool == nullptr) return TaskNotFound(task_id);
  return pool->GetTask(seq, task_id, include_input);
}

PoolTable::WaiterId PoolTable::WaitTask(
    const std::string& task_id, absl::Time deadline,
    absl::AnyInvocable<void(absl::StatusOr<TaskView>, bool) &&> done) {
  if (absl::Status s = CheckTaskId(task_id); !s.ok()) {
    std::move(done)(s, false);
    return 0;
  }
  uint64_t uid, seq;
  std::shared_ptr<Pool> pool;
  if (ParseTaskId(task_id, &uid, &seq)) pool = impl_->ByUid(uid);
  if (pool == nullptr) {
    std::move(done)(TaskNotFound(task_id), false);
    return 0;
  }
  return pool->WaitTask(seq, task_id, deadline, std::move(done));
}

absl::StatusOr<TaskView> PoolTable::CancelTask(const std::string& task_id,
                                               std::optional<int64_t> grace_ms,
                                               const std::string& reason,
                                               const std::string& message) {
  SPINDLE_RETURN_IF_ERROR(CheckTaskId(task_id));
  if (grace_ms.has_value()) {
    SPINDLE_RETURN_IF_ERROR(CheckRange("grace_ms", *grace_ms, 0, 3'600'000));
  }
  uint64_t uid, seq;
  if (!ParseTaskId(task_id, &uid, &seq)) return TaskNotFound(task_id);
  auto pool = impl_->ByUid(uid);
  if (pool == nullptr) return TaskNotFound(task_id);
  return pool->Cancel(seq, task_id, grace_ms, reason, message);
}

absl::StatusOr<PoolTable::TaskPage> PoolTable::ListTasks(const std::string& pool_name,
                                                         const TaskFilter& filter,
                                                         int32_t page_size,
                                                         const std::string& page_token,
                                                         bool include_output) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("pool", pool_name));
  SPINDLE_RETURN_IF_ERROR(CheckRange("page_size", page_size, 0, 1000));
  SPINDLE_ASSIGN_OR_RETURN(auto selector,
                           LabelSelector::Parse("label_selector", filter.label_selector));
  uint64_t after = 0;
  if (!page_token.empty() && !absl::SimpleAtoi(page_token, &after)) {
    return Invalid(absl::StrCat("page_token: '", page_token, "' is not a token from ListTasks"));
  }
  auto pool = impl_->ByName(pool_name);
  if (pool == nullptr) return PoolNotFound(pool_name);
  return pool->ListTasks(filter, selector, page_size, after, include_output);
}

absl::StatusOr<std::unique_ptr<EventSubscription>> PoolTable::Subscribe(
    const std::string& pool_name, std::function<void()> notify) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("pool", pool_name));
  auto pool = impl_->ByName(pool_name);
  if (pool == nullptr) return PoolNotFound(pool_name);
  uint64_t id = pool->AddSubscriber(std::move(notify));
  return std::unique_ptr<EventSubscription>(new PoolSubscription(pool, id));
}

bool PoolTable::CancelWait(WaiterId id) {
  if (id == 0) return false;
  std::shared_ptr<Pool> pool;
  {
    absl::MutexLock lock(&impl_->mu);
    auto it = impl_->waiters.find(id);
    if (it == impl_->waiters.end()) return false;
    pool = it->second.lock();
  }
  return pool != nullptr && pool->CancelWaiter(id);
}

PoolTable::TableStats PoolTable::GetStats() {
  TableStats stats;
  std::vector<std::shared_ptr<Pool>> pools;
  {
    absl::MutexLock lock(&impl_->mu);
    stats.pools = impl_->pool_count;
    for (auto& [uid, pool] : impl_->by_uid) pools.push_back(pool);
  }
  for (auto& pool : pools) stats.tasks += pool->TaskCount();
  return stats;
}

std::vector<PoolView> PoolTable::AllPools() {
  std::vector<std::shared_ptr<Pool>> pools;
  {
    absl::MutexLock lock(&impl_->mu);
    for (auto& [uid, pool] : impl_->by_uid) pools.push_back(pool);
  }
  std::vector<PoolView> views;
  views.reserve(pools.size());
  for (auto& pool : pools) views.push_back(pool->ViewLocked(false));
  std::sort(views.begin(), views.end(),
            [](const PoolView& a, const PoolView& b) { return a.name < b.name; });
  return views;
}

}  // namespace spindle::pool
