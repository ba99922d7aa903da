#include "services/common/coro_call.h"

#include "spindle/common/status.h"

namespace spindle::services {

absl::Time CallDeadline(const grpc::ServerContextBase& context) {
  const auto deadline = context.deadline();
  if (deadline >=
      std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365 * 100)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

namespace internal {

CoroUnaryReactor::CoroUnaryReactor(grpc::CallbackServerContext* context, coro::Executor& executor)
    : deadline_(executor, CallDeadline(*context), cancelled_.token()) {}

void CoroUnaryReactor::Start(coro::Executor& executor, coro::Task<absl::Status> task) {
  if (!executor.Spawn(Drive(this, std::move(task)))) {
    Finish(ToGrpcStatus(Unavailable("SHUTTING_DOWN", "the server is shutting down")));
  }
}

void CoroUnaryReactor::OnCancel() {
  cancelled_.Cancel(Cancelled("the client cancelled the call or went away"));
}

coro::Task<void> CoroUnaryReactor::Drive(CoroUnaryReactor* self, coro::Task<absl::Status> task) {
  absl::Status status = co_await std::move(task);
  // The last touch of `self`: OnDone() may delete it as soon as Finish() is called.
  self->Finish(ToGrpcStatus(status));
}

}  // namespace internal
}  // namespace spindle::services
