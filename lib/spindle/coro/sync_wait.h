// SyncWait: runs a task to completion, blocking the calling thread. For main() and tests only;
// engine code never blocks a thread on a task (it awaits it).
//
//   absl::Status status = SyncWait(RunServer(executor));
//
// The task starts inline on the calling thread and runs there until it first suspends; it
// typically moves itself onto an executor with `co_await executor.Schedule()`. SyncWait returns
// the task's value or rethrows its exception once it finishes, wherever it finishes.
//
// Thread-safety: REQUIRES: not called on an executor's worker or reactor thread (it would block
// a thread the task may need).
#ifndef SPINDLE_CORO_SYNC_WAIT_H_
#define SPINDLE_CORO_SYNC_WAIT_H_

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "spindle/coro/internal/event_count.h"
#include "spindle/coro/internal/live_frames.h"
#include "spindle/coro/internal/waiter.h"
#include "spindle/coro/task.h"

namespace spindle::coro {
namespace internal {

template <typename T>
struct SyncWaitState {
  OneShotEvent done;
  std::optional<T> value;
  std::exception_ptr error;
};

template <>
struct SyncWaitState<void> {
  OneShotEvent done;
  std::exception_ptr error;
};

// The coroutine type of the driver: it signals `done` once finished and leaves its frame for the
// waiting thread to destroy.
class SyncWaitDriver {
 public:
  struct promise_type : FramePromise {
    SyncWaitDriver get_return_object() noexcept {
      return SyncWaitDriver(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> self) const noexcept {
        self.promise().done->Set();  // The frame may be destroyed from here on.
      }
      void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // The body catches all.

    OneShotEvent* done = nullptr;
  };

  explicit SyncWaitDriver(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  SyncWaitDriver(SyncWaitDriver&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  SyncWaitDriver(const SyncWaitDriver&) = delete;
  SyncWaitDriver& operator=(const SyncWaitDriver&) = delete;
  ~SyncWaitDriver() {
    if (handle_) {
      handle_.destroy();
    }
  }

  void Run(OneShotEvent* done) {
    handle_.promise().done = done;
    handle_.resume();
    done->Wait();
  }

 private:
  std::coroutine_handle<promise_type> handle_;
};

template <typename T>
SyncWaitDriver DriveSyncWait(Task<T> task, SyncWaitState<T>* state) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
    } else {
      state->value.emplace(co_await std::move(task));
    }
  } catch (...) {
    state->error = std::current_exception();
  }
}

}  // namespace internal

template <typename T>
T SyncWait(Task<T> task) {
  ABSL_RAW_CHECK(internal::CurrentExecutor() == nullptr,
                 "SyncWait() called on an executor worker: it would block a thread the task needs");
  internal::SyncWaitState<T> state;
  {
    internal::SyncWaitDriver driver = internal::DriveSyncWait(std::move(task), &state);
    driver.Run(&state.done);
  }
  if (state.error) {
    std::rethrow_exception(state.error);
  }
  if constexpr (!std::is_void_v<T>) {
    return std::move(*state.value);
  }
}

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_SYNC_WAIT_H_
