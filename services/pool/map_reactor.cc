#include "services/pool/map_reactor.h"

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/pool/convert.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

class MapReactor;

// Inputs read but not yet submitted, by position (the order they were read).
struct PendingInput {
  uint64_t position;
  uint64_t index;
  pool::TaskSpec spec;
};

class MapCore final : public StoppableStream, public std::enable_shared_from_this<MapCore> {
 public:
  MapCore(MapReactor* reactor, pool::PoolTable& table, int64_t max_message_bytes)
      : reactor_(reactor), table_(table), max_message_bytes_(max_message_bytes) {}

  void Pump();

  void OnReadDone(bool ok);
  void OnWriteDone(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        SetError(grpc::Status::CANCELLED);
      } else {
        outstanding_ -= in_flight_results_;
      }
      in_flight_results_ = 0;
    }
    Pump();
  }
  void OnCancel() {
    {
      absl::MutexLock lock(&mu_);
      SetError(grpc::Status::CANCELLED);
    }
    Pump();
  }
  void StopForShutdown() override {
    {
      absl::MutexLock lock(&mu_);
      SetError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    }
    Pump();
  }
  // The reactor is gone: cancel every unfinished task (the stream is their owner).
  void Detach() {
    std::vector<std::string> running;
    uint64_t waiter = 0;
    {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
      for (const auto& [position, id] : running_) running.push_back(id);
      waiter = submit_waiter_;
      submit_waiter_ = 0;
    }
    if (waiter != 0) table_.CancelWait(waiter);
    CancelAll(running, "STREAM_ENDED", "cancelled: its Map stream ended");
  }

 private:
  void SetError(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!error_.has_value() && !finished_) error_ = std::move(status);
  }

  void CancelAll(const std::vector<std::string>& ids, const std::string& reason,
                 const std::string& message) {
    for (const auto& id : ids) table_.CancelTask(id, std::nullopt, reason, message).IgnoreError();
  }

  void OnResult(uint64_t position, uint64_t index, const pool::TaskView& view);
  void OnSubmitted(std::vector<PendingInput> inputs,
                   absl::StatusOr<pool::PoolTable::SubmitResult> result);
  void AddResult(uint64_t position, v1::PoolMapResult result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool BuildResponse() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  MapReactor* reactor_ ABSL_GUARDED_BY(mu_);
  pool::PoolTable& table_;
  const int64_t max_message_bytes_;

  bool started_ ABSL_GUARDED_BY(mu_) = false;
  v1::PoolMapStart start_ ABSL_GUARDED_BY(mu_);
  bool ordered_ = true;
  int64_t window_ = 1000;
  int32_t max_queued_ = 10000;

  uint64_t next_position_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_to_send_ ABSL_GUARDED_BY(mu_) = 0;  // ORDERED.
  std::map<uint64_t, v1::PoolMapResult> ready_ ABSL_GUARDED_BY(mu_);
  std::deque<PendingInput> to_submit_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> running_ ABSL_GUARDED_BY(mu_);  // position -> task
  // Positions whose result came before their Submit callback.
  absl::flat_hash_set<uint64_t> early_ ABSL_GUARDED_BY(mu_);
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_results_ ABSL_GUARDED_BY(mu_) = 0;
  bool submitting_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t submit_waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool input_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool summary_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> error_ ABSL_GUARDED_BY(mu_);
  v1::PoolMapSummary summary_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> to_cancel_ ABSL_GUARDED_BY(mu_);  // fail_fast

 public:
  v1::MapRequest request_;
  v1::MapResponse response_;
};

class MapReactor final : public grpc::ServerBidiReactor<v1::MapRequest, v1::MapResponse> {
 public:
  explicit MapReactor(StreamSet& streams) : streams_(streams) {}
  void SetCore(std::shared_ptr<MapCore> core) { core_ = std::move(core); }
  void OnReadDone(bool ok) override { core_->OnReadDone(ok); }
  void OnWriteDone(bool ok) override { core_->OnWriteDone(ok); }
  void OnCancel() override { core_->OnCancel(); }
  void OnDone() override {
    core_->Detach();
    streams_.Remove(core_);
    delete this;
  }

 private:
  StreamSet& streams_;
  std::shared_ptr<MapCore> core_;
};

