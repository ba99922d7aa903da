#include "services/queue/consume_reactor.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/queue/convert.h"
#include "services/queue/reactor_lock.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

class ConsumeReactor;

// The engine's view of the stream. Shared with the queue, so it outlives the reactor; after the
// reactor is gone, deliveries that still arrive are given back.
class ConsumeLink final : public queue::StreamConsumer, public StoppableStream {
 public:
  // The link's own lock (no call to finish under it).
  absl::MutexLock Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) { return absl::MutexLock(&mu_); }

  void Attach(ConsumeReactor* reactor) {
    auto lock = Locked();
    reactor_ = reactor;
  }
  void Detach() {
    auto lock = Locked();
    reactor_ = nullptr;
  }
  void Configure(std::shared_ptr<queue::Queue> queue, bool owns_leases) {
    auto lock = Locked();
    queue_ = std::move(queue);
    owns_leases_ = owns_leases;
  }
  void SetId(queue::Queue::WaiterId id) {
    auto lock = Locked();
    id_ = id;
  }
  void StopForShutdown() override;

 protected:
  void OnItems(std::vector<queue::Delivery> items) override;
  void OnEnd(absl::Status status) override;

 private:
  absl::Mutex mu_;
  ConsumeReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<queue::Queue> queue_ ABSL_GUARDED_BY(mu_);
  bool owns_leases_ ABSL_GUARDED_BY(mu_) = false;
  queue::Queue::WaiterId id_ ABSL_GUARDED_BY(mu_) = 0;
};

