// RequestLog: the answers of recent requests by their client-chosen request_id (common.proto's
// idempotency), so that a retry finds the original answer instead of acting twice.
//
// An answer is kept for `retention` after it was first recorded, and at most `capacity` of them
// are kept (the oldest forgotten first), so memory stays bounded whatever clients send. Keys are
// the caller's: a capability scopes a request_id by operation and target when it builds the key.
//
// Thread-safety: none. Callers hold the lock of the state the answers describe, so looking an
// answer up and acting on a miss are one atomic step.
#ifndef SPINDLE_COMMON_REQUEST_LOG_H_
#define SPINDLE_COMMON_REQUEST_LOG_H_

#include <cstddef>
#include <deque>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace spindle {

// How long, and how many, request ids the capabilities remember (common.proto).
inline constexpr absl::Duration kRequestIdRetention = absl::Minutes(10);

template <typename Answer>
class RequestLog {
 public:
  RequestLog(absl::Duration retention, size_t capacity)
      : retention_(retention), capacity_(capacity) {}

  // The answer recorded under `key` within the retention window, or null.
  Answer* Find(absl::string_view key, absl::Time now) {
    Prune(now);
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second.answer;
  }

  // Records (or replaces) the answer under `key`. A replaced answer keeps its first time: a
  // request's window starts when it was first seen.
  void Record(std::string key, Answer answer, absl::Time now) {
    Prune(now);
    auto [it, inserted] = entries_.try_emplace(key, Entry{std::move(answer), now});
    if (!inserted) {
      it->second.answer = std::move(answer);
      return;
    }
    order_.emplace_back(now, std::move(key));
    while (order_.size() > capacity_) {
      Drop();
    }
  }

  // Forgets `key`: a later request with it acts afresh.
  void Forget(absl::string_view key) { entries_.erase(key); }

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    Answer answer;
    absl::Time time;
  };

  void Prune(absl::Time now) {
    while (!order_.empty() && order_.front().first + retention_ <= now) {
      Drop();
    }
  }

  // Forgets the oldest key, unless it was forgotten and recorded anew since.
  void Drop() {
    auto& [time, key] = order_.front();
    if (auto it = entries_.find(key); it != entries_.end() && it->second.time == time) {
      entries_.erase(it);
    }
    order_.pop_front();
  }

  const absl::Duration retention_;
  const size_t capacity_;
  absl::flat_hash_map<std::string, Entry> entries_;
  std::deque<std::pair<absl::Time, std::string>> order_;
};

}  // namespace spindle

#endif  // SPINDLE_COMMON_REQUEST_LOG_H_
