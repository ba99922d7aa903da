// The WriteStdin client stream: writes each message's bytes to the process's stdin pipe and reads
// the next message only after the pipe took them (back-pressure instead of buffering). Holds the
// process's stdin lease for its lifetime.
#ifndef SPINDLE_SERVICES_PROCESS_WRITE_STDIN_REACTOR_H_
#define SPINDLE_SERVICES_PROCESS_WRITE_STDIN_REACTOR_H_

#include <grpcpp/server_context.h>

#include "spindle/process/process_table.h"
#include "spindle/v1/process.pb.h"

namespace spindle::services {

grpc::ServerReadReactor<v1::WriteStdinRequest>* StartWriteStdin(
    grpc::CallbackServerContext* context, v1::WriteStdinResponse* response,
    process::ProcessTable& table);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_WRITE_STDIN_REACTOR_H_
