// FetchAll against a loopback HTTP server started by the test: concurrency, HTTP statuses and
// transport errors as results, body limits, redirects, headers, cancellation and validation.
#include "spindle/http/fetcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/synchronization/mutex.h"
#include "spindle/common/status.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/sync_wait.h"
#include "tests/lib/http/loopback_http_server.h"

namespace spindle::http {
namespace {

using ::testing::HasSubstr;

class CollectingSink final : public ResultSink {
 public:
  // Cancels `cancel` (if set) once `cancel_after` results arrived.
  explicit CollectingSink(coro::CancellationSource* cancel = nullptr, int cancel_after = 0)
      : cancel_(cancel), cancel_after_(cancel_after) {}

  coro::Task<absl::Status> Deliver(FetchResult result) override {
    int count;
    {
      absl::MutexLock lock(&mu_);
      results_.push_back(std::move(result));
      count = static_cast<int>(results_.size());
    }
    if (cancel_ != nullptr && count == cancel_after_) {
      cancel_->Cancel();
    }
    co_return absl::OkStatus();
  }

  std::vector<FetchResult> results() {
    absl::MutexLock lock(&mu_);
    return results_;
  }

 private:
  coro::CancellationSource* const cancel_;
  const int cancel_after_;
  absl::Mutex mu_;
  std::vector<FetchResult> results_ ABSL_GUARDED_BY(mu_);
};

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto executor = coro::Executor::Create({.threads = 2, .name = "fetch"});
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = std::move(*executor);
  }

  absl::StatusOr<FetchSummary> Fetch(std::vector<FetchTarget> targets, FetchOptions options,
                                     ResultSink* sink,
                                     coro::CancellationToken token = coro::CancellationToken()) {
    EXPECT_TRUE(ValidateFetch(targets, options).ok());
    return coro::SyncWait(
        FetchAll(executor_.get(), std::move(targets), std::move(options), sink, token));
  }

  // One URL with default options.
  FetchResult FetchOne(const std::string& url, FetchOptions options = {}) {
    CollectingSink sink;
    auto summary = Fetch({{.url = url}}, std::move(options), &sink);
    EXPECT_TRUE(summary.ok()) << summary.status();
    auto results = sink.results();
    EXPECT_EQ(results.size(), 1u);
    return results.empty() ? FetchResult{} : results[0];
  }

  testing::LoopbackHttpServer server_;
  std::unique_ptr<coro::Executor> executor_;
};

TEST_F(FetcherTest, FetchesOneUrl) {
  FetchResult result = FetchOne(server_.Url("/"));
  EXPECT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.status_code, 200);
  EXPECT_EQ(result.body, "hello");
  EXPECT_FALSE(result.body_truncated);
  EXPECT_EQ(result.content_length, 5);
  EXPECT_EQ(result.http_version, "1.1");
  EXPECT_EQ(result.remote_address, absl::StrCat("127.0.0.1:", server_.port()));
  EXPECT_EQ(result.effective_url, server_.Url("/"));
  EXPECT_GE(result.timing.total_ms, result.timing.first_byte_ms);
  bool has_length = false;
  for (const Header& header : result.headers) {
    has_length |= header.name == "Content-Length" && header.value == "5";
  }
  EXPECT_TRUE(has_length);
}

TEST_F(FetcherTest, ManyUrlsOverlapUpToMaxConcurrency) {
  constexpr int kUrls = 200;
  constexpr int kDelayMs = 100;
  std::vector<FetchTarget> targets;
  for (int i = 0; i < kUrls; ++i) {
    targets.push_back(
        {.url = server_.Url(absl::StrCat("/delay/", kDelayMs)), .tag = absl::StrCat("t", i)});
  }
  FetchOptions options;
  options.max_concurrency = 50;
  CollectingSink sink;
  auto summary = Fetch(std::move(targets), options, &sink);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->completed, kUrls);
  EXPECT_EQ(summary->failed, 0);
  std::set<int> indices;
  for (const FetchResult& result : sink.results()) {
    EXPECT_EQ(result.status_code, 200) << result.error;
    EXPECT_EQ(result.tag, absl::StrCat("t", result.index));
    indices.insert(result.index);
  }
  EXPECT_EQ(indices.size(), static_cast<size_t>(kUrls));
  // Counted by the server, not timed: transfers overlapped, and never more than 50 at once.
  EXPECT_GT(server_.most_delayed_at_once(), 1);
  EXPECT_LE(server_.most_delayed_at_once(), 50);
}

