#include "services/scheduler/fetch_reactor.h"

#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/coro_call.h"
#include "services/common/status_convert.h"
#include "spindle/common/status.h"
#include "spindle/coro/async_semaphore.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/deadline.h"
#include "spindle/http/fetcher.h"

namespace spindle::services {
namespace {

// Results queued for the client before the fetch coroutine waits.
constexpr int64_t kWriteWindow = 8;

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

std::vector<http::Header> FromProto(const google::protobuf::RepeatedPtrField<v1::FetchHeader>& in) {
  std::vector<http::Header> out;
  out.reserve(in.size());
  for (const v1::FetchHeader& header : in) {
    out.push_back({header.name(), header.value()});
  }
  return out;
}

// Fills defaults (scheduler.proto) and checks the request.
absl::Status FromProto(const v1::FetchUrlsRequest& request, std::vector<http::FetchTarget>& targets,
                       http::FetchOptions& options) {
  for (const v1::FetchTarget& target : request.targets()) {
    targets.push_back({target.url(), FromProto(target.headers()), target.tag()});
  }
  options.max_concurrency = request.max_concurrency() == 0 ? 16 : request.max_concurrency();
  const int64_t timeout_ms = request.timeout_ms() == 0 ? 30'000 : request.timeout_ms();
  options.timeout = absl::Milliseconds(timeout_ms);
  const int64_t connect_ms = request.connect_timeout_ms() == 0
                                 ? (timeout_ms > 0 ? std::min<int64_t>(10'000, timeout_ms) : 10'000)
                                 : request.connect_timeout_ms();
  options.connect_timeout = absl::Milliseconds(connect_ms);
  options.max_body_bytes = request.max_body_bytes() == 0 ? 1 << 20 : request.max_body_bytes();
  options.max_redirects = request.has_max_redirects() ? request.max_redirects() : 5;
  options.headers = FromProto(request.headers());
  options.decompress = request.decompress();
  return http::ValidateFetch(targets, options);
}

void ToProto(http::FetchResult& result, v1::FetchResult* out) {
  out->set_index(result.index);
  out->set_url(std::move(result.url));
  out->set_tag(std::move(result.tag));
  out->set_effective_url(std::move(result.effective_url));
  out->set_status_code(result.status_code);
  for (http::Header& header : result.headers) {
    v1::FetchHeader* h = out->add_headers();
    h->set_name(std::move(header.name));
    h->set_value(std::move(header.value));
  }
  out->set_body(std::move(result.body));
  out->set_body_truncated(result.body_truncated);
  out->set_content_length(result.content_length);
  v1::FetchTiming* timing = out->mutable_timing();
  timing->set_name_lookup_ms(result.timing.name_lookup_ms);
  timing->set_connect_ms(result.timing.connect_ms);
  timing->set_tls_ms(result.timing.tls_ms);
  timing->set_first_byte_ms(result.timing.first_byte_ms);
  timing->set_total_ms(result.timing.total_ms);
  timing->set_redirect_ms(result.timing.redirect_ms);
  out->set_error(std::move(result.error));
  out->set_error_reason(std::move(result.error_reason));
  SetTimestamp(result.started_at, out->mutable_started_at());
  out->set_http_version(std::move(result.http_version));
  out->set_redirects(result.redirects);
  out->set_remote_address(std::move(result.remote_address));
}

class FetchReactor final : public grpc::ServerWriteReactor<v1::FetchUrlsResponse>,
                           public http::ResultSink {
 public:
  FetchReactor(grpc::CallbackServerContext* context, coro::Executor& executor,
               FetchLimiter& limiter, SchedulerMetrics& metrics)
      : executor_(executor),
        limiter_(limiter),
        metrics_(metrics),
        deadline_(executor, CallDeadline(*context), cancelled_.token()),
        window_(kWriteWindow) {}

  // Validates and starts the fetch, or finishes at once with the error.
  void Start(const v1::FetchUrlsRequest& request) {
    std::vector<http::FetchTarget> targets;
    http::FetchOptions options;
    absl::Status valid = FromProto(request, targets, options);
    if (!valid.ok()) {
      Finish(ToGrpcStatus(valid));
      return;
    }
    if (!limiter_.TryEnter()) {
      Finish(ToGrpcStatus(ResourceExhausted(
          "TOO_MANY_FETCHES", absl::StrCat("more than ", limiter_.max_calls(),
                                           " FetchUrls calls are in progress on this server"))));
      return;
    }
    if (!executor_.Spawn(Drive(this, std::move(targets), std::move(options)))) {
      limiter_.Leave();
      Finish(ToGrpcStatus(Unavailable("SHUTTING_DOWN", "the server is shutting down")));
    }
  }

  coro::Task<absl::Status> Deliver(http::FetchResult result) override {
    metrics_.OnFetchResult(result);
    SPINDLE_CO_RETURN_IF_ERROR(co_await window_.Acquire(1, deadline_.token()));
    v1::FetchUrlsResponse message;
    ToProto(result, message.mutable_result());
    absl::MutexLock lock(&mu_);
    if (broken_) {
      co_return Cancelled("the FetchUrls stream broke");
    }
    queue_.push_back(std::move(message));
    WriteNextLocked();
    co_return absl::OkStatus();
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!queue_.empty()) {
        queue_.pop_front();
      }
      if (!ok) {
        broken_ = true;
        queue_.clear();
      }
      WriteNextLocked();
      finish = TakeFinishLocked(status);
    }
    window_.Release(1);
    if (!ok) {
      cancelled_.Cancel(Cancelled("the FetchUrls stream broke"));
    }
    if (finish) {
      Finish(status);  // The last touch of `this`.
    }
  }

