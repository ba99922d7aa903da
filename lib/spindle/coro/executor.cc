#include "spindle/coro/executor.h"

#include <pthread.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/coro/internal/live_frames.h"
#include "spindle/coro/internal/local_queue.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/task_scope.h"

namespace spindle::coro {
namespace internal {

// A callback given to Post(). Queued as its address with the low bit set; coroutine frames are
// at least 8-byte aligned, so their addresses have it clear.
struct PostedCallback {
  absl::AnyInvocable<void()> callback;
};

struct Worker {
  Executor* executor = nullptr;
  int index = 0;
  LocalQueue queue;
  // Parking (see Executor::Park). `parked` is the futex word: 1 while parked and not yet chosen.
  std::atomic<uint32_t> parked{0};
  void* handoff = nullptr;      // An item given by the unparker; written before `parked` = 0.
  Worker* next_idle = nullptr;  // Guarded by Executor::idle_mu_.
  bool idle = false;            // On the idle stack; guarded by Executor::idle_mu_.
  // The next item to run: a waiter woken by this worker. Owner only, not stealable.
  void* next = nullptr;
  int next_streak = 0;  // Consecutive runs from `next`; bounded so ping-pong cannot starve others.
  uint32_t tick = 0;
  uint32_t random = 0;
  std::thread thread;
};

namespace {

// Items taken from `next` in a row before the worker looks at its queue again.
constexpr int kMaxNextStreak = 16;
// Every this many items a worker looks at the injection queue first, so that work from other
// threads is not starved by a worker that keeps feeding its own queue.
constexpr uint32_t kInjectionCheckInterval = 61;
// Items moved from the injection queue to a local queue in one go (beyond the one to run).
constexpr size_t kMaxInjectedBatch = 32;
// Rounds of looking for work (with a CPU pause between them, a few microseconds in all) before an
// idle worker parks on the futex: work arriving at a steady trickle from other threads is then
// picked up without a wake-up system call per item.
constexpr int kSpinRounds = 64;

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

thread_local Worker* tls_worker = nullptr;

bool IsPostedCallback(void* item) noexcept { return (reinterpret_cast<uintptr_t>(item) & 1) != 0; }

void* TagPostedCallback(PostedCallback* callback) noexcept {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(callback) | 1);
}

PostedCallback* UntagPostedCallback(void* item) noexcept {
  return reinterpret_cast<PostedCallback*>(reinterpret_cast<uintptr_t>(item) & ~uintptr_t{1});
}

// Saturating monotonic deadline `now + duration`.
int64_t DeadlineAfter(int64_t now_ns, absl::Duration duration) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  if (duration == absl::InfiniteDuration()) {
    return kNever;
  }
  if (duration <= absl::ZeroDuration()) {
    return now_ns;
  }
  const int64_t delta = absl::ToInt64Nanoseconds(duration);  // Saturates.
  return delta > kNever - now_ns ? kNever : now_ns + delta;
}

}  // namespace

void ResumeWaiter(Executor* target, std::coroutine_handle<> handle) noexcept {
  if (target == nullptr) {
    handle.resume();
  } else {
    target->EnqueueWoken(handle.address());
  }
}

Executor* CurrentExecutor() noexcept {
  return tls_worker != nullptr ? tls_worker->executor : nullptr;
}

}  // namespace internal

using internal::tls_worker;

// ScheduleOperation and Yield()

bool ScheduleOperation::await_suspend(std::coroutine_handle<> handle) noexcept {
  return executor_->EnqueueYield(handle.address());
}

ScheduleOperation Yield() noexcept {
  return ScheduleOperation(tls_worker != nullptr ? tls_worker->executor : nullptr);
}

// Executor: construction and shutdown

