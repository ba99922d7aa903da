// The Produce stream (queue.proto): batches applied in arrival order, one answer per batch.
//
// One batch is put at a time (so a stream's items keep their order); the next is read when the
// put is answered, so with wait = true a full queue stops the reads and HTTP/2 flow control
// pushes back on the client. At most 64 answers wait to be written before reading pauses.
//
// Thread-safety: reactions and the queue's put callbacks may run concurrently; state is under a
// mutex and no engine call is made with it held. The reactor never finishes while a put it made
// is still pending (so the put's callback never outlives it).
#ifndef SPINDLE_SERVICES_QUEUE_PRODUCE_REACTOR_H_
#define SPINDLE_SERVICES_QUEUE_PRODUCE_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include "spindle/common/timer.h"
#include "spindle/queue/queue_registry.h"
#include "spindle/v1/queue.pb.h"

namespace spindle::services {

grpc::ServerBidiReactor<v1::ProduceRequest, v1::ProduceResponse>* NewProduceReactor(
    grpc::CallbackServerContext* context, queue::QueueRegistry& registry, TimerService& timers);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_PRODUCE_REACTOR_H_
