// SchedulerService over a real channel: the gRPC <-> coroutine bridge (completion, client cancel,
// call deadline) and Sleep.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/scheduler.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"
#include "tests/support/in_process_server.h"
#include "tests/support/spindled_process.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

class SchedulerTest : public testing::InProcessServerTest {
 protected:
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
    stub_ = v1::SchedulerService::NewStub(channel_);
  }

  int64_t LiveCoroutines() {
    auto stub = v1::ServerService::NewStub(channel_);
    grpc::ClientContext context;
    v1::GetStatsResponse stats;
    EXPECT_TRUE(stub->GetStats(&context, {}, &stats).ok());
    return stats.executor().live_coroutines();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
};

TEST_F(SchedulerTest, SleepWaitsAtLeastTheDuration) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SleepRequest request;
  request.set_duration_ms(50);
  v1::SleepResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = stub_->Sleep(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(response.slept_ms(), 50);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
  EXPECT_GT(response.woke_at().seconds(), 0);
}

TEST_F(SchedulerTest, ZeroSleepReturnsAtOnce) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::SleepRequest request;
  v1::SleepResponse response;
  ASSERT_TRUE(stub_->Sleep(&context, request, &response).ok());
  EXPECT_LT(response.slept_ms(), 1000);
}

TEST_F(SchedulerTest, BadDurationIsInvalidArgumentNamingTheField) {
  for (int64_t bad : {int64_t{-1}, int64_t{86'400'001}}) {
    grpc::ClientContext context;
    v1::SleepRequest request;
    request.set_duration_ms(bad);
    v1::SleepResponse response;
    grpc::Status status = stub_->Sleep(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("duration_ms"));
    EXPECT_THAT(status.error_message(), HasSubstr(std::to_string(bad)));
    EXPECT_EQ(services::ReasonOf(status), "INVALID_DURATION");
  }
}

// The call's deadline cancels the coroutine through the executor's timer; the waiter is gone.
TEST_F(SchedulerTest, DeadlineEndsTheSleepAndFreesItsCoroutine) {
  const int64_t before = LiveCoroutines();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  v1::SleepRequest request;
  request.set_duration_ms(60'000);
  v1::SleepResponse response;
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status = stub_->Sleep(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  // The server-side coroutine ends too (bounded wait for the count to come back).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (LiveCoroutines() > before && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  EXPECT_LE(LiveCoroutines(), before);
}

// A client that cancels ends the server's wait at once (CANCELLED), not after 60 s.
TEST_F(SchedulerTest, ClientCancelEndsTheSleep) {
  const int64_t before = LiveCoroutines();
  grpc::ClientContext context;
  v1::SleepRequest request;
  request.set_duration_ms(60'000);
  v1::SleepResponse response;
  std::promise<grpc::Status> done;
  stub_->async()->Sleep(&context, &request, &response,
                        [&](grpc::Status s) { done.set_value(std::move(s)); });
  // Wait until the server holds the sleeping coroutine, then cancel.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (LiveCoroutines() <= before && std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
  context.TryCancel();
  auto future = done.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(future.get().error_code(), grpc::StatusCode::CANCELLED);
  const auto until2 = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (LiveCoroutines() > before && std::chrono::steady_clock::now() < until2) {
    std::this_thread::yield();
  }
  EXPECT_LE(LiveCoroutines(), before);
}

int ThreadsInThisProcess() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) {
      return std::stoi(line.substr(8));
    }
  }
  return -1;
}

// Thousands of concurrent sleeps cost coroutine frames, not threads: while 2,000 are pending the
// process (server and client) has no more threads than before, give or take gRPC's pollers.
TEST_F(SchedulerTest, ThousandsOfSleepsCostNoThreads) {
  constexpr int kCalls = 2000;
  struct Call {
    grpc::ClientContext context;
    v1::SleepRequest request;
    v1::SleepResponse response;
  };
  const int threads_before = ThreadsInThisProcess();
  const int64_t live_before = LiveCoroutines();
  std::vector<std::unique_ptr<Call>> calls;
  std::atomic<int> cancelled{0};
  std::atomic<int> finished{0};
  std::promise<void> all_done;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    call->request.set_duration_ms(60'000);
    stub_->async()->Sleep(&call->context, &call->request, &call->response, [&](grpc::Status s) {
      if (s.error_code() == grpc::StatusCode::CANCELLED) {
        cancelled.fetch_add(1);
      }
      if (finished.fetch_add(1) + 1 == kCalls) {
        all_done.set_value();
      }
    });
    calls.push_back(std::move(call));
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (LiveCoroutines() < live_before + kCalls && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a remote count
  }
  ASSERT_GE(LiveCoroutines(), live_before + kCalls) << "not every sleep reached the server";
  EXPECT_LT(ThreadsInThisProcess(), threads_before + 16);
  EXPECT_EQ(finished.load(), 0);
  for (auto& call : calls) {
    call->context.TryCancel();
  }
  ASSERT_EQ(all_done.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(cancelled.load(), kCalls);
}

}  // namespace
}  // namespace spindle
