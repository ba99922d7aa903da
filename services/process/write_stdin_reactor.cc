#include "services/process/write_stdin_reactor.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/process/unary_call.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr size_t kMaxStdinMessage = 4 << 20;

class WriteStdinReactor final : public grpc::ServerReadReactor<v1::WriteStdinRequest>,
                                public std::enable_shared_from_this<WriteStdinReactor> {
 public:
  WriteStdinReactor(grpc::CallbackServerContext* context, v1::WriteStdinResponse* response,
                    process::ProcessTable& table)
      : context_(context), response_(response), table_(table) {}

  void Start() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client ended its stream without `close`: stdin stays open.
      FinishOnce(grpc::Status::OK);
      return;
    }
    if (id_.empty()) {
      if (request_.process_id().empty()) {
        FinishOnce(GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                             "process_id: required in the first message"));
        return;
      }
      id_ = request_.process_id();
      auto lease = table_.AcquireStdin(id_);
      if (!lease.ok()) {
        FinishOnce(ToGrpcStatus(lease.status()));
        return;
      }
      absl::MutexLock lock(&mu_);
      lease_ = *lease;
    } else if (!request_.process_id().empty() && request_.process_id() != id_) {
      FinishOnce(GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                           absl::StrCat("process_id: '", request_.process_id(),
                                        "' differs from the stream's process '", id_, "'")));
      return;
    }
    if (request_.data().size() > kMaxStdinMessage) {
      FinishOnce(
          GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                    absl::StrCat("data: ", request_.data().size(), " bytes is more than 4 MiB")));
      return;
    }
    if (request_.has_offset() && request_.offset() < 0) {
      FinishOnce(GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                           absl::StrCat("offset: ", request_.offset(), " must be >= 0")));
      return;
    }
    uint64_t lease;
    {
      absl::MutexLock lock(&mu_);
      lease = lease_;
    }
    bool close = request_.close();
    std::optional<int64_t> offset;
    if (request_.has_offset()) offset = request_.offset();
    int64_t size = static_cast<int64_t>(request_.data().size());
    std::shared_ptr<WriteStdinReactor> self = shared_from_this();
    table_.WriteStdin(id_, lease, std::move(*request_.mutable_data()), offset, close,
                      [self, close, size](absl::StatusOr<int64_t> position) {
                        self->OnWritten(position, close, size);
                      });
  }

  void OnCancel() override { FinishOnce(UnaryCall::CancelledStatus(context_)); }

  void OnDone() override {
    uint64_t lease;
    {
      absl::MutexLock lock(&mu_);
      lease = lease_;
    }
    if (lease != 0) table_.ReleaseStdin(id_, lease);
    std::shared_ptr<WriteStdinReactor> keep = self_;
    self_.reset();
  }

  std::shared_ptr<WriteStdinReactor> self_;

 private:
  void OnWritten(const absl::StatusOr<int64_t>& position, bool close, int64_t size) {
    if (!position.ok()) {
      FinishOnce(ToGrpcStatus(position.status()));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      written_ += size;
      offset_ = *position;
      closed_ = close;
    }
    if (close) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    StartRead(&request_);
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (status.ok()) {
        response_->set_bytes_written(written_);
        response_->set_stdin_offset(offset_);
        response_->set_closed(closed_);
      }
    }
    Finish(status);
  }

  grpc::CallbackServerContext* const context_;
  v1::WriteStdinResponse* const response_;
  process::ProcessTable& table_;
  v1::WriteStdinRequest request_;
  std::string id_;  // Set by the first message; read by later reads only.
  absl::Mutex mu_;
  uint64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t written_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerReadReactor<v1::WriteStdinRequest>* StartWriteStdin(
    grpc::CallbackServerContext* context, v1::WriteStdinResponse* response,
    process::ProcessTable& table) {
  auto reactor = std::make_shared<WriteStdinReactor>(context, response, table);
  reactor->self_ = reactor;
  reactor->Start();
  return reactor.get();
}

}  // namespace spindle::services
