#include "services/scheduler/watch_runs_reactor.h"

#include <deque>
#include <optional>

#include "services/common/status_convert.h"
#include "services/scheduler/trigger_convert.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr size_t kMaxQueued = 1000;

class WatchRunsReactor final : public grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse>,
                               public WatchRegistry::Stream {
 public:
  WatchRunsReactor(trigger::TriggerTable& table, WatchRegistry& registry)
      : table_(table), registry_(registry) {}

  void Start(const v1::WatchTriggerRunsRequest& request) {
    absl::Status valid = table_.CheckWatch(request.name(), request.label_selector());
    if (!valid.ok()) {
      Finish(ToGrpcStatus(valid));
      return;
    }
    if (!registry_.Add(this)) {
      Finish(ToGrpcStatus(Unavailable("SHUTTING_DOWN", "the server is shutting down")));
      return;
    }
    registered_ = true;
    watch_ = table_.Watch(request.name(), request.label_selector(), request.final_only(),
                          [this](const trigger::RunEvent& event) { OnEvent(event); });
    // A trigger deleted between CheckWatch and Watch would never end the stream: check again.
    if (!request.name().empty() && !table_.Get(request.name()).ok()) {
      End(grpc::Status::OK);
    }
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!queue_.empty()) queue_.pop_front();
      if (!ok) {
        queue_.clear();
        if (!end_.has_value()) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "stream broke");
      }
      finish = PumpLocked();
    }
    if (finish.has_value()) Finish(*finish);
  }

  void OnCancel() override { End(grpc::Status::CANCELLED, /*drop_queue=*/true); }

  void OnDone() override {
    if (watch_ != 0) table_.Unwatch(watch_);  // Waits for a running OnEvent.
    if (registered_) registry_.Remove(this);
    delete this;
  }

  void StopForShutdown() override {
    End(ToGrpcStatus(Unavailable("SHUTTING_DOWN", "the server is shutting down")),
        /*drop_queue=*/true);
  }

 private:
  void OnEvent(const trigger::RunEvent& event) {
    if (event.kind == trigger::RunEvent::Kind::kTriggerDeleted) {
      End(grpc::Status::OK);
      return;
    }
    v1::WatchTriggerRunsResponse message;
    ToProto(event.run, message.mutable_run());
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (end_.has_value()) return;
      if (queue_.size() >= kMaxQueued) {
        queue_.clear();
        end_ = ToGrpcStatus(
            ResourceExhausted("WATCH_LAGGING",
                              "the client reads trigger runs too slowly; watch again and catch up "
                              "with ListTriggerRuns"));
      } else {
        queue_.push_back(std::move(message));
      }
      finish = PumpLocked();
    }
    if (finish.has_value()) Finish(*finish);
  }

  void End(grpc::Status status, bool drop_queue = false) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (!end_.has_value()) end_ = std::move(status);
      if (drop_queue && !writing_) queue_.clear();
      finish = PumpLocked();
    }
    if (finish.has_value()) Finish(*finish);
  }

  // Starts the next write, or returns the status to finish with (once).
  std::optional<grpc::Status> PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return std::nullopt;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
      return std::nullopt;
    }
    if (end_.has_value()) {
      finished_ = true;
      return end_;
    }
    return std::nullopt;
  }

  trigger::TriggerTable& table_;
  WatchRegistry& registry_;
  uint64_t watch_ = 0;
  bool registered_ = false;

  absl::Mutex mu_;
  std::deque<v1::WatchTriggerRunsResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

bool WatchRegistry::Add(Stream* stream) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return false;
  streams_.insert(stream);
  return true;
}

void WatchRegistry::Remove(Stream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

void WatchRegistry::Shutdown() {
  // Streams stay alive until OnDone, which removes them under mu_; StopForShutdown only calls
  // Finish (OnDone runs later on a gRPC thread), so holding mu_ here is safe.
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (Stream* stream : streams_) {
    stream->StopForShutdown();
  }
}

grpc::ServerWriteReactor<v1::WatchTriggerRunsResponse>* NewWatchRunsReactor(
    const v1::WatchTriggerRunsRequest& request, trigger::TriggerTable& table,
    WatchRegistry& registry) {
  auto* reactor = new WatchRunsReactor(table, registry);
  reactor->Start(request);
  return reactor;
}

}  // namespace spindle::services