TEST_F(FetcherTest, HttpErrorStatusIsANormalResult) {
  FetchResult result = FetchOne(server_.Url("/status/404"));
  EXPECT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.status_code, 404);
  EXPECT_EQ(result.body, "status 404");
}

TEST_F(FetcherTest, ConnectionRefusedIsAFailedResult) {
  testing::LoopbackHttpServer closed;
  const std::string url = closed.Url("/");
  closed.Stop();
  CollectingSink sink;
  auto summary = Fetch({{.url = url}}, {}, &sink);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->failed, 1);
  ASSERT_EQ(sink.results().size(), 1u);
  const FetchResult result = sink.results()[0];
  EXPECT_EQ(result.status_code, 0);
  EXPECT_EQ(result.error_reason, "CONNECT_FAILED");
  EXPECT_FALSE(result.error.empty());
  EXPECT_TRUE(result.http_version.empty());
}

TEST_F(FetcherTest, SlowServerTimesOut) {
  FetchOptions options;
  options.timeout = absl::Milliseconds(200);
  options.connect_timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  FetchResult result = FetchOne(server_.Url("/hang"), options);
  EXPECT_EQ(result.error_reason, "TIMED_OUT");
  EXPECT_THAT(result.error, HasSubstr("timed out"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(FetcherTest, BodyIsCutAtMaxBodyBytes) {
  FetchOptions options;
  options.max_body_bytes = 1000;
  FetchResult result = FetchOne(server_.Url("/bytes/100000"), options);
  EXPECT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.status_code, 200);
  EXPECT_TRUE(result.body_truncated);
  EXPECT_EQ(result.body.size(), 1000u);
  EXPECT_EQ(result.content_length, 100000);
}

TEST_F(FetcherTest, BodyOfExactlyMaxBytesIsNotCut) {
  FetchOptions options;
  options.max_body_bytes = 1000;
  FetchResult result = FetchOne(server_.Url("/bytes/1000"), options);
  EXPECT_TRUE(result.ok()) << result.error;
  EXPECT_FALSE(result.body_truncated);
  EXPECT_EQ(result.body.size(), 1000u);
}

TEST_F(FetcherTest, ConnectionClosedMidBodyIsReceiveFailed) {
  FetchResult result = FetchOne(server_.Url("/truncate"));
  EXPECT_EQ(result.status_code, 200);
  EXPECT_EQ(result.error_reason, "RECEIVE_FAILED");
  EXPECT_EQ(result.body, "0123456789");
}

TEST_F(FetcherTest, FollowsRedirectsUpToTheLimit) {
  FetchResult followed = FetchOne(server_.Url("/redirect/2"));
  EXPECT_TRUE(followed.ok()) << followed.error;
  EXPECT_EQ(followed.status_code, 200);
  EXPECT_EQ(followed.redirects, 2);
  EXPECT_EQ(followed.effective_url, server_.Url("/redirect/0"));
  EXPECT_EQ(followed.body, "arrived");

  FetchOptions one;
  one.max_redirects = 1;
  FetchResult too_many = FetchOne(server_.Url("/redirect/2"), one);
  EXPECT_EQ(too_many.error_reason, "TOO_MANY_REDIRECTS");

  FetchOptions none;
  none.max_redirects = 0;
  FetchResult not_followed = FetchOne(server_.Url("/redirect/2"), none);
  EXPECT_TRUE(not_followed.ok()) << not_followed.error;
  EXPECT_EQ(not_followed.status_code, 302);
}

TEST_F(FetcherTest, SendsCallAndTargetHeaders) {
  FetchOptions options;
  options.headers = {{"User-Agent", "spindle-test"}, {"X-Both", "call"}};
  CollectingSink sink;
  auto summary =
      Fetch({{.url = server_.Url("/headers"), .headers = {{"X-Both", "target"}}}}, options, &sink);
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::string body = sink.results().at(0).body;
  EXPECT_THAT(body, HasSubstr("User-Agent: spindle-test"));
  EXPECT_THAT(body, HasSubstr("X-Both: call"));
  EXPECT_THAT(body, HasSubstr("X-Both: target"));
}

TEST_F(FetcherTest, CancellationAbortsRemainingTransfers) {
  std::vector<FetchTarget> targets = {{.url = server_.Url("/")}};
  for (int i = 0; i < 10; ++i) {
    targets.push_back({.url = server_.Url("/hang")});
  }
  coro::CancellationSource cancel;
  CollectingSink sink(&cancel, /*cancel_after=*/1);
  FetchOptions options;
  options.max_concurrency = 11;
  const absl::Time start = absl::Now();
  auto summary = Fetch(std::move(targets), options, &sink, cancel.token());
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled) << summary.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(sink.results().size(), 1u);
  // The hanging connections were closed by the client (bounded wait).
  const absl::Time limit = absl::Now() + absl::Seconds(10);
  while (server_.open_connections() > 0 && absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_.open_connections(), 0);
}

TEST_F(FetcherTest, RunsManyCallsAtOnce) {
  constexpr int kCalls = 8;
  std::vector<std::unique_ptr<CollectingSink>> sinks;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < kCalls; ++i) {
    sinks.push_back(std::make_unique<CollectingSink>());
  }
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      std::vector<FetchTarget> targets(10, FetchTarget{.url = server_.Url("/delay/20")});
      auto summary = coro::SyncWait(FetchAll(executor_.get(), std::move(targets), {},
                                             sinks[i].get(), coro::CancellationToken()));
      if (summary.ok() && summary->completed == 10) {
        ++ok;
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(ok.load(), kCalls);
}

TEST(ValidateFetchTest, RejectsBadInputNamingTheField) {
  const auto reason_and_message = [](std::vector<FetchTarget> targets, FetchOptions options = {}) {
    absl::Status status = ValidateFetch(targets, options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    return Reason(status) + " " + std::string(status.message());
  };
  EXPECT_THAT(reason_and_message({}), HasSubstr("targets: 0 URLs"));
  EXPECT_THAT(reason_and_message({{.url = "http://a/"}, {.url = "not a url"}}),
              HasSubstr("INVALID_URL targets[1].url"));
  EXPECT_THAT(reason_and_message({{.url = "ftp://example.com/x"}}),
              HasSubstr("only http and https"));
  EXPECT_THAT(reason_and_message({{.url = "file:///etc/passwd"}}), HasSubstr("targets[0].url"));
  EXPECT_THAT(reason_and_message({{.url = "/relative"}}), HasSubstr("INVALID_URL"));
  EXPECT_THAT(reason_and_message({{.url = ""}}), HasSubstr("targets[0].url: length 0"));
  EXPECT_THAT(reason_and_message({{.url = "http://a/", .headers = {{"Bad Name", "v"}}}}),
              HasSubstr("INVALID_HEADER targets[0].headers[0].name"));
  EXPECT_THAT(reason_and_message({{.url = "http://a/", .headers = {{"X", "a\r\nInjected: 1"}}}}),
              HasSubstr("targets[0].headers[0].value"));
  FetchOptions bad_concurrency;
  bad_concurrency.max_concurrency = 5000;
  EXPECT_THAT(reason_and_message({{.url = "http://a/"}}, bad_concurrency),
              HasSubstr("max_concurrency 5000"));
  FetchOptions bad_connect;
  bad_connect.timeout = absl::Milliseconds(100);
  bad_connect.connect_timeout = absl::Milliseconds(200);
  EXPECT_THAT(reason_and_message({{.url = "http://a/"}}, bad_connect),
              HasSubstr("connect_timeout_ms 200"));
  EXPECT_TRUE(ValidateFetch({{.url = "https://example.com/a?b=c"}}, {}).ok());
}

}  // namespace
}  // namespace spindle::http
