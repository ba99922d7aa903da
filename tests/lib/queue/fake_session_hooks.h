// A SessionHooks for engine tests: sessions are strings a test opens and ends by hand.
//
// Thread-safety: thread-safe; End() runs hooks on the caller's thread without the lock held.
#ifndef SPINDLE_TESTS_LIB_QUEUE_FAKE_SESSION_HOOKS_H_
#define SPINDLE_TESTS_LIB_QUEUE_FAKE_SESSION_HOOKS_H_

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/status.h"

namespace spindle::testing {

class FakeSessionHooks final : public SessionHooks {
 public:
  void Open(const std::string& id) {
    absl::MutexLock lock(&mu_);
    live_.insert(id);
  }
  void End(const std::string& id) {
    std::vector<absl::AnyInvocable<void() &&>> run;
    {
      absl::MutexLock lock(&mu_);
      live_.erase(id);
      ended_.insert(id);
      auto it = hooks_.find(id);
      if (it != hooks_.end()) {
        for (auto& [hook, fn] : it->second) {
          run.push_back(std::move(fn));
        }
        hooks_.erase(it);
      }
    }
    for (auto& fn : run) {
      std::move(fn)();
    }
  }
  absl::Status CheckAlive(absl::string_view session_id) const override {
    absl::MutexLock lock(&mu_);
    std::string id(session_id);
    if (live_.contains(id)) {
      return absl::OkStatus();
    }
    if (ended_.contains(id)) {
      return Aborted("SESSION_EXPIRED", absl::StrCat("session '", session_id, "' expired"));
    }
    return NotFound("SESSION_NOT_FOUND", absl::StrCat("session '", session_id, "' not found"));
  }
  absl::StatusOr<HookId> OnEnd(absl::string_view session_id,
                               absl::AnyInvocable<void() &&> on_end) override {
    SPINDLE_RETURN_IF_ERROR(CheckAlive(session_id));
    absl::MutexLock lock(&mu_);
    HookId id = ++next_;
    hooks_[std::string(session_id)].emplace(id, std::move(on_end));
    return id;
  }
  void RemoveHook(absl::string_view session_id, HookId hook) override {
    absl::MutexLock lock(&mu_);
    auto it = hooks_.find(std::string(session_id));
    if (it != hooks_.end()) {
      it->second.erase(hook);
    }
  }

 private:
  mutable absl::Mutex mu_;
  std::set<std::string> live_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> ended_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<HookId, absl::AnyInvocable<void() &&>>> hooks_
      ABSL_GUARDED_BY(mu_);
  HookId next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace spindle::testing

#endif  // SPINDLE_TESTS_LIB_QUEUE_FAKE_SESSION_HOOKS_H_