  void OnCancel() override {
    cancelled_.Cancel(Cancelled("the client cancelled the call or went away"));
  }

  void OnDone() override { delete this; }

 private:
  static coro::Task<void> Drive(FetchReactor* self, std::vector<http::FetchTarget> targets,
                                http::FetchOptions options) {
    absl::StatusOr<http::FetchSummary> summary = co_await http::FetchAll(
        &self->executor_, std::move(targets), std::move(options), self, self->deadline_.token());
    self->Complete(std::move(summary));
  }

  void Complete(absl::StatusOr<http::FetchSummary> summary) {
    limiter_.Leave();
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (summary.ok() && !broken_) {
        v1::FetchUrlsResponse message;
        v1::FetchSummary* out = message.mutable_summary();
        out->set_completed(summary->completed);
        out->set_failed(summary->failed);
        out->set_elapsed_ms(absl::ToInt64Milliseconds(summary->elapsed));
        queue_.push_back(std::move(message));
        end_ = grpc::Status::OK;
      } else if (summary.ok()) {
        end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the FetchUrls stream broke");
      } else {
        end_ = ToGrpcStatus(summary.status());
        if (summary.status().code() == absl::StatusCode::kCancelled ||
            summary.status().code() == absl::StatusCode::kDeadlineExceeded) {
          queue_.clear();  // The client is gone or out of time: do not wait for it to read.
        }
      }
      WriteNextLocked();
      finish = TakeFinishLocked(status);
    }
    if (finish) {
      Finish(status);  // The last touch of `this`.
    }
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!writing_ && !broken_ && !queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  // True (once) when the fetch has ended and nothing is left to write.
  bool TakeFinishLocked(grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!end_.has_value() || finished_ || writing_ || (!queue_.empty() && !broken_)) {
      return false;
    }
    finished_ = true;
    status = *end_;
    return true;
  }

  coro::Executor& executor_;
  FetchLimiter& limiter_;
  SchedulerMetrics& metrics_;
  coro::CancellationSource cancelled_;  // Client cancel, broken stream.
  coro::DeadlineSource deadline_;       // The call's deadline, chained to cancelled_.
  coro::AsyncSemaphore window_;

  absl::Mutex mu_;
  std::deque<v1::FetchUrlsResponse> queue_ ABSL_GUARDED_BY(mu_);  // front() is being written.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::FetchUrlsResponse>* NewFetchReactor(
    grpc::CallbackServerContext* context, const v1::FetchUrlsRequest& request,
    coro::Executor& executor, FetchLimiter& limiter, SchedulerMetrics& metrics) {
  auto* reactor = new FetchReactor(context, executor, limiter, metrics);
  reactor->Start(request);
  return reactor;
}

}  // namespace spindle::services
