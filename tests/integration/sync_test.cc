// Sessions and locks over real channels to a real in-process server (and, for the crash test and
// the CLI, the real spindlectl binary against it).
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/session.grpc.pb.h"
#include "tests/support/spindled_process.h"

extern char** environ;

namespace spindle {
namespace {

using ::testing::HasSubstr;

services::ServerConfig EphemeralConfig() {
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  return config;
}

// One server for the suite: starting and stopping the metrics endpoint costs seconds.
class SyncTest : public ::testing::Test {
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
    locks_ = v1::LockService::NewStub(channel_);
    sessions_ = v1::SessionService::NewStub(channel_);
  }

  // A unique lock name per test.
  std::string Name(absl::string_view suffix = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return absl::StrCat("test/", info->name(), suffix);
  }

  static std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline = absl::Seconds(20)) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return context;
  }

  grpc::Status Acquire(const v1::AcquireRequest& request, v1::AcquireResponse* response,
                       absl::Duration deadline = absl::Seconds(20)) {
    auto context = Context(deadline);
    return locks_->Acquire(context.get(), request, response);
  }

  v1::LockGrant MustAcquire(v1::AcquireRequest request) {
    request.set_wait(true);
    v1::AcquireResponse response;
    grpc::Status status = Acquire(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.acquired());
    return response.grant();
  }

  grpc::Status Release(const std::string& lease_id, v1::ReleaseResponse* response = nullptr) {
    v1::ReleaseRequest request;
    request.set_lease_id(lease_id);
    v1::ReleaseResponse ignored;
    auto context = Context();
    return locks_->Release(context.get(), request, response ? response : &ignored);
  }

  // The lock's description; an empty one (0 holders, 0 waiters) when it does not exist yet.
  v1::DescribeLockResponse Describe(const std::string& name) {
    v1::DescribeLockRequest request;
    request.set_name(name);
    v1::DescribeLockResponse response;
    auto context = Context();
    grpc::Status status = locks_->DescribeLock(context.get(), request, &response);
    EXPECT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::NOT_FOUND)
        << status.error_message();
    return response;
  }

  // Waits (bounded) until `name` has `waiters` waiters.
  bool AwaitWaiters(const std::string& name, int waiters) {
    absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (absl::Now() < give_up) {
      if (Describe(name).lock().waiters() == waiters) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // A WaitCondition call on a thread of its own, bounded by Context()'s deadline.
  class BackgroundWait {
   public:
    BackgroundWait(v1::LockService::Stub& stub, v1::WaitConditionRequest request)
        : thread_([this, &stub, request = std::move(request)] {
            auto context = Context();
            status_ = stub.WaitCondition(context.get(), request, &response_);
          }) {}
    ~BackgroundWait() { Join(); }
    // The call's status and response once it ended.
    std::pair<grpc::Status, v1::WaitConditionResponse> Answer() {
      Join();
      return {status_, response_};
    }

   private:
    void Join() {
      if (thread_.joinable()) thread_.join();
    }
    grpc::Status status_;
    v1::WaitConditionResponse response_;
    std::thread thread_;  // last: it starts once the fields it writes exist
  };

  // Holds `lock` and returns a WaitCondition request on `condition` under that grant.
  v1::WaitConditionRequest HeldConditionWait(const std::string& lock, const std::string& condition,
                                             const std::string& request_id) {
    v1::AcquireRequest acquire;
    acquire.set_name(lock);
    v1::WaitConditionRequest wait;
    wait.set_name(condition);
    wait.set_lease_id(MustAcquire(acquire).lease_id());
    wait.set_request_id(request_id);
    return wait;
  }

  // NotifyCondition under `lease_id`; returns how many waiters it woke (-1 when it failed).
  int32_t Notify(const std::string& condition, const std::string& lease_id, bool all = false) {
    v1::NotifyConditionRequest request;
    request.set_name(condition);
    request.set_lease_id(lease_id);
    request.set_all(all);
    v1::NotifyConditionResponse response;
    grpc::Status status = locks_->NotifyCondition(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return status.ok() ? response.woken() : -1;
  }

  std::string NewSession(int64_t ttl_ms = 10000) {
    v1::CreateSessionRequest request;
    request.set_ttl_ms(ttl_ms);
    request.set_client_name("sync-test");
    v1::CreateSessionResponse response;
    auto context = Context();
    grpc::Status status = sessions_->CreateSession(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.session().session_id();
  }

  // The value of the sample `series` on /metrics, 0 when absent.
  static double Sample(const std::string& series) {
    auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
    if (!body.ok()) {
      return -1;
    }
    auto at = body->find("\n" + series + " ");  // a sample line, not its # HELP line
    if (at == std::string::npos) {
      return 0;
    }
    return std::stod(body->substr(at + series.size() + 2));
  }

  static services::SpindleServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::LockService::Stub> locks_;
  std::unique_ptr<v1::SessionService::Stub> sessions_;
};

services::SpindleServer* SyncTest::server_ = nullptr;

// An Acquire in flight on the client's callback API.
struct AsyncAcquire {
  grpc::ClientContext context;
  v1::AcquireResponse response;
  std::promise<grpc::Status> done;
  std::future<grpc::Status> result = done.get_future();
};

std::unique_ptr<AsyncAcquire> StartAcquire(v1::LockService::Stub& stub,
                                           const v1::AcquireRequest& request,
                                           absl::Duration deadline = absl::Seconds(30)) {
  auto call = std::make_unique<AsyncAcquire>();
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  AsyncAcquire* raw = call.get();
  stub.async()->Acquire(&call->context, &request, &call->response,
                        [raw](grpc::Status status) { raw->done.set_value(status); });
  return call;
}

TEST_F(SyncTest, MutualExclusionUnderContention) {
  constexpr int kClients = 16;
  constexpr int kIncrements = 500;
  const std::string name = Name();
  std::atomic<int64_t> counter{0};
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      // Each client its own channel, as separate programs would have.
      auto channel = grpc::CreateCustomChannel(
          server_->listen_address(), grpc::InsecureChannelCredentials(), [] {
            grpc::ChannelArguments args;
            args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
            return args;
          }());
      // A fresh channel's first connect can fail on a loaded machine (seen once in 25 runs:
      // UNAVAILABLE, "failed to connect to all addresses"), and gRPC then fails calls fast during
      // its reconnect backoff. Connecting is not what this test checks: wait for the connection.
      if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(30)))) {
        failures += kIncrements;
        ADD_FAILURE() << "client channel did not connect within 30 s";
        return;
      }
      auto stub = v1::LockService::NewStub(channel);
      v1::AcquireRequest request;
      request.set_name(name);
      request.set_wait(true);
      for (int i = 0; i < kIncrements; ++i) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        v1::AcquireResponse response;
        const grpc::Status acquired = stub->Acquire(&context, request, &response);
        if (!acquired.ok() || !response.acquired()) {
          if (failures.fetch_add(1) == 0) {
            ADD_FAILURE() << "client acquire " << i << ": code " << acquired.error_code() << " "
                          << acquired.error_message() << " acquired=" << response.acquired();
          }
          continue;
        }
        if (inside.fetch_add(1) != 0) {
          ++overlaps;
        }
        // A read-modify-write that loses updates unless the lock excludes the others.
        int64_t value = counter.load(std::memory_order_relaxed);
        std::this_thread::yield();
        counter.store(value + 1, std::memory_order_relaxed);
        inside.fetch_sub(1);
        grpc::ClientContext release_context;
        v1::ReleaseRequest release;
        release.set_lease_id(response.grant().lease_id());
        v1::ReleaseResponse released;
        const grpc::Status status = stub->Release(&release_context, release, &released);
        if (!status.ok() && failures.fetch_add(1) == 0) {
          ADD_FAILURE() << "client release " << i << ": code " << status.error_code() << " "
                        << status.error_message();
        }
      }
    });
  }
  for (auto& client : clients) {
    client.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(counter.load(), kClients * kIncrements);
  EXPECT_EQ(Describe(name).lock().holders(), 0);
}

