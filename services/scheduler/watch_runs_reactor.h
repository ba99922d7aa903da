// The WatchTriggerRuns stream (scheduler.proto): every matching run as it changes, live only.
// Ends OK when the watched trigger is deleted, UNAVAILABLE on server shutdown, RESOURCE_EXHAUSTED
// (WATCH_LAGGING) when more than kMaxQueued runs wait for a slow client.
//
// Thread-safety: table callbacks (any thread, table shard lock held), reactions (gRPC threads)
// and shutdown may run concurrently; state is under a mutex; Finish is called once.
#ifndef SPINDLE_SERVICES_SCHEDULER_WATCH_RUNS_REACTOR_H_
#define SPINDLE_SERVICES_SCHEDULER_WATCH_RUNS_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "spindle/trigger/trigger_table.h"
#include "spindle/v1/scheduler.pb.h"

namespace spindle::services {

// The live watch streams, so shutdown can end them.
class WatchRegistry {
 public:
  class Stream {
   public:
    virtual ~Stream() = default;
    virtual void StopForShutdown() = 0;
  };
  // False once shutdown began.
  bool Add(Stream* stream);
  void Remove(Stream* stream);
  void Shutdown();

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse>* NewWatchRunsReactor(
    const v1::WatchTriggerRunsRequest& request, trigger::TriggerTable& table,
    WatchRegistry& registry);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_WATCH_RUNS_REACTOR_H_
