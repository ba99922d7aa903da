#include "spindle/coro/task_scope.h"

#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro {
namespace internal {

void OnScopedTaskDone(TaskScope* scope, std::exception_ptr error) noexcept {
  scope->OnChildDone(std::move(error));
}

}  // namespace internal

namespace {

std::string Describe(std::exception_ptr error) {
  try {
    std::rethrow_exception(std::move(error));
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

}  // namespace

TaskScope::TaskScope(Executor& executor)
    : executor_(&executor), source_(executor.shutdown_token()) {}

TaskScope::TaskScope(Executor& executor, const CancellationToken& parent)
    : executor_(&executor), source_(parent) {
  shutdown_link_ = std::make_unique<CancellationRegistration>(
      executor.shutdown_token(), [this] { source_.Cancel(executor_->shutdown_token().status()); });
}

TaskScope::TaskScope(Executor& executor, RootTag)
    : executor_(&executor), is_root_(true), source_(executor.shutdown_token()) {}

TaskScope::~TaskScope() {
  ABSL_RAW_CHECK(active() == 0, "TaskScope destroyed while children are running; Join() it first");
  shutdown_link_.reset();
}

bool TaskScope::Spawn(Task<void> task) {
  auto handle = internal::TaskAccess::Release(task);
  ABSL_RAW_CHECK(handle, "TaskScope::Spawn() of an empty task");
  if (!executor_->BeginTask()) {
    handle.destroy();
    return false;
  }
  state_.fetch_add(2, std::memory_order_relaxed);
  handle.promise().set_scope(this);
  if (!executor_->EnqueueYield(handle.address())) {
    handle.resume();  // Not reachable while BeginTask() succeeds; never strand a counted child.
  }
  return true;
}

bool TaskScope::Cancel() { return Cancel(spindle::Cancelled("task scope cancelled")); }

bool TaskScope::Cancel(absl::Status reason) { return source_.Cancel(std::move(reason)); }

void TaskScope::OnChildDone(std::exception_ptr error) noexcept {
  if (error) {
    if (is_root_) {
      ABSL_RAW_LOG(FATAL, "a task spawned on executor '%s' threw: %s", executor_->name().c_str(),
                   Describe(error).c_str());
    }
    {
      internal::MutexLock lock(&error_mu_);
      if (!first_error_) {
        first_error_ = error;
      }
    }
    source_.Cancel(
        spindle::Cancelled(absl::StrCat("task scope cancelled: a child threw: ", Describe(error))));
  }
  // The scope may be destroyed as soon as the joiner runs; the executor outlives this call
  // because Shutdown() waits for EndTask().
  Executor* executor = executor_;
  uint64_t state = state_.load(std::memory_order_acquire);
  for (;;) {
    uint64_t next = state - 2;
    const bool wake_joiner = next == 1;  // No child left and a joiner waits.
    if (wake_joiner) {
      next = 0;  // This call resumes it; a child spawned later must not.
    }
    if (state_.compare_exchange_weak(state, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      if (wake_joiner) {
        internal::ResumeWaiter(joiner_target_, joiner_);
      }
      break;
    }
  }
  executor->EndTask();
}

bool JoinOperation::await_ready() const noexcept { return scope_->active() == 0; }

bool JoinOperation::await_suspend(std::coroutine_handle<> handle) noexcept {
  scope_->joiner_ = handle;
  scope_->joiner_target_ = Executor::Current();
  uint64_t state = scope_->state_.load(std::memory_order_acquire);
  for (;;) {
    if ((state >> 1) == 0) {
      return false;
    }
    if (scope_->state_.compare_exchange_weak(state, state | 1, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
      return true;
    }
  }
}

void JoinOperation::await_resume() {
  std::exception_ptr error;
  {
    internal::MutexLock lock(&scope_->error_mu_);
    error = std::exchange(scope_->first_error_, nullptr);
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

}  // namespace spindle::coro