TEST_F(SyncTest, WaitersAreGrantedInFifoOrder) {
  const std::string name = Name();
  v1::AcquireRequest request;
  request.set_name(name);
  v1::LockGrant holder = MustAcquire(request);
  request.set_wait(true);
  std::vector<std::unique_ptr<AsyncAcquire>> waiters;
  for (int i = 0; i < 5; ++i) {
    request.set_owner(absl::StrCat("w", i));
    waiters.push_back(StartAcquire(*locks_, request));
    ASSERT_TRUE(AwaitWaiters(name, i + 1));
  }
  auto description = Describe(name);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(description.waiters(i).owner(), absl::StrCat("w", i));
    EXPECT_EQ(description.waiters(i).position(), i);
  }
  std::string lease = holder.lease_id();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Release(lease).ok());
    ASSERT_EQ(waiters[i]->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    ASSERT_TRUE(waiters[i]->result.get().ok());
    ASSERT_TRUE(waiters[i]->response.acquired());
    for (int j = i + 1; j < 5; ++j) {
      EXPECT_NE(waiters[j]->result.wait_for(std::chrono::seconds(0)), std::future_status::ready);
    }
    lease = waiters[i]->response.grant().lease_id();
  }
  ASSERT_TRUE(Release(lease).ok());
}

