#include "services/queue/value_stream_reactor.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/queue/convert.h"
#include "services/queue/reactor_lock.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

class ValueStreamReactor final
    : public grpc::ServerBidiReactor<v1::ValueStreamRequest, v1::ValueStreamResponse> {
 public:
  explicit ValueStreamReactor(ValueServiceImpl& values) : values_(values) {
    auto lock = Locked();
    ReadNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      auto lock = Locked();
      reading_ = false;
      EndLocked(grpc::Status::OK);  // half-close: finish once every answer is written
      return;
    }
    // reading_ stays set while request_ is applied: a write's reaction on another thread must not
    // start the next read into request_ under Apply's feet.
    v1::ValueStreamResponse response = Apply(request_);
    auto lock = Locked();
    reading_ = false;
    if (broken_) {
      return;  // nobody will read the answer; the stream is finishing
    }
    out_.push_back(std::move(response));
    MaybeWrite();
    ReadNext();
  }

  void OnWriteDone(bool ok) override {
    auto lock = Locked();
    writing_ = false;
    if (!ok) {
      broken_ = true;
      EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
      return;
    }
    out_.pop_front();
    MaybeWrite();
    ReadNext();
  }

  void OnCancel() override {
    auto lock = Locked();
    broken_ = true;
    EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled"));
  }

  void OnDone() override { delete this; }

 private:
  v1::ValueStreamResponse Apply(const v1::ValueStreamRequest& request) {
    v1::ValueStreamResponse response;
    response.set_call_id(request.call_id());
    absl::Status status;
    switch (request.operation_case()) {
      case v1::ValueStreamRequest::kGetValue:
        status = values_.Get(request.get_value(), response.mutable_get_value());
        break;
      case v1::ValueStreamRequest::kSetValue:
        status = values_.Set(request.set_value(), response.mutable_set_value());
        break;
      case v1::ValueStreamRequest::kAddToValue:
        status = values_.Add(request.add_to_value(), response.mutable_add_to_value());
        break;
      case v1::ValueStreamRequest::kCompareAndSwapValue:
        status = values_.CompareAndSwap(request.compare_and_swap_value(),
                                        response.mutable_compare_and_swap_value());
        break;
      case v1::ValueStreamRequest::kDeleteValue:
        status = values_.Delete(request.delete_value(), response.mutable_delete_value());
        break;
      case v1::ValueStreamRequest::OPERATION_NOT_SET:
        status = InvalidArgument("MISSING_OPERATION",
                                 absl::StrCat("call ", request.call_id(), " has no operation"));
        break;
    }
    if (!status.ok()) {
      response.clear_result();  // a failed operation may have filled part of it
    }
    ToProtoStatus(status, response.mutable_status());
    return response;
  }

  void ReadNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || end_.has_value() || out_.size() >= kValueStreamMaxUnwritten) {
      return;
    }
    reading_ = true;
    StartRead(&request_);
  }

  void EndLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!end_.has_value()) {
      end_ = std::move(status);
    }
    MaybeWrite();
  }

  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) {
      return;
    }
    if (!out_.empty() && !broken_) {
      writing_ = true;
      StartWrite(&out_.front());
      return;
    }
    if (end_.has_value()) {
      finished_ = true;
      finish_ = *end_;
    }
  }

  // Locks mu_; a finish asked for under it (finish_) runs after the unlock.
  ReactorLock<ValueStreamReactor> Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) {
    return ReactorLock<ValueStreamReactor>(this, &mu_, &finish_);
  }

  ValueServiceImpl& values_;
  // Filled by the one outstanding read; touched by nothing else while reading_ is set.
  v1::ValueStreamRequest request_;

  absl::Mutex mu_;
  std::optional<grpc::Status> finish_;
  // Answers not yet written; the front one is being written while writing_ is set.
  std::deque<v1::ValueStreamResponse> out_ ABSL_GUARDED_BY(mu_);
  // A read is outstanding or the request it filled is being applied.
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<v1::ValueStreamRequest, v1::ValueStreamResponse>* NewValueStreamReactor(
    ValueServiceImpl& values) {
  return new ValueStreamReactor(values);
}

}  // namespace spindle::services
