#include "services/process/read_output_reactor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/process/convert.h"
#include "services/process/unary_call.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

using Base = QueuedWriter<grpc::ServerWriteReactor<v1::ReadOutputResponse>, v1::ReadOutputResponse>;

class ReadOutputReactor final : public Base,
                                public ProcessStream,
                                public std::enable_shared_from_this<ReadOutputReactor> {
 public:
  ReadOutputReactor(grpc::CallbackServerContext* context, process::ProcessTable& table,
                    StreamRegistry& streams)
      : context_(context), table_(table), streams_(streams) {}

  void Start(const v1::ReadOutputRequest& request) {
    absl::Status valid = Init(request);
    if (!valid.ok()) {
      FinishOnce(ToGrpcStatus(valid));
      return;
    }
    if (follower_->follow() && !streams_.Add(shared_from_this())) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
      return;
    }
    Pump();
  }

  void StopForShutdown() override {
    CancelWait();
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }

  void OnCancel() override {
    CancelWait();
    FinishOnce(UnaryCall::CancelledStatus(context_));
  }

  void OnDone() override {
    CancelWait();
    streams_.Remove(shared_from_this());
    std::shared_ptr<ReadOutputReactor> keep = self_;
    self_.reset();
  }

  std::shared_ptr<ReadOutputReactor> self_;

 private:
  absl::Status Init(const v1::ReadOutputRequest& r) {
    if (r.process_id().empty()) {
      return InvalidArgument("INVALID_ARGUMENT", "process_id: must not be empty");
    }
    SPINDLE_ASSIGN_OR_RETURN(process::OutputStream stream, StreamFromProto("stream", r.stream()));
    if (r.stdout_offset() < 0 || r.stderr_offset() < 0) {
      return InvalidArgument("INVALID_ARGUMENT",
                             absl::StrCat("stdout_offset/stderr_offset: ", r.stdout_offset(), "/",
                                          r.stderr_offset(), " must be >= 0"));
    }
    if (r.has_tail_bytes() && r.tail_bytes() < 0) {
      return InvalidArgument("INVALID_ARGUMENT",
                             absl::StrCat("tail_bytes: ", r.tail_bytes(), " must be >= 0"));
    }
    if (r.max_bytes() < 0) {
      return InvalidArgument("INVALID_ARGUMENT",
                             absl::StrCat("max_bytes: ", r.max_bytes(), " must be >= 0"));
    }
    if (r.max_chunk_bytes() < 0 || r.max_chunk_bytes() > (1 << 20)) {
      return InvalidArgument(
          "INVALID_ARGUMENT",
          absl::StrCat("max_chunk_bytes: ", r.max_chunk_bytes(), " must be 0 or 1..1048576"));
    }
    SPINDLE_ASSIGN_OR_RETURN(process::ProcessView view, table_.Get(r.process_id()));
    int64_t out = r.stdout_offset();
    int64_t err = r.stderr_offset();
    if (r.has_tail_bytes()) {
      out = std::max(view.status.stdout_dropped_bytes, view.status.stdout_bytes - r.tail_bytes());
      err = std::max(view.status.stderr_dropped_bytes, view.status.stderr_bytes - r.tail_bytes());
    }
    follower_.emplace(table_, r.process_id(), stream, out, err, r.follow(), r.max_bytes(),
                      r.max_chunk_bytes() == 0 ? 65536 : r.max_chunk_bytes());
    return absl::OkStatus();
  }

  void Refill() override {
    auto next = follower_->Poll();
    if (!next.ok()) {
      FinishOnce(ToGrpcStatus(next.status()));
      return;
    }
    v1::ReadOutputResponse response;
    switch (next->kind) {
      case OutputFollower::Next::kChunk:
        ToProto(next->chunk, response.mutable_chunk());
        Send(std::move(response));
        return;
      case OutputFollower::Next::kGap:
        ToProto(next->chunk, response.mutable_gap());
        Send(std::move(response));
        return;
      case OutputFollower::Next::kExited:
        ToProto(next->status, response.mutable_exited());
        Send(std::move(response));
        return;
      case OutputFollower::Next::kEnd:
        FinishOnce(grpc::Status::OK, /*flush=*/true);
        return;
      case OutputFollower::Next::kWait:
        break;
    }
    std::weak_ptr<ReadOutputReactor> weak = weak_from_this();
    auto wait =
        table_.WaitChange(follower_->id(), follower_->offset(process::OutputStream::kStdout),
                          follower_->offset(process::OutputStream::kStderr), [weak]() {
                            if (auto self = weak.lock()) {
                              {
                                absl::MutexLock lock(&self->wait_mu_);
                                self->wait_ = 0;
                              }
                              self->Pump();
                            }
                          });
    if (!wait.ok()) {
      FinishOnce(ToGrpcStatus(wait.status()));
      return;
    }
    if (*wait != 0) {
      absl::MutexLock lock(&wait_mu_);
      wait_ = *wait;
    }
  }

  void CancelWait() {
    uint64_t wait;
    {
      absl::MutexLock lock(&wait_mu_);
      wait = wait_;
      wait_ = 0;
    }
    if (wait != 0 && follower_.has_value()) table_.CancelWaitChange(follower_->id(), wait);
  }

  grpc::CallbackServerContext* const context_;
  process::ProcessTable& table_;
  StreamRegistry& streams_;
  std::optional<OutputFollower> follower_;  // Set in Start; used by Refill only.
  absl::Mutex wait_mu_;
  uint64_t wait_ ABSL_GUARDED_BY(wait_mu_) = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::ReadOutputResponse>* StartReadOutput(
    grpc::CallbackServerContext* context, const v1::ReadOutputRequest& request,
    process::ProcessTable& table, StreamRegistry& streams) {
  auto reactor = std::make_shared<ReadOutputReactor>(context, table, streams);
  reactor->self_ = reactor;
  reactor->Start(request);
  return reactor.get();
}

}  // namespace spindle::services