void MapCore::OnReadDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    read_pending_ = false;
    if (!ok) {
      input_done_ = true;
    } else if (!error_.has_value() && !input_done_) {
      const bool first = !started_;
      if (first != request_.has_start()) {
        SetError(ToGrpcStatus(InvalidArgument(
            "INVALID_ARGUMENT", first ? "start: required in the first message of a Map"
                                      : "start: only allowed in the first message of a Map")));
      } else {
        if (first) {
          started_ = true;
          start_ = request_.start();
          ordered_ = start_.order() != v1::POOL_MAP_ORDER_UNORDERED;
          if (start_.order() < 0 || start_.order() > 2) {
            SetError(ToGrpcStatus(InvalidArgument(
                "INVALID_ARGUMENT", absl::StrCat("start.order: unknown order ", start_.order()))));
          }
          window_ = start_.window() == 0 ? 1000 : start_.window();
          if (start_.window() < 0 || start_.window() > 100'000) {
            SetError(ToGrpcStatus(InvalidArgument(
                "INVALID_ARGUMENT",
                absl::StrCat("start.window: ", start_.window(), " out of range 1..100000"))));
          }
          auto pool = table_.GetPool(start_.pool(), false);
          if (!pool.ok()) {
            SetError(ToGrpcStatus(pool.status()));
          } else {
            max_queued_ = pool->spec.max_queued;
          }
        }
        for (const auto& input : request_.inputs()) {
          if (error_.has_value()) break;
          auto spec = FromMapInput(input, start_);
          if (!spec.ok()) {
            SetError(ToGrpcStatus(spec.status()));
            break;
          }
          to_submit_.push_back({next_position_++, input.index(), *std::move(spec)});
          ++outstanding_;
          summary_.set_inputs(summary_.inputs() + 1);
        }
      }
    }
  }
  Pump();
}

void MapCore::OnSubmitted(std::vector<PendingInput> inputs,
                          absl::StatusOr<pool::PoolTable::SubmitResult> result) {
  std::vector<std::string> cancel;
  {
    absl::MutexLock lock(&mu_);
    submitting_ = false;
    submit_waiter_ = 0;
    if (!result.ok()) {
      SetError(ToGrpcStatus(result.status()));
    } else if (!result->submitted) {
      SetError(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "waiting for queue room"));
    } else {
      for (size_t i = 0; i < result->tasks.size() && i < inputs.size(); ++i) {
        const uint64_t position = inputs[i].position;
        // The result may already be in (a fast task): then it is not running any more.
        if (early_.erase(position) > 0) continue;
        running_[position] = result->tasks[i].id;
      }
      if (reactor_ == nullptr || error_.has_value()) {
        for (const auto& [position, id] : running_) cancel.push_back(id);
      }
    }
  }
  if (!cancel.empty()) CancelAll(cancel, "STREAM_ENDED", "cancelled: its Map stream ended");
  Pump();
}

void MapCore::OnResult(uint64_t position, uint64_t index, const pool::TaskView& view) {
  std::vector<std::string> cancel;
  {
    absl::MutexLock lock(&mu_);
    if (running_.erase(position) == 0) early_.insert(position);
    v1::PoolMapResult result;
    result.set_index(index);
    result.set_task_id(view.id);
    if (view.result.has_value()) ToProto(*view.result, result.mutable_result());
    switch (view.state) {
      case pool::TaskState::kSucceeded:
        summary_.set_succeeded(summary_.succeeded() + 1);
        break;
      case pool::TaskState::kFailed:
        summary_.set_failed(summary_.failed() + 1);
        break;
      case pool::TaskState::kTimedOut:
        summary_.set_timed_out(summary_.timed_out() + 1);
        break;
      default:
        summary_.set_cancelled(summary_.cancelled() + 1);
        break;
    }
    if (start_.fail_fast() && view.state != pool::TaskState::kSucceeded &&
        !summary_.stopped_early()) {
      summary_.set_stopped_early(true);
      input_done_ = true;
      for (const auto& [p, id] : running_) cancel.push_back(id);
      // Inputs not submitted yet end CANCELLED without a task.
      for (auto& pending : to_submit_) {
        v1::PoolMapResult r;
        r.set_index(pending.index);
        r.mutable_result()->set_outcome(v1::TASK_STATE_CANCELLED);
        r.mutable_result()->set_error("cancelled: fail_fast after an earlier failure");
        r.mutable_result()->set_error_reason("CANCELLED");
        summary_.set_cancelled(summary_.cancelled() + 1);
        AddResult(pending.position, std::move(r));
      }
      to_submit_.clear();
    }
    AddResult(position, std::move(result));
  }
  if (!cancel.empty())
    CancelAll(cancel, "CANCELLED", "cancelled: fail_fast after an earlier failure");
  Pump();
}

void MapCore::AddResult(uint64_t position, v1::PoolMapResult result) {
  ready_.emplace(position, std::move(result));
}

