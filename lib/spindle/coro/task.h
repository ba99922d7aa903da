// Task<T>: the engine's coroutine type.
//
// A function returning Task<T> is a coroutine. Calling it allocates the frame and runs nothing:
// tasks are lazy and [[nodiscard]]. The body starts when the task is awaited
// (`T v = co_await std::move(task);`), spawned into a TaskScope (Task<void> only), or driven by
// SyncWait in main() and tests. A Task is move-only and owns its frame; destroying a Task that
// never started frees the frame without running the body.
//
// Engine code returns Task<absl::Status> or Task<absl::StatusOr<X>>: errors are values. An
// exception that escapes the body is captured and rethrown from the `co_await` in the awaiting
// coroutine (the engine never throws to report an error, so an exception is a bug travelling up).
//
// Completion and threads: the awaiting coroutine continues on the thread that finished the body.
// A body that finishes without suspending returns control to the awaiter's `co_await` (no nested
// resumption, so loops over synchronously completing tasks use constant stack in every build
// mode); a body that finishes after suspending resumes its awaiter by symmetric transfer.
//
// Coroutines are named functions taking their parameters by value (STYLE.md): a reference
// parameter or a lambda capture would dangle once the caller's frame moves on.
//
// Thread-safety: a Task is thread-compatible (one owner at a time). It may be created on one thread
// and awaited on another.
#ifndef SPINDLE_CORO_TASK_H_
#define SPINDLE_CORO_TASK_H_

#include <atomic>
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "spindle/coro/internal/live_frames.h"

namespace spindle::coro {

template <typename T = void>
class Task;
class TaskScope;

namespace internal {

// Reports a spawned task's end to its scope; defined in task_scope.cc.
void OnScopedTaskDone(TaskScope* scope, std::exception_ptr error) noexcept;

// Runs `promise.OnFinalSuspend(handle)` when a body finishes.
struct FinalAwaiter {
  bool await_ready() const noexcept { return false; }
  template <typename Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
    return self.promise().OnFinalSuspend(self);
  }
  void await_resume() const noexcept {}
};

// Frame accounting and the start/finish handshake shared by every Task<T>.
class PromiseBase : public FramePromise {
 public:
  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }

  // Starts the body on the calling thread with `awaiting` as its continuation. Returns true when
  // the body suspended and will resume `awaiting` itself when it finishes; false when it has
  // already finished, in which case the caller continues `awaiting` inline.
  template <typename Promise>
  static bool Start(std::coroutine_handle<Promise> self,
                    std::coroutine_handle<> awaiting) noexcept {
    PromiseBase& promise = self.promise();
    promise.continuation_ = awaiting;
    self.resume();
    // Second to arrive continues the awaiter: if the body finished first, do it inline here.
    return !promise.finished_or_waiting_.exchange(true, std::memory_order_acq_rel);
  }

 protected:
  // The coroutine to run once the body has finished.
  std::coroutine_handle<> ContinuationAfterBody() noexcept {
    if (finished_or_waiting_.exchange(true, std::memory_order_acq_rel)) {
      return continuation_;  // The awaiter is suspended: transfer to it.
    }
    return std::noop_coroutine();  // Start() is still on the stack and continues the awaiter.
  }

 private:
  std::coroutine_handle<> continuation_;
  std::atomic<bool> finished_or_waiting_{false};
};

template <typename T>
class Promise final : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
  void return_value(T value) noexcept(std::is_nothrow_move_constructible_v<T>) {
    result_.template emplace<1>(std::move(value));
  }
  std::coroutine_handle<> OnFinalSuspend(std::coroutine_handle<Promise>) noexcept {
    return ContinuationAfterBody();
  }
  T TakeResult() {
    if (result_.index() == 2) {
      std::rethrow_exception(std::get<2>(result_));
    }
    return std::move(std::get<1>(result_));
  }

 private:
  std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <>
class Promise<void> final : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }
  void return_void() const noexcept {}
  void TakeResult() {
    if (exception_) {
      std::rethrow_exception(std::exchange(exception_, nullptr));
    }
  }
  // A spawned task (scope set) has no awaiter: its frame is freed here and the scope told.
  std::coroutine_handle<> OnFinalSuspend(std::coroutine_handle<Promise> self) noexcept {
    if (scope_ == nullptr) {
      return ContinuationAfterBody();
    }
    TaskScope* scope = scope_;
    std::exception_ptr error = std::move(exception_);
    self.destroy();
    OnScopedTaskDone(scope, std::move(error));
    return std::noop_coroutine();
  }
  void set_scope(TaskScope* scope) noexcept { scope_ = scope; }

 private:
  std::exception_ptr exception_;
  TaskScope* scope_ = nullptr;
};

// Lets engine internals (TaskScope) take a task's frame.
struct TaskAccess {
  template <typename T>
  static std::coroutine_handle<Promise<T>> Release(Task<T>& task) noexcept {
    return std::exchange(task.handle_, {});
  }
};

}  // namespace internal

template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = internal::Promise<T>;
  using value_type = T;

  // An empty task; it must not be awaited.
  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { Reset(); }

  // False for a default-constructed or moved-from task.
  bool valid() const noexcept { return static_cast<bool>(handle_); }

  // Runs the body (once) and yields its value or rethrows its exception.
  // REQUIRES: valid(), not awaited before.
  auto operator co_await() && noexcept { return Awaiter{handle_}; }
  auto operator co_await() & noexcept { return Awaiter{handle_}; }

 private:
  friend class internal::Promise<T>;
  friend struct internal::TaskAccess;

  struct Awaiter {
    std::coroutine_handle<promise_type> handle;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
      return internal::PromiseBase::Start(handle, awaiting);
    }
    T await_resume() { return handle.promise().TakeResult(); }
  };

  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  void Reset() noexcept {
    if (handle_) {
      std::exchange(handle_, {}).destroy();
    }
  }

  std::coroutine_handle<promise_type> handle_;
};

namespace internal {

template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

}  // namespace internal
}  // namespace spindle::coro

#endif  // SPINDLE_CORO_TASK_H_
