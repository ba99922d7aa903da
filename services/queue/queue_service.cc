#include "services/queue/queue_service.h"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/queue/consume_reactor.h"
#include "services/queue/convert.h"
#include "services/queue/produce_reactor.h"
#include "spindle/common/labels.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// A unary call that may wait in the engine. Exactly one of the engine's callback and a
// successful cancel of the waiter ends it; the call is never finished before Start() returns
// (after Finish the reactor may be deleted at once, on another thread).
class WaitingUnaryReactor : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override {
    queue::Queue::WaiterId id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = starting_ ? 0 : id_;
    }
    if (id != 0 && cancel_ && cancel_(id)) {
      Finish(grpc::Status::CANCELLED);
    }
  }
  void OnDone() override { delete this; }
  // Every reaction here is short and takes no engine lock that a caller of Finish() may hold (the
  // queue calls back without its locks), so gRPC may run them inline as it does for its default
  // reactor, instead of handing each call's OnDone to an executor thread (a thread hop per call).
  bool InternalInlineable() override { return true; }

 protected:
  // Ends Start(): finishes an answer that came inline, or cancels a waiter whose call left.
  template <typename Cancel>
  void FinishStart(queue::Queue::WaiterId id, Cancel cancel) {
    std::optional<grpc::Status> finish;
    bool cancel_now = false;
    {
      absl::MutexLock lock(&mu_);
      starting_ = false;
      id_ = id;
      cancel_ = cancel;
      finish = std::move(early_);
      cancel_now = !finish.has_value() && cancelled_ && id != 0;
    }
    if (finish.has_value()) {
      Finish(*finish);
    } else if (cancel_now && cancel(id)) {
      Finish(grpc::Status::CANCELLED);
    }
  }
  // The engine's answer is ready: finish now, or when Start() returns.
  void Done(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (starting_) {
        early_ = std::move(status);
        return;
      }
    }
    Finish(status);
  }
  bool Cancelled() {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }

 private:
  absl::Mutex mu_;
  bool starting_ ABSL_GUARDED_BY(mu_) = true;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  queue::Queue::WaiterId id_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<bool(queue::Queue::WaiterId)> cancel_;  // set once, before id_ is visible
  std::optional<grpc::Status> early_ ABSL_GUARDED_BY(mu_);
};

class PutItemsReactor final : public WaitingUnaryReactor {
 public:
  PutItemsReactor(std::shared_ptr<queue::Queue> queue, v1::PutItemsResponse* response)
      : queue_(std::move(queue)), response_(response) {}

  void Start(std::vector<queue::PutItem> items, const std::string& request_id,
             const queue::Queue::WaitBound& bound) {
    queue::Queue::WaiterId id = queue_->Put(
        std::move(items), request_id, bound,
        [this](absl::StatusOr<queue::PutResult> result) { Complete(std::move(result)); });
    FinishStart(id, [this](queue::Queue::WaiterId waiter) { return queue_->CancelPut(waiter); });
  }

 private:
  void Complete(absl::StatusOr<queue::PutResult> result) {
    if (!result.ok()) {
      Done(ToGrpcStatus(result.status()));
      return;
    }
    response_->set_enqueued(result->enqueued);
    for (auto& id : result->item_ids) {
      response_->add_item_ids(std::move(id));
    }
    for (int32_t index : result->duplicate_indexes) {
      response_->add_duplicate_indexes(index);
    }
    Done(grpc::Status::OK);
  }

  const std::shared_ptr<queue::Queue> queue_;
  v1::PutItemsResponse* const response_;
};

// A GetItems call that may wait for an item. Items handed to a call that was cancelled in the
// meantime go back (TAKE: to the head; LEASE: nacked), so a cancelled get takes nothing.
class GetItemsReactor final : public WaitingUnaryReactor {
 public:
  GetItemsReactor(std::shared_ptr<queue::Queue> queue, v1::GetItemsResponse* response)
      : queue_(std::move(queue)), response_(response) {}

  void Start(const queue::GetOptions& options, const queue::Queue::WaitBound& bound) {
    options_ = options;
    queue::Queue::WaiterId id =
        queue_->Get(options, bound, [this](absl::StatusOr<std::vector<queue::Delivery>> result) {
          Complete(std::move(result));
        });
    FinishStart(id, [this](queue::Queue::WaiterId waiter) { return queue_->CancelGet(waiter); });
  }

 private:
  void Complete(absl::StatusOr<std::vector<queue::Delivery>> result) {
    if (!result.ok()) {
      Done(ToGrpcStatus(result.status()));
      return;
    }
    if (Cancelled() && !result->empty()) {
      GiveBack(std::move(*result));
      Done(grpc::Status::CANCELLED);
      return;
    }
    for (const auto& delivery : *result) {
      ToProto(delivery, response_->add_items());
    }
    response_->set_closed(queue_->IsClosed());
    Done(grpc::Status::OK);
  }

