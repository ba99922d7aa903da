// Executor: the engine's coroutine scheduler and epoll reactor. Every blocking wait in the engine
// is a coroutine suspended on one of these, not a parked thread.
//
//   auto executor = Executor::Create({.threads = 0, .name = "engine"});   // 0: one per core
//   (*executor)->Spawn(Serve(...));              // fire-and-forget into the root scope
//   co_await executor.Schedule();                // hop onto a worker
//   absl::Status s = co_await executor.SleepFor(absl::Seconds(1), token);
//   absl::Status r = co_await executor.WaitReadable(fd, token);
//
// Threads. N worker threads run coroutines and posted callbacks. Each worker has a local FIFO
// queue that idle workers steal half of; work from other threads goes through a shared injection
// queue, or straight to a parked worker. Idle workers poll for a few microseconds, then park on
// their own futex; the most recently parked one is woken first (its cache is warm). One more
// thread, the reactor, sleeps in epoll_wait for fds and a timerfd, and hands ready waiters to the
// workers in batches; it never runs coroutine code, so a long-running coroutine cannot delay timers
// (their lag is measured).
//
// Which thread resumes a waiter (applies to every awaitable in lib/spindle/coro):
//  - Reactor waits (SleepFor/SleepUntil, WaitReadable/WaitWritable/WaitProcessExit) resume on a
//    worker of the executor they were called on.
//  - Other waits (AsyncMutex, AsyncSemaphore, Channel, AsyncEvent, Latch, TaskScope::Join) resume
//    on the executor the coroutine was running on when it suspended:
//      * woken by code running on one of that executor's workers: on that same worker, right after
//        the waking coroutine or callback suspends or returns (the worker's "next" slot). No thread
//        hop, no futex wake: a wake-up between two coroutines costs about as much as a call.
//      * woken from any other thread (gRPC threads, the reactor, a plain std::thread): queued to
//        the executor, and an idle worker is woken.
//    A coroutine that was not on an executor (e.g. driven by SyncWait on main's thread) is resumed
//    inline by whoever ends its wait.
//  - A waiter is never resumed while the waker holds a lock.
//
// Structured concurrency: Spawn() puts a task into the executor's root TaskScope; TaskScopes
// created on the executor are cancelled at shutdown too, so no task outlives the executor.
//
// Shutdown() (also run by the destructor): refuses new Spawn()s, cancels shutdown_token() (and with
// it every scope on this executor), waits until every spawned task has finished, stops the reactor,
// lets the workers drain their queues and joins them. Tasks must observe their tokens for this to
// finish; timers and fd waits armed without a cancellable token are simply never fired after the
// reactor stopped. After Shutdown(), Post() returns false, Spawn() returns false, and a coroutine
// resumed towards this executor continues inline on the resuming thread.
//
// Thread-safety: thread-safe. Shutdown() and the destructor must not run on one of the executor's
// own threads.
#ifndef SPINDLE_CORO_EXECUTOR_H_
#define SPINDLE_CORO_EXECUTOR_H_

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/event_count.h"
#include "spindle/coro/internal/lag_tracker.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/internal/reactor.h"
#include "spindle/coro/internal/wait_operation.h"
#include "spindle/coro/internal/waiter.h"
#include "spindle/coro/stats.h"
#include "spindle/coro/task.h"

namespace spindle::coro {

class Executor;
class TaskScope;

namespace internal {
struct Worker;
}  // namespace internal

// `co_await executor.Schedule()` and `co_await Yield()`.
class [[nodiscard]] ScheduleOperation {
 public:
  bool await_ready() const noexcept { return executor_ == nullptr; }
  bool await_suspend(std::coroutine_handle<> handle) noexcept;
  void await_resume() const noexcept {}

 private:
  friend class Executor;
  friend ScheduleOperation Yield() noexcept;
  explicit ScheduleOperation(Executor* executor) noexcept : executor_(executor) {}

