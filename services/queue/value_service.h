// ValueService (protos/spindle/v1/value.proto) on the callback API over the value store.
//
// Every unary rpc validates, converts, calls the ValueStore and finishes on the calling thread
// (no value call waits). The same operations, as messages, make up the ValueStream
// (value_stream_reactor.h). WatchValues is a server-streaming reactor (watch_reactor.h).
//
// Thread-safety: thread-safe.
#ifndef SPINDLE_SERVICES_QUEUE_VALUE_SERVICE_H_
#define SPINDLE_SERVICES_QUEUE_VALUE_SERVICE_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "services/common/stream_set.h"
#include "services/queue/convert.h"
#include "spindle/common/timer.h"
#include "spindle/v1/value.grpc.pb.h"
#include "spindle/value/value_store.h"

namespace spindle::services {

class ValueServiceImpl final : public v1::ValueService::CallbackService {
 public:
  // Called once per rpc with its operation name (get, set, add, cas, delete, list, watch).
  using OpCounter = std::function<void(absl::string_view op)>;

  // REQUIRES: `store`, `timers`, `streams` and `check_fence` outlive the service.
  // `check_fence` is read at each fenced write (empty: fenced writes are FENCING_UNAVAILABLE).
  ValueServiceImpl(value::ValueStore& store, TimerService& timers, StreamSet& streams,
                   OpCounter count_op, const FenceChecker& check_fence);

  grpc::ServerUnaryReactor* GetValue(grpc::CallbackServerContext* context,
                                     const v1::GetValueRequest* request,
                                     v1::GetValueResponse* response) override;
  grpc::ServerUnaryReactor* SetValue(grpc::CallbackServerContext* context,
                                     const v1::SetValueRequest* request,
                                     v1::SetValueResponse* response) override;
  grpc::ServerUnaryReactor* AddToValue(grpc::CallbackServerContext* context,
                                       const v1::AddToValueRequest* request,
                                       v1::AddToValueResponse* response) override;
  grpc::ServerUnaryReactor* CompareAndSwapValue(grpc::CallbackServerContext* context,
                                                const v1::CompareAndSwapValueRequest* request,
                                                v1::CompareAndSwapValueResponse* response) override;
  grpc::ServerUnaryReactor* DeleteValue(grpc::CallbackServerContext* context,
                                        const v1::DeleteValueRequest* request,
                                        v1::DeleteValueResponse* response) override;
  grpc::ServerUnaryReactor* ListValues(grpc::CallbackServerContext* context,
                                       const v1::ListValuesRequest* request,
                                       v1::ListValuesResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchValuesResponse>* WatchValues(
      grpc::CallbackServerContext* context, const v1::WatchValuesRequest* request) override;
  grpc::ServerBidiReactor<v1::ValueStreamRequest, v1::ValueStreamResponse>* ValueStream(
      grpc::CallbackServerContext* context) override;

  // The operations behind the unary rpcs and ValueStream: validate, apply, fill `response`.
  // Each counts itself. On an error `response` may be partly filled; callers drop it.
  absl::Status Get(const v1::GetValueRequest& request, v1::GetValueResponse* response);
  absl::Status Set(const v1::SetValueRequest& request, v1::SetValueResponse* response);
  absl::Status Add(const v1::AddToValueRequest& request, v1::AddToValueResponse* response);
  absl::Status CompareAndSwap(const v1::CompareAndSwapValueRequest& request,
                              v1::CompareAndSwapValueResponse* response);
  absl::Status Delete(const v1::DeleteValueRequest& request, v1::DeleteValueResponse* response);

 private:
  value::ValueStore& store_;
  TimerService& timers_;
  StreamSet& streams_;
  const OpCounter count_op_;
  const FenceChecker& check_fence_;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_QUEUE_VALUE_SERVICE_H_