TEST_F(SyncTest, ReentrantLockCountsHolds) {
  v1::AcquireRequest request;
  request.set_name(Name());
  request.set_kind(v1::LOCK_KIND_REENTRANT);
  request.set_owner("thread-1");
  v1::LockGrant first = MustAcquire(request);
  v1::LockGrant second = MustAcquire(request);
  v1::LockGrant third = MustAcquire(request);
  EXPECT_EQ(first.held_count(), 1);
  EXPECT_EQ(third.held_count(), 3);
  EXPECT_EQ(third.lease_id(), first.lease_id());
  EXPECT_EQ(third.fencing_token(), first.fencing_token());
  for (int remaining : {2, 1, 0}) {
    v1::ReleaseResponse released;
    ASSERT_TRUE(Release(first.lease_id(), &released).ok());
    EXPECT_EQ(released.remaining(), remaining);
  }
  grpc::Status again = Release(first.lease_id());
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(again), "LOCK_NOT_HELD");
}

TEST_F(SyncTest, SemaphoreNeverExceedsItsPermits) {
  constexpr int kPermits = 3;
  const std::string name = Name();
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&] {
      auto stub = v1::LockService::NewStub(channel_);
      v1::AcquireRequest request;
      request.set_name(name);
      request.set_kind(v1::LOCK_KIND_SEMAPHORE);
      request.mutable_config()->set_permits(kPermits);
      request.set_wait(true);
      for (int i = 0; i < 40; ++i) {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        v1::AcquireResponse response;
        const grpc::Status acquired = stub->Acquire(&context, request, &response);
        if (!acquired.ok() || !response.acquired()) {
          if (failures.fetch_add(1) == 0) {
            ADD_FAILURE() << "client acquire " << i << ": code " << acquired.error_code() << " "
                          << acquired.error_message() << " acquired=" << response.acquired();
          }
          continue;
        }
        int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        inside.fetch_sub(1);
        grpc::ClientContext release_context;
        v1::ReleaseRequest release;
        release.set_lease_id(response.grant().lease_id());
        v1::ReleaseResponse released;
        const grpc::Status status = stub->Release(&release_context, release, &released);
        if (!status.ok() && failures.fetch_add(1) == 0) {
          ADD_FAILURE() << "client release " << i << ": code " << status.error_code() << " "
                        << status.error_message();
        }
      }
    });
  }
  for (auto& client : clients) {
    client.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(most.load(), kPermits);
  EXPECT_GE(most.load(), 2) << "permits should actually be shared";
}

TEST_F(SyncTest, FencingTokensStrictlyIncrease) {
  v1::AcquireRequest request;
  request.set_name(Name());
  int64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    v1::LockGrant grant = MustAcquire(request);
    EXPECT_GT(grant.fencing_token(), last);
    last = grant.fencing_token();
    ASSERT_TRUE(Release(grant.lease_id()).ok());
  }
}

