// Small helpers private to the pool engine: deferred callbacks, label selectors, names of enums.
//
// Thread-safety: Deferred is confined to one thread; the rest are free functions.
#ifndef SPINDLE_POOL_INTERNAL_UTIL_H_
#define SPINDLE_POOL_INTERNAL_UTIL_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

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

struct LabelRequirement {
  enum Kind { kEquals, kNotEquals, kPresent, kAbsent } kind;
  std::string key;
  std::string value;
};

// "k=v,k!=v,k,!k". INVALID_ARGUMENT naming `field` for a bad one.
absl::StatusOr<std::vector<LabelRequirement>> ParseSelector(absl::string_view field,
                                                            absl::string_view selector);
bool SelectorMatches(const std::vector<LabelRequirement>& requirements,
                     const std::map<std::string, std::string>& labels);

}  // namespace spindle::pool::internal

#endif  // SPINDLE_POOL_INTERNAL_UTIL_H_
