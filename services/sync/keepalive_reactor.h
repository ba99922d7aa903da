// The reactor of SessionService.KeepAlive: pings refresh the session; the session's events
// (lock lost, expiring, ended) are pushed as they happen, in seq order, after a replay of the
// kept backlog. `ended` is the last message; the stream then finishes OK. With
// close_on_disconnect, a stream that breaks without a half-close closes the session.
//
// Thread-safety: reactions and the session table's sink may run concurrently; state is under
// mu_, and no gRPC operation or table call is made with mu_ held.
#ifndef SPINDLE_SERVICES_SYNC_KEEPALIVE_REACTOR_H_
#define SPINDLE_SERVICES_SYNC_KEEPALIVE_REACTOR_H_

#include <grpcpp/support/server_callback.h>

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "spindle/sync/session_table.h"
#include "spindle/v1/session.pb.h"

namespace spindle::services {

class KeepAliveReactor final
    : public grpc::ServerBidiReactor<v1::KeepAliveRequest, v1::KeepAliveResponse> {
 public:
  // `context` is the call's; it outlives the reactor.
  KeepAliveReactor(grpc::CallbackServerContext* context, sync::SessionTable& sessions);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Handles one ping; returns false when the stream must stop reading.
  bool HandlePing(const v1::KeepAliveRequest& ping);
  void OnEvent(const sync::SessionEvent& event);
  // Moves buffered events that are next in seq order to the write queue.
  void DrainEvents() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refreshed(uint64_t ping_id, const sync::SessionInfo& info, int64_t missed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the stream with `status` once queued messages are written.
  void FailWith(const grpc::Status& status);
  void Pump();

  // With close_on_disconnect: closes the session when the stream broke rather than ended.
  void CloseIfBroken(bool broken);

  grpc::CallbackServerContext* const context_;
  sync::SessionTable& sessions_;
  v1::KeepAliveRequest request_;  // owned by the read loop

  absl::Mutex mu_;
  std::string session_id_ ABSL_GUARDED_BY(mu_);
  sync::SessionTable::SubscriptionId subscription_ ABSL_GUARDED_BY(mu_) = 0;
  bool close_on_disconnect_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_on_disconnect_ ABSL_GUARDED_BY(mu_) = false;
  // Seq of the next live event to send; 0 until the subscription is set up.
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, sync::SessionEvent> early_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::KeepAliveResponse> queue_ ABSL_GUARDED_BY(mu_);
  v1::KeepAliveResponse writing_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_queued_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_KEEPALIVE_REACTOR_H_