Executor::Executor(Options options) : name_(std::move(options.name)) {
  workers_.reserve(static_cast<size_t>(options.threads));
  for (int i = 0; i < options.threads; ++i) {
    auto worker = std::make_unique<internal::Worker>();
    worker->executor = this;
    worker->index = i;
    worker->random = static_cast<uint32_t>(i) * 2654435761u + 1;
    workers_.push_back(std::move(worker));
  }
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(Options options) {
  if (options.threads < 0) {
    return spindle::InvalidArgument(
        "INVALID_THREADS", absl::StrCat("executor threads must be >= 0, got ", options.threads));
  }
  if (options.threads == 0) {
    options.threads = std::max(1u, std::thread::hardware_concurrency());
  }
  if (options.name.empty()) {
    options.name = "spindle";
  }
  std::unique_ptr<Executor> executor(new Executor(std::move(options)));
  SPINDLE_ASSIGN_OR_RETURN(executor->reactor_, internal::Reactor::Create(executor.get()));
  executor->root_scope_ = absl::WrapUnique(new TaskScope(*executor, TaskScope::RootTag{}));
  const std::string prefix = executor->name_.substr(0, 10);
  try {
    for (auto& worker : executor->workers_) {
      internal::Worker* w = worker.get();
      Executor* self = executor.get();
      const std::string thread_name = absl::StrCat(prefix, "-w", w->index);
      w->thread = std::thread([self, w, thread_name] {
        pthread_setname_np(pthread_self(), thread_name.c_str());
        self->WorkerLoop(*w);
      });
    }
    executor->reactor_->Start(absl::StrCat(prefix, "-io"));
  } catch (const std::system_error& e) {
    executor->Shutdown();
    return spindle::ResourceExhausted(
        "THREAD_CREATE_FAILED",
        absl::StrCat("executor '", executor->name_, "': cannot start a thread: ", e.what()));
  }
  return executor;
}

Executor::~Executor() {
  Shutdown();
  root_scope_.reset();
}

void Executor::Shutdown() {
  ABSL_RAW_CHECK(tls_worker == nullptr || tls_worker->executor != this,
                 "Executor::Shutdown() called on one of its own worker threads");
  ABSL_RAW_CHECK(reactor_ == nullptr || !reactor_->OnReactorThread(),
                 "Executor::Shutdown() called on its reactor thread");
  internal::MutexLock lock(&shutdown_mu_);
  if (shut_down_) {
    return;
  }
  spawn_accepting_.store(false, std::memory_order_release);
  shutdown_source_.Cancel(
      spindle::Cancelled(absl::StrCat("executor '", name_, "' is shutting down")));
  // Every task spawned into a scope on this executor observes the cancellation and finishes. A
  // spawn racing with the close either sees it (and is refused) or is waited for.
  WaitForTasks();
  tasks_closed_.store(true, std::memory_order_seq_cst);
  WaitForTasks();

  if (reactor_ != nullptr) {
    reactor_->Stop();
  }
  {
    internal::MutexLock inject_lock(&inject_mu_);
    accepting_ = false;
  }
  stopping_.store(true, std::memory_order_seq_cst);
  UnparkAll();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
  }
  shut_down_ = true;
}

