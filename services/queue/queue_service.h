// QueueService (protos/spindle/v1/queue.proto) on the callback API over the queue engine.
//
// Unary calls validate, convert, call the QueueRegistry / Queue and finish. PutItems and GetItems
// that wait register a waiter with the queue and return; the queue completes the call when the
// waiter is served, its wait bound passes or the queue closes; the reactor's OnCancel removes the
// waiter (a cancelled get takes nothing: items handed to it in a race go back). Consume and
// Produce are reactors of their own (consume_reactor.h, produce_reactor.h).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_QUEUE_QUEUE_SERVICE_H_
#define SPINDLE_SERVICES_QUEUE_QUEUE_SERVICE_H_

#include <memory>

#include "services/common/stream_set.h"
#include "spindle/common/timer.h"
#include "spindle/queue/queue_registry.h"
#include "spindle/v1/queue.grpc.pb.h"

namespace spindle::services {

class QueueServiceImpl final : public v1::QueueService::CallbackService {
 public:
  // REQUIRES: `registry`, `timers` and `streams` outlive the service.
  QueueServiceImpl(queue::QueueRegistry& registry, TimerService& timers, StreamSet& streams,
                   int64_t max_message_bytes);

  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* context,
                                        const v1::CreateQueueRequest* request,
                                        v1::CreateQueueResponse* response) override;
  grpc::ServerUnaryReactor* DeleteQueue(grpc::CallbackServerContext* context,
                                        const v1::DeleteQueueRequest* request,
                                        v1::DeleteQueueResponse* response) override;
  grpc::ServerUnaryReactor* PurgeQueue(grpc::CallbackServerContext* context,
                                       const v1::PurgeQueueRequest* request,
                                       v1::PurgeQueueResponse* response) override;
  grpc::ServerUnaryReactor* CloseQueue(grpc::CallbackServerContext* context,
                                       const v1::CloseQueueRequest* request,
                                       v1::CloseQueueResponse* response) override;
  grpc::ServerUnaryReactor* DescribeQueue(grpc::CallbackServerContext* context,
                                          const v1::DescribeQueueRequest* request,
                                          v1::DescribeQueueResponse* response) override;
  grpc::ServerUnaryReactor* ListQueues(grpc::CallbackServerContext* context,
                                       const v1::ListQueuesRequest* request,
                                       v1::ListQueuesResponse* response) override;
  grpc::ServerUnaryReactor* PutItems(grpc::CallbackServerContext* context,
                                     const v1::PutItemsRequest* request,
                                     v1::PutItemsResponse* response) override;
  grpc::ServerUnaryReactor* GetItems(grpc::CallbackServerContext* context,
                                     const v1::GetItemsRequest* request,
                                     v1::GetItemsResponse* response) override;
  grpc::ServerUnaryReactor* AckItems(grpc::CallbackServerContext* context,
                                     const v1::AckItemsRequest* request,
                                     v1::AckItemsResponse* response) override;
  grpc::ServerUnaryReactor* NackItems(grpc::CallbackServerContext* context,
                                      const v1::NackItemsRequest* request,
                                      v1::NackItemsResponse* response) override;
  grpc::ServerUnaryReactor* ExtendItemLeases(grpc::CallbackServerContext* context,
                                             const v1::ExtendItemLeasesRequest* request,
                                             v1::ExtendItemLeasesResponse* response) override;
  grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* Consume(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* Produce(
      grpc::CallbackServerContext* context) override;

 private:
  queue::QueueRegistry& registry_;
  TimerService& timers_;
  StreamSet& streams_;
  const int64_t max_message_bytes_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_QUEUE_SERVICE_H_
