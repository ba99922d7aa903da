// The WatchProcesses stream: state changes of matching processes as they happen, optionally
// preceded by INITIAL events. Events are buffered per watch up to kMaxBufferedEvents; a client
// that reads slower than that gets RESOURCE_EXHAUSTED (WATCH_LAGGING) rather than growing memory.
#ifndef SPINDLE_SERVICES_PROCESS_WATCH_REACTOR_H_
#define SPINDLE_SERVICES_PROCESS_WATCH_REACTOR_H_

#include <grpcpp/server_context.h>

#include "services/process/stream_registry.h"
#include "spindle/process/process_table.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {

inline constexpr int kMaxBufferedEvents = 1000;

grpc::ServerWriteReactor<v1::WatchProcessesResponse>* StartWatch(
    grpc::CallbackServerContext* context, const v1::WatchProcessesRequest& request,
    process::ProcessTable& table, StreamRegistry& streams);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_WATCH_REACTOR_H_