class ConsumeReactor final
    : public grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse> {
 public:
  ConsumeReactor(queue::QueueRegistry& registry, StreamSet& streams)
      : registry_(registry), streams_(streams), link_(std::make_shared<ConsumeLink>()) {
    link_->Attach(this);
    if (!streams_.Add(link_)) {
      End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
      return;
    }
    StartRead(&request_);
  }

  // From the link: items taken for this stream.
  void Deliver(std::vector<queue::Delivery> items) {
    auto lock = Locked();
    for (size_t at = 0; at < items.size(); at += max_batch_) {
      Out out;
      auto* deliveries = out.message.mutable_deliveries();
      const size_t end = std::min(items.size(), at + max_batch_);
      for (size_t i = at; i < end; ++i) {
        ToProto(items[i], deliveries->add_items());
        if (auto_credit_) {
          delivered_.insert(items[i].receipt);
        }
        out.items.push_back(std::move(items[i]));
      }
      credit_ = std::max<int64_t>(0, credit_ - static_cast<int64_t>(end - at));
      deliveries->set_credit(static_cast<int32_t>(credit_));
      out_.push_back(std::move(out));
    }
    MaybeWrite();
  }

  // Ends the stream once what is queued is written (an error from the queue, shutdown, ...).
  void End(grpc::Status status) {
    auto lock = Locked();
    EndLocked(std::move(status));
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End(grpc::Status::OK);  // the client half-closed (or left: OnCancel says so)
      return;
    }
    grpc::Status status = Handle(request_);
    if (!status.ok()) {
      End(status);
      return;
    }
    auto lock = Locked();
    if (!end_.has_value() && !finished_) {
      StartRead(&request_);  // under the lock: never after the call finished
    }
  }

  void OnWriteDone(bool ok) override {
    auto lock = Locked();
    writing_ = false;
    if (ok) {
      out_.pop_front();
    } else {
      broken_ = true;
      EndLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
    }
    MaybeWrite();
  }

  void OnCancel() override {
    auto lock = Locked();
    broken_ = true;
    end_ = grpc::Status::CANCELLED;
    MaybeWrite();
  }

  void OnDone() override {
    link_->Detach();
    streams_.Remove(link_);
    std::vector<queue::Delivery> unsent;
    {
      auto lock = Locked();
      for (auto& out : out_) {
        for (auto& d : out.items) {
          unsent.push_back(std::move(d));
        }
      }
      out_.clear();
    }
    if (queue_ != nullptr && id_ != 0) {
      queue_->RemoveConsumer(id_);
      if (options_.mode == queue::GetMode::kTake) {
        if (!unsent.empty()) {
          queue_->Requeue(std::move(unsent));
        }
      } else if (options_.session_id.empty()) {
        queue_->ReleaseOwner(queue::Queue::StreamOwner(id_));
      }
    }
    delete this;
  }

 private:
  struct Out {
    v1::ConsumeResponse message;
    std::vector<queue::Delivery> items;
  };

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
      StartWrite(&out_.front().message);
      return;
    }
    if (end_.has_value()) {
      finished_ = true;
      finish_ = *end_;
    }
  }

  grpc::Status Handle(const v1::ConsumeRequest& request) {
    switch (request.message_case()) {
      case v1::ConsumeRequest::kStart:
        return HandleStart(request.start());
      case v1::ConsumeRequest::kCredit:
        return HandleCredit(request.credit());
      case v1::ConsumeRequest::kAck:
      case v1::ConsumeRequest::kNack:
      case v1::ConsumeRequest::kExtend:
        return HandleSettle(request);
      default:
        return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT",
                         "ConsumeRequest has no message set");
    }
  }

  grpc::Status HandleStart(const v1::ConsumeRequest::Start& start) {
    if (queue_ != nullptr) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "START_TWICE",
                       "start was already sent on this stream");
    }
    auto prepare = [&]() -> absl::StatusOr<std::shared_ptr<queue::Queue>> {
      SPINDLE_RETURN_IF_ERROR(ValidateName("start.queue", start.queue()));
      SPINDLE_RETURN_IF_ERROR(CheckRange("start.credit", start.credit(), 0, 100000));
      SPINDLE_RETURN_IF_ERROR(CheckRange("start.max_batch", start.max_batch(), 0, 1000));
      SPINDLE_ASSIGN_OR_RETURN(options_,
                               GetOptionsFromProto(start.mode(), start.visibility_timeout_ms(),
                                                   start.session_id(), "start."));
      if (start.auto_credit() && options_.mode != queue::GetMode::kLease) {
        return InvalidArgument("LEASE_ONLY", "start.auto_credit applies to LEASE mode only");
      }
      return registry_.FindOrCreate(start.queue());
    };
    auto queue = prepare();
    if (!queue.ok()) {
      return ToGrpcStatus(queue.status());
    }
    queue_ = *queue;
    link_->Configure(queue_,
                     options_.mode == queue::GetMode::kLease && options_.session_id.empty());
    {
      auto lock = Locked();
      max_batch_ = start.max_batch() == 0 ? 100 : start.max_batch();
      auto_credit_ = start.auto_credit();
      credit_ = start.credit();
      Out out;
      ToProto(queue_->Describe(), out.message.mutable_started()->mutable_queue());
      out_.push_back(std::move(out));
      MaybeWrite();
    }
    auto id = queue_->AddConsumer(link_, options_, start.credit());
    if (!id.ok()) {
      return ToGrpcStatus(id.status());
    }
    id_ = *id;
    link_->SetId(id_);
    return grpc::Status::OK;
  }

  grpc::Status HandleCredit(const v1::ConsumeRequest::Credit& credit) {
    if (queue_ == nullptr) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "START_FIRST",
                       "the first message of Consume must be start");
    }
    if (absl::Status s = CheckRange("credit.items", credit.items(), 1, 100000); !s.ok()) {
      return ToGrpcStatus(s);
    }
    {
      auto lock = Locked();
      credit_ = std::min<int64_t>(credit_ + credit.items(), queue::Queue::kMaxCredit);
    }
    queue_->AddCredit(id_, credit.items());
    return grpc::Status::OK;
  }

  grpc::Status HandleSettle(const v1::ConsumeRequest& request) {
    if (queue_ == nullptr) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "START_FIRST",
                       "the first message of Consume must be start");
    }
    if (options_.mode != queue::GetMode::kLease) {
      return GrpcError(grpc::StatusCode::INVALID_ARGUMENT, "LEASE_ONLY",
                       "ack, nack and extend apply to a LEASE consumer only");
    }
    const v1::ConsumeRequest::Settle& settle = request.has_ack()    ? request.ack()
                                               : request.has_nack() ? request.nack()
                                                                    : request.extend();
    if (absl::Status s = ValidateReceipts(settle.receipts()); !s.ok()) {
      return ToGrpcStatus(s);
    }
    std::vector<std::string> receipts(settle.receipts().begin(), settle.receipts().end());
    absl::StatusOr<std::vector<queue::ReceiptResult>> results;
    if (request.has_ack()) {
      results = queue_->Ack(receipts);
    } else if (request.has_nack()) {
      if (absl::Status s = CheckRange("nack.delay_ms", settle.delay_ms(), 0, 43'200'000); !s.ok()) {
        return ToGrpcStatus(s);
      }
      results = queue_->Nack(receipts, absl::Milliseconds(settle.delay_ms()), settle.dead_letter());
    } else {
      int64_t timeout_ms = settle.visibility_timeout_ms();
      if (timeout_ms != 0) {
        if (absl::Status s =
                CheckRange("extend.visibility_timeout_ms", timeout_ms, 100, 43'200'000);
            !s.ok()) {
          return ToGrpcStatus(s);
        }
      }
      results = queue_->Extend(
          receipts, timeout_ms != 0 ? absl::Milliseconds(timeout_ms) : options_.visibility_timeout);
    }
    if (!results.ok()) {
      return ToGrpcStatus(results.status());
    }
    int64_t returned = 0;
    {
      auto lock = Locked();
      Out out;
      auto* settled = out.message.mutable_settled();
      settled->set_correlation_id(settle.correlation_id());
      for (const auto& result : *results) {
        ToProto(result, settled->add_results());
        if (auto_credit_ && !request.has_extend() && result.status.ok() &&
            delivered_.erase(result.receipt) > 0) {
          ++returned;
        }
      }
      if (returned > 0) {
        credit_ = std::min<int64_t>(credit_ + returned, queue::Queue::kMaxCredit);
      }
      out_.push_back(std::move(out));
      MaybeWrite();
    }
    if (returned > 0) {
      queue_->AddCredit(id_, returned);
    }
    return grpc::Status::OK;
  }

  queue::QueueRegistry& registry_;
  StreamSet& streams_;
  const std::shared_ptr<ConsumeLink> link_;
  v1::ConsumeRequest request_;
  // Set by the start message (reads are sequential, so only reactions on the read side touch
  // these, and OnDone runs after every reaction).
  std::shared_ptr<queue::Queue> queue_;
  queue::GetOptions options_;
  queue::Queue::WaiterId id_ = 0;

  // Locks mu_; a finish asked for under it (finish_) runs after the unlock.
  ReactorLock<ConsumeReactor> Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) {
    return ReactorLock<ConsumeReactor>(this, &mu_, &finish_);
  }

  absl::Mutex mu_;
  std::optional<grpc::Status> finish_;
  std::deque<Out> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  size_t max_batch_ ABSL_GUARDED_BY(mu_) = 100;
  bool auto_credit_ ABSL_GUARDED_BY(mu_) = false;
  int64_t credit_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<std::string> delivered_ ABSL_GUARDED_BY(mu_);
};

