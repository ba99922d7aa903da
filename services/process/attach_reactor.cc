#include "services/process/attach_reactor.h"

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/process/convert.h"
#include "services/process/output_follower.h"
#include "services/process/queued_writer.h"
#include "services/process/unary_call.h"
#include "spindle/common/status.h"
#include "spindle/process/signals.h"

namespace spindle::services {
namespace {

using Base = QueuedWriter<grpc::ServerBidiReactor<v1::AttachRequest, v1::AttachResponse>,
                          v1::AttachResponse>;

grpc::Status Invalid(absl::string_view message) {
  return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT", message);
}

class AttachReactor final : public Base,
                            public ProcessStream,
                            public std::enable_shared_from_this<AttachReactor> {
 public:
  AttachReactor(grpc::CallbackServerContext* context, process::ProcessTable& table,
                StreamRegistry& streams, std::string identity)
      : context_(context), table_(table), streams_(streams), identity_(std::move(identity)) {}

  void Start() {
    if (!streams_.Add(shared_from_this())) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Half-close: closes stdin when this stream holds it; output keeps flowing until exit.
      uint64_t lease = Lease();
      if (lease != 0) (void)table_.CloseStdin(id_, lease);
      return;
    }
    grpc::Status status = id_.empty() ? Open() : Apply();
    if (!status.ok()) {
      FinishOnce(status);
    }
  }

  void StopForShutdown() override {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }

  void OnCancel() override {
    KillIfOwned();
    FinishOnce(UnaryCall::CancelledStatus(context_));
  }

  void OnDone() override {
    KillIfOwned();
    CancelWait();
    uint64_t lease = Lease();
    if (lease != 0) table_.ReleaseStdin(id_, lease);
    streams_.Remove(shared_from_this());
    std::shared_ptr<AttachReactor> keep = self_;
    self_.reset();
  }

  std::shared_ptr<AttachReactor> self_;

 private:
  grpc::Status Open() {
    if (request_.action_case() != v1::AttachRequest::kOpen) {
      return Invalid("the first message must be `open`");
    }
    const v1::AttachOpen& open = request_.open();
    if (open.max_chunk_bytes() < 0 || open.max_chunk_bytes() > (1 << 20)) {
      return Invalid(absl::StrCat("open.max_chunk_bytes: ", open.max_chunk_bytes(),
                                  " must be 0 or 1..1048576"));
    }
    if ((open.has_stdout_offset() && open.stdout_offset() < 0) ||
        (open.has_stderr_offset() && open.stderr_offset() < 0)) {
      return Invalid("open.stdout_offset/stderr_offset: must be >= 0");
    }
    auto stream = StreamFromProto("open.stream", open.stream());
    if (!stream.ok()) return ToGrpcStatus(stream.status());
    process::ProcessView view;
    bool spawned = false;
    if (open.target_case() == v1::AttachOpen::kSpawn) {
      auto spec = FromProto(open.spawn());
      if (!spec.ok()) return ToGrpcStatus(spec.status());
      auto started = table_.Spawn(*std::move(spec), open.request_id(), identity_);
      if (!started.ok()) return ToGrpcStatus(started.status());
      view = *std::move(started);
      spawned = true;
    } else if (open.target_case() == v1::AttachOpen::kProcessId) {
      auto found = table_.Get(open.process_id());
      if (!found.ok()) return ToGrpcStatus(found.status());
      view = *std::move(found);
    } else {
      return Invalid("open: exactly one of process_id or spawn is required");
    }
    id_ = view.id;
    {
      absl::MutexLock lock(&mu_);
      owned_ = spawned && view.spec.session_id.empty();
    }
    if (open.attach_stdin()) {
      auto lease = table_.AcquireStdin(id_);
      if (!lease.ok()) return ToGrpcStatus(lease.status());
      absl::MutexLock lock(&mu_);
      lease_ = *lease;
    }
    int64_t out = open.has_stdout_offset() ? open.stdout_offset()
                  : spawned                ? 0
                                           : view.status.stdout_bytes;
    int64_t err = open.has_stderr_offset() ? open.stderr_offset()
                  : spawned                ? 0
                                           : view.status.stderr_bytes;
    follower_.emplace(table_, id_, *stream, out, err, /*follow=*/true, 0,
                      open.max_chunk_bytes() == 0 ? 65536 : open.max_chunk_bytes());
    v1::AttachResponse started;
    ToProto(view, started.mutable_started());
    Send(std::move(started));
    StartRead(&request_);
    return grpc::Status::OK;
  }

