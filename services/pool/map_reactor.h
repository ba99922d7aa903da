// The Map bidi stream: every input becomes a task of the pool; results go back in input order
// (ORDERED) or as they finish (UNORDERED), several per message. At most `window` inputs are
// outstanding (read, result not yet sent): the server stops reading until results are sent, so
// memory stays bounded on both sides however many inputs a client streams. A full pool queue
// makes the map wait. When the stream ends early, its unfinished tasks are cancelled
// (STREAM_ENDED).
//
// Thread-safety: every call into the reactor is made by one "pump" at a time; reads, writes,
// engine completions and shutdown all just run the pump.
#ifndef SPINDLE_SERVICES_POOL_MAP_REACTOR_H_
#define SPINDLE_SERVICES_POOL_MAP_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <cstdint>

#include "services/common/stream_set.h"
#include "spindle/pool/pool_table.h"
#include "spindle/v1/pool.grpc.pb.h"

namespace spindle::services {

grpc::ServerBidiReactor<v1::MapRequest, v1::MapResponse>* StartMapReactor(
    grpc::CallbackServerContext* context, pool::PoolTable& table, StreamSet& streams,
    int64_t max_message_bytes);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_POOL_MAP_REACTOR_H_
