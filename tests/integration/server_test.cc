// The foundation over real channels: the in-process server and the real spindled binary.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/status_convert.h"
#include "services/interceptors/metrics_interceptor.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/server.grpc.pb.h"
#include "tests/support/spindled_process.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

services::ServerConfig EphemeralConfig() {
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  return config;
}

// One server for the suite: starting and stopping the metrics endpoint costs about 2 s each.
class SpindleServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = services::SpindleServer::Start(EphemeralConfig());
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
  }

  // The value of the sample `series` (name{labels}) on /metrics, 0 when absent.
  static double Sample(const std::string& series) {
    auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    if (!body.ok()) {
      return -1;
    }
    auto at = body->find(series + " ");
    if (at == std::string::npos) {
      return 0;
    }
    return std::stod(body->substr(at + series.size() + 1));
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  static services::SpindleServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
};

services::SpindleServer* SpindleServerTest::server_ = nullptr;

TEST_F(SpindleServerTest, HealthIsServing) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckResponse response;
  auto context = Context();
  ASSERT_TRUE(stub->Check(context.get(), {}, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SpindleServerTest, ServerInfoReportsTheBoundAddresses) {
  auto stub = v1::ServerService::NewStub(channel_);
  v1::GetServerInfoResponse info;
  auto context = Context();
  ASSERT_TRUE(stub->GetServerInfo(context.get(), {}, &info).ok());
  EXPECT_EQ(info.listen_address(), server_->listen_address());
  EXPECT_EQ(info.metrics_address(), server_->metrics_address());
  EXPECT_THAT(info.listen_address(), Not(HasSubstr(":0")));
  EXPECT_EQ(info.api_version(), "spindle.v1");
  EXPECT_EQ(info.pid(), getpid());
  EXPECT_THAT(info.services(), ::testing::Contains("spindle.v1.ServerService"));
}

TEST_F(SpindleServerTest, LimitsReflectTheConfiguration) {
  auto stub = v1::ServerService::NewStub(channel_);
  v1::GetLimitsResponse limits;
  auto context = Context();
  ASSERT_TRUE(stub->GetLimits(context.get(), {}, &limits).ok());
  services::ServerConfig defaults;
  EXPECT_EQ(limits.max_message_bytes(), defaults.max_message_bytes);
  EXPECT_EQ(limits.max_processes(), defaults.max_processes);
  EXPECT_EQ(limits.max_name_bytes(), 128);
  EXPECT_EQ(limits.spawn_policy_file(), "");
  EXPECT_EQ(limits.max_live_processes_per_identity(), 0);
}

TEST_F(SpindleServerTest, StatsCountTheCallInFlight) {
  auto stub = v1::ServerService::NewStub(channel_);
  v1::GetStatsResponse stats;
  auto context = Context();
  ASSERT_TRUE(stub->GetStats(context.get(), {}, &stats).ok());
  EXPECT_EQ(stats.inflight_calls(), 1);  // this very call
  EXPECT_GT(stats.executor().threads(), 0);
  EXPECT_GE(stats.executor().tasks_spawned_total(), stats.executor().tasks_completed_total());
}

// A rejected request carries its machine-readable reason twice: in the status details and in the
// `spindle-reason` trailer. (GetPool with an empty request names no pool.)
TEST_F(SpindleServerTest, ErrorsCarryTheReasonInDetailsAndTrailer) {
  grpc::GenericStub stub(channel_);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);  // an empty message is a valid proto3 message
  grpc::ByteBuffer response;
  auto context = Context();
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), "/spindle.v1.PoolService/GetPool", {}, &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(status.error_message().empty());
  const std::string reason = services::ReasonOf(status);
  EXPECT_FALSE(reason.empty());
  auto trailers = context->GetServerTrailingMetadata();
  auto it = trailers.find("spindle-reason");
  ASSERT_NE(it, trailers.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), reason);
}

