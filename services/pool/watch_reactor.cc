#include "services/pool/watch_reactor.h"

#include <algorithm>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/status_convert.h"
#include "services/pool/convert.h"
#include "spindle/common/labels.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

class WatchReactor;

// State shared by the reactor and the engine's notifications; outlives the reactor.
class WatchCore final : public StoppableStream, public std::enable_shared_from_this<WatchCore> {
 public:
  WatchCore(WatchReactor* reactor, v1::WatchTasksRequest request, LabelSelector selector)
      : reactor_(reactor), request_(std::move(request)), selector_(std::move(selector)) {
    for (int t : request_.types()) types_.insert(t);
    task_ids_.insert(request_.task_ids().begin(), request_.task_ids().end());
  }

  void Attach(std::unique_ptr<pool::EventSubscription> subscription, int64_t cursor) {
    absl::MutexLock lock(&mu_);
    subscription_ = std::move(subscription);
    cursor_ = cursor;
  }

  void Pump();
  void OnWriteDone(bool ok) {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok && !error_.has_value()) error_ = grpc::Status::CANCELLED;
    }
    Pump();
  }
  void OnCancel() {
    {
      absl::MutexLock lock(&mu_);
      if (!error_.has_value()) error_ = grpc::Status::CANCELLED;
    }
    Pump();
  }
  void StopForShutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (!error_.has_value()) {
        error_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down");
      }
    }
    Pump();
  }
  // The reactor is gone: drop the subscription (outside our lock).
  void Detach() {
    std::unique_ptr<pool::EventSubscription> subscription;
    {
      absl::MutexLock lock(&mu_);
      reactor_ = nullptr;
      subscription = std::move(subscription_);
    }
  }

 private:
  bool Matches(const pool::TaskEvent& e) const {
    if (!types_.empty() && !types_.contains(static_cast<int>(e.type))) return false;
    if (!task_ids_.empty() && !task_ids_.contains(e.task_id)) return false;
    return selector_.Matches(e.labels);
  }

  absl::Mutex mu_;
  WatchReactor* reactor_ ABSL_GUARDED_BY(mu_);
  const v1::WatchTasksRequest request_;
  const LabelSelector selector_;
  std::set<int> types_;
  std::set<std::string> task_ids_;
  std::unique_ptr<pool::EventSubscription> subscription_ ABSL_GUARDED_BY(mu_);
  int64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> error_ ABSL_GUARDED_BY(mu_);
  v1::WatchTasksResponse response_;
};

class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchTasksResponse> {
 public:
  explicit WatchReactor(StreamSet& streams) : streams_(streams) {}
  void SetCore(std::shared_ptr<WatchCore> core) { core_ = std::move(core); }
  void OnWriteDone(bool ok) override { core_->OnWriteDone(ok); }
  void OnCancel() override { core_->OnCancel(); }
  void OnDone() override {
    core_->Detach();
    streams_.Remove(core_);
    delete this;
  }

 private:
  StreamSet& streams_;
  std::shared_ptr<WatchCore> core_;
};

void WatchCore::Pump() {
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
    enum { kNone, kWrite, kFinish } action = kNone;
    grpc::Status status;
    WatchReactor* reactor = nullptr;
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
        }
      } else if (!writing_ && subscription_ != nullptr) {
        while (action == kNone) {
          auto read = subscription_->Read(cursor_, 64);
          if (!read.ok()) {
            action = kFinish;
            status = cursor_ == request_.after_sequence()
                         ? ToGrpcStatus(read.status())
                         : ToGrpcStatus(ResourceExhausted(
                               "WATCH_LAGGING",
                               absl::StrCat("watch of pool '", request_.pool(),
                                            "' fell behind the retained events after sequence ",
                                            cursor_, "; resume from it")));
            break;
          }
          if (read->events.empty()) {
            if (read->pool_deleted) {
              action = kFinish;
              status = grpc::Status::OK;
            }
            break;
          }
          for (const auto& e : read->events) {
            cursor_ = e.sequence;
            if (Matches(e)) {
              response_.Clear();
              ToProto(e, request_.include_output(), response_.mutable_event());
              action = kWrite;
              break;
            }
          }
        }
      }
      if (action == kWrite) writing_ = true;
      if (action == kFinish) finished_ = true;
      if (action == kNone && !again_) {
        pumping_ = false;
        return;
      }
    }
    if (action == kWrite) reactor->StartWrite(&response_);
    if (action == kFinish) {
      reactor->Finish(status);
      absl::MutexLock lock(&mu_);
      pumping_ = false;
      return;
    }
  }
}

}  // namespace

grpc::ServerWriteReactor<v1::WatchTasksResponse>* StartWatchReactor(
    grpc::CallbackServerContext* context, const v1::WatchTasksRequest* request,
    pool::PoolTable& table, StreamSet& streams) {
  auto* reactor = new WatchReactor(streams);
  auto fail = [reactor](const absl::Status& status) {
    reactor->SetCore(
        std::make_shared<WatchCore>(nullptr, v1::WatchTasksRequest{}, LabelSelector()));
    reactor->Finish(ToGrpcStatus(status));
    return reactor;
  };
  if (request->after_sequence() < 0) {
    return fail(InvalidArgument(
        "INVALID_ARGUMENT",
        absl::StrCat("after_sequence: ", request->after_sequence(), " is negative")));
  }
  for (int i = 0; i < request->types_size(); ++i) {
    if (request->types(i) < 1 || request->types(i) > 7) {
      return fail(
          InvalidArgument("INVALID_ARGUMENT",
                          absl::StrCat("types[", i, "]: unknown event type ", request->types(i))));
    }
  }
  if (request->from_oldest() && request->after_sequence() != 0) {
    return fail(InvalidArgument("INVALID_ARGUMENT",
                                absl::StrCat("after_sequence: ", request->after_sequence(),
                                             " given with from_oldest; give one or the other")));
  }
  if (request->task_ids_size() > 1000) {
    return fail(InvalidArgument("INVALID_ARGUMENT", "task_ids: more than 1000"));
  }
  auto selector = LabelSelector::Parse("label_selector", request->label_selector());
  if (!selector.ok()) return fail(selector.status());
  auto core = std::make_shared<WatchCore>(reactor, *request, *std::move(selector));
  reactor->SetCore(core);
  std::weak_ptr<WatchCore> weak = core;
  auto subscription = table.Subscribe(request->pool(), [weak] {
    if (auto c = weak.lock()) c->Pump();
  });
  if (!subscription.ok()) {
    core->Detach();
    reactor->Finish(ToGrpcStatus(subscription.status()));
    return reactor;
  }
  int64_t cursor = request->from_oldest()          ? (*subscription)->BeforeOldest()
                   : request->after_sequence() > 0 ? request->after_sequence()
                                                   : (*subscription)->LastSequence();
  core->Attach(*std::move(subscription), cursor);
  if (!streams.Add(core)) {
    core->StopForShutdown();
    return reactor;
  }
  core->Pump();
  return reactor;
}

}  // namespace spindle::services
