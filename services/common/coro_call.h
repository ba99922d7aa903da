// The bridge from gRPC's callback API to the coroutine executor.
//
// A unary handler starts an engine coroutine and returns at once; no gRPC thread waits. The
// coroutine gets a cancellation token that fires when the client cancels or disconnects (CANCELLED)
// or when the call's deadline passes (DEADLINE_EXCEEDED, by the executor's timer), so every wait
// inside it is removed at once. When the coroutine completes, its absl::Status becomes the call's
// status (through ToGrpcStatus) and the reactor finishes.
//
//   grpc::ServerUnaryReactor* Sleep(grpc::CallbackServerContext* context,
//                                   const v1::SleepRequest* request,
//                                   v1::SleepResponse* response) override {
//     return StartUnary(context, executor_, [&](coro::CancellationToken token) {
//       return SleepCall(&executor_, request->duration_ms(), response, std::move(token));
//     });
//   }
//
// The factory is called once, synchronously, with the token; it must return the coroutine (a
// named function taking its parameters by value, per STYLE.md); the request and response stay
// valid until the coroutine completes. The coroutine starts on an executor worker thread.
//
// Thread-safety: StartUnary may be called from any gRPC thread.
#ifndef SPINDLE_SERVICES_COMMON_CORO_CALL_H_
#define SPINDLE_SERVICES_COMMON_CORO_CALL_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "services/common/status_convert.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/task.h"

namespace spindle::services {

// The call's deadline as absl::Time (InfiniteFuture when the client set none).
absl::Time CallDeadline(const grpc::ServerContextBase& context);

namespace internal {

class CoroUnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  CoroUnaryReactor(grpc::CallbackServerContext* context, coro::Executor& executor);

  coro::CancellationToken token() const { return deadline_.token(); }

  // Runs `task` on the executor and finishes with its status. Takes ownership of `this` until
  // OnDone().
  void Start(coro::Executor& executor, coro::Task<absl::Status> task);

  void OnCancel() override;
  void OnDone() override { delete this; }

 private:
  static coro::Task<void> Drive(CoroUnaryReactor* self, coro::Task<absl::Status> task);

  coro::CancellationSource cancelled_;  // Client cancel or disconnect.
  coro::DeadlineSource deadline_;       // The call's deadline, chained to cancelled_.
};

}  // namespace internal

// Starts `factory(token)` (a Task<absl::Status>) for a unary call and returns its reactor.
template <typename Factory>
grpc::ServerUnaryReactor* StartUnary(grpc::CallbackServerContext* context, coro::Executor& executor,
                                     Factory&& factory) {
  auto* reactor = new internal::CoroUnaryReactor(context, executor);
  reactor->Start(executor, std::forward<Factory>(factory)(reactor->token()));
  return reactor;
}

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_COMMON_CORO_CALL_H_
