#include "services/queue/watch_reactor.h"

#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/queue/convert.h"
#include "services/queue/reactor_lock.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr size_t kMaxEventsPerMessage = 1000;

class WatchReactor;

// What store notifications, heartbeat timers and shutdown hold: cut when the reactor is done.
class WatchLink final : public StoppableStream {
 public:
  // The link's own lock (no call to finish under it).
  absl::MutexLock Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) { return absl::MutexLock(&mu_); }

  explicit WatchLink(WatchReactor* reactor) : reactor_(reactor) {}
  void Detach() {
    auto lock = Locked();
    reactor_ = nullptr;
  }
  void Notify();
  void Heartbeat();
  void StopForShutdown() override;

 private:
  absl::Mutex mu_;
  WatchReactor* reactor_ ABSL_GUARDED_BY(mu_);
};

class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchValuesResponse> {
 public:
  WatchReactor(const v1::WatchValuesRequest& request, value::ValueStore& store,
               TimerService& timers, StreamSet& streams)
      : store_(store), timers_(timers), streams_(streams), names_only_(request.names_only()) {
    absl::Status started = Start(request);
    auto lock = Locked();
    if (!started.ok()) {
      end_ = ToGrpcStatus(started);
    }
    Pump();
  }

  void OnWriteDone(bool ok) override {
    auto lock = Locked();
    writing_ = false;
    if (!ok) {
      broken_ = true;
      if (!end_.has_value()) {
        end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
      }
    } else {
      out_.pop_front();
    }
    ArmHeartbeat();
    Pump();
  }

  void OnCancel() override {
    auto lock = Locked();
    broken_ = true;
    end_ = grpc::Status::CANCELLED;
    Pump();
  }

  void OnDone() override {
    if (link_ != nullptr) {
      link_->Detach();
      streams_.Remove(link_);
    }
    if (watch_ != nullptr) {
      store_.StopWatch(*watch_);
    }
    TimerService::TimerId timer;
    {
      auto lock = Locked();
      timer = heartbeat_;
    }
    if (timer != 0) {
      timers_.Cancel(timer);
    }
    delete this;
  }

  // A matching change arrived (store notification).
  void OnNotify() {
    auto lock = Locked();
    Pump();
  }

  // Nothing was written for a heartbeat period: send progress if there is nothing else.
  void OnHeartbeat() {
    auto lock = Locked();
    heartbeat_ = 0;
    if (finished_ || end_.has_value()) {
      return;
    }
    if (!writing_ && out_.empty()) {
      PollLocked();
      if (out_.empty()) {
        v1::WatchValuesResponse progress;
        progress.set_store_epoch(store_.epoch());
        progress.mutable_progress()->set_version(progress_version_);
        out_.push_back(std::move(progress));
      }
    }
    ArmHeartbeat();
    Pump();
  }

  void Stop(grpc::Status status) {
    auto lock = Locked();
    if (!end_.has_value()) {
      end_ = std::move(status);
    }
    // A shutdown does not wait for the client to read what is queued.
    broken_ = true;
    Pump();
  }

 private:
  absl::Status Start(const v1::WatchValuesRequest& request) {
    std::string key;
    bool prefix = false;
    switch (request.target_case()) {
      case v1::WatchValuesRequest::kName:
        SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
        key = request.name();
        break;
      case v1::WatchValuesRequest::kPrefix:
        SPINDLE_RETURN_IF_ERROR(ValidatePrefix("prefix", request.prefix()));
        key = request.prefix();
        prefix = true;
        break;
      default:
        return InvalidArgument("MISSING_TARGET", "give name or prefix to watch");
    }
    SPINDLE_RETURN_IF_ERROR(CheckRange("from_version", request.from_version(), 0, INT64_MAX));
    if (request.initial_state() && request.from_version() != 0) {
      return InvalidArgument("INVALID_ARGUMENT", "initial_state requires from_version 0");
    }
    const int64_t interval = request.progress_interval_ms();
    if (interval != 0) {
      SPINDLE_RETURN_IF_ERROR(CheckRange("progress_interval_ms", interval, 100, 600000));
    }
    interval_ = absl::Milliseconds(interval == 0 ? 10000 : interval);
    SPINDLE_ASSIGN_OR_RETURN(auto start, store_.StartWatch(key, prefix, request.from_version(),
                                                           request.initial_state()));
    watch_ = std::move(start.watch);
    link_ = std::make_shared<WatchLink>(this);
    if (!streams_.Add(link_)) {
      return Unavailable("SHUTTING_DOWN", "the server is shutting down");
    }
    auto lock = Locked();
    progress_version_ = start.initial_version;
    if (request.initial_state()) {
      for (size_t at = 0; at < start.initial.size(); at += kMaxEventsPerMessage) {
        v1::WatchValuesResponse message;
        message.set_store_epoch(store_.epoch());
        auto* events = message.mutable_events();
        for (size_t i = at; i < std::min(start.initial.size(), at + kMaxEventsPerMessage); ++i) {
          v1::ValueEvent* event = events->add_events();
          event->set_kind(v1::VALUE_EVENT_KIND_PUT);
          event->set_version(start.initial[i].version);
          if (names_only_) {
            start.initial[i].data = nullptr;
          }
          ToProto(start.initial[i], event->mutable_entry());
        }
        out_.push_back(std::move(message));
      }
      v1::WatchValuesResponse done;
      done.set_store_epoch(store_.epoch());
      done.mutable_progress()->set_version(start.initial_version);
      done.mutable_progress()->set_initial_state_done(true);
      out_.push_back(std::move(done));
    }
    ArmHeartbeat();
    return absl::OkStatus();
  }