TEST_F(SyncTest, CancelledWaiterIsNeverGranted) {
  const std::string name = Name();
  v1::AcquireRequest request;
  request.set_name(name);
  v1::LockGrant holder = MustAcquire(request);
  request.set_wait(true);
  auto waiter = StartAcquire(*locks_, request);
  ASSERT_TRUE(AwaitWaiters(name, 1));
  waiter->context.TryCancel();
  ASSERT_EQ(waiter->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(waiter->result.get().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(AwaitWaiters(name, 0)) << "the cancelled waiter must be removed at once";
  ASSERT_TRUE(Release(holder.lease_id()).ok());
  EXPECT_EQ(Describe(name).lock().holders(), 0);
}

TEST_F(SyncTest, CallDeadlineEndsTheWaitWithDeadlineExceeded) {
  const std::string name = Name();
  v1::AcquireRequest request;
  request.set_name(name);
  v1::LockGrant holder = MustAcquire(request);
  request.set_wait(true);
  v1::AcquireResponse response;
  grpc::Status status = Acquire(request, &response, absl::Milliseconds(300));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(AwaitWaiters(name, 0));
  request.set_max_wait_ms(200);
  status = Acquire(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(response.acquired());
  EXPECT_GE(response.waited_ms(), 200);
  ASSERT_TRUE(Release(holder.lease_id()).ok());
}

TEST_F(SyncTest, BarrierBreaksForAllOnOneTimeout) {
  const std::string name = Name();
  v1::WaitBarrierRequest patient;
  patient.set_name(name);
  patient.set_parties(3);
  v1::WaitBarrierResponse patient_response;
  grpc::ClientContext patient_context;
  patient_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  std::promise<grpc::Status> patient_done;
  locks_->async()->WaitBarrier(&patient_context, &patient, &patient_response,
                               [&](grpc::Status s) { patient_done.set_value(s); });
  ASSERT_TRUE(AwaitWaiters(name, 1));
  v1::WaitBarrierRequest impatient = patient;
  impatient.set_max_wait_ms(300);
  v1::WaitBarrierResponse impatient_response;
  auto context = Context();
  grpc::Status status = locks_->WaitBarrier(context.get(), impatient, &impatient_response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(impatient_response.tripped());
  grpc::Status broken = patient_done.get_future().get();
  EXPECT_EQ(broken.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(broken), "BARRIER_BROKEN");
  EXPECT_FALSE(services::ErrorMetadataOf(broken)["cause"].empty());
  // Later arrivals fail too, until a reset.
  context = Context();
  status = locks_->WaitBarrier(context.get(), patient, &patient_response);
  EXPECT_EQ(services::ReasonOf(status), "BARRIER_BROKEN");
}

TEST_F(SyncTest, BadInputGetsTheRightCodesAndMessages) {
  v1::AcquireRequest bad_name;
  bad_name.set_name("a b");
  v1::AcquireResponse response;
  grpc::Status status = Acquire(bad_name, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_NAME");
  EXPECT_THAT(status.error_message(), HasSubstr("name 'a b'"));

  v1::AcquireRequest negative_ttl;
  negative_ttl.set_name(Name());
  negative_ttl.set_lease_ttl_ms(-1);
  status = Acquire(negative_ttl, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_TTL");
  EXPECT_THAT(status.error_message(), HasSubstr("lease_ttl_ms -1"));

  v1::CreateSessionRequest session;
  session.set_ttl_ms(-5);
  v1::CreateSessionResponse created;
  auto context = Context();
  status = sessions_->CreateSession(context.get(), session, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_TTL");

  v1::AcquireRequest negative_permits;
  negative_permits.set_name(Name("/sem"));
  negative_permits.set_kind(v1::LOCK_KIND_SEMAPHORE);
  negative_permits.set_permits(-1);
  status = Acquire(negative_permits, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("permits -1"));

  v1::CreateLockRequest zero_parties;
  zero_parties.set_name(Name("/barrier"));
  zero_parties.set_kind(v1::LOCK_KIND_BARRIER);
  v1::CreateLockResponse lock;
  context = Context();
  status = locks_->CreateLock(context.get(), zero_parties, &lock);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("parties 0"));

  status = Release("no-such-lease");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "LEASE_NOT_FOUND");
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-lease"));

  v1::AcquireRequest unknown_session;
  unknown_session.set_name(Name());
  unknown_session.set_session_id("s-unknown");
  status = Acquire(unknown_session, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "SESSION_NOT_FOUND");

  v1::AcquireRequest bad_kind;
  bad_kind.set_name(Name());
  bad_kind.set_kind(static_cast<v1::LockKind>(42));
  status = Acquire(bad_kind, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SyncTest, RetriesWithTheSameRequestIdActOnce) {
  const std::string name = Name();
  v1::AcquireRequest acquire;
  acquire.set_name(name);
  acquire.set_request_id("acquire-1");
  v1::LockGrant first = MustAcquire(acquire);
  v1::LockGrant retry = MustAcquire(acquire);  // as if the first reply had been lost
  EXPECT_EQ(retry.lease_id(), first.lease_id());
  EXPECT_EQ(retry.fencing_token(), first.fencing_token());
  EXPECT_EQ(Describe(name).lock().holders(), 1);
  EXPECT_EQ(Describe(name).lock().waiters(), 0);

  v1::ReleaseRequest release;
  release.set_lease_id(first.lease_id());
  release.set_request_id("release-1");
  for (int i = 0; i < 2; ++i) {
    v1::ReleaseResponse response;
    auto context = Context();
    grpc::Status status = locks_->Release(context.get(), release, &response);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_EQ(response.remaining(), 0);
  }
  grpc::Status again = Release(first.lease_id());  // no request_id: a second release
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(again), "LOCK_NOT_HELD");

  // The acquire's retry now learns that its grant has ended; it never takes a second one.
  v1::AcquireResponse late;
  grpc::Status status = Acquire(acquire, &late);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(status), "LOCK_NOT_HELD");
  EXPECT_THAT(status.error_message(), HasSubstr("request_id 'acquire-1'"));
  EXPECT_EQ(Describe(name).lock().holders(), 0);

  // A retry while the original still waits takes the original's place: the original is told
  // so, no second waiter queues, and the grant goes to the retry.
  v1::LockGrant holder = MustAcquire([&] {
    v1::AcquireRequest other;
    other.set_name(name);
    return other;
  }());
  v1::AcquireRequest waiting = acquire;
  waiting.set_request_id("acquire-2");
  waiting.set_wait(true);
  auto original = StartAcquire(*locks_, waiting);
  ASSERT_TRUE(AwaitWaiters(name, 1));
  auto takeover = StartAcquire(*locks_, waiting);
  ASSERT_EQ(original->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  status = original->result.get();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(status), "REQUEST_SUPERSEDED");
  EXPECT_EQ(Describe(name).lock().waiters(), 1);
  ASSERT_TRUE(Release(holder.lease_id()).ok());
  ASSERT_EQ(takeover->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_TRUE(takeover->result.get().ok());
  EXPECT_TRUE(takeover->response.acquired());
  v1::LockGrant replayed = MustAcquire(waiting);
  EXPECT_EQ(replayed.lease_id(), takeover->response.grant().lease_id());
  ASSERT_TRUE(Release(replayed.lease_id()).ok());

  v1::AcquireRequest too_long = acquire;
  too_long.set_request_id(std::string(65, 'x'));
  status = Acquire(too_long, &late);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("request_id"));
}

TEST_F(SyncTest, ConditionWaitRetriedAfterALostAnswerGetsItsGrant) {
  const std::string lock = Name("/m");
  const std::string condition = Name("/c");
  const v1::WaitConditionRequest wait = HeldConditionWait(lock, condition, "cond-wait-1");
  v1::AcquireRequest acquire;
  acquire.set_name(lock);
  BackgroundWait first(*locks_, wait);
  // The wait released the lock once it was registered on the condition.
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (Describe(lock).lock().holders() != 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  v1::LockGrant notifier = MustAcquire(acquire);
  ASSERT_EQ(Notify(condition, notifier.lease_id()), 1);
  ASSERT_TRUE(Release(notifier.lease_id()).ok());
  auto [first_status, first_response] = first.Answer();
  ASSERT_TRUE(first_status.ok()) << first_status.error_message();
  ASSERT_TRUE(first_response.notified());

  // As if that answer was lost: the retry names the lease the first call gave up.
  v1::WaitConditionResponse retry;
  grpc::Status status = locks_->WaitCondition(Context().get(), wait, &retry);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(retry.notified());
  EXPECT_EQ(retry.grant().lease_id(), first_response.grant().lease_id());
  EXPECT_EQ(retry.grant().fencing_token(), first_response.grant().fencing_token());
  EXPECT_EQ(Describe(lock).lock().holders(), 1);
  ASSERT_TRUE(Release(retry.grant().lease_id()).ok());
}

TEST_F(SyncTest, ConditionWaitRetriedWhileItStillWaitsTakesTheWaitOver) {
  const std::string lock = Name("/m");
  const std::string condition = Name("/c");
  const v1::WaitConditionRequest wait = HeldConditionWait(lock, condition, "cond-wait-2");
  v1::AcquireRequest acquire;
  acquire.set_name(lock);
  BackgroundWait first(*locks_, wait);
  ASSERT_TRUE(AwaitWaiters(condition, 1));  // registered on the condition
  // The first call's client timed out on its side and retries; the server still holds its wait.
  BackgroundWait retry(*locks_, wait);
  auto [first_status, first_response] = first.Answer();
  EXPECT_EQ(first_status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(first_status), "REQUEST_SUPERSEDED");
  EXPECT_EQ(Describe(condition).lock().waiters(), 1);  // one wait, not two

  v1::LockGrant notifier = MustAcquire(acquire);
  EXPECT_EQ(Notify(condition, notifier.lease_id(), /*all=*/true), 1);
  ASSERT_TRUE(Release(notifier.lease_id()).ok());
  auto [retry_status, retry_response] = retry.Answer();
  ASSERT_TRUE(retry_status.ok()) << retry_status.error_message();
  EXPECT_TRUE(retry_response.notified());
  EXPECT_GT(retry_response.grant().fencing_token(), notifier.fencing_token());
  EXPECT_EQ(Describe(lock).lock().holders(), 1);
  ASSERT_TRUE(Release(retry_response.grant().lease_id()).ok());
}

TEST_F(SyncTest, DeadlockIsAbortedNamingTheCycle) {
  std::string s1 = NewSession();
  std::string s2 = NewSession();
  v1::AcquireRequest a;
  a.set_name(Name("/x"));
  a.set_session_id(s1);
  a.set_owner("a");
  MustAcquire(a);
  v1::AcquireRequest b;
  b.set_name(Name("/y"));
  b.set_session_id(s2);
  b.set_owner("b");
  MustAcquire(b);
  b.set_name(Name("/x"));
  b.set_wait(true);
  auto b_waits = StartAcquire(*locks_, b);
  ASSERT_TRUE(AwaitWaiters(Name("/x"), 1));
  a.set_name(Name("/y"));
  a.set_wait(true);
  v1::AcquireResponse response;
  grpc::Status status = Acquire(a, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(status), "DEADLOCK");
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat(s1, "/a waits for ", Name("/y"))));
  // The cycle and the locks on it travel as ErrorInfo metadata too, for programs to read.
  auto metadata = services::ErrorMetadataOf(status);
  EXPECT_THAT(metadata["cycle"], HasSubstr(absl::StrCat(s1, "/a waits for ", Name("/y"))));
  EXPECT_THAT(metadata["locks"], HasSubstr(Name("/x")));
  EXPECT_THAT(metadata["locks"], HasSubstr(Name("/y")));
  EXPECT_EQ(metadata.count("reason"), 0u);
  // Ending s1 frees x for b.
  v1::CloseSessionRequest close;
  close.set_session_id(s1);
  v1::CloseSessionResponse closed;
  auto context = Context();
  ASSERT_TRUE(sessions_->CloseSession(context.get(), close, &closed).ok());
  EXPECT_EQ(closed.released_locks(), 1);
  ASSERT_EQ(b_waits->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_TRUE(b_waits->result.get().ok());
  EXPECT_TRUE(b_waits->response.acquired());
}

TEST_F(SyncTest, KeepAliveStreamRefreshesAndCarriesEvents) {
  std::string session = NewSession(2000);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = sessions_->KeepAlive(&context);
  v1::KeepAliveRequest ping;
  ping.set_session_id(session);
  ping.set_ping_id(7);
  ASSERT_TRUE(stream->Write(ping));
  v1::KeepAliveResponse answer;
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.has_refreshed());
  EXPECT_EQ(answer.refreshed().ping_id(), 7u);
  EXPECT_EQ(answer.refreshed().ttl_ms(), 2000);

  v1::AcquireRequest request;
  request.set_name(Name());
  request.set_session_id(session);
  v1::LockGrant grant = MustAcquire(request);
  v1::RevokeLockRequest revoke;
  revoke.set_name(Name());
  revoke.set_message("maintenance");
  v1::RevokeLockResponse revoked;
  auto revoke_context = Context();
  ASSERT_TRUE(locks_->RevokeLock(revoke_context.get(), revoke, &revoked).ok());
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.has_lock_lost()) << answer.DebugString();
  EXPECT_EQ(answer.lock_lost().fencing_token(), grant.fencing_token());
  EXPECT_EQ(answer.lock_lost().cause(), v1::KeepAliveResponse::LOCK_LOST_CAUSE_REVOKED);
  EXPECT_EQ(answer.lock_lost().message(), "maintenance");
  EXPECT_EQ(answer.event_seq(), 1);
  EXPECT_EQ(services::ReasonOf(Release(grant.lease_id())), "LEASE_REVOKED");

  // Pings keep it alive past its TTL.
  for (int i = 0; i < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(600));
    ping.set_ping_id(100 + i);
    ASSERT_TRUE(stream->Write(ping));
    ASSERT_TRUE(stream->Read(&answer));
    ASSERT_TRUE(answer.has_refreshed()) << answer.DebugString();
  }
  // Then it is closed: `ended` is the last message.
  v1::CloseSessionRequest close;
  close.set_session_id(session);
  v1::CloseSessionResponse closed;
  auto close_context = Context();
  ASSERT_TRUE(sessions_->CloseSession(close_context.get(), close, &closed).ok());
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.has_ended()) << answer.DebugString();
  EXPECT_EQ(answer.ended().state(), v1::SESSION_STATE_CLOSED);
  EXPECT_FALSE(stream->Read(&answer));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(SyncTest, SessionExpiryReleasesItsLocksAndTheNextWaiterGetsThem) {
  std::string session = NewSession(1000);
  const std::string name = Name();
  v1::AcquireRequest request;
  request.set_name(name);
  request.set_session_id(session);
  MustAcquire(request);
  v1::AcquireRequest next;
  next.set_name(name);
  next.set_wait(true);
  absl::Time start = absl::Now();
  v1::AcquireResponse response;
  ASSERT_TRUE(Acquire(next, &response).ok());
  EXPECT_TRUE(response.acquired());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(1500));
  v1::GetSessionRequest get;
  get.set_session_id(session);
  v1::GetSessionResponse got;
  auto context = Context();
  ASSERT_TRUE(sessions_->GetSession(context.get(), get, &got).ok());
  EXPECT_EQ(got.session().state(), v1::SESSION_STATE_EXPIRED);
  EXPECT_GE(Sample("spindle_session_expirations_total"), 1);
}