TEST_F(SpindleServerTest, MetricsCountHandledCallsWithEcosystemLabels) {
  const std::string labels =
      "grpc_method=\"GetServerInfo\",grpc_service=\"spindle.v1.ServerService\","
      "grpc_type=\"unary\"";
  const std::string handled = "grpc_server_handled_total{grpc_code=\"OK\"," + labels + "}";
  const std::string started = "grpc_server_started_total{" + labels + "}";
  const double handled_before = Sample(handled);
  const double started_before = Sample(started);
  auto stub = v1::ServerService::NewStub(channel_);
  for (int i = 0; i < 3; ++i) {
    v1::GetServerInfoResponse info;
    auto context = Context();
    ASSERT_TRUE(stub->GetServerInfo(context.get(), {}, &info).ok());
  }
  EXPECT_EQ(Sample(handled), handled_before + 3);
  EXPECT_EQ(Sample(started), started_before + 3);
  EXPECT_GE(Sample("grpc_server_handling_seconds_count{" + labels + "}"), 3);

  auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  for (const char* family :
       {"process_resident_memory_bytes ", "process_open_fds ", "process_cpu_seconds_total ",
        "process_start_time_seconds ", "process_max_fds ", "spindle_build_info{",
        "spindle_executor_threads ", "spindle_executor_live_coroutines ",
        "spindle_executor_pending_timers ",
        "spindle_executor_queue_lag_seconds_bucket{le=", "spindle_grpc_inflight_calls "}) {
    EXPECT_NE(body->find(family), std::string::npos) << family;
  }
}

TEST_F(SpindleServerTest, FailedCallsAreCountedWithTheirCode) {
  auto call = [&] {
    grpc::GenericStub stub(channel_);
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    auto context = Context();
    std::promise<grpc::Status> done;
    stub.UnaryCall(context.get(), "/spindle.v1.PoolService/GetPool", {}, &request, &response,
                   [&](grpc::Status s) { done.set_value(s); });
    return done.get_future().get();
  };
  grpc::Status first = call();
  ASSERT_FALSE(first.ok());
  const std::string series = std::string("grpc_server_handled_total{grpc_code=\"") +
                             services::GrpcCodeLabel(first.error_code()) +
                             "\",grpc_method=\"GetPool\",grpc_service=\"spindle.v1.PoolService\","
                             "grpc_type=\"unary\"}";
  const double before = Sample(series);
  EXPECT_EQ(call().error_code(), first.error_code());
  EXPECT_EQ(Sample(series), before + 1);
}

TEST(SpindleServerStartTest, BusyPortIsAClearError) {
  auto first = services::SpindleServer::Start(EphemeralConfig());
  ASSERT_TRUE(first.ok()) << first.status();
  services::ServerConfig config = EphemeralConfig();
  config.listen = (*first)->listen_address();
  auto second = services::SpindleServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr((*first)->listen_address()));

  config = EphemeralConfig();
  config.metrics_listen = (*first)->metrics_address();
  second = services::SpindleServer::Start(config);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--metrics-listen"));
}

TEST(SpindleServerStartTest, MalformedAddressIsInvalidArgument) {
  for (const char* address : {"nonsense", "127.0.0.1:99999", "::1:50051", ":50051"}) {
    services::ServerConfig config = EphemeralConfig();
    config.listen = address;
    auto server = services::SpindleServer::Start(config);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(address));
  }
}

