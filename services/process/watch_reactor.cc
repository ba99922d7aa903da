#include "services/process/watch_reactor.h"

#include <deque>

#include "services/common/status_convert.h"
#include "services/process/convert.h"
#include "services/process/queued_writer.h"
#include "services/process/unary_call.h"

namespace spindle::services {
namespace {

using Base =
    QueuedWriter<grpc::ServerWriteReactor<v1::WatchProcessesResponse>, v1::WatchProcessesResponse>;

class WatchReactor final : public Base,
                           public ProcessStream,
                           public std::enable_shared_from_this<WatchReactor> {
 public:
  WatchReactor(grpc::CallbackServerContext* context, process::ProcessTable& table,
               StreamRegistry& streams)
      : context_(context), table_(table), streams_(streams) {}

  void Start(const v1::WatchProcessesRequest& request) {
    auto filter = FilterFromProto(request.states(), request.label_selector(), request.name_prefix(),
                                  request.session_id());
    absl::Status valid = filter.ok() ? table_.ValidateFilter(*filter) : filter.status();
    if (!valid.ok()) {
      FinishOnce(ToGrpcStatus(valid));
      return;
    }
    if (!streams_.Add(shared_from_this())) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
      return;
    }
    std::weak_ptr<WatchReactor> weak = weak_from_this();
    // Live events are held back until the INITIAL ones are queued.
    watch_ = table_.Watch(*filter, [weak](const process::ProcessEvent& event) {
      if (auto self = weak.lock()) self->OnEvent(event);
    });
    std::deque<v1::WatchProcessesResponse> initial;
    if (request.send_initial()) {
      std::string token;
      do {
        auto page = table_.List(*filter, 1000, token);
        if (!page.ok()) break;
        for (const auto& view : page->processes) {
          process::ProcessEvent event;
          event.type = process::EventType::kInitial;
          event.process = view;
          event.time = absl::Now();
          v1::WatchProcessesResponse response;
          ToProto(event, &response);
          initial.push_back(std::move(response));
        }
        token = page->next_page_token;
      } while (!token.empty());
    }
    std::deque<v1::WatchProcessesResponse> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
      started_ = true;
      in_flight_ += static_cast<int>(initial.size() + held.size());
    }
    for (auto& r : initial) Send(std::move(r));
    for (auto& r : held) Send(std::move(r));
  }

  void StopForShutdown() override {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
  }
  void OnCancel() override { FinishOnce(UnaryCall::CancelledStatus(context_)); }
  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      in_flight_--;
    }
    Base::OnWriteDone(ok);
  }
  void OnDone() override {
    table_.Unwatch(watch_);
    streams_.Remove(shared_from_this());
    std::shared_ptr<WatchReactor> keep = self_;
    self_.reset();
  }

  std::shared_ptr<WatchReactor> self_;

 private:
  void OnEvent(const process::ProcessEvent& event) {
    v1::WatchProcessesResponse response;
    ToProto(event, &response);
    bool lagging = false;
    {
      absl::MutexLock lock(&mu_);
      if (!started_) {
        held_.push_back(std::move(response));
        return;
      }
      lagging = ++in_flight_ > kMaxBufferedEvents;
    }
    if (lagging) {
      FinishOnce(GrpcError(grpc::StatusCode::RESOURCE_EXHAUSTED, "WATCH_LAGGING",
                           "the client read events too slowly: more than 1000 were buffered"));
      return;
    }
    Send(std::move(response));
  }

  grpc::CallbackServerContext* const context_;
  process::ProcessTable& table_;
  StreamRegistry& streams_;
  uint64_t watch_ = 0;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::WatchProcessesResponse> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchProcessesResponse>* StartWatch(
    grpc::CallbackServerContext* context, const v1::WatchProcessesRequest& request,
    process::ProcessTable& table, StreamRegistry& streams) {
  auto reactor = std::make_shared<WatchReactor>(context, table, streams);
  reactor->self_ = reactor;
  reactor->Start(request);
  return reactor.get();
}

}  // namespace spindle::services