TEST_F(SyncTest, LockStreamCarriesManyOperationsInFlight) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto stream = locks_->LockStream(&context);
  const std::string name = Name();
  // Five acquires of one mutex in flight at once: one granted, four waiting.
  for (uint64_t id = 1; id <= 5; ++id) {
    v1::LockStreamRequest request;
    request.set_call_id(id);
    request.mutable_acquire()->set_name(name);
    request.mutable_acquire()->set_wait(true);
    ASSERT_TRUE(stream->Write(request));
  }
  // Answers come in completion order: each grant is released on the stream, which grants the
  // next acquire; the release's own answer may come before or after that grant.
  std::vector<uint64_t> order;
  int64_t last_token = 0;
  int releases = 0;
  while (order.size() < 5 || releases < 5) {
    v1::LockStreamResponse response;
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.status().code(), 0) << response.DebugString();
    if (response.has_release()) {
      EXPECT_GE(response.call_id(), 100u);
      ++releases;
      continue;
    }
    ASSERT_TRUE(response.acquire().acquired());
    EXPECT_GT(response.acquire().grant().fencing_token(), last_token);
    last_token = response.acquire().grant().fencing_token();
    order.push_back(response.call_id());
    v1::LockStreamRequest release;
    release.set_call_id(100 + order.size());
    release.mutable_release()->set_lease_id(response.acquire().grant().lease_id());
    ASSERT_TRUE(stream->Write(release));
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  // A duplicate call id, and an error carried in the per-operation status.
  v1::LockStreamRequest bad;
  bad.set_call_id(9);
  bad.mutable_release()->set_lease_id("nope");
  ASSERT_TRUE(stream->Write(bad));
  v1::LockStreamResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.status().code(), grpc::StatusCode::NOT_FOUND);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(SyncTest, LockStreamClientThatSendsWithoutReadingLosesNoAnswer) {
  // 10,000 try-acquires of a held lock sent before one answer is read: far more than the server
  // holds for a client that does not read, so reading pauses and flow control holds the writer.
  constexpr int kTries = 10'000;
  const std::string name = Name();
  v1::AcquireRequest hold;
  hold.set_name(name);
  v1::LockGrant grant = MustAcquire(hold);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = locks_->LockStream(&context);
  std::atomic<int> written{0};
  std::thread writer([&] {
    v1::LockStreamRequest request;
    request.mutable_acquire()->set_name(name);
    for (int id = 1; id <= kTries; ++id) {
      request.set_call_id(id);
      if (!stream->Write(request)) break;
      written.fetch_add(1);
    }
    stream->WritesDone();
  });
  int answered = 0;
  bool in_order = true;
  v1::LockStreamResponse response;
  while (stream->Read(&response)) {
    ++answered;
    in_order = in_order && response.call_id() == static_cast<uint64_t>(answered) &&
               response.status().code() == 0 && !response.acquire().acquired();
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(written.load(), kTries);
  EXPECT_EQ(answered, kTries);
  EXPECT_TRUE(in_order) << "every try answered not acquired, in arrival order";
  ASSERT_TRUE(Release(grant.lease_id()).ok());
}

TEST_F(SyncTest, MetricsCountAcquisitions) {
  v1::AcquireRequest request;
  request.set_name(Name());
  v1::LockGrant grant = MustAcquire(request);
  EXPECT_GE(Sample("spindle_lock_acquisitions_total{kind=\"mutex\",result=\"acquired\"}"), 1);
  EXPECT_GE(Sample("spindle_locks_held"), 1);
  ASSERT_TRUE(Release(grant.lease_id()).ok());
  EXPECT_GE(Sample("spindle_lock_hold_seconds_count"), 1);
}

// --- processes: a client killed with SIGKILL, and the CLI ---

// Starts `argv` in the background; returns its pid.
pid_t Spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& arg : argv) {
    args.push_back(const_cast<char*>(arg.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) {
    return -1;
  }
  return pid;
}

TEST_F(SyncTest, KilledHolderFreesTheLockWithinItsSessionTtl) {
  const std::string name = Name();
  // spindlectl holds the lock under its own session (TTL 1500 ms, kept alive by pings).
  pid_t holder = Spawn({testing::SpindlectlPath(), "-a", server_->listen_address(), "lock",
                        "acquire", name, "--ttl-ms", "1500"});
  ASSERT_GT(holder, 0);
  absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (Describe(name).lock().holders() != 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(Describe(name).lock().holders(), 1);
  // It stays held past the TTL while the holder lives (its pings refresh the session).
  absl::SleepFor(absl::Milliseconds(2000));
  ASSERT_EQ(Describe(name).lock().holders(), 1);

  v1::AcquireRequest next;
  next.set_name(name);
  next.set_wait(true);
  auto waiter = StartAcquire(*locks_, next);
  ASSERT_TRUE(AwaitWaiters(name, 1));
  absl::Time killed = absl::Now();
  ASSERT_EQ(kill(holder, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(waitpid(holder, &wstatus, 0), holder);
  ASSERT_EQ(waiter->result.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_TRUE(waiter->result.get().ok());
  EXPECT_TRUE(waiter->response.acquired());
  EXPECT_LT(absl::Now() - killed, absl::Milliseconds(1500 + 1000));
  ASSERT_TRUE(Release(waiter->response.grant().lease_id()).ok());
}

TEST_F(SyncTest, CliRunsACommandUnderTheLockAndReportsLocks) {
  const std::string name = Name();
  const std::string ctl = testing::SpindlectlPath();
  const std::string address = server_->listen_address();
  auto ran = testing::RunCommand(
      {ctl, "-a", address, "lock", "acquire", name, "--", "/bin/sh", "-c", "exit 3"});
  ASSERT_TRUE(ran.ok()) << ran.status();
  EXPECT_EQ(ran->exit.code, 3) << ran->err;
  EXPECT_EQ(Describe(name).lock().holders(), 0) << "released after the command";

  // --no-wait on a held lock: exit 6 (conflict), nothing run.
  v1::AcquireRequest request;
  request.set_name(name);
  v1::LockGrant held = MustAcquire(request);
  ran = testing::RunCommand(
      {ctl, "-a", address, "lock", "acquire", name, "--no-wait", "--", "/bin/true"});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 6) << ran->out << ran->err;

  ran = testing::RunCommand({ctl, "-a", address, "--json", "lock", "describe", name});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  EXPECT_THAT(ran->out, HasSubstr(absl::StrCat("\"fencing_token\":\"", held.fencing_token())));

  ran = testing::RunCommand({ctl, "-a", address, "lock", "release", held.lease_id()});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  ran = testing::RunCommand({ctl, "-a", address, "lock", "release", held.lease_id()});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 6) << "a release of a lease not held is a conflict";

  ran = testing::RunCommand({ctl, "-a", address, "lock", "list", "--prefix", "test/Cli"});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 0);
  EXPECT_THAT(ran->out, HasSubstr(name));

  ran = testing::RunCommand({ctl, "-a", address, "lock", "describe", "nope/none"});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 3) << "not found";
}

TEST_F(SyncTest, CliManagesSessionsEventsAndBarriers) {
  const std::string ctl = testing::SpindlectlPath();
  const std::string address = server_->listen_address();
  auto ran = testing::RunCommand({ctl, "-a", address, "--json", "session", "create", "--ttl-ms",
                                  "5000", "--name", "cli-test"});
  ASSERT_TRUE(ran.ok());
  ASSERT_EQ(ran->exit.code, 0) << ran->err;
  auto at = ran->out.find("\"session_id\":\"");
  ASSERT_NE(at, std::string::npos) << ran->out;
  std::string session = ran->out.substr(at + 14, ran->out.find('"', at + 14) - at - 14);
  ran = testing::RunCommand({ctl, "-a", address, "session", "get", session});
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit.code, 0);
  EXPECT_THAT(ran->out, HasSubstr("cli-test"));
  ran = testing::RunCommand({ctl, "-a", address, "session", "refresh", session});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  ran = testing::RunCommand({ctl, "-a", address, "session", "list"});
  EXPECT_THAT(ran->out, HasSubstr(session));
  ran = testing::RunCommand({ctl, "-a", address, "session", "close", session});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  ran = testing::RunCommand({ctl, "-a", address, "session", "refresh", session});
  EXPECT_EQ(ran->exit.code, 6) << "refreshing a closed session is ABORTED";
  ran = testing::RunCommand({ctl, "-a", address, "session", "create", "--ttl-ms", "-1"});
  EXPECT_EQ(ran->exit.code, 2) << "bad usage: INVALID_ARGUMENT";

  const std::string event = Name("/event");
  ran = testing::RunCommand(
      {ctl, "-a", address, "lock", "event", "wait", event, "--max-wait-ms", "100"});
  EXPECT_EQ(ran->exit.code, 4) << "not set within the bound: timed out";
  ran = testing::RunCommand({ctl, "-a", address, "lock", "event", "set", event});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  ran = testing::RunCommand({ctl, "-a", address, "lock", "event", "wait", event});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
  ran = testing::RunCommand({ctl, "-a", address, "lock", "event", "clear", event});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;

  ran = testing::RunCommand(
      {ctl, "-a", address, "lock", "barrier", "wait", Name("/barrier"), "--parties", "1"});
  EXPECT_EQ(ran->exit.code, 0) << ran->err;
}

}  // namespace
}  // namespace spindle
