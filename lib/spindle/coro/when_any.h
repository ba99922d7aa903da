// WhenAny: runs alternatives concurrently, returns the first to finish, cancels the others and
// waits for them before returning (no dangling work).
//
// Each alternative is a factory that receives the token to observe and returns the task, so the
// losers can be cancelled:
//
//   AnyResult<absl::Status> first = co_await WhenAny(
//       call_token,
//       [&](CancellationToken t) { return ReadLine(fd, t); },
//       [&](CancellationToken t) { return executor.SleepFor(absl::Seconds(5), t); });
//   // first.index: which one; first.value: its result.
//
// The factories run inside WhenAny, one after another, and each task starts at once (as in
// WhenAll). The token they receive is cancelled (CANCELLED, "another WhenAny alternative finished
// first") as soon as one task finishes, and when `parent` is cancelled. WhenAny returns after every
// task has finished, on the thread that finished the last. The first task to finish wins, whether
// it returned or threw; a winner's exception is rethrown, the losers' exceptions are dropped.
//
// Lambdas here only build tasks; the tasks themselves are named coroutines taking parameters by
// value, so nothing they use lives in a lambda's captures.
//
// Thread-safety: alternatives may finish on any thread.
#ifndef SPINDLE_CORO_WHEN_ANY_H_
#define SPINDLE_CORO_WHEN_ANY_H_

#include <atomic>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/functional/any_invocable.h"
#include "spindle/common/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/task.h"
#include "spindle/coro/when_all.h"

namespace spindle::coro {

template <typename T>
struct AnyResult {
  size_t index;  // Position of the winning alternative.
  T value;
};

template <>
struct AnyResult<void> {
  size_t index;
};

template <typename T>
using AnyFactory = absl::AnyInvocable<Task<T>(CancellationToken)>;

namespace internal {

template <typename T>
struct RaceState {
  explicit RaceState(const CancellationToken& parent) : source(parent) {}
  CancellationSource source;
  std::atomic<bool> decided{false};
  size_t winner = 0;
  std::optional<VoidToMonostate<T>> value;
  std::exception_ptr error;
};

template <typename T>
Task<void> RunAlternative(Task<T> task, size_t index, RaceState<T>* state) {
  std::optional<VoidToMonostate<T>> value;
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      value.emplace();
    } else {
      value.emplace(co_await std::move(task));
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (!state->decided.exchange(true, std::memory_order_acq_rel)) {
    state->winner = index;
    state->value = std::move(value);
    state->error = error;
    state->source.Cancel(spindle::Cancelled("another WhenAny alternative finished first"));
  }
}

}  // namespace internal

// REQUIRES: !alternatives.empty().
template <typename T>
Task<AnyResult<T>> WhenAny(CancellationToken parent, std::vector<AnyFactory<T>> alternatives) {
  ABSL_RAW_CHECK(!alternatives.empty(), "WhenAny() needs at least one alternative");
  internal::RaceState<T> state(parent);
  std::vector<Task<void>> runs;
  runs.reserve(alternatives.size());
  for (size_t i = 0; i < alternatives.size(); ++i) {
    runs.push_back(internal::RunAlternative(alternatives[i](state.source.token()), i, &state));
  }
  co_await WhenAll(std::move(runs));
  if (state.error) {
    std::rethrow_exception(state.error);
  }
  if constexpr (std::is_void_v<T>) {
    co_return AnyResult<void>{state.winner};
  } else {
    co_return AnyResult<T>{state.winner, std::move(*state.value)};
  }
}

template <typename F, typename... Fs>
requires(std::is_invocable_v<F&, CancellationToken> &&
         (std::is_invocable_v<Fs&, CancellationToken> &&
          ...)) auto WhenAny(CancellationToken parent, F first, Fs... rest)
    -> Task<AnyResult<typename std::invoke_result_t<F&, CancellationToken>::value_type>> {
  using T = typename std::invoke_result_t<F&, CancellationToken>::value_type;
  std::vector<AnyFactory<T>> alternatives;
  alternatives.reserve(1 + sizeof...(rest));
  alternatives.emplace_back(std::move(first));
  (alternatives.emplace_back(std::move(rest)), ...);
  return WhenAny<T>(std::move(parent), std::move(alternatives));
}

}  // namespace spindle::coro

#endif  // SPINDLE_CORO_WHEN_ANY_H_
