// The long-lived streams of a capability (Consume, WatchValues, Map, WatchTasks), so that
// BeginShutdown can end them with UNAVAILABLE instead of letting the grace period cancel them.
//
// Thread-safety: thread-safe. Stop() runs without the set's lock held.
#ifndef SPINDLE_SERVICES_COMMON_STREAM_SET_H_
#define SPINDLE_SERVICES_COMMON_STREAM_SET_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

class StoppableStream {
 public:
  virtual ~StoppableStream() = default;
  // Ends the stream with UNAVAILABLE (server draining). May run after the stream ended: no-op.
  virtual void StopForShutdown() = 0;
};

class StreamSet {
 public:
  // False when shutting down (the stream should end at once).
  bool Add(std::shared_ptr<StoppableStream> stream) {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return false;
    }
    streams_.insert(std::move(stream));
    return true;
  }
  void Remove(const std::shared_ptr<StoppableStream>& stream) {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream);
  }
  void StopAll() {
    std::vector<std::shared_ptr<StoppableStream>> streams;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      streams.assign(streams_.begin(), streams_.end());
    }
    for (auto& stream : streams) {
      stream->StopForShutdown();
    }
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return streams_.size();
  }

 private:
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::shared_ptr<StoppableStream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_COMMON_STREAM_SET_H_
