// WhenAll: runs several tasks concurrently and waits for all of them.
//
//   auto [a, b] = co_await WhenAll(FetchA(token), FetchB(token));     // std::tuple
//   std::vector<absl::Status> all = co_await WhenAll(std::move(tasks)); // std::vector<T>
//
// The children start one after another on the awaiting thread, each running until its first
// suspension; they make progress concurrently from then on (a child that should run in parallel on
// another worker starts with `co_await executor.Schedule()`). The awaiting coroutine continues on
// the thread that finished the last child. Results keep the order of the arguments; a Task<void>
// contributes std::monostate to the tuple. WhenAll(std::vector<Task<void>>) yields void.
//
// Errors are values (Task<absl::Status>): WhenAll waits for every child and returns them all. If a
// child throws, WhenAll still waits for the others, then rethrows the first exception in argument
// order.
//
// Thread-safety: each child may finish on any thread; the result is handed over safely.
#ifndef SPINDLE_CORO_WHEN_ALL_H_
#define SPINDLE_CORO_WHEN_ALL_H_

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "spindle/coro/internal/live_frames.h"
#include "spindle/coro/task.h"

namespace spindle::coro {
namespace internal {

template <typename T>
using VoidToMonostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// Counts finished children; the last one to finish continues the awaiting coroutine.
class WhenAllCounter {
 public:
  explicit WhenAllCounter(size_t children) noexcept : count_(children + 1) {}

  // After starting every child: returns false when all of them already finished.
  bool TryAwait(std::coroutine_handle<> awaiting) noexcept {
    awaiting_ = awaiting;
    return count_.fetch_sub(1, std::memory_order_acq_rel) > 1;
  }
  std::coroutine_handle<> Arrive() noexcept {
    if (count_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      return awaiting_;
    }
    return std::noop_coroutine();
  }

 private:
  std::atomic<size_t> count_;
  std::coroutine_handle<> awaiting_;
};

// The coroutine that runs one child and reports to the counter.
template <typename T>
class WhenAllChild {
 public:
  struct promise_type : FramePromise {
    WhenAllChild get_return_object() noexcept {
      return WhenAllChild(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        return self.promise().counter->Arrive();
      }
      void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { result.template emplace<2>(std::current_exception()); }
    template <typename U>
    void return_value(U&& value) {
      result.template emplace<1>(std::forward<U>(value));
    }

    WhenAllCounter* counter = nullptr;
    std::variant<std::monostate, VoidToMonostate<T>, std::exception_ptr> result;
  };

  WhenAllChild(WhenAllChild&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  WhenAllChild(const WhenAllChild&) = delete;
  WhenAllChild& operator=(const WhenAllChild&) = delete;
  ~WhenAllChild() {
    if (handle_) {
      handle_.destroy();
    }
  }

  void Start(WhenAllCounter* counter) noexcept {
    handle_.promise().counter = counter;
    handle_.resume();
  }
  std::exception_ptr error() const noexcept {
    auto& result = handle_.promise().result;
    return result.index() == 2 ? std::get<2>(result) : nullptr;
  }
  VoidToMonostate<T> TakeValue() { return std::move(std::get<1>(handle_.promise().result)); }

 private:
  explicit WhenAllChild(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

template <typename T>
WhenAllChild<T> MakeWhenAllChild(Task<T> task) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
    co_return std::monostate();
  } else {
    co_return co_await std::move(task);
  }
}

// `co_await StartAll{...}`: starts the children, then waits for the last one.
template <typename StartFn>
struct StartAllAwaiter {
  StartFn start;
  WhenAllCounter* counter;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
    start();
    return counter->TryAwait(awaiting);
  }
  void await_resume() const noexcept {}
};

template <typename StartFn>
StartAllAwaiter<StartFn> StartAll(StartFn start, WhenAllCounter* counter) {
  return StartAllAwaiter<StartFn>{std::move(start), counter};
}

template <typename... Ts, size_t... I>
std::tuple<VoidToMonostate<Ts>...> CollectTuple(std::tuple<WhenAllChild<Ts>...>& children,
                                                std::index_sequence<I...>) {
  std::exception_ptr first_error;
  ((first_error = first_error ? first_error : std::get<I>(children).error()), ...);
  if (first_error) {
    std::rethrow_exception(first_error);
  }
  return std::tuple<VoidToMonostate<Ts>...>(std::get<I>(children).TakeValue()...);
}

template <typename T>
void RethrowFirstError(std::vector<WhenAllChild<T>>& children) {
  for (auto& child : children) {
    if (std::exception_ptr error = child.error()) {
      std::rethrow_exception(error);
    }
  }
}

}  // namespace internal

template <typename... Ts>
Task<std::tuple<internal::VoidToMonostate<Ts>...>> WhenAll(Task<Ts>... tasks) {
  std::tuple<internal::WhenAllChild<Ts>...> children(
      internal::MakeWhenAllChild(std::move(tasks))...);
  internal::WhenAllCounter counter(sizeof...(Ts));
  co_await internal::StartAll(
      [&] { std::apply([&](auto&... child) { (child.Start(&counter), ...); }, children); },
      &counter);
  co_return internal::CollectTuple(children, std::index_sequence_for<Ts...>());
}

template <typename T>
requires(!std::is_void_v<T>) Task<std::vector<T>> WhenAll(std::vector<Task<T>> tasks) {
  std::vector<internal::WhenAllChild<T>> children;
  children.reserve(tasks.size());
  for (Task<T>& task : tasks) {
    children.push_back(internal::MakeWhenAllChild(std::move(task)));
  }
  internal::WhenAllCounter counter(children.size());
  co_await internal::StartAll(
      [&] {
        for (auto& child : children) {
          child.Start(&counter);
        }
      },
      &counter);
  internal::RethrowFirstError(children);
  std::vector<T> results;
  results.reserve(children.size());
  for (auto& child : children) {
    results.push_back(child.TakeValue());
  }
  co_return results;
}

inline Task<void> WhenAll(std::vector<Task<void>> tasks) {
  std::vector<internal::WhenAllChild<void>> children;
  children.reserve(tasks.size());
  for (Task<void>& task : tasks) {
    children.push_back(internal::MakeWhenAllChild(std::move(task)));
  }
  internal::WhenAllCounter counter(children.size());
  co_await internal::StartAll(
      [&] {
        for (auto& child : children) {
          child.Start(&counter);
        }
      },
      &counter);
  internal::RethrowFirstError(children);
}

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_WHEN_ALL_H_
