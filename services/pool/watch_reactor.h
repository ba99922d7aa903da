// The WatchTasks server stream: replays retained events after `after_sequence`, then follows the
// pool's events live, one event per message, until the client leaves, the pool is deleted (OK),
// the client lags behind the retained history (RESOURCE_EXHAUSTED, WATCH_LAGGING) or the server
// drains (UNAVAILABLE).
//
// Thread-safety: every call into the reactor is made by one "pump" at a time; engine
// notifications, gRPC reactions and shutdown all just run the pump.
#ifndef SPINDLE_SERVICES_POOL_WATCH_REACTOR_H_
#define SPINDLE_SERVICES_POOL_WATCH_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include "services/common/stream_set.h"
#include "spindle/pool/pool_table.h"
#include "spindle/v1/pool.grpc.pb.h"

namespace spindle::services {

grpc::ServerWriteReactor<v1::WatchTasksResponse>* StartWatchReactor(
    grpc::CallbackServerContext* context, const v1::WatchTasksRequest* request,
    pool::PoolTable& table, StreamSet& streams);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_WATCH_REACTOR_H_
