// SchedulerService.FetchUrls over a real channel to a real server, against a loopback HTTP server
// the test starts itself: concurrency, results for HTTP and transport errors, body limits,
// cancellation and deadlines aborting transfers, and request validation.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/scheduler.grpc.pb.h"
#include "tests/lib/http/loopback_http_server.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

struct FetchOutcome {
  grpc::Status status;
  std::vector<v1::FetchResult> results;
  std::optional<v1::FetchSummary> summary;
};

class SchedulerFetchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    services::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "";
    auto server = services::SpindleServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value().release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
    stub_ = v1::SchedulerService::NewStub(channel_);
  }

  static v1::FetchUrlsRequest Request(const std::vector<std::string>& urls) {
    v1::FetchUrlsRequest request;
    for (const std::string& url : urls) {
      request.add_targets()->set_url(url);
    }
    return request;
  }

  FetchOutcome Fetch(const v1::FetchUrlsRequest& request,
                     std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    auto reader = stub_->FetchUrls(&context, request);
    FetchOutcome outcome;
    v1::FetchUrlsResponse message;
    while (reader->Read(&message)) {
      if (message.has_result()) {
        outcome.results.push_back(message.result());
      } else if (message.has_summary()) {
        outcome.summary = message.summary();
      }
    }
    outcome.status = reader->Finish();
    return outcome;
  }

  static services::SpindleServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
  testing::LoopbackHttpServer http_;
};

services::SpindleServer* SchedulerFetchTest::server_ = nullptr;

TEST_F(SchedulerFetchTest, ManyUrlsAreFetchedConcurrently) {
  std::vector<std::string> urls;
  for (int i = 0; i < 200; ++i) {
    urls.push_back(http_.Url("/delay/100"));
  }
  v1::FetchUrlsRequest request = Request(urls);
  request.set_max_concurrency(50);
  for (int i = 0; i < request.targets_size(); ++i) {
    request.mutable_targets(i)->set_tag(absl::StrCat("tag-", i));
  }
  const auto start = std::chrono::steady_clock::now();
  FetchOutcome outcome = Fetch(request);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_TRUE(outcome.summary.has_value());
  EXPECT_EQ(outcome.summary->completed(), 200);
  EXPECT_EQ(outcome.summary->failed(), 0);
  std::set<int> indices;
  for (const v1::FetchResult& result : outcome.results) {
    EXPECT_EQ(result.status_code(), 200) << result.error();
    EXPECT_EQ(result.tag(), absl::StrCat("tag-", result.index()));
    EXPECT_EQ(result.body(), "ok");
    EXPECT_EQ(result.http_version(), "1.1");
    EXPECT_GT(result.started_at().seconds(), 0);
    indices.insert(result.index());
  }
  EXPECT_EQ(indices.size(), 200u);
  // Serially this is 20 s; four waves of 50 take about 0.4 s.
  EXPECT_LT(elapsed, std::chrono::seconds(8));
}

TEST_F(SchedulerFetchTest, HttpErrorsAndRefusedConnectionsAreResults) {
  testing::LoopbackHttpServer closed;
  const std::string refused = closed.Url("/");
  closed.Stop();
  FetchOutcome outcome = Fetch(Request({http_.Url("/status/404"), refused}));
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_EQ(outcome.results.size(), 2u);
  for (const v1::FetchResult& result : outcome.results) {
    if (result.index() == 0) {
      EXPECT_EQ(result.status_code(), 404);
      EXPECT_TRUE(result.error().empty());
    } else {
      EXPECT_EQ(result.status_code(), 0);
      EXPECT_EQ(result.error_reason(), "CONNECT_FAILED");
      EXPECT_FALSE(result.error().empty());
    }
  }
  ASSERT_TRUE(outcome.summary.has_value());
  EXPECT_EQ(outcome.summary->completed(), 1);
  EXPECT_EQ(outcome.summary->failed(), 1);
}

