// Helpers shared by the coroutine executor's tests.
#ifndef SPINDLE_TESTS_LIB_CORO_TEST_UTIL_H_
#define SPINDLE_TESTS_LIB_CORO_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spindle/coro/executor.h"

namespace spindle::coro::testing {

// An executor with `threads` workers; fails the test if it cannot be created.
inline std::unique_ptr<Executor> MakeExecutor(int threads, std::string name = "test") {
  auto executor = Executor::Create({.threads = threads, .name = std::move(name)});
  EXPECT_TRUE(executor.ok()) << executor.status();
  return executor.ok() ? std::move(*executor) : nullptr;
}

// Spins (yielding the CPU) until `condition` holds. For states that no awaitable exposes, such as
// "N coroutines are queued on the mutex"; never used to wait for time to pass.
inline void WaitUntil(const std::function<bool()>& condition) {
  while (!condition()) {
    std::this_thread::yield();
  }
}

MATCHER(IsOk, "is OK") {
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) {
    *result_listener << arg;
    return arg.ok();
  } else {
    *result_listener << arg.status();
    return arg.ok();
  }
}

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  absl::Status status;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) {
    status = arg;
  } else {
    status = arg.status();
  }
  *result_listener << status;
  return status.code() == code;
}

}  // namespace spindle::coro::testing

#endif  // SPINDLE_TESTS_LIB_CORO_TEST_UTIL_H_
