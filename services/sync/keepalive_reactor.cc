#include "services/sync/keepalive_reactor.h"

#include <grpcpp/server_context.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/status_convert.h"
#include "services/sync/convert.h"
#include "spindle/common/status.h"

namespace spindle::services {

KeepAliveReactor::KeepAliveReactor(grpc::CallbackServerContext* context,
                                   sync::SessionTable& sessions)
    : context_(context), sessions_(sessions) {
  StartRead(&request_);
}

void KeepAliveReactor::OnReadDone(bool ok) {
  if (!ok) {
    {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
    }
    Pump();
    return;
  }
  if (HandlePing(request_)) {
    StartRead(&request_);
  }
}

bool KeepAliveReactor::HandlePing(const v1::KeepAliveRequest& ping) {
  if (ping.ttl_ms() < 0) {
    FailWith(ToGrpcStatus(InvalidArgument(
        "INVALID_TTL", absl::StrCat("ttl_ms ", ping.ttl_ms(), " must not be negative"))));
    return false;
  }
  std::string session_id;
  bool first;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || failed_) {
      return false;
    }
    first = session_id_.empty();
    if (first) {
      session_id_ = ping.session_id();
      close_on_disconnect_ = ping.close_on_disconnect();
    }
    session_id = session_id_;
  }
  if (session_id.empty()) {
    FailWith(ToGrpcStatus(
        InvalidArgument("INVALID_ARGUMENT", "session_id is required in the first ping")));
    return false;
  }
  if (!first && !ping.session_id().empty() && ping.session_id() != session_id) {
    FailWith(ToGrpcStatus(InvalidArgument(
        "SESSION_MISMATCH", absl::StrCat("ping names session '", ping.session_id(),
                                         "' but the stream is on '", session_id, "'"))));
    return false;
  }
  int64_t missed = 0;
  int64_t start_seq = 0;
  if (first) {
    auto subscription =
        sessions_.Subscribe(session_id, ping.after_event_seq(),
                            [this](const sync::SessionEvent& event) { OnEvent(event); });
    if (!subscription.ok()) {
      FailWith(ToGrpcStatus(subscription.status()));
      return false;
    }
    absl::MutexLock lock(&mu_);
    subscription_ = subscription->id;
    missed = subscription->missed;
    // Replay first; live events arrived meanwhile wait in early_.
    for (const auto& event : subscription->replay) {
      early_.emplace(event.seq, event);
    }
    start_seq =
        subscription->replay.empty() ? subscription->next_seq : subscription->replay.front().seq;
  }
  auto refreshed = sessions_.Refresh(session_id, sync_convert::Ms(ping.ttl_ms()));
  if (!refreshed.ok()) {
    bool ended;
    {
      absl::MutexLock lock(&mu_);
      ended = ended_queued_;
    }
    if (!ended) {
      FailWith(ToGrpcStatus(refreshed.status()));
    }
    return false;
  }
  {
    absl::MutexLock lock(&mu_);
    Refreshed(ping.ping_id(), *refreshed, missed);
    if (first) {
      next_seq_ = start_seq;  // live from here on, after the first answer
      DrainEvents();
    }
  }
  Pump();
  return true;
}

void KeepAliveReactor::Refreshed(uint64_t ping_id, const sync::SessionInfo& info, int64_t missed) {
  v1::KeepAliveResponse response;
  sync_convert::ToProto(absl::Now(), response.mutable_time());
  auto* refreshed = response.mutable_refreshed();
  refreshed->set_ping_id(ping_id);
  sync_convert::ToProto(info.expire_time, refreshed->mutable_expire_time());
  refreshed->set_ttl_ms(absl::ToInt64Milliseconds(info.ttl));
  refreshed->set_missed_events(missed);
  queue_.push_back(std::move(response));
}

void KeepAliveReactor::OnEvent(const sync::SessionEvent& event) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || failed_ || ended_queued_) {
      return;
    }
    early_.emplace(event.seq, event);
    if (next_seq_ == 0) {
      return;  // the subscription is being set up; HandlePing drains
    }
    DrainEvents();
  }
  Pump();
}

void KeepAliveReactor::DrainEvents() {
  while (!early_.empty() && early_.begin()->first <= next_seq_) {
    sync::SessionEvent event = std::move(early_.begin()->second);
    early_.erase(early_.begin());
    if (event.seq < next_seq_) {
      continue;  // a duplicate of a replayed event
    }
    ++next_seq_;
    v1::KeepAliveResponse response;
    sync_convert::ToProto(event, &response);
    queue_.push_back(std::move(response));
    if (event.type == sync::SessionEvent::Type::kEnded) {
      ended_queued_ = true;
      early_.clear();
      return;
    }
  }
}

void KeepAliveReactor::FailWith(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (failed_ || finished_) {
      return;
    }
    failed_ = true;
    final_status_ = status;
  }
  Pump();
}

void KeepAliveReactor::Pump() {
  const v1::KeepAliveResponse* to_write = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (write_in_flight_ || finished_) {
      return;
    }
    if (cancelled_) {
      finished_ = true;
      finish = true;
      status = grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled");
    } else if (!queue_.empty()) {
      writing_ = std::move(queue_.front());
      queue_.pop_front();
      write_in_flight_ = true;
      to_write = &writing_;
    } else if (failed_ || ended_queued_ || reads_done_) {
      finished_ = true;
      finish = true;
      status = failed_ ? final_status_ : grpc::Status::OK;
    }
  }
  if (to_write != nullptr) {
    StartWrite(to_write);
  } else if (finish) {
    Finish(status);
  }
}

void KeepAliveReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!ok) {
      cancelled_ = true;
    }
  }
  Pump();
}

void KeepAliveReactor::OnCancel() {
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  CloseIfBroken(true);
  Pump();
}

void KeepAliveReactor::CloseIfBroken(bool broken) {
  std::string close;
  {
    absl::MutexLock lock(&mu_);
    if (broken && close_on_disconnect_ && subscription_ != 0 && !ended_queued_ &&
        !closed_on_disconnect_) {
      closed_on_disconnect_ = true;
      close = session_id_;
    }
  }
  if (!close.empty()) {
    (void)sessions_.Close(close);
  }
}

void KeepAliveReactor::OnDone() {
  // A client that vanished often shows up as a failed read (which looks like a half-close)
  // before, or instead of, OnCancel; whether the final status reached it tells the two apart.
  CloseIfBroken(context_->IsCancelled());
  std::string session_id;
  sync::SessionTable::SubscriptionId subscription;
  {
    absl::MutexLock lock(&mu_);
    session_id = session_id_;
    subscription = subscription_;
  }
  if (subscription != 0) {
    sessions_.Unsubscribe(session_id, subscription);
  }
  delete this;
}

}  // namespace spindle::services
