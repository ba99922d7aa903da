// SchedulerService: the coroutine executor's remote face (protos/spindle/v1/scheduler.proto).
// Sleep is a wait that costs the server no thread: a coroutine suspended on the reactor's timer.
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
#define SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_

#include <memory>

#include "services/server/capability.h"
#include "spindle/coro/executor.h"
#include "spindle/v1/scheduler.grpc.pb.h"

namespace spindle::services {

class SchedulerServiceImpl final : public v1::SchedulerService::CallbackService {
 public:
  explicit SchedulerServiceImpl(coro::Executor& executor) : executor_(executor) {}

  grpc::ServerUnaryReactor* Sleep(grpc::CallbackServerContext* context,
                                  const v1::SleepRequest* request,
                                  v1::SleepResponse* response) override;

 private:
  coro::Executor& executor_;
};

std::unique_ptr<Capability> MakeSchedulerCapability(CapabilityContext& context);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_SCHEDULER_SERVICE_H_
