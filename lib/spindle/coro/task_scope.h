// TaskScope: structured concurrency. Tasks are spawned into a scope, run concurrently on the
// executor's workers, and are joined or cancelled as a whole; no spawned task outlives its scope.
//
//   TaskScope scope(executor, call_token);
//   for (Job& job : jobs) scope.Spawn(RunJob(job.id, scope.token()));
//   co_await scope.Join();          // every child has finished (and its frame is freed)
//
// Children receive the scope's token explicitly (pass scope.token() to the coroutine); Cancel()
// cancels it, and so does cancellation of the parent token or the executor's shutdown. A scope
// does not cancel its children by itself when one of them fails: children report errors through
// their own results. An exception escaping a child (a bug) cancels the scope and is rethrown by
// Join(); in the executor's root scope it aborts the process.
//
// The destructor requires that no child is running: Join() has returned, or nothing was spawned.
// Destroying a scope with running children aborts, because they would dangle.
//
// Join() resumes as described in executor.h ("Which thread resumes a waiter"): on the worker that
// finished the last child, right after it; inline on that worker when the joiner was not on an
// executor.
//
// Thread-safety: thread-safe; Spawn() and Cancel() may be called from any thread, including from
// children. At most one Join() may wait at a time.
#ifndef SPINDLE_CORO_TASK_SCOPE_H_
#define SPINDLE_CORO_TASK_SCOPE_H_

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/internal/mutex.h"
#include "spindle/coro/task.h"

namespace spindle::coro {

class Executor;
class TaskScope;

// `co_await scope.Join()`: waits until the scope has no running child; rethrows the first
// exception that escaped a child, if any.
class [[nodiscard]] JoinOperation {
 public:
  bool await_ready() const noexcept;
  bool await_suspend(std::coroutine_handle<> handle) noexcept;
  void await_resume();

 private:
  friend class TaskScope;
  explicit JoinOperation(TaskScope* scope) noexcept : scope_(scope) {}
  TaskScope* scope_;
};

class TaskScope {
 public:
  // Children are cancelled when the executor shuts down.
  explicit TaskScope(Executor& executor);
  // ... or when `parent` is cancelled (with the parent's reason).
  TaskScope(Executor& executor, const CancellationToken& parent);
  ~TaskScope();
  TaskScope(const TaskScope&) = delete;
  TaskScope& operator=(const TaskScope&) = delete;

  // Starts `task` on a worker of the executor (it runs after the caller's current step). Returns
  // false, destroying the task unstarted, when the executor has finished shutting down.
  // REQUIRES: task.valid().
  bool Spawn(Task<void> task);

  JoinOperation Join() noexcept { return JoinOperation(this); }

  // Cancels token() with spindle::Cancelled("task scope cancelled") or `reason`.
  bool Cancel();
  bool Cancel(absl::Status reason);
  CancellationToken token() const { return source_.token(); }

  // Children spawned and not yet finished.
  int64_t active() const noexcept {
    return static_cast<int64_t>(state_.load(std::memory_order_acquire) >> 1);
  }
  Executor& executor() const noexcept { return *executor_; }

 private:
  friend class Executor;
  friend class JoinOperation;
  friend void internal::OnScopedTaskDone(TaskScope* scope, std::exception_ptr error) noexcept;

  struct RootTag {};
  TaskScope(Executor& executor, RootTag);
  void OnChildDone(std::exception_ptr error) noexcept;

  Executor* const executor_;
  const bool is_root_ = false;
  CancellationSource source_;
  std::unique_ptr<CancellationRegistration> shutdown_link_;

  // (running children << 1) | (a joiner is suspended in Join()).
  std::atomic<uint64_t> state_{0};
  std::coroutine_handle<> joiner_;  // Written by Join() before it sets the joiner bit.
  Executor* joiner_target_ = nullptr;

  internal::Mutex error_mu_;
  std::exception_ptr first_error_ ABSL_GUARDED_BY(error_mu_);
};

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_TASK_SCOPE_H_
