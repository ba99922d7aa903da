// The FetchUrls stream (scheduler.proto): validates the request, runs http::FetchAll on the
// executor and writes one `result` per URL as it completes, then the `summary`.
//
// Back-pressure: at most kWriteWindow results wait for the client; beyond that the fetch coroutine
// waits (transfers in flight continue, no new one starts). Client cancel, a broken stream and the
// call's deadline cancel the fetch, which aborts the transfers still running.
//
// Thread-safety: reactions (gRPC threads) and deliveries (executor workers) may run concurrently;
// state is under a mutex; Finish is called once, outside it, as the last touch of the reactor.
#ifndef SPINDLE_SERVICES_SCHEDULER_FETCH_REACTOR_H_
#define SPINDLE_SERVICES_SCHEDULER_FETCH_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <atomic>

#include "services/scheduler/scheduler_metrics.h"
#include "spindle/coro/executor.h"
#include "spindle/v1/scheduler.pb.h"

namespace spindle::services {

// Counts FetchUrls calls in progress against the server's limit.
class FetchLimiter {
 public:
  explicit FetchLimiter(int max_calls) : max_calls_(max_calls) {}
  bool TryEnter() {
    if (in_flight_.fetch_add(1, std::memory_order_acq_rel) >= max_calls_) {
      Leave();
      return false;
    }
    return true;
  }
  void Leave() { in_flight_.fetch_sub(1, std::memory_order_acq_rel); }
  int max_calls() const { return max_calls_; }
  int in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  const int max_calls_;
  std::atomic<int> in_flight_{0};
};

grpc::ServerWriteReactor<v1::FetchUrlsResponse>* NewFetchReactor(
    grpc::CallbackServerContext* context, const v1::FetchUrlsRequest& request,
    coro::Executor& executor, FetchLimiter& limiter, SchedulerMetrics& metrics);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SCHEDULER_FETCH_REACTOR_H_