  Executor* executor_;
};

// Lets other runnable work go first: requeues the calling coroutine at the back of its worker's
// queue. Does nothing when the caller is not running on an executor.
ScheduleOperation Yield() noexcept;

// `co_await executor.SleepFor(...)` / `SleepUntil(...)`; yields absl::Status: OK when the time
// came, or the token's status (CANCELLED, DEADLINE_EXCEEDED, ...) with the timer removed.
class [[nodiscard]] SleepOperation : public internal::WaitOperation {
 public:
  bool await_ready();
  bool await_suspend(std::coroutine_handle<> handle);
  absl::Status await_resume() noexcept { return TakeResult(); }

 private:
  friend class Executor;
  SleepOperation(Executor* executor, int64_t deadline_ns, bool due, CancellationToken token);
  static void OnFire(internal::Timer* timer) noexcept;
  void OnCancel();

  Executor* const executor_;
  const int64_t deadline_ns_;
  const bool due_;
  internal::Timer timer_;
};

// `co_await executor.WaitReadable(fd, token)` and friends; yields absl::Status: OK when the fd is
// ready (or hung up / in error: the caller's next read or write reports that), the token's status
// when cancelled, or an error when epoll refuses the fd (EBADF, ...). Readiness is level-based and
// may be stale by the time the caller acts: use non-blocking fds and wait again on EAGAIN.
class [[nodiscard]] FdWaitOperation : public internal::WaitOperation {
 public:
  bool await_ready();
  bool await_suspend(std::coroutine_handle<> handle);
  absl::Status await_resume() noexcept { return TakeResult(); }

 private:
  friend class Executor;
  enum class Kind { kReadable, kWritable, kProcessExit };
  FdWaitOperation(Executor* executor, int fd, Kind kind, CancellationToken token);
  static void OnReady(internal::FdWaiter* waiter) noexcept;
  void OnCancel();
  std::string Describe() const;

  Executor* const executor_;
  const Kind kind_;
  internal::FdWaiter waiter_;
};

class Executor {
 public:
  struct Options {
    // Worker threads; 0 means std::thread::hardware_concurrency().
    int threads = 0;
    // Names the threads ("<name>-w0", "<name>-io") and the stats.
    std::string name = "spindle";
  };

  // Starts the threads. Errors: INVALID_ARGUMENT for threads < 0; the errno status of a failing
  // epoll/timerfd/eventfd call; RESOURCE_EXHAUSTED when a thread cannot be created.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(Options options);
  // Shutdown().
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The executor whose worker runs the caller, or nullptr.
  static Executor* Current() noexcept;
  // Whether the caller runs on one of this executor's workers.
  bool IsCurrent() const noexcept;

  // Moves the calling coroutine onto one of the workers (to the back of the queue if it is already
  // on one). After Shutdown() it continues on the calling thread.
  ScheduleOperation Schedule() noexcept { return ScheduleOperation(this); }

  // Starts `task` on a worker as a child of the executor's root scope (it should observe
  // shutdown_token()). Returns false, destroying the task unstarted, once Shutdown() has begun.
  // An exception escaping the task is a bug: it is logged and the process aborts.
  bool Spawn(Task<void> task);

  // Runs `callback` on a worker: for callbacks from foreign threads (gRPC, libraries). Returns
  // false, dropping the callback, after Shutdown(). The callback must not throw.
  bool Post(absl::AnyInvocable<void()> callback);

  // See the file comment. Idempotent; concurrent calls wait for the first.
  void Shutdown();

  // Cancelled (CANCELLED, "executor '<name>' is shutting down") when Shutdown() begins.
  CancellationToken shutdown_token() const { return shutdown_source_.token(); }

  // Timers. Deadlines are kept on the monotonic clock: SleepUntil converts `deadline` from wall
  // time once, when called. A zero or negative duration (or a past deadline) completes at once.
  SleepOperation SleepFor(absl::Duration duration, CancellationToken token);
  SleepOperation SleepUntil(absl::Time deadline, CancellationToken token);