  void ArmHeartbeat() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (link_ == nullptr || finished_) {
      return;
    }
    if (heartbeat_ != 0) {
      timers_.Cancel(heartbeat_);
    }
    std::weak_ptr<WatchLink> link = link_;
    heartbeat_ = timers_.Schedule(timers_.Now() + interval_, [link] {
      if (auto strong = link.lock()) {
        strong->Heartbeat();
      }
    });
  }

  // Moves what the store has for this watch into out_.
  void PollLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (watch_ == nullptr || end_.has_value()) {
      return;
    }
    std::weak_ptr<WatchLink> link = link_;
    value::WatchPoll poll = store_.Poll(*watch_, kMaxEventsPerMessage, [link] {
      if (auto strong = link.lock()) {
        strong->Notify();
      }
    });
    progress_version_ = std::max(progress_version_, poll.progress_version);
    if (poll.compacted.has_value()) {
      v1::WatchValuesResponse message;
      message.set_store_epoch(store_.epoch());
      auto* compacted = message.mutable_compacted();
      compacted->set_cause(poll.compacted->too_slow
                               ? v1::WatchValuesResponse::COMPACTED_CAUSE_TOO_SLOW
                               : v1::WatchValuesResponse::COMPACTED_CAUSE_HISTORY_COMPACTED);
      compacted->set_oldest_version(poll.compacted->oldest_version);
      compacted->set_current_version(poll.compacted->current_version);
      compacted->set_lost_from_version(poll.compacted->lost_from_version);
      out_.push_back(std::move(message));
      end_ = poll.compacted->too_slow
                 ? GrpcError(
                       grpc::StatusCode::ABORTED, "WATCH_TOO_SLOW",
                       absl::StrCat("the watch fell too far behind at version ",
                                    poll.compacted->lost_from_version, "; re-read and watch again"))
                 : GrpcError(grpc::StatusCode::ABORTED, "WATCH_COMPACTED",
                             absl::StrCat("version ", poll.compacted->lost_from_version,
                                          " is older than the kept history (oldest ",
                                          poll.compacted->oldest_version, ")"));
      return;
    }
    if (!poll.events.empty()) {
      v1::WatchValuesResponse message;
      message.set_store_epoch(store_.epoch());
      for (const auto& event : poll.events) {
        ToProto(event, names_only_, message.mutable_events()->add_events());
      }
      out_.push_back(std::move(message));
    }
  }

  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) {
      return;
    }
    if (out_.empty() && !broken_) {
      PollLocked();
    }
    if (!out_.empty() && !broken_) {
      writing_ = true;
      StartWrite(&out_.front());
      return;
    }
    if (end_.has_value()) {
      finished_ = true;
      finish_ = *end_;
    }
  }

  value::ValueStore& store_;
  TimerService& timers_;
  StreamSet& streams_;
  const bool names_only_;
  // Set in the constructor, constant after.
  std::shared_ptr<value::Watch> watch_;
  std::shared_ptr<WatchLink> link_;
  absl::Duration interval_ = absl::Seconds(10);

  // Locks mu_; a finish asked for under it (finish_) runs after the unlock.
  ReactorLock<WatchReactor> Locked() ABSL_EXCLUSIVE_LOCK_FUNCTION(mu_) {
    return ReactorLock<WatchReactor>(this, &mu_, &finish_);
  }

  absl::Mutex mu_;
  std::optional<grpc::Status> finish_;
  std::deque<v1::WatchValuesResponse> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  int64_t progress_version_ ABSL_GUARDED_BY(mu_) = 0;
  TimerService::TimerId heartbeat_ ABSL_GUARDED_BY(mu_) = 0;
};

void WatchLink::Notify() {
  auto lock = Locked();
  if (reactor_ != nullptr) {
    reactor_->OnNotify();
  }
}

void WatchLink::Heartbeat() {
  auto lock = Locked();
  if (reactor_ != nullptr) {
    reactor_->OnHeartbeat();
  }
}

void WatchLink::StopForShutdown() {
  auto lock = Locked();
  if (reactor_ != nullptr) {
    reactor_->Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }
}

}  // namespace

grpc::ServerWriteReactor<v1::WatchValuesResponse>* NewWatchReactor(
    grpc::CallbackServerContext* context, const v1::WatchValuesRequest& request,
    value::ValueStore& store, TimerService& timers, StreamSet& streams) {
  return new WatchReactor(request, store, timers, streams);
}

}  // namespace spindle::services