bool MapCore::BuildResponse() {
  response_.Clear();
  const int64_t budget = max_message_bytes_ / 2;
  int64_t bytes = 0;
  int64_t count = 0;
  while (!ready_.empty()) {
    auto it = ready_.begin();
    if (ordered_ && it->first != next_to_send_) break;
    const int64_t size = static_cast<int64_t>(it->second.ByteSizeLong());
    if (count > 0 && (bytes + size > budget || count >= 4096)) break;
    *response_.add_results() = std::move(it->second);
    bytes += size;
    ++count;
    if (ordered_) ++next_to_send_;
    ready_.erase(it);
  }
  in_flight_results_ = count;
  return count > 0;
}

void MapCore::Pump() {
  auto self = shared_from_this();  // The reactor's reference may go in OnDone.
  {
    absl::MutexLock lock(&mu_);
    if (pumping_) {
      again_ = true;
      return;
    }
    pumping_ = true;
  }
  while (true) {
    enum { kNone, kRead, kWrite, kFinish, kSubmit } action = kNone;
    grpc::Status status;
    MapReactor* reactor = nullptr;
    std::vector<PendingInput> batch;
    std::vector<std::string> cancel;
    {
      absl::MutexLock lock(&mu_);
      again_ = false;
      reactor = reactor_;
      if (finished_ || reactor_ == nullptr) {
        pumping_ = false;
        return;
      }
      if (error_.has_value()) {
        if (!writing_) {
          action = kFinish;
          status = *error_;
          for (const auto& [p, id] : running_) cancel.push_back(id);
        }
      } else if (!writing_ && BuildResponse()) {
        action = kWrite;
      } else if (!writing_ && input_done_ && to_submit_.empty() && !submitting_ &&
                 outstanding_ == 0) {
        if (!summary_sent_) {
          response_.Clear();
          *response_.mutable_summary() = summary_;
          summary_sent_ = true;
          in_flight_results_ = 0;
          action = kWrite;
        } else {
          action = kFinish;
          status = grpc::Status::OK;
        }
      } else if (!submitting_ && !to_submit_.empty()) {
        const size_t chunk = static_cast<size_t>(std::max<int32_t>(1, std::min(max_queued_, 1000)));
        while (!to_submit_.empty() && batch.size() < chunk) {
          batch.push_back(std::move(to_submit_.front()));
          to_submit_.pop_front();
        }
        submitting_ = true;
        action = kSubmit;
      } else if (!read_pending_ && !input_done_ && to_submit_.empty() && !submitting_ &&
                 outstanding_ < window_) {
        read_pending_ = true;
        action = kRead;
      }
      if (action == kWrite) writing_ = true;
      if (action == kFinish) finished_ = true;
      if (action == kNone && !again_) {
        pumping_ = false;
        return;
      }
    }
    switch (action) {
      case kRead:
        request_.Clear();
        reactor->StartRead(&request_);
        break;
      case kWrite:
        reactor->StartWrite(&response_);
        break;
      case kFinish: {
        CancelAll(cancel, "STREAM_ENDED", "cancelled: its Map stream ended");
        reactor->Finish(status);
        absl::MutexLock lock(&mu_);
        pumping_ = false;
        return;
      }
      case kSubmit: {
        std::vector<pool::TaskSpec> specs;
        pool::PoolTable::SubmitOptions options;
        std::vector<std::pair<uint64_t, uint64_t>> ids;  // position, index
        for (auto& input : batch) {
          specs.push_back(std::move(input.spec));
          options.fields.push_back(absl::StrCat("inputs[index=", input.index, "]"));
          ids.emplace_back(input.position, input.index);
        }
        std::string pool_name;
        {
          absl::MutexLock lock(&mu_);
          pool_name = start_.pool();
          options.session_id = start_.session_id();
        }
        options.wait = true;
        std::weak_ptr<MapCore> weak = self;
        options.on_final = [weak, ids](size_t i, const pool::TaskView& view) {
          if (auto core = weak.lock()) core->OnResult(ids[i].first, ids[i].second, view);
        };
        uint64_t waiter =
            table_.Submit(pool_name, std::move(specs), std::move(options),
                          [weak, batch = std::move(batch)](
                              absl::StatusOr<pool::PoolTable::SubmitResult> result) mutable {
                            if (auto core = weak.lock())
                              core->OnSubmitted(std::move(batch), std::move(result));
                          });
        if (waiter != 0) {
          absl::MutexLock lock(&mu_);
          if (submitting_) submit_waiter_ = waiter;
        }
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

grpc::ServerBidiReactor<v1::MapRequest, v1::MapResponse>* StartMapReactor(
    grpc::CallbackServerContext* context, pool::PoolTable& table, StreamSet& streams,
    int64_t max_message_bytes) {
  auto* reactor = new MapReactor(streams);
  auto core = std::make_shared<MapCore>(reactor, table, max_message_bytes);
  reactor->SetCore(core);
  if (!streams.Add(core)) {
    core->StopForShutdown();
    return reactor;
  }
  core->Pump();
  return reactor;
}

}  // namespace spindle::services
