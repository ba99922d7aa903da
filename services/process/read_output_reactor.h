// The ReadOutput stream: buffered output from offsets, gap markers, and with `follow` new output
// as it is written (a continuation registered with the table, no thread), then the final status.
//
// Thread-safety: see QueuedWriter.
#ifndef SPINDLE_SERVICES_PROCESS_READ_OUTPUT_REACTOR_H_
#define SPINDLE_SERVICES_PROCESS_READ_OUTPUT_REACTOR_H_

#include <grpcpp/server_context.h>

#include "services/process/output_follower.h"
#include "services/process/queued_writer.h"
#include "services/process/stream_registry.h"
#include "spindle/process/process_table.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {

// Starts the stream for `request`; returns the reactor for the handler to return.
grpc::ServerWriteReactor<v1::ReadOutputResponse>* StartReadOutput(
    grpc::CallbackServerContext* context, const v1::ReadOutputRequest& request,
    process::ProcessTable& table, StreamRegistry& streams);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_READ_OUTPUT_REACTOR_H_
