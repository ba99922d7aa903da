// ProcessService (protos/spindle/v1/process.proto) on gRPC's callback API: validate, convert, call
// the ProcessTable, convert the status, finish. Waiting calls register continuations with the
// table (UnaryCall); streams have their own reactors (read_output_reactor.h, watch_reactor.h,
// write_stdin_reactor.h, attach_reactor.h).
//
// Thread-safety: thread-safe (gRPC calls handlers on many threads).
#ifndef SPINDLE_SERVICES_PROCESS_PROCESS_SERVICE_H_
#define SPINDLE_SERVICES_PROCESS_PROCESS_SERVICE_H_

#include <cstdint>

#include "services/auth/caller_identity.h"
#include "services/process/stream_registry.h"
#include "spindle/common/timer.h"
#include "spindle/process/process_table.h"
#include "spindle/v1/process.grpc.pb.h"

namespace spindle::services {

class ProcessServiceImpl final : public v1::ProcessService::CallbackService {
 public:
  // `max_run_output_bytes`: how many output bytes one Run response may carry (both streams).
  // `caller_identity` names who a call comes from, for the spawn policy (empty: certificate or
  // peer address).
  ProcessServiceImpl(process::ProcessTable& table, TimerService& timers,
                     int64_t max_run_output_bytes, auth::CallerIdentityFn caller_identity = {})
      : table_(table),
        timers_(timers),
        max_run_output_bytes_(max_run_output_bytes),
        caller_identity_(std::move(caller_identity)) {}

  // Ends follows, watches and attaches with UNAVAILABLE.
  void BeginShutdown() { streams_.StopAll(); }

  grpc::ServerUnaryReactor* Spawn(grpc::CallbackServerContext* context,
                                  const v1::SpawnRequest* request,
                                  v1::SpawnResponse* response) override;
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, const v1::RunRequest* request,
                                v1::RunResponse* response) override;
  grpc::ServerUnaryReactor* GetProcess(grpc::CallbackServerContext* context,
                                       const v1::GetProcessRequest* request,
                                       v1::GetProcessResponse* response) override;
  grpc::ServerUnaryReactor* ListProcesses(grpc::CallbackServerContext* context,
                                          const v1::ListProcessesRequest* request,
                                          v1::ListProcessesResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchProcessesResponse>* WatchProcesses(
      grpc::CallbackServerContext* context, const v1::WatchProcessesRequest* request) override;
  grpc::ServerUnaryReactor* WaitProcess(grpc::CallbackServerContext* context,
                                        const v1::WaitProcessRequest* request,
                                        v1::WaitProcessResponse* response) override;
  grpc::ServerUnaryReactor* SignalProcess(grpc::CallbackServerContext* context,
                                          const v1::SignalProcessRequest* request,
                                          v1::SignalProcessResponse* response) override;
  grpc::ServerUnaryReactor* TerminateProcess(grpc::CallbackServerContext* context,
                                             const v1::TerminateProcessRequest* request,
                                             v1::TerminateProcessResponse* response) override;
  grpc::ServerUnaryReactor* RestartProcess(grpc::CallbackServerContext* context,
                                           const v1::RestartProcessRequest* request,
                                           v1::RestartProcessResponse* response) override;
  grpc::ServerUnaryReactor* DeleteProcess(grpc::CallbackServerContext* context,
                                          const v1::DeleteProcessRequest* request,
                                          v1::DeleteProcessResponse* response) override;
  grpc::ServerWriteReactor<v1::ReadOutputResponse>* ReadOutput(
      grpc::CallbackServerContext* context, const v1::ReadOutputRequest* request) override;
  grpc::ServerReadReactor<v1::WriteStdinRequest>* WriteStdin(
      grpc::CallbackServerContext* context, v1::WriteStdinResponse* response) override;
  grpc::ServerUnaryReactor* CloseStdin(grpc::CallbackServerContext* context,
                                       const v1::CloseStdinRequest* request,
                                       v1::CloseStdinResponse* response) override;
  grpc::ServerBidiReactor<v1::AttachRequest, v1::AttachResponse>* Attach(
      grpc::CallbackServerContext* context) override;

 private:
  std::string IdentityOf(const grpc::ServerContextBase& context) const {
    return caller_identity_ ? caller_identity_(context) : auth::CallerIdentity(context, nullptr);
  }
  process::ProcessTable& table_;
  TimerService& timers_;
  const int64_t max_run_output_bytes_;
  const auth::CallerIdentityFn caller_identity_;
  StreamRegistry streams_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_PROCESS_SERVICE_H_
