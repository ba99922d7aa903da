// The reactor of LockService.LockStream: Acquire, Release and RefreshLease as messages on one
// bidirectional stream, many in flight at once, answered in completion order.
//
// Reads run one at a time (gRPC's read loop), so operations naming the same lease apply in
// arrival order. A waiting acquire is a continuation in the lock table; its answer is queued for
// the single writer. While kMaxUnwritten answers wait to be written no request is read, so a
// client that sends without reading is held back by HTTP/2 flow control instead of making the
// server buffer its answers. When the stream breaks, pending acquires are withdrawn; a grant that
// was already decided and can no longer be delivered is released. The reactor deletes itself once
// gRPC is done with it and no engine continuation still refers to it.
//
// Thread-safety: reactions and engine continuations may run concurrently; state is under mu_,
// and no gRPC operation or engine call is made with mu_ held.
#ifndef SPINDLE_SERVICES_SYNC_LOCK_STREAM_REACTOR_H_
#define SPINDLE_SERVICES_SYNC_LOCK_STREAM_REACTOR_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <cstdint>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "spindle/sync/lock_table.h"
#include "spindle/v1/lock.pb.h"

namespace spindle::services {

class LockStreamReactor final
    : public grpc::ServerBidiReactor<v1::LockStreamRequest, v1::LockStreamResponse> {
 public:
  // Most operations pending on one stream.
  static constexpr size_t kMaxPending = 65536;
  // Most answers held for a client that does not read; past it reading pauses until it does.
  static constexpr size_t kMaxUnwritten = 64;

  LockStreamReactor(grpc::CallbackServerContext* context, sync::LockTable& locks);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Handle(const v1::LockStreamRequest& request);
  void StartAcquire(uint64_t call_id, int64_t timeout_ms, const v1::AcquireRequest& acquire);
  void OnAcquired(uint64_t call_id, const std::string& request_id,
                  absl::StatusOr<sync::AcquireResult> result);
  // Queues an answer (dropped once the stream is finishing).
  void Answer(v1::LockStreamResponse response);
  // Starts the next write, or finishes the stream when nothing is left.
  void Pump();
  // The stream is broken: withdraws pending acquires and finishes.
  void WithdrawAll();
  // Drops one reference held by an engine continuation; deletes `this` after the last one.
  void Unref();

  grpc::CallbackServerContext* const context_;
  sync::LockTable& locks_;
  v1::LockStreamRequest request_;  // owned by the read loop

  absl::Mutex mu_;
  std::deque<v1::LockStreamResponse> queue_ ABSL_GUARDED_BY(mu_);
  v1::LockStreamResponse writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // Acquires in flight by call_id; the handle is empty until Acquire() returned.
  absl::flat_hash_map<uint64_t, sync::WaitHandle> pending_ ABSL_GUARDED_BY(mu_);
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  // No read is outstanding because kMaxUnwritten answers wait; OnWriteDone resumes reading.
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // 1 for gRPC (until OnDone) + 1 per engine continuation not yet run.
  int refs_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_LOCK_STREAM_REACTOR_H_
