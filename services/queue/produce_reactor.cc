#include "services/queue/produce_reactor.h"

#include <deque>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/queue/convert.h"
#include "services/queue/reactor_lock.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr size_t kMaxUnanswered = 64;

class ProduceReactor final
    : public grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse> {
 public:
  ProduceReactor(grpc::CallbackServerContext* context, queue::QueueRegistry& registry,
                 TimerService& timers)
      : registry_(registry), deadline_(WaitDeadline(*context)) {
    auto lock = Locked();
    ReadNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      auto lock = Locked();
      reading_ = false;
      EndLocked(grpc::Status::OK);  // half-close: finish once every batch is answered
      return;
    }
    // reading_ stays set while request_ is handled: an OnWriteDone or a put's callback on another
    // thread must not start the next read into request_ under Handle's feet.
    grpc::Status status = Handle();
    auto lock = Locked();
    reading_ = false;
    if (!status.ok()) {
      EndLocked(status);
      return;
    }
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
    queue::Queue::WaiterId id;
    {
      auto lock = Locked();
      broken_ = true;
      end_ = grpc::Status::CANCELLED;
      id = waiter_;
    }
    if (id != 0 && queue_->CancelPut(id)) {
      auto lock = Locked();
      put_pending_ = false;
      waiter_ = 0;
      MaybeWrite();
    } else {
      auto lock = Locked();
      MaybeWrite();
    }
  }

  void OnDone() override { delete this; }

 private:
  grpc::Status Handle() {
    if (request_.has_start()) {
      if (queue_ != nullptr) {
        return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "START_TWICE",
                         "start was already sent on this stream");
      }
      if (absl::Status s = ValidateName("start.queue", request_.start().queue()); !s.ok()) {
        return ToGrpcStatus(s);
      }
      auto queue = registry_.FindOrCreate(request_.start().queue());
      if (!queue.ok()) {
        return ToGrpcStatus(queue.status());
      }
      queue_ = *queue;
      wait_ = request_.start().wait();
      return grpc::Status::OK;
    }
    if (!request_.has_batch()) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                       "ProduceRequest has no message set");
    }
    if (queue_ == nullptr) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "START_FIRST",
                       "the first message of Produce must be start");
    }
    const uint64_t correlation = request_.batch().correlation_id();
    absl::Status valid = ValidateRequestId(request_.batch().request_id());
    auto items = FromProto(request_.batch().items(), "batch.items");
    if (valid.ok() && !items.ok()) {
      valid = items.status();
    }
    if (!valid.ok()) {
      auto lock = Locked();
      Answer(correlation, valid);
      return grpc::Status::OK;
    }
    {
      auto lock = Locked();
      put_pending_ = true;
    }
    queue::Queue::WaitBound bound;
    bound.wait = wait_;
    bound.until = deadline_;
    bound.status = DeadlineExceeded("the call's deadline passed while waiting for room");
    queue::Queue::WaiterId id =
        queue_->Put(std::move(*items), request_.batch().request_id(), bound,
                    [this, correlation](absl::StatusOr<queue::PutResult> result) {
                      auto lock = Locked();
                      put_pending_ = false;
                      waiter_ = 0;
                      if (result.ok()) {
                        v1::ProduceResponse response;
                        response.set_correlation_id(correlation);
                        response.mutable_status()->set_code(0);
                        for (auto& item_id : result->item_ids) {
                          response.add_item_ids(std::move(item_id));
                        }
                        for (int32_t index : result->duplicate_indexes) {
                          response.add_duplicate_indexes(index);
                        }
                        out_.push_back(std::move(response));
                        MaybeWrite();
                      } else {
                        Answer(correlation, result.status());
                        const std::string reason = Reason(result.status());
                        if (reason == "QUEUE_CLOSED" || reason == "QUEUE_DELETED" ||
                            result.status().code() == absl::StatusCode::kDeadlineExceeded) {
                          EndLocked(ToGrpcStatus(result.status()));
                          return;
                        }
                      }
                      ReadNext();
                    });
    auto lock = Locked();
    if (put_pending_) {
      waiter_ = id;
    }
    return grpc::Status::OK;
  }

  void Answer(uint64_t correlation, const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    v1::ProduceResponse response;
    response.set_correlation_id(correlation);
    ToProtoStatus(status, response.mutable_status());
    out_.push_back(std::move(response));
    MaybeWrite();
  }

  void ReadNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || put_pending_ || end_.has_value() || out_.size() >= kMaxUnanswered) {
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
    if (end_.has_value() && !put_pending_) {
      finished_ = true;
      finish_ = *end_;
    }
  }

  queue::QueueRegistry& registry_;
  const absl::Time deadline_;
  // Touched only by the read side (one read at a time) before the put starts.
  v1::ProduceRequest request_;
  std::shared_ptr<queue::Queue> queue_;
  bool wait_ = false;

  // Locks mu_; a finish asked for under it (finish_) runs after the unlock.
  ReactorLock<ProduceReactor> Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) {
    return ReactorLock<ProduceReactor>(this, &mu_, &finish_);
  }

  absl::Mutex mu_;
  std::optional<grpc::Status> finish_;
  std::deque<v1::ProduceResponse> out_ ABSL_GUARDED_BY(mu_);
  // A read is outstanding or the request it filled is being handled.
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool put_pending_ ABSL_GUARDED_BY(mu_) = false;
  queue::Queue::WaiterId waiter_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* NewProduceReactor(
    grpc::CallbackServerContext* context, queue::QueueRegistry& registry, TimerService& timers) {
  return new ProduceReactor(context, registry, timers);
}

}  // namespace spindle::services
