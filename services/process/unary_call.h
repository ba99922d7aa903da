// UnaryCall: the reactor of a unary ProcessService call that may wait (WaitProcess, Run,
// TerminateProcess with wait, RestartProcess, DeleteProcess with force).
//
// The handler registers its wait with the engine and returns the reactor; the engine's callback
// answers through the shared Handle, which finishes the call at most once and does nothing after
// the call ended, so a late callback never touches a deleted reactor. When the client cancels or
// its deadline passes, `on_cancel` withdraws the wait (or kills the Run's tree) and the call ends
// with CANCELLED or DEADLINE_EXCEEDED. No gRPC thread blocks.
//
// Thread-safety: Handle::Finish may run on any thread, concurrently with OnCancel.
#ifndef SPINDLE_SERVICES_PROCESS_UNARY_CALL_H_
#define SPINDLE_SERVICES_PROCESS_UNARY_CALL_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <chrono>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace spindle::services {

class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  struct Handle {
    // Runs `fill` (which writes the response) and finishes with `status`, unless the call was
    // answered or ended already. Returns whether it finished the call.
    bool Finish(const grpc::Status& status, const std::function<void()>& fill = nullptr) {
      UnaryCall* call;
      {
        absl::MutexLock lock(&mu);
        if (this->call == nullptr || finished) {
          return false;
        }
        finished = true;
        call = this->call;
        if (fill && status.ok()) {
          fill();
        }
      }
      call->grpc::ServerUnaryReactor::Finish(status);
      return true;
    }

    absl::Mutex mu;
    UnaryCall* call ABSL_GUARDED_BY(mu) = nullptr;
    bool finished ABSL_GUARDED_BY(mu) = false;
  };

  explicit UnaryCall(grpc::CallbackServerContext* context)
      : context_(context), handle_(std::make_shared<Handle>()) {
    absl::MutexLock lock(&handle_->mu);
    handle_->call = this;
  }

  const std::shared_ptr<Handle>& handle() const { return handle_; }
  grpc::CallbackServerContext* context() const { return context_; }

  // REQUIRES: called before the handler returns the reactor.
  void SetOnCancel(std::function<void()> on_cancel) { on_cancel_ = std::move(on_cancel); }

  void OnCancel() override {
    if (on_cancel_) {
      on_cancel_();
    }
    handle_->Finish(CancelledStatus(context_));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&handle_->mu);
      handle_->call = nullptr;
    }
    delete this;
  }

  static grpc::Status CancelledStatus(const grpc::ServerContextBase* context) {
    if (context->deadline() <= std::chrono::system_clock::now()) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the call's deadline passed");
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the call");
  }

 private:
  grpc::CallbackServerContext* const context_;
  std::shared_ptr<Handle> handle_;
  std::function<void()> on_cancel_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_UNARY_CALL_H_