  // Fd readiness. REQUIRES: `fd` stays open until the wait returns. Regular files are always ready.
  FdWaitOperation WaitReadable(int fd, CancellationToken token);
  FdWaitOperation WaitWritable(int fd, CancellationToken token);
  // Waits until the process behind `pidfd` (pidfd_open / clone3 CLONE_PIDFD) has exited. The
  // caller reaps it (waitid P_PIDFD) afterwards.
  FdWaitOperation WaitProcessExit(int pidfd, CancellationToken token);

  ExecutorStats Stats() const;
  int threads() const noexcept { return static_cast<int>(workers_.size()); }
  const std::string& name() const noexcept { return name_; }

 private:
  friend class ScheduleOperation;
  friend class SleepOperation;
  friend class FdWaitOperation;
  friend class TaskScope;
  friend class DeadlineSource;
  friend class internal::Reactor;
  friend void internal::ResumeWaiter(Executor* target, std::coroutine_handle<> handle) noexcept;

  struct Injected {
    void* item;
    int64_t queued_ns;
  };

  explicit Executor(Options options);

  // Worker side.
  void WorkerLoop(internal::Worker& worker);
  void* FindWork(internal::Worker& worker);
  void* PopInjected(internal::Worker& worker);
  void* Steal(internal::Worker& worker);
  void PushLocal(internal::Worker& worker, void* item);
  // Parks `worker` until another thread wakes it; returns an item handed to it directly, if any.
  // Returns nullptr at once, without parking, if work shows up while it registers as idle.
  void* Park(internal::Worker& worker);
  // Unparks the most recently parked worker, handing it `item` (may be null). Returns false when
  // no worker is parked.
  bool UnparkOne(void* item);
  void UnparkAll();
  // Wakes a parked worker when this worker has more queued than it can run at once.
  void MaybeWakeWorker();
  static void Run(void* item);

  // Routing a runnable item (a coroutine address, or a tagged posted callback).
  // A waiter whose wait ended: the current worker's next slot, the reactor's batch, or injected.
  void EnqueueWoken(void* item) noexcept;
  // New or yielding work: the back of the current worker's queue, or injected. False when the
  // executor no longer accepts work.
  bool EnqueueYield(void* item) noexcept;
  bool Inject(void* item);
  // Injects all of `items`. `force`: even during shutdown (overflow from a draining worker).
  void InjectBatch(const std::vector<void*>& items, bool force);

  // Task accounting for shutdown.
  bool BeginTask();
  void EndTask() noexcept;
  void WaitForTasks();

  const std::string name_;
  std::vector<std::unique_ptr<internal::Worker>> workers_;  // Constant after Create().
  std::unique_ptr<internal::Reactor> reactor_;              // Constant after Create().
  std::unique_ptr<TaskScope> root_scope_;                   // Constant after Create().
  CancellationSource shutdown_source_;

  // Parked workers, most recently parked on top: a wake-up goes to the warmest one, and a worker
  // leaves the stack the moment it is chosen, so a burst of pushes wakes each idle worker once.
  internal::Mutex idle_mu_;
  internal::Worker* idle_top_ ABSL_GUARDED_BY(idle_mu_) = nullptr;
  std::atomic<int> idle_count_{0};  // Stack size; read without the lock to skip it when zero.
  std::atomic<bool> stopping_{false};

  mutable internal::Mutex inject_mu_;
  std::deque<Injected> injected_ ABSL_GUARDED_BY(inject_mu_);
  bool accepting_ ABSL_GUARDED_BY(inject_mu_) = true;
  internal::LagTracker queue_lag_ ABSL_GUARDED_BY(inject_mu_);
  std::atomic<size_t> injected_size_{0};

  std::atomic<bool> spawn_accepting_{true};
  std::atomic<bool> tasks_closed_{false};
  std::atomic<int64_t> active_tasks_{0};
  internal::EventCount tasks_drained_;
  std::atomic<uint64_t> tasks_spawned_{0};
  std::atomic<uint64_t> tasks_completed_{0};
  std::atomic<uint64_t> posted_{0};

  internal::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_EXECUTOR_H_