  grpc::Status Apply() {
    uint64_t lease = Lease();
    switch (request_.action_case()) {
      case v1::AttachRequest::kOpen:
        return Invalid("`open` is only valid as the first message");
      case v1::AttachRequest::kStdinData: {
        if (lease == 0) return Invalid("stdin_data: the stream was opened without attach_stdin");
        if (request_.stdin_data().size() > (4u << 20)) {
          return Invalid("stdin_data: more than 4 MiB");
        }
        std::shared_ptr<AttachReactor> self = shared_from_this();
        table_.WriteStdin(id_, lease, std::move(*request_.mutable_stdin_data()), std::nullopt,
                          false, [self](absl::StatusOr<int64_t> position) {
                            if (!position.ok()) {
                              self->FinishOnce(ToGrpcStatus(position.status()));
                              return;
                            }
                            self->StartRead(&self->request_);
                          });
        return grpc::Status::OK;
      }
      case v1::AttachRequest::kCloseStdin: {
        if (lease == 0) return Invalid("close_stdin: the stream was opened without attach_stdin");
        auto closed = table_.CloseStdin(id_, lease);
        if (!closed.ok()) return ToGrpcStatus(closed.status());
        break;
      }
      case v1::AttachRequest::kSignal: {
        auto spec = SignalFromProto("signal", request_.signal());
        if (!spec.ok()) return ToGrpcStatus(spec.status());
        auto number = process::ResolveSignal("signal", *spec);
        if (!number.ok()) return ToGrpcStatus(number.status());
        auto delivered = table_.Signal(id_, *number, process::SignalTarget::kProcess);
        if (!delivered.ok()) return ToGrpcStatus(delivered.status());
        break;
      }
      case v1::AttachRequest::kResize: {
        const auto& size = request_.resize();
        if (size.rows() < 1 || size.rows() > 65535 || size.cols() < 1 || size.cols() > 65535) {
          return Invalid("resize: rows and cols must be 1..65535");
        }
        absl::Status resized =
            table_.Resize(id_, static_cast<int>(size.rows()), static_cast<int>(size.cols()));
        if (!resized.ok()) return ToGrpcStatus(resized);
        break;
      }
      default:
        return Invalid("empty message");
    }
    StartRead(&request_);
    return grpc::Status::OK;
  }

  void Refill() override {
    if (!follower_.has_value()) return;  // Not opened yet: Open() sends `started` first.
    auto next = follower_->Poll();
    if (!next.ok()) {
      FinishOnce(ToGrpcStatus(next.status()));
      return;
    }
    v1::AttachResponse response;
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
        {
          absl::MutexLock lock(&mu_);
          owned_ = false;
        }
        FinishOnce(grpc::Status::OK, /*flush=*/true);
        return;
      case OutputFollower::Next::kEnd:
        FinishOnce(grpc::Status::OK, /*flush=*/true);
        return;
      case OutputFollower::Next::kWait:
        break;
    }
    std::weak_ptr<AttachReactor> weak = weak_from_this();
    auto wait = table_.WaitChange(id_, follower_->offset(process::OutputStream::kStdout),
                                  follower_->offset(process::OutputStream::kStderr), [weak]() {
                                    if (auto self = weak.lock()) self->Pump();
                                  });
    if (!wait.ok()) {
      FinishOnce(ToGrpcStatus(wait.status()));
      return;
    }
    absl::MutexLock lock(&mu_);
    wait_ = *wait;
  }

  uint64_t Lease() {
    absl::MutexLock lock(&mu_);
    return lease_;
  }

  void CancelWait() {
    uint64_t wait;
    {
      absl::MutexLock lock(&mu_);
      wait = std::exchange(wait_, 0);
    }
    if (wait != 0) table_.CancelWaitChange(id_, wait);
  }

  void KillIfOwned() {
    bool owned;
    {
      absl::MutexLock lock(&mu_);
      owned = std::exchange(owned_, false);
    }
    if (owned) {
      (void)table_.Terminate(id_, 0, std::nullopt, process::ExitReason::kCallerGone);
    }
  }

  grpc::CallbackServerContext* const context_;
  process::ProcessTable& table_;
  StreamRegistry& streams_;
  const std::string identity_;  // Who the call comes from, for a spawn.
  v1::AttachRequest request_;
  std::string id_;  // Set by Open (reads are sequential).
  std::optional<OutputFollower> follower_;
  absl::Mutex mu_;
  bool owned_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t wait_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

grpc::ServerBidiReactor<v1::AttachRequest, v1::AttachResponse>* StartAttach(
    grpc::CallbackServerContext* context, process::ProcessTable& table, StreamRegistry& streams,
    std::string identity) {
  auto reactor = std::make_shared<AttachReactor>(context, table, streams, std::move(identity));
  reactor->self_ = reactor;
  reactor->Start();
  return reactor.get();
}

}  // namespace spindle::services
