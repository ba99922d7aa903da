// The Attach bidi stream (kubectl exec / docker attach): the first client message opens (attach
// to a process, or spawn one bound to the stream); then stdin data, stdin close, signals and pty
// resizes flow in, in order, while output chunks (with offsets and gap markers) flow out, and the
// final status comes last. A process the stream spawned is killed, whole tree, when the stream
// ends before it did (unless it is bound to a session).
#ifndef SPINDLE_SERVICES_PROCESS_ATTACH_REACTOR_H_
#define SPINDLE_SERVICES_PROCESS_ATTACH_REACTOR_H_

#include <grpcpp/server_context.h>

#include <string>

#include "services/process/stream_registry.h"
#include "spindle/process/process_table.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {

// `identity`: who the call comes from (caller_identity.h), for a spawn.
grpc::ServerBidiReactor<v1::AttachRequest, v1::AttachResponse>* StartAttach(
    grpc::CallbackServerContext* context, process::ProcessTable& table, StreamRegistry& streams,
    std::string identity);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_ATTACH_REACTOR_H_
