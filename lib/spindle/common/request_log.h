// RequestLog: the answers of recent requests by their client-chosen request_id (common.proto's
// idempotency), so that a retry finds the original answer instead of acting twice.
//
// An answer is kept for `retention` after it was first recorded, and at most `capacity` of them
// with a total weight of at most `max_weight` (the caller's measure, e.g. bytes an answer holds
// alive) are kept, the oldest forgotten first, so memory stays bounded whatever clients send. Keys
// are the caller's: a capability scopes a request_id by operation and target when it builds the
// key.
//
// Thread-safety: none. Callers hold the lock of the state the answers describe, so looking an
// answer up and acting on a miss are one atomic step.
#ifndef SPINDLE_COMMON_REQUEST_LOG_H_
#define SPINDLE_COMMON_REQUEST_LOG_H_

#include <cstddef>
#include <deque>
#include <limits>
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
  RequestLog(absl::Duration retention, size_t capacity,
             size_t max_weight = std::numeric_limits<size_t>::max())
      : retention_(retention), capacity_(capacity), max_weight_(max_weight) {}

  // The answer recorded under `key` within the retention window, or null.
  Answer* Find(absl::string_view key, absl::Time now) {
    Prune(now);
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second.answer;
  }

  // Records (or replaces) the answer under `key`. A replaced answer keeps its first time: a
  // request's window starts when it was first seen.
  void Record(std::string key, Answer answer, absl::Time now, size_t weight = 0) {
    Prune(now);
    if (auto it = entries_.find(key); it != entries_.end()) {
      weight_ -= it->second.weight;
      it->second.answer = std::move(answer);
      it->second.weight = weight;
    } else {
      entries_.emplace(key, Entry{std::move(answer), now, weight});
      order_.emplace_back(now, std::move(key));
    }
    weight_ += weight;
    while (!order_.empty() && (order_.size() > capacity_ || weight_ > max_weight_)) {
      Drop();
    }
  }

  // Forgets `key`: a later request with it acts afresh.
  void Forget(absl::string_view key) {
    if (auto it = entries_.find(key); it != entries_.end()) {
      weight_ -= it->second.weight;
      entries_.erase(it);
    }
  }

  size_t size() const { return entries_.size(); }
  size_t weight() const { return weight_; }

 private:
  struct Entry {
    Answer answer;
    absl::Time time;
    size_t weight = 0;
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
      weight_ -= it->second.weight;
      entries_.erase(it);
    }
    order_.pop_front();
  }

  const absl::Duration retention_;
  const size_t capacity_;
  const size_t max_weight_;
  size_t weight_ = 0;
  absl::flat_hash_map<std::string, Entry> entries_;
  std::deque<std::pair<absl::Time, std::string>> order_;
};

}  // namespace spindle

#endif  // SPINDLE_COMMON_REQUEST_LOG_H_
