// Captures the outcome of an engine continuation for tests, and counts how often it ran.
#ifndef SPINDLE_TESTS_LIB_SYNC_CAPTURE_H_
#define SPINDLE_TESTS_LIB_SYNC_CAPTURE_H_

#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"

namespace spindle::sync {

template <typename T>
class Capture {
 public:
  Capture() : state_(std::make_shared<State>()) {}

  // A callback for the engine; it may outlive this object.
  auto Callback() {
    return [state = state_](absl::StatusOr<T> value) {
      std::lock_guard lock(state->mu);
      state->value = std::move(value);
      ++state->calls;
    };
  }
  bool done() const {
    std::lock_guard lock(state_->mu);
    return state_->calls > 0;
  }
  int calls() const {
    std::lock_guard lock(state_->mu);
    return state_->calls;
  }
  absl::StatusOr<T> value() const {
    std::lock_guard lock(state_->mu);
    return *state_->value;
  }
  absl::Status status() const { return value().status(); }

 private:
  struct State {
    mutable std::mutex mu;
    std::optional<absl::StatusOr<T>> value;
    int calls = 0;
  };
  std::shared_ptr<State> state_;
};

}  // namespace spindle::sync

#endif  // SPINDLE_TESTS_LIB_SYNC_CAPTURE_H_
