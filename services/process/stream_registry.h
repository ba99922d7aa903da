// The long-lived streams of the process service (ReadOutput follows, watches, attaches), so that
// BeginShutdown can end them with UNAVAILABLE rather than letting the grace period cut them.
//
// Thread-safety: thread-safe; StopForShutdown runs without the registry's lock held.
#ifndef SPINDLE_SERVICES_PROCESS_STREAM_REGISTRY_H_
#define SPINDLE_SERVICES_PROCESS_STREAM_REGISTRY_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

class ProcessStream {
 public:
  virtual ~ProcessStream() = default;
  // Ends the stream with UNAVAILABLE; a no-op when it already ended.
  virtual void StopForShutdown() = 0;
};

class StreamRegistry {
 public:
  // False when shutting down (the caller ends the stream at once).
  bool Add(const std::shared_ptr<ProcessStream>& stream) {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    streams_.insert(stream);
    return true;
  }
  void Remove(const std::shared_ptr<ProcessStream>& stream) {
    absl::MutexLock lock(&mu_);
    streams_.erase(stream);
  }
  void StopAll() {
    std::vector<std::shared_ptr<ProcessStream>> streams;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      streams.assign(streams_.begin(), streams_.end());
      streams_.clear();
    }
    for (auto& s : streams) s->StopForShutdown();
  }

 private:
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::shared_ptr<ProcessStream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_STREAM_REGISTRY_H_