TEST_F(SchedulerFetchTest, SlowUrlTimesOutAsAResult) {
  v1::FetchUrlsRequest request = Request({http_.Url("/hang"), http_.Url("/")});
  request.set_timeout_ms(300);
  FetchOutcome outcome = Fetch(request);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_EQ(outcome.results.size(), 2u);
  EXPECT_EQ(outcome.results[0].index(), 1);  // Completion order: the fast one first.
  EXPECT_EQ(outcome.results[1].error_reason(), "TIMED_OUT");
}

TEST_F(SchedulerFetchTest, LongBodyIsTruncated) {
  v1::FetchUrlsRequest request = Request({http_.Url("/bytes/5000"), http_.Url("/truncate")});
  request.set_max_body_bytes(100);
  FetchOutcome outcome = Fetch(request);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_EQ(outcome.results.size(), 2u);
  for (const v1::FetchResult& result : outcome.results) {
    if (result.index() == 0) {
      EXPECT_TRUE(result.body_truncated());
      EXPECT_EQ(result.body().size(), 100u);
      EXPECT_EQ(result.content_length(), 5000);
      EXPECT_TRUE(result.error().empty());
    } else {
      // The server announced 100 bytes and closed after 10.
      EXPECT_EQ(result.error_reason(), "RECEIVE_FAILED");
      EXPECT_EQ(result.body(), "0123456789");
    }
  }
}

TEST_F(SchedulerFetchTest, CancellingMidTransferAbortsTheRemainingTransfers) {
  std::vector<std::string> urls = {http_.Url("/")};
  for (int i = 0; i < 10; ++i) urls.push_back(http_.Url("/hang"));
  v1::FetchUrlsRequest request = Request(urls);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub_->FetchUrls(&context, request);
  v1::FetchUrlsResponse message;
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_EQ(message.result().index(), 0);
  // Wait (bounded) until every hanging request reached the server, then cancel.
  for (int i = 0; i < 1000 && http_.open_connections() < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(http_.open_connections(), 10);
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 1000 && http_.open_connections() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(http_.open_connections(), 0);
}

TEST_F(SchedulerFetchTest, CallDeadlineAbortsTheTransfers) {
  FetchOutcome outcome =
      Fetch(Request({http_.Url("/hang"), http_.Url("/hang")}), std::chrono::milliseconds(500));
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  for (int i = 0; i < 1000 && http_.open_connections() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(http_.open_connections(), 0);
}

TEST_F(SchedulerFetchTest, BadRequestsAreInvalidArgumentNamingTheField) {
  const auto error = [&](const v1::FetchUrlsRequest& request) {
    FetchOutcome outcome = Fetch(request);
    EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(outcome.results.empty());
    return services::ReasonOf(outcome.status) + " " + outcome.status.error_message();
  };
  EXPECT_THAT(error(Request({})), HasSubstr("targets"));
  const std::string ok = http_.Url("/");
  EXPECT_THAT(error(Request({ok, ok, ok, "http//missing-colon"})),
              HasSubstr("INVALID_URL targets[3].url"));
  EXPECT_THAT(error(Request({"ftp://127.0.0.1/file"})), HasSubstr("only http and https"));
  v1::FetchUrlsRequest bad_header = Request({ok});
  auto* header = bad_header.add_headers();
  header->set_name("Bad Header");
  header->set_value("x");
  EXPECT_THAT(error(bad_header), HasSubstr("INVALID_HEADER headers[0].name"));
  v1::FetchUrlsRequest crlf = Request({ok});
  auto* injected = crlf.mutable_targets(0)->add_headers();
  injected->set_name("X-Test");
  injected->set_value("a\r\nHost: evil");
  EXPECT_THAT(error(crlf), HasSubstr("targets[0].headers[0].value"));
  v1::FetchUrlsRequest concurrency = Request({ok});
  concurrency.set_max_concurrency(2000);
  EXPECT_THAT(error(concurrency), HasSubstr("max_concurrency 2000"));
  v1::FetchUrlsRequest negative = Request({ok});
  negative.set_timeout_ms(-5);
  EXPECT_THAT(error(negative), HasSubstr("timeout_ms -5"));
}

}  // namespace
}  // namespace spindle
