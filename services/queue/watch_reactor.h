// The WatchValues stream (value.proto): the initial state if asked, then every matching change
// in version order, heartbeats while nothing changes, and a final `compacted` message (then
// ABORTED) when the watch cannot deliver every change.
//
// The reactor pulls from the store: it polls when it has nothing to write and the previous write
// is done; with nothing ready it leaves a notify callback that the store runs on the next matching
// change. Writers never wait for a watcher.
//
// Thread-safety: reactions, store notifications and heartbeat timers may run concurrently; state
// is under a mutex. Callbacks reach the reactor through a shared link that is cut in OnDone.
#ifndef SPINDLE_SERVICES_QUEUE_WATCH_REACTOR_H_
#define SPINDLE_SERVICES_QUEUE_WATCH_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include "services/common/stream_set.h"
#include "spindle/common/timer.h"
#include "spindle/v1/value.pb.h"
#include "spindle/value/value_store.h"

namespace spindle::services {

grpc::ServerWriteReactor<v1::WatchValuesResponse>* NewWatchReactor(
    grpc::CallbackServerContext* context, const v1::WatchValuesRequest& request,
    value::ValueStore& store, TimerService& timers, StreamSet& streams);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_WATCH_REACTOR_H_
