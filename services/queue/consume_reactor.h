// The Consume stream (queue.proto): a streaming consumer with credit-based flow control.
//
// The reactor registers a queue::StreamConsumer with the queue; the queue hands it deliveries
// while it has credit, in order, one call at a time. Items are written one message at a time;
// the client's credit bounds what is queued for writing. When the stream ends (client half-close,
// cancel, queue drained or deleted, server shutdown) the consumer is removed; TAKE items not yet
// written go back to the head, LEASE deliveries owned by the stream (no session) are put back.
//
// Thread-safety: reactions may run concurrently with queue callbacks; state is under a mutex and
// no engine call is made with it held.
#ifndef SPINDLE_SERVICES_QUEUE_CONSUME_REACTOR_H_
#define SPINDLE_SERVICES_QUEUE_CONSUME_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include "services/common/stream_set.h"
#include "spindle/queue/queue_registry.h"
#include "spindle/v1/queue.pb.h"

namespace spindle::services {

// Makes the reactor of one Consume call (it deletes itself when done).
grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* NewConsumeReactor(
    grpc::CallbackServerContext* context, queue::QueueRegistry& registry, StreamSet& streams);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_CONSUME_REACTOR_H_