bool Executor::BeginTask() {
  active_tasks_.fetch_add(1, std::memory_order_seq_cst);
  if (tasks_closed_.load(std::memory_order_seq_cst)) {
    EndTask();
    return false;
  }
  tasks_spawned_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Executor::EndTask() noexcept {
  tasks_completed_.fetch_add(1, std::memory_order_relaxed);
  if (active_tasks_.fetch_sub(1, std::memory_order_seq_cst) == 1) {
    tasks_drained_.NotifyAll();
  }
}

void Executor::WaitForTasks() {
  for (;;) {
    const internal::EventCount::Key key = tasks_drained_.PrepareWait();
    if (active_tasks_.load(std::memory_order_seq_cst) == 0) {
      tasks_drained_.CancelWait();
      return;
    }
    tasks_drained_.Wait(key);
  }
}

Executor* Executor::Current() noexcept {
  return tls_worker != nullptr ? tls_worker->executor : nullptr;
}

bool Executor::IsCurrent() const noexcept {
  return tls_worker != nullptr && tls_worker->executor == this;
}

// Executor: public entry points

bool Executor::Spawn(Task<void> task) {
  if (!spawn_accepting_.load(std::memory_order_acquire)) {
    return false;
  }
  return root_scope_->Spawn(std::move(task));
}

bool Executor::Post(absl::AnyInvocable<void()> callback) {
  auto* posted = new internal::PostedCallback{std::move(callback)};
  void* item = internal::TagPostedCallback(posted);
  internal::Worker* worker = tls_worker;
  if (worker != nullptr && worker->executor == this) {
    PushLocal(*worker, item);
  } else if (reactor_->OnReactorThread()) {
    reactor_->Defer(item);
  } else if (!Inject(item)) {
    delete posted;
    return false;
  }
  posted_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

SleepOperation Executor::SleepFor(absl::Duration duration, CancellationToken token) {
  const int64_t now = internal::MonotonicNowNs();
  const int64_t deadline = internal::DeadlineAfter(now, duration);
  return SleepOperation(this, deadline, deadline <= now, std::move(token));
}

SleepOperation Executor::SleepUntil(absl::Time deadline, CancellationToken token) {
  if (deadline == absl::InfiniteFuture()) {
    return SleepFor(absl::InfiniteDuration(), std::move(token));
  }
  return SleepFor(deadline - absl::Now(), std::move(token));
}

FdWaitOperation Executor::WaitReadable(int fd, CancellationToken token) {
  return FdWaitOperation(this, fd, FdWaitOperation::Kind::kReadable, std::move(token));
}

FdWaitOperation Executor::WaitWritable(int fd, CancellationToken token) {
  return FdWaitOperation(this, fd, FdWaitOperation::Kind::kWritable, std::move(token));
}

FdWaitOperation Executor::WaitProcessExit(int pidfd, CancellationToken token) {
  return FdWaitOperation(this, pidfd, FdWaitOperation::Kind::kProcessExit, std::move(token));
}

ExecutorStats Executor::Stats() const {
  ExecutorStats stats;
  stats.name = name_;
  stats.threads = threads();
  int64_t runnable = static_cast<int64_t>(injected_size_.load(std::memory_order_relaxed));
  for (const auto& worker : workers_) {
    runnable += static_cast<int64_t>(worker->queue.SizeApprox());
  }
  stats.runnable = runnable;
  stats.live_coroutines = internal::LiveFrames::Count();
  stats.pending_timers = reactor_->pending_timers();
  stats.registered_fds = reactor_->registered_fds();
  {
    internal::MutexLock lock(&inject_mu_);
    stats.queue_lag = queue_lag_.Snapshot(internal::MonotonicNowNs());
  }
  stats.timer_lag = reactor_->timer_lag();
  stats.loop_lag_us = static_cast<int64_t>(
      std::max(stats.queue_lag.average_micros, stats.timer_lag.average_micros) + 0.5);
  stats.max_loop_lag_us =
      std::max(stats.queue_lag.recent_max_micros, stats.timer_lag.recent_max_micros);
  stats.tasks_spawned_total = tasks_spawned_.load(std::memory_order_relaxed);
  stats.tasks_completed_total = tasks_completed_.load(std::memory_order_relaxed);
  stats.posted_total = posted_.load(std::memory_order_relaxed);
  return stats;
}

// Executor: routing

void Executor::EnqueueWoken(void* item) noexcept {
  internal::Worker* worker = tls_worker;
  if (worker != nullptr && worker->executor == this) {
    if (worker->next != nullptr) {
      PushLocal(*worker, worker->next);
    }
    worker->next = item;
    return;
  }
  if (reactor_->OnReactorThread()) {
    reactor_->Defer(item);
    return;
  }
  if (!Inject(item)) {
    Run(item);  // Shut down: continue on this thread rather than strand the coroutine.
  }
}

bool Executor::EnqueueYield(void* item) noexcept {
  internal::Worker* worker = tls_worker;
  if (worker != nullptr && worker->executor == this) {
    PushLocal(*worker, item);
    return true;
  }
  if (reactor_->OnReactorThread()) {
    reactor_->Defer(item);
    return true;
  }
  return Inject(item);
}

bool Executor::Inject(void* item) {
  // A parked worker takes the item straight from this thread: no queue on the way. (It parked
  // because it found nothing to do, so nothing queued is being overtaken for long.)
  if (UnparkOne(item)) {
    return true;
  }
  const int64_t now = internal::MonotonicNowNs();
  {
    internal::MutexLock lock(&inject_mu_);
    if (!accepting_) {
      return false;
    }
    injected_.push_back(Injected{item, now});
    injected_size_.store(injected_.size(), std::memory_order_seq_cst);
  }
  // A worker that parked after the check above either sees the item when it re-checks before
  // sleeping, or is seen here (both sides write, then read the other's flag, sequentially
  // consistent).
  UnparkOne(nullptr);
  return true;
}

void Executor::InjectBatch(const std::vector<void*>& items, bool force) {
  if (items.empty()) {
    return;
  }
  const int64_t now = internal::MonotonicNowNs();
  bool accepted = true;
  {
    internal::MutexLock lock(&inject_mu_);
    if (accepting_ || force) {
      for (void* item : items) {
        injected_.push_back(Injected{item, now});
      }
      injected_size_.store(injected_.size(), std::memory_order_seq_cst);
    } else {
      accepted = false;
    }
  }
  if (!accepted) {
    for (void* item : items) {
      Run(item);
    }
    return;
  }
  for (size_t woken = 0; woken < items.size() && UnparkOne(nullptr); ++woken) {
  }
}

void Executor::PushLocal(internal::Worker& worker, void* item) {
  if (!worker.queue.Push(item)) [[unlikely]] {
    // Full: move the older half and the new item to the injection queue, where any worker can
    // take them (forced: this worker is alive and drains the injection queue before exiting).
    std::vector<void*> overflow;
    overflow.reserve(internal::LocalQueue::kCapacity / 2 + 1);
    for (uint32_t i = 0; i < internal::LocalQueue::kCapacity / 2; ++i) {
      void* old = worker.queue.Pop();
      if (old == nullptr) {
        break;
      }
      overflow.push_back(old);
    }
    overflow.push_back(item);
    InjectBatch(overflow, /*force=*/true);
    return;
  }
  if (worker.queue.SizeApprox() > 1) {
    MaybeWakeWorker();
  }
}

void Executor::MaybeWakeWorker() {
  // A hint is enough: this worker is alive and runs its queue itself if nobody helps.
  if (idle_count_.load(std::memory_order_relaxed) > 0) {
    UnparkOne(nullptr);
  }
}

bool Executor::UnparkOne(void* item) {
  if (idle_count_.load(std::memory_order_seq_cst) == 0) {
    return false;
  }
  internal::Worker* worker;
  {
    internal::MutexLock lock(&idle_mu_);
    worker = idle_top_;
    if (worker == nullptr) {
      return false;
    }
    idle_top_ = worker->next_idle;
    worker->idle = false;
    idle_count_.fetch_sub(1, std::memory_order_relaxed);
    worker->handoff = item;
    worker->parked.store(0, std::memory_order_release);
  }
  // The worker may already be running again (it re-checks before sleeping); a wake-up it does not
  // need is harmless, and the Worker outlives the executor's threads.
  internal::FutexWake(&worker->parked, 1);
  return true;
}

void Executor::UnparkAll() {
  std::vector<internal::Worker*> woken;
  {
    internal::MutexLock lock(&idle_mu_);
    while (internal::Worker* worker = idle_top_) {
      idle_top_ = worker->next_idle;
      worker->idle = false;
      worker->parked.store(0, std::memory_order_release);
      woken.push_back(worker);
    }
    idle_count_.store(0, std::memory_order_relaxed);
  }
  for (internal::Worker* worker : woken) {
    internal::FutexWake(&worker->parked, 1);
  }
}

void* Executor::Park(internal::Worker& worker) {
  {
    internal::MutexLock lock(&idle_mu_);
    worker.parked.store(1, std::memory_order_relaxed);
    worker.idle = true;
    worker.next_idle = idle_top_;
    idle_top_ = &worker;
    idle_count_.fetch_add(1, std::memory_order_seq_cst);
  }
  // Work published before the registration above is visible now; work published after it finds
  // this worker on the stack (see Inject).
  void* found = FindWork(worker);
  if (found != nullptr || stopping_.load(std::memory_order_seq_cst)) {
    void* handed = nullptr;
    {
      internal::MutexLock lock(&idle_mu_);
      if (worker.idle) {
        internal::Worker** link = &idle_top_;
        while (*link != &worker) {
          link = &(*link)->next_idle;
        }
        *link = worker.next_idle;
        worker.idle = false;
        idle_count_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        handed = std::exchange(worker.handoff, nullptr);  // Chosen meanwhile.
      }
      worker.parked.store(0, std::memory_order_relaxed);
    }
    if (handed != nullptr) {
      if (found == nullptr) {
        return handed;
      }
      PushLocal(worker, handed);
    }
    return found;
  }
  while (worker.parked.load(std::memory_order_acquire) == 1) {
    internal::FutexWait(&worker.parked, 1);
  }
  return std::exchange(worker.handoff, nullptr);
}

// Executor: workers

void Executor::Run(void* item) {
  if (internal::IsPostedCallback(item)) {
    std::unique_ptr<internal::PostedCallback> posted(internal::UntagPostedCallback(item));
    posted->callback();
  } else {
    std::coroutine_handle<>::from_address(item).resume();
  }
}

void Executor::WorkerLoop(internal::Worker& worker) {
  tls_worker = &worker;
  for (;;) {
    void* item = FindWork(worker);
    for (int spin = 0; item == nullptr && spin < internal::kSpinRounds; ++spin) {
      for (int i = 0; i < 16; ++i) {
        internal::CpuRelax();
      }
      if (stopping_.load(std::memory_order_relaxed)) {
        break;
      }
      item = FindWork(worker);
    }
    if (item == nullptr) {
      if (stopping_.load(std::memory_order_seq_cst)) {
        break;  // Nothing left in this worker's queues or the injection queue.
      }
      item = Park(worker);
      if (item == nullptr) {
        continue;  // Woken to look for work (or it showed up while parking).
      }
    }
    Run(item);
  }
  tls_worker = nullptr;
}

void* Executor::FindWork(internal::Worker& worker) {
  ++worker.tick;
  if (worker.next != nullptr) {
    void* item = std::exchange(worker.next, nullptr);
    if (worker.next_streak < internal::kMaxNextStreak) {
      ++worker.next_streak;
      return item;
    }
    PushLocal(worker, item);
  }
  worker.next_streak = 0;
  if (worker.tick % internal::kInjectionCheckInterval == 0) {
    if (void* item = PopInjected(worker)) {
      return item;
    }
  }
  if (void* item = worker.queue.Pop()) {
    return item;
  }
  if (void* item = PopInjected(worker)) {
    return item;
  }
  return Steal(worker);
}

void* Executor::PopInjected(internal::Worker& worker) {
  if (injected_size_.load(std::memory_order_seq_cst) == 0) {
    return nullptr;
  }
  const int64_t now = internal::MonotonicNowNs();
  void* first = nullptr;
  size_t moved = 0;
  {
    internal::MutexLock lock(&inject_mu_);
    if (injected_.empty()) {
      return nullptr;
    }
    first = injected_.front().item;
    queue_lag_.Record(now - injected_.front().queued_ns, now);
    injected_.pop_front();
    const size_t share = std::min(injected_.size() / workers_.size(), internal::kMaxInjectedBatch);
    while (moved < share && worker.queue.Push(injected_.front().item)) {
      queue_lag_.Record(now - injected_.front().queued_ns, now);
      injected_.pop_front();
      ++moved;
    }
    injected_size_.store(injected_.size(), std::memory_order_relaxed);
  }
  if (moved > 0 || injected_size_.load(std::memory_order_relaxed) > 0) {
    MaybeWakeWorker();
  }
  return first;
}

void* Executor::Steal(internal::Worker& worker) {
  const size_t count = workers_.size();
  if (count < 2) {
    return nullptr;
  }
  worker.random = worker.random * 1664525u + 1013904223u;
  const size_t start = worker.random % count;
  for (size_t i = 0; i < count; ++i) {
    internal::Worker& victim = *workers_[(start + i) % count];
    if (&victim == &worker) {
      continue;
    }
    size_t stolen = 0;
    if (void* item = worker.queue.StealHalf(victim.queue, &stolen)) {
      if (stolen > 1) {
        MaybeWakeWorker();
      }
      return item;
    }
  }
  return nullptr;
}

// SleepOperation

SleepOperation::SleepOperation(Executor* executor, int64_t deadline_ns, bool due,
                               CancellationToken token)
    : internal::WaitOperation(std::move(token)),
      executor_(executor),
      deadline_ns_(deadline_ns),
      due_(due) {}

bool SleepOperation::await_ready() {
  if (EndIfCancelled("a timer")) {
    return true;
  }
  if (due_) {
    EndInline(absl::OkStatus());
    return true;
  }
  return false;
}

bool SleepOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle, executor_);
  timer_.fire = &SleepOperation::OnFire;
  timer_.context = this;
  executor_->reactor_->AddTimer(&timer_, deadline_ns_);
  return Suspend<&SleepOperation::OnCancel>(this);
}

