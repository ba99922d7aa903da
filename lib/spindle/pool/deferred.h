// Deferred callbacks, private to the pool engine: gathered under a lock, run after it.
//
// Thread-safety: a Deferred is confined to one thread.
#ifndef SPINDLE_POOL_DEFERRED_H_
#define SPINDLE_POOL_DEFERRED_H_

#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace spindle::pool::internal {

// Callbacks gathered under a lock, run when the Deferred is destroyed. Declare it before the lock
// guard so that the lock is released first.
class Deferred {
 public:
  Deferred() = default;
  Deferred(const Deferred&) = delete;
  Deferred& operator=(const Deferred&) = delete;
  ~Deferred() { Run(); }
  void Add(absl::AnyInvocable<void() &&> action) { actions_.push_back(std::move(action)); }
  void Run() {
    while (!actions_.empty()) {
      auto actions = std::move(actions_);
      actions_.clear();
      for (auto& action : actions) {
        std::move(action)();
      }
    }
  }

 private:
  std::vector<absl::AnyInvocable<void() &&>> actions_;
};

}  // namespace spindle::pool::internal

#endif  // SPINDLE_POOL_DEFERRED_H_
