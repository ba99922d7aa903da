// The ValueStream reactor (value.proto): value operations as messages on one bidirectional
// stream, applied one at a time in arrival order and answered in that order.
//
// Each request is applied on the thread that read it (no value operation waits) and its answer
// is queued for the single writer. At most kMaxUnwritten answers wait to be written: past that
// the next read starts only when a write completes, so a client that sends without reading is
// held back by HTTP/2 flow control and what the server buffers for it stays bounded.
//
// Thread-safety: a read's and a write's reactions may run concurrently; state is under a mutex
// and Finish runs only after it is released (ReactorLock).
#ifndef SPINDLE_SERVICES_QUEUE_VALUE_STREAM_REACTOR_H_
#define SPINDLE_SERVICES_QUEUE_VALUE_STREAM_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <cstddef>

#include "services/queue/value_service.h"
#include "spindle/v1/value.pb.h"

namespace spindle::services {

// Most answers held for a client that does not read.
inline constexpr size_t kValueStreamMaxUnwritten = 64;

// REQUIRES: `values` outlives the stream.
grpc::ServerBidiReactor<v1::ValueStreamRequest, v1::ValueStreamResponse>* NewValueStreamReactor(
    ValueServiceImpl& values);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_VALUE_STREAM_REACTOR_H_