void ConsumeLink::OnItems(std::vector<queue::Delivery> items) {
  std::shared_ptr<queue::Queue> queue;
  bool owns_leases;
  queue::Queue::WaiterId id;
  {
    auto lock = Locked();
    if (reactor_ != nullptr) {
      reactor_->Deliver(std::move(items));
      return;
    }
    queue = queue_;
    owns_leases = owns_leases_;
    id = id_;
  }
  // The stream is gone: give the items back.
  if (queue == nullptr || items.empty()) {
    return;
  }
  if (items.front().receipt.empty()) {
    queue->Requeue(std::move(items));
  } else if (owns_leases && id != 0) {
    queue->ReleaseOwner(queue::Queue::StreamOwner(id));
  }
}

void ConsumeLink::OnEnd(absl::Status status) {
  auto lock = Locked();
  if (reactor_ != nullptr) {
    reactor_->End(ToGrpcStatus(status));
  }
}

void ConsumeLink::StopForShutdown() {
  auto lock = Locked();
  if (reactor_ != nullptr) {
    reactor_->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }
}

}  // namespace

grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* NewConsumeReactor(
    grpc::CallbackServerContext* context, queue::QueueRegistry& registry, StreamSet& streams) {
  return new ConsumeReactor(registry, streams);
}

}  // namespace spindle::services