  void GiveBack(std::vector<queue::Delivery> deliveries) {
    // Forgotten first: a retry arriving meanwhile takes afresh and never gets these as well.
    queue_->ForgetGet(options_);
    if (deliveries.front().receipt.empty()) {
      queue_->Requeue(std::move(deliveries));
      return;
    }
    std::vector<std::string> receipts;
    for (const auto& d : deliveries) {
      receipts.push_back(d.receipt);
    }
    (void)queue_->Nack(receipts, absl::ZeroDuration(), false);
  }

  const std::shared_ptr<queue::Queue> queue_;
  v1::GetItemsResponse* const response_;
  queue::GetOptions options_;
};

std::map<std::string, std::string> Labels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  return std::map<std::string, std::string>(labels.begin(), labels.end());
}

}  // namespace

QueueServiceImpl::QueueServiceImpl(queue::QueueRegistry& registry, TimerService& timers,
                                   StreamSet& streams, int64_t max_message_bytes)
    : registry_(registry),
      timers_(timers),
      streams_(streams),
      max_message_bytes_(max_message_bytes) {}

grpc::ServerUnaryReactor* QueueServiceImpl::CreateQueue(grpc::CallbackServerContext* context,
                                                        const v1::CreateQueueRequest* request,
                                                        v1::CreateQueueResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    spindle::Labels labels = Labels(request->labels());
    SPINDLE_RETURN_IF_ERROR(ValidateLabels("labels", labels));
    SPINDLE_ASSIGN_OR_RETURN(queue::QueueConfig config, FromProto(request->config()));
    SPINDLE_ASSIGN_OR_RETURN(auto created, registry_.Create(request->name(), config, labels));
    ToProto(created.queue->Describe(), response->mutable_queue());
    response->set_created(created.created);
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::DeleteQueue(grpc::CallbackServerContext* context,
                                                        const v1::DeleteQueueRequest* request,
                                                        v1::DeleteQueueResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    SPINDLE_ASSIGN_OR_RETURN(int64_t dropped,
                             registry_.Delete(request->name(), request->if_empty()));
    response->set_dropped_items(dropped);
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::PurgeQueue(grpc::CallbackServerContext* context,
                                                       const v1::PurgeQueueRequest* request,
                                                       v1::PurgeQueueResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    SPINDLE_ASSIGN_OR_RETURN(auto queue, registry_.Find(request->name()));
    SPINDLE_ASSIGN_OR_RETURN(int64_t purged, queue->Purge(request->include_in_flight()));
    response->set_purged(purged);
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::CloseQueue(grpc::CallbackServerContext* context,
                                                       const v1::CloseQueueRequest* request,
                                                       v1::CloseQueueResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    SPINDLE_ASSIGN_OR_RETURN(auto queue, registry_.Find(request->name()));
    SPINDLE_ASSIGN_OR_RETURN(int32_t failed, queue->Close());
    response->set_failed_producers(failed);
    ToProto(queue->Describe(), response->mutable_queue());
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::DescribeQueue(grpc::CallbackServerContext* context,
                                                          const v1::DescribeQueueRequest* request,
                                                          v1::DescribeQueueResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidateName("name", request->name()));
    SPINDLE_ASSIGN_OR_RETURN(auto queue, registry_.Find(request->name()));
    ToProto(queue->Describe(), response->mutable_queue());
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::ListQueues(grpc::CallbackServerContext* context,
                                                       const v1::ListQueuesRequest* request,
                                                       v1::ListQueuesResponse* response) {
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidatePrefix("prefix", request->prefix()));
    spindle::Labels labels = Labels(request->labels());
    SPINDLE_RETURN_IF_ERROR(ValidateLabels("labels", labels));
    SPINDLE_ASSIGN_OR_RETURN(
        auto page,
        registry_.List(request->prefix(), labels, request->page_size(), request->page_token()));
    for (const auto& queue : page.queues) {
      ToProto(queue->Describe(), response->add_queues());
    }
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerUnaryReactor* QueueServiceImpl::PutItems(grpc::CallbackServerContext* context,
                                                     const v1::PutItemsRequest* request,
                                                     v1::PutItemsResponse* response) {
  auto prepare = [&]() -> absl::StatusOr<std::shared_ptr<queue::Queue>> {
    SPINDLE_RETURN_IF_ERROR(ValidateName("queue", request->queue()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    SPINDLE_RETURN_IF_ERROR(CheckRange("max_wait_ms", request->max_wait_ms(), 0, 86'400'000));
    return registry_.FindOrCreate(request->queue());
  };
  // Items first: a malformed request must not auto-create the queue.
  auto items = FromProto(request->items(), "items");
  if (!items.ok()) {
    return FinishWith(context, items.status());
  }
  auto queue = prepare();
  if (!queue.ok()) {
    return FinishWith(context, queue.status());
  }
  auto* reactor = new PutItemsReactor(*queue, response);
  reactor->Start(std::move(*items), request->request_id(),
                 MakeWaitBound(request->wait(), request->max_wait_ms(), WaitDeadline(*context),
                               timers_.Now()));
  return reactor;
}

grpc::ServerUnaryReactor* QueueServiceImpl::GetItems(grpc::CallbackServerContext* context,
                                                     const v1::GetItemsRequest* request,
                                                     v1::GetItemsResponse* response) {
  auto prepare = [&]() -> absl::StatusOr<std::shared_ptr<queue::Queue>> {
    SPINDLE_RETURN_IF_ERROR(ValidateName("queue", request->queue()));
    SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request->request_id()));
    SPINDLE_RETURN_IF_ERROR(CheckRange("max_items", request->max_items(), 0, 1000));
    SPINDLE_RETURN_IF_ERROR(CheckRange("max_bytes", request->max_bytes(), 0, INT64_MAX));
    SPINDLE_RETURN_IF_ERROR(CheckRange("max_wait_ms", request->max_wait_ms(), 0, 86'400'000));
    return registry_.FindOrCreate(request->queue());
  };
  auto options = GetOptionsFromProto(request->mode(), request->visibility_timeout_ms(),
                                     request->session_id(), "");
  if (!options.ok()) {
    return FinishWith(context, options.status());
  }
  auto queue = prepare();
  if (!queue.ok()) {
    return FinishWith(context, queue.status());
  }
  options->max_items = request->max_items() == 0 ? 1 : request->max_items();
  options->request_id = request->request_id();
  options->max_bytes = request->max_bytes() == 0 ? max_message_bytes_ : request->max_bytes();
  auto* reactor = new GetItemsReactor(*queue, response);
  reactor->Start(*options, MakeWaitBound(request->wait(), request->max_wait_ms(),
                                         WaitDeadline(*context), timers_.Now()));
  return reactor;
}

namespace {

template <typename Response>
absl::Status Settle(queue::QueueRegistry& registry, const std::string& queue_name,
                    const google::protobuf::RepeatedPtrField<std::string>& receipts,
                    const std::function<absl::StatusOr<std::vector<queue::ReceiptResult>>(
                        queue::Queue&, const std::vector<std::string>&)>& action,
                    Response* response) {
  SPINDLE_RETURN_IF_ERROR(ValidateName("queue", queue_name));
  SPINDLE_RETURN_IF_ERROR(ValidateReceipts(receipts));
  SPINDLE_ASSIGN_OR_RETURN(auto queue, registry.Find(queue_name));
  std::vector<std::string> list(receipts.begin(), receipts.end());
  SPINDLE_ASSIGN_OR_RETURN(auto results, action(*queue, list));
  for (const auto& result : results) {
    ToProto(result, response->add_results());
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* QueueServiceImpl::AckItems(grpc::CallbackServerContext* context,
                                                     const v1::AckItemsRequest* request,
                                                     v1::AckItemsResponse* response) {
  if (absl::Status s = ValidateRequestId(request->request_id()); !s.ok()) {
    return FinishWith(context, s);
  }
  return FinishWith(
      context,
      Settle(
          registry_, request->queue(), request->receipts(),
          [](queue::Queue& q, const std::vector<std::string>& r) { return q.Ack(r); }, response));
}

grpc::ServerUnaryReactor* QueueServiceImpl::NackItems(grpc::CallbackServerContext* context,
                                                      const v1::NackItemsRequest* request,
                                                      v1::NackItemsResponse* response) {
  absl::Status valid = ValidateRequestId(request->request_id());
  if (valid.ok()) {
    valid = CheckRange("delay_ms", request->delay_ms(), 0, 43'200'000);
  }
  if (!valid.ok()) {
    return FinishWith(context, valid);
  }
  const absl::Duration delay = absl::Milliseconds(request->delay_ms());
  const bool dead = request->dead_letter();
  const std::string& request_id = request->request_id();
  return FinishWith(context, Settle(
                                 registry_, request->queue(), request->receipts(),
                                 [&](queue::Queue& q, const std::vector<std::string>& r) {
                                   return q.Nack(r, delay, dead, request_id);
                                 },
                                 response));
}

grpc::ServerUnaryReactor* QueueServiceImpl::ExtendItemLeases(
    grpc::CallbackServerContext* context, const v1::ExtendItemLeasesRequest* request,
    v1::ExtendItemLeasesResponse* response) {
  if (request->visibility_timeout_ms() != 0) {
    if (absl::Status s =
            CheckRange("visibility_timeout_ms", request->visibility_timeout_ms(), 100, 43'200'000);
        !s.ok()) {
      return FinishWith(context, s);
    }
  }
  const absl::Duration timeout = absl::Milliseconds(request->visibility_timeout_ms());
  return FinishWith(context, Settle(
                                 registry_, request->queue(), request->receipts(),
                                 [&](queue::Queue& q, const std::vector<std::string>& r) {
                                   return q.Extend(r, timeout);
                                 },
                                 response));
}

grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* QueueServiceImpl::Consume(
    grpc::CallbackServerContext* context) {
  return NewConsumeReactor(context, registry_, streams_);
}

grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* QueueServiceImpl::Produce(
    grpc::CallbackServerContext* context) {
  return NewProduceReactor(context, registry_, timers_);
}

}  // namespace spindle::services