void SleepOperation::OnFire(internal::Timer* timer) noexcept {
  static_cast<SleepOperation*>(timer->context)->completion().Complete(absl::OkStatus());
}

void SleepOperation::OnCancel() {
  if (executor_->reactor_->CancelTimer(&timer_)) {
    completion().Complete(internal::AbandonedWait(token(), "a timer"));
  }
}

// FdWaitOperation

FdWaitOperation::FdWaitOperation(Executor* executor, int fd, Kind kind, CancellationToken token)
    : internal::WaitOperation(std::move(token)), executor_(executor), kind_(kind) {
  waiter_.fd = fd;
  waiter_.writable = kind == Kind::kWritable;
  waiter_.ready = &FdWaitOperation::OnReady;
  waiter_.context = this;
}

std::string FdWaitOperation::Describe() const {
  switch (kind_) {
    case Kind::kReadable:
      return absl::StrCat("fd ", waiter_.fd, " to become readable");
    case Kind::kWritable:
      return absl::StrCat("fd ", waiter_.fd, " to become writable");
    case Kind::kProcessExit:
      return absl::StrCat("process exit (pidfd ", waiter_.fd, ")");
  }
  return "an fd";
}

bool FdWaitOperation::await_ready() {
  if (token().IsCancelled()) {
    EndInline(internal::AbandonedWait(token(), Describe()));
    return true;
  }
  return false;
}

bool FdWaitOperation::await_suspend(std::coroutine_handle<> handle) {
  Prepare(handle, executor_);
  absl::StatusOr<bool> queued = executor_->reactor_->AddFdWaiter(&waiter_);
  if (!queued.ok()) {
    EndInline(std::move(queued).status());
    return false;
  }
  if (!*queued) {
    EndInline(absl::OkStatus());  // Always ready (a regular file).
    return false;
  }
  return Suspend<&FdWaitOperation::OnCancel>(this);
}

void FdWaitOperation::OnReady(internal::FdWaiter* waiter) noexcept {
  static_cast<FdWaitOperation*>(waiter->context)->completion().Complete(absl::OkStatus());
}

void FdWaitOperation::OnCancel() {
  if (executor_->reactor_->RemoveFdWaiter(&waiter_)) {
    completion().Complete(internal::AbandonedWait(token(), Describe()));
  }
}

}  // namespace spindle::coro