TEST(SpindleServerStartTest, ShutdownTurnsHealthNotServingAndRefusesCalls) {
  auto server = services::SpindleServer::Start(EphemeralConfig());
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel =
      grpc::CreateChannel((*server)->listen_address(), grpc::InsecureChannelCredentials());
  auto stub = v1::ServerService::NewStub(channel);
  (*server)->Shutdown(absl::Seconds(5));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetServerInfoResponse info;
  grpc::Status status = stub->GetServerInfo(&context, {}, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ---- The real binary ----

TEST(SpindledBinaryTest, ServesAndExitsZeroOnSigtermWithinGrace) {
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start({"--shutdown-grace-ms=2000"}).ok());
  auto channel = grpc::CreateChannel(spindled.address(), grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::health::v1::HealthCheckResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(stub->Check(&context, {}, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  auto metrics = testing::HttpGet(spindled.metrics_address(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("grpc_server_handled_total{grpc_code=\"OK\",grpc_method="
                                  "\"Check\",grpc_service=\"grpc.health.v1.Health\""));

  auto exit = spindled.SignalAndWait(SIGTERM, absl::Seconds(10));
  ASSERT_TRUE(exit.has_value()) << "spindled did not exit after SIGTERM";
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
  EXPECT_THAT(spindled.logs(), HasSubstr("event=stopped"));
}

TEST(SpindledBinaryTest, SigintAlsoDrains) {
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start().ok());
  auto exit = spindled.SignalAndWait(SIGINT, absl::Seconds(15));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
}

TEST(SpindledBinaryTest, BadFlagsExitNonZeroWithAClearMessage) {
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--no-such-flag"}, "--no-such-flag"},
           {{"--max-processes=-5"}, "--max-processes"},
           {{"--max-message-bytes=abc"}, "--max-message-bytes"},
           {{"--log-level=loud"}, "--log-level"},
           {{"--listen=nonsense"}, "--listen 'nonsense'"},
       }) {
    std::vector<std::string> argv = {testing::SpindledPath()};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto result = testing::RunCommand(argv);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->exit.exited);
    EXPECT_NE(result->exit.code, 0) << c.flags[0];
    EXPECT_THAT(result->err, HasSubstr(c.expected)) << c.flags[0];
    // One line, not a stack of noise.
    EXPECT_LE(std::count(result->err.begin(), result->err.end(), '\n'), 2) << result->err;
  }
}

TEST(SpindledBinaryTest, HelpDocumentsEveryFlag) {
  auto result = testing::RunCommand({testing::SpindledPath(), "--help"});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->exit.code, 0);
  for (const char* flag : {"--listen", "--metrics-listen", "--max-message-bytes", "--max-processes",
                           "--max-names", "--log-level", "--shutdown-grace-ms", "SPINDLE_LISTEN"}) {
    EXPECT_THAT(result->out, HasSubstr(flag));
  }
}

TEST(SpindledBinaryTest, BusyPortRefusesToStart) {
  testing::SpindledProcess first;
  ASSERT_TRUE(first.Start().ok());
  auto result = testing::RunCommand(
      {testing::SpindledPath(), "--listen=" + first.address(), "--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(result.ok());
  EXPECT_NE(result->exit.code, 0);
  EXPECT_THAT(result->err, HasSubstr("cannot listen on --listen '" + first.address() + "'"));
}

TEST(SpindledBinaryTest, EnvironmentVariablesConfigureIt) {
  testing::SpindledProcess spindled;
  setenv("SPINDLE_MAX_PROCESSES", "77", 1);
  auto started = spindled.Start();
  unsetenv("SPINDLE_MAX_PROCESSES");
  ASSERT_TRUE(started.ok()) << started;
  auto stub = v1::ServerService::NewStub(
      grpc::CreateChannel(spindled.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::GetLimitsResponse limits;
  ASSERT_TRUE(stub->GetLimits(&context, {}, &limits).ok());
  EXPECT_EQ(limits.max_processes(), 77);
}

// ---- spindlectl against the real binary ----

TEST(SpindlectlTest, HealthInfoAndErrors) {
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start().ok());
  const std::string ctl = testing::SpindlectlPath();
  const std::string address = "--address=" + spindled.address();

  auto health = testing::RunCommand({ctl, address, "health"});
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->exit.code, 0) << health->err;
  EXPECT_EQ(health->out, "SERVING\n");

  auto info = testing::RunCommand({ctl, address, "--json", "info"});
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->exit.code, 0) << info->err;
  EXPECT_THAT(info->out, HasSubstr("\"listen_address\":\"" + spindled.address() + "\""));

  auto stats = testing::RunCommand({ctl, address, "stats"});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->exit.code, 0) << stats->err;
  EXPECT_THAT(stats->out, HasSubstr("inflight_calls"));

  // Nothing listens on the port of a server that was stopped: exit code 5 (unavailable).
  ASSERT_TRUE(spindled.SignalAndWait(SIGTERM, absl::Seconds(10)).has_value());
  auto down = testing::RunCommand({ctl, address, "--timeout-ms=2000", "health"});
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(down->exit.code, 5) << down->err;
  EXPECT_THAT(down->err, HasSubstr("UNAVAILABLE"));

  auto usage = testing::RunCommand({ctl, "no-such-command"});
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->exit.code, 2);
}

}  // namespace
}  // namespace spindle
