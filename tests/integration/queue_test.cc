// QueueService over a real channel to a real in-process server: many producers and consumers,
// blocking in both directions, leases and redelivery (also after a consumer is SIGKILLed),
// dead-lettering, close, streaming consume and produce, errors, metrics.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/queue.grpc.pb.h"
#include "tests/support/own_channel.h"
#include "tests/support/spindled_process.h"

extern char** environ;

namespace spindle {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

services::ServerConfig EphemeralConfig() {
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  return config;
}

std::unique_ptr<grpc::ClientContext> Context(
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

using spindle::testing::OwnChannel;

class QueueServiceTest : public ::testing::Test {
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
    stub_ = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
    // A queue name of its own per test.
    queue_ = absl::StrCat("it/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  grpc::Status Create(const std::string& name, v1::QueueConfig config) {
    v1::CreateQueueRequest request;
    request.set_name(name);
    *request.mutable_config() = config;
    v1::CreateQueueResponse response;
    return stub_->CreateQueue(Context().get(), request, &response);
  }

  grpc::Status Put(const std::vector<std::string>& payloads, bool wait = false,
                   v1::PutItemsResponse* out = nullptr,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    v1::PutItemsRequest request;
    request.set_queue(queue_);
    request.set_wait(wait);
    for (const auto& p : payloads) {
      request.add_items()->set_payload(p);
    }
    v1::PutItemsResponse response;
    return stub_->PutItems(Context(timeout).get(), request, out != nullptr ? out : &response);
  }

  grpc::Status Get(v1::GetItemsResponse* response, int max_items = 1, bool wait = false,
                   v1::QueueGetMode mode = v1::QUEUE_GET_MODE_TAKE,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10),
                   int64_t visibility_ms = 0) {
    v1::GetItemsRequest request;
    request.set_queue(queue_);
    request.set_max_items(max_items);
    request.set_wait(wait);
    request.set_mode(mode);
    request.set_visibility_timeout_ms(visibility_ms);
    return stub_->GetItems(Context(timeout).get(), request, response);
  }

  v1::QueueInfo Describe() {
    v1::DescribeQueueRequest request;
    request.set_name(queue_);
    v1::DescribeQueueResponse response;
    EXPECT_TRUE(stub_->DescribeQueue(Context().get(), request, &response).ok());
    return response.queue();
  }

  // Waits (bounded) until `condition` holds on the queue's description.
  bool AwaitQueue(const std::function<bool(const v1::QueueInfo&)>& condition,
                  absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (condition(Describe())) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  static double Sample(const std::string& series) {
    auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    if (!body.ok()) {
      return -1;
    }
    auto at = body->find(series + " ");
    return at == std::string::npos ? 0 : std::stod(body->substr(at + series.size() + 1));
  }

  static services::SpindleServer* server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  std::string queue_;
};

services::SpindleServer* QueueServiceTest::server_ = nullptr;

TEST_F(QueueServiceTest, EightProducersAndEightConsumersMoveEveryItemExactlyOnce) {
  v1::QueueConfig config;
  config.set_max_items(2000);  // small enough that producers block now and then
  ASSERT_TRUE(Create(queue_, config).ok());
  constexpr int kProducers = 8, kConsumers = 8, kTotal = 100000, kBatch = 100;
  constexpr int kPerProducer = kTotal / kProducers;
  std::atomic<int> received{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  std::vector<int> seen(kTotal, 0);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(120);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      auto stub = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
      for (int at = 0; at < kPerProducer && !failed; at += kBatch) {
        v1::PutItemsRequest request;
        request.set_queue(queue_);
        request.set_wait(true);
        for (int i = at; i < at + kBatch; ++i) {
          request.add_items()->set_payload(std::to_string(p * kPerProducer + i));
        }
        grpc::ClientContext context;
        context.set_deadline(deadline);
        v1::PutItemsResponse response;
        grpc::Status status = stub->PutItems(&context, request, &response);
        if (!status.ok() || !response.enqueued()) {
          ADD_FAILURE() << "put: " << status.error_message();
          failed = true;
        }
      }
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
      const bool lease = c % 2 == 1;
      while (received.load() < kTotal && !failed && std::chrono::system_clock::now() < deadline) {
        v1::GetItemsRequest request;
        request.set_queue(queue_);
        request.set_max_items(50);
        request.set_wait(true);
        request.set_max_wait_ms(100);
        request.set_mode(lease ? v1::QUEUE_GET_MODE_LEASE : v1::QUEUE_GET_MODE_TAKE);
        grpc::ClientContext context;
        context.set_deadline(deadline);
        v1::GetItemsResponse response;
        grpc::Status status = stub->GetItems(&context, request, &response);
        if (!status.ok()) {
          ADD_FAILURE() << "get: " << status.error_message();
          failed = true;
          break;
        }
        v1::AckItemsRequest ack;
        ack.set_queue(queue_);
        {
          absl::MutexLock lock(&mu);
          for (const auto& item : response.items()) {
            ++seen[std::stoi(item.payload())];
            if (lease) {
              ack.add_receipts(item.receipt());
            }
          }
        }
        received += response.items_size();
        if (ack.receipts_size() > 0) {
          grpc::ClientContext ack_context;
          ack_context.set_deadline(deadline);
          v1::AckItemsResponse acked;
          ASSERT_TRUE(stub->AckItems(&ack_context, ack, &acked).ok());
          for (const auto& result : acked.results()) {
            EXPECT_EQ(result.status().code(), 0) << result.status().message();
          }
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  ASSERT_FALSE(failed);
  int missing = 0, duplicated = 0;
  for (int count : seen) {
    missing += count == 0;
    duplicated += count > 1;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
  v1::QueueInfo info = Describe();
  EXPECT_EQ(info.depth(), 0);
  EXPECT_EQ(info.in_flight(), 0);
  EXPECT_EQ(info.totals().put(), kTotal);
}

TEST_F(QueueServiceTest, BlockingGetIsReleasedByAPutFromAnotherClient) {
  // Created up front: a Describe racing the getter's auto-creation would be NOT_FOUND.
  ASSERT_TRUE(Create(queue_, v1::QueueConfig()).ok());
  std::promise<std::pair<grpc::Status, v1::GetItemsResponse>> got;
  std::thread getter([&] {
    v1::GetItemsResponse response;
    grpc::Status status = Get(&response, 1, /*wait=*/true);
    got.set_value({status, response});
  });
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.consumers_waiting() == 1; }));
  auto other = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
  v1::PutItemsRequest put;
  put.set_queue(queue_);
  put.add_items()->set_payload("wake");
  v1::PutItemsResponse put_response;
  ASSERT_TRUE(other->PutItems(Context().get(), put, &put_response).ok());
  auto future = got.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto [status, response] = future.get();
  getter.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_THAT(response.items(), SizeIs(1));
  EXPECT_EQ(response.items(0).payload(), "wake");
}

TEST_F(QueueServiceTest, FullQueueBlocksAPutUntilAGet) {
  v1::QueueConfig config;
  config.set_max_items(2);
  ASSERT_TRUE(Create(queue_, config).ok());
  ASSERT_TRUE(Put({"1", "2"}).ok());
  grpc::Status full = Put({"3"});
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(services::ReasonOf(full), "QUEUE_FULL");
  std::promise<grpc::Status> put;
  std::thread putter([&] { put.set_value(Put({"3"}, /*wait=*/true)); });
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.producers_waiting() == 1; }));
  auto future = put.get_future();
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  v1::GetItemsResponse got;
  ASSERT_TRUE(Get(&got).ok());
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(future.get().ok());
  putter.join();
  v1::GetItemsResponse rest;
  ASSERT_TRUE(Get(&rest, 10).ok());
  ASSERT_THAT(rest.items(), SizeIs(2));
  EXPECT_EQ(rest.items(1).payload(), "3");
}

TEST_F(QueueServiceTest, DeadlineEndsAWaitingGetAndRemovesTheWaiter) {
  v1::GetItemsResponse response;
  grpc::Status status =
      Get(&response, 1, true, v1::QUEUE_GET_MODE_TAKE, std::chrono::milliseconds(300));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.consumers_waiting() == 0; }));
  // A later put is not lost to the departed waiter.
  ASSERT_TRUE(Put({"kept"}).ok());
  EXPECT_EQ(Describe().depth(), 1);
}

TEST_F(QueueServiceTest, MaxWaitRunningOutIsAnEmptyAnswer) {
  v1::GetItemsRequest request;
  request.set_queue(queue_);
  request.set_wait(true);
  request.set_max_wait_ms(100);
  v1::GetItemsResponse response;
  grpc::Status status = stub_->GetItems(Context().get(), request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.items(), SizeIs(0));
}

TEST_F(QueueServiceTest, LeaseExpiryRedelivers) {
  ASSERT_TRUE(Put({"job"}).ok());
  v1::GetItemsResponse first;
  ASSERT_TRUE(Get(&first, 1, false, v1::QUEUE_GET_MODE_LEASE, std::chrono::seconds(10), 200).ok());
  ASSERT_THAT(first.items(), SizeIs(1));
  EXPECT_EQ(first.items(0).delivery_count(), 1);
  EXPECT_FALSE(first.items(0).receipt().empty());
  v1::GetItemsResponse again;
  ASSERT_TRUE(Get(&again, 1, true, v1::QUEUE_GET_MODE_LEASE).ok());
  ASSERT_THAT(again.items(), SizeIs(1));
  EXPECT_EQ(again.items(0).payload(), "job");
  EXPECT_EQ(again.items(0).delivery_count(), 2);
  // The first receipt's lease ended.
  v1::AckItemsRequest ack;
  ack.set_queue(queue_);
  ack.add_receipts(first.items(0).receipt());
  ack.add_receipts(again.items(0).receipt());
  v1::AckItemsResponse acked;
  ASSERT_TRUE(stub_->AckItems(Context().get(), ack, &acked).ok());
  EXPECT_EQ(acked.results(0).status().code(), static_cast<int>(grpc::StatusCode::ABORTED));
  EXPECT_EQ(acked.results(1).status().code(), 0);
  EXPECT_EQ(Describe().totals().redelivered(), 1);
}

TEST_F(QueueServiceTest, RetryOfAWaitingGetOnAnotherConnectionTakesOverItsWait) {
  ASSERT_TRUE(Create(queue_, v1::QueueConfig()).ok());
  v1::GetItemsRequest request;
  request.set_queue(queue_);
  request.set_wait(true);
  request.set_request_id("get-while-waiting");
  // Each get on its own connection, as a client that reconnected would send its retry.
  auto first_stub = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
  auto retry_stub = v1::QueueService::NewStub(OwnChannel(server_->listen_address()));
  std::promise<std::pair<grpc::Status, v1::GetItemsResponse>> first, retry;
  std::thread first_call([&] {
    v1::GetItemsResponse response;
    grpc::Status status = first_stub->GetItems(Context().get(), request, &response);
    first.set_value({status, response});
  });
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.consumers_waiting() == 1; }));
  std::thread retry_call([&] {
    v1::GetItemsResponse response;
    grpc::Status status = retry_stub->GetItems(Context().get(), request, &response);
    retry.set_value({status, response});
  });
  auto first_done = first.get_future();
  ASSERT_EQ(first_done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto [first_status, first_response] = first_done.get();
  first_call.join();
  EXPECT_EQ(first_status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(first_status), "REQUEST_SUPERSEDED");
  EXPECT_EQ(Describe().consumers_waiting(), 1);  // the retry waits in its place

  ASSERT_TRUE(Put({"only"}).ok());
  auto retry_done = retry.get_future();
  ASSERT_EQ(retry_done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  auto [retry_status, retry_response] = retry_done.get();
  retry_call.join();
  ASSERT_TRUE(retry_status.ok()) << retry_status.error_message();
  ASSERT_THAT(retry_response.items(), SizeIs(1));
  EXPECT_EQ(retry_response.items(0).payload(), "only");
  EXPECT_EQ(Describe().depth(), 0);
}

TEST_F(QueueServiceTest, GetRetriedWithTheSameRequestIdTakesOnce) {
  ASSERT_TRUE(Put({"a", "b", "c"}).ok());
  v1::GetItemsRequest request;
  request.set_queue(queue_);
  request.set_max_items(2);
  request.set_request_id("get-once");
  v1::GetItemsResponse first, retry;
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &first).ok());
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &retry).ok());  // as if `first` was lost
  ASSERT_THAT(first.items(), SizeIs(2));
  ASSERT_THAT(retry.items(), SizeIs(2));
  EXPECT_EQ(retry.items(0).item_id(), first.items(0).item_id());
  EXPECT_EQ(retry.items(1).payload(), "b");
  EXPECT_EQ(Describe().depth(), 1);

  // LEASE: the retry hands back the same receipts, and only those still leased.
  request.set_mode(v1::QUEUE_GET_MODE_LEASE);
  request.set_max_items(1);
  request.set_request_id("lease-once");
  v1::GetItemsResponse leased, leased_retry;
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &leased).ok());
  ASSERT_THAT(leased.items(), SizeIs(1));
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &leased_retry).ok());
  ASSERT_THAT(leased_retry.items(), SizeIs(1));
  EXPECT_EQ(leased_retry.items(0).receipt(), leased.items(0).receipt());
  EXPECT_EQ(Describe().in_flight(), 1);

  v1::NackItemsRequest nack;
  nack.set_queue(queue_);
  nack.add_receipts(leased.items(0).receipt());
  nack.set_request_id("nack-once");
  for (int i = 0; i < 2; ++i) {
    v1::NackItemsResponse nacked;
    ASSERT_TRUE(stub_->NackItems(Context().get(), nack, &nacked).ok());
    EXPECT_EQ(nacked.results(0).status().code(), 0) << i;
  }
  EXPECT_EQ(Describe().depth(), 1);
  v1::GetItemsResponse after_nack;
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &after_nack).ok());
  EXPECT_THAT(after_nack.items(), SizeIs(0));  // its only delivery was nacked: nothing again

  request.set_request_id(std::string(65, 'r'));
  grpc::Status status = stub_->GetItems(Context().get(), request, &after_nack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("request_id"));
}

TEST_F(QueueServiceTest, DeadLettersAfterMaxDeliveries) {
  v1::QueueConfig config;
  config.set_max_deliveries(2);
  config.set_dead_letter_queue(queue_ + "-dlq");
  ASSERT_TRUE(Create(queue_, config).ok());
  ASSERT_TRUE(Put({"poison"}).ok());
  for (int i = 0; i < 2; ++i) {
    v1::GetItemsResponse got;
    ASSERT_TRUE(Get(&got, 1, true, v1::QUEUE_GET_MODE_LEASE).ok());
    ASSERT_THAT(got.items(), SizeIs(1));
    v1::NackItemsRequest nack;
    nack.set_queue(queue_);
    nack.add_receipts(got.items(0).receipt());
    v1::NackItemsResponse nacked;
    ASSERT_TRUE(stub_->NackItems(Context().get(), nack, &nacked).ok());
  }
  EXPECT_EQ(Describe().depth(), 0);
  EXPECT_EQ(Describe().totals().dead_lettered(), 1);
  v1::GetItemsRequest request;
  request.set_queue(queue_ + "-dlq");
  v1::GetItemsResponse dead;
  ASSERT_TRUE(stub_->GetItems(Context().get(), request, &dead).ok());
  ASSERT_THAT(dead.items(), SizeIs(1));
  EXPECT_EQ(dead.items(0).payload(), "poison");
  EXPECT_EQ(dead.items(0).source_queue(), queue_);
}

TEST_F(QueueServiceTest, CloseWakesEveryWaiterWithTheRightCode) {
  v1::QueueConfig config;
  config.set_max_items(1);
  ASSERT_TRUE(Create(queue_, config).ok());
  // One getter waits on the empty queue...
  std::promise<grpc::Status> getter_done;
  std::thread getter([&] {
    v1::GetItemsResponse response;
    getter_done.set_value(Get(&response, 1, true));
  });
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.consumers_waiting() == 1; }));
  // ... a streaming consumer too ...
  grpc::ClientContext consume_context;
  consume_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub_->Consume(&consume_context);
  v1::ConsumeRequest start;
  start.mutable_start()->set_queue(queue_);
  start.mutable_start()->set_credit(1);
  ASSERT_TRUE(stream->Write(start));
  v1::ConsumeResponse started;
  ASSERT_TRUE(stream->Read(&started));
  ASSERT_TRUE(started.has_started());
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.consumers_waiting() == 2; }));
  // ... then the queue fills (the getter and the stream take the first items) and a putter waits.
  ASSERT_TRUE(Put({"a"}).ok());
  ASSERT_TRUE(Put({"b"}).ok());
  ASSERT_TRUE(Put({"c"}).ok());
  std::promise<grpc::Status> putter_done;
  std::thread putter([&] { putter_done.set_value(Put({"d"}, true)); });
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.producers_waiting() == 1; }));
  v1::CloseQueueRequest close;
  close.set_name(queue_);
  v1::CloseQueueResponse closed;
  ASSERT_TRUE(stub_->CloseQueue(Context().get(), close, &closed).ok());
  EXPECT_EQ(closed.failed_producers(), 1);
  auto put_status = putter_done.get_future().get();
  EXPECT_EQ(put_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(put_status), "QUEUE_CLOSED");
  putter.join();
  EXPECT_TRUE(getter_done.get_future().get().ok());  // it got "a"
  getter.join();
  // The stream got "b"; with more credit it drains "c", then ends with OUT_OF_RANGE.
  v1::ConsumeRequest credit;
  credit.mutable_credit()->set_items(5);
  ASSERT_TRUE(stream->Write(credit));
  std::vector<std::string> streamed;
  v1::ConsumeResponse message;
  while (stream->Read(&message)) {
    for (const auto& item : message.deliveries().items()) {
      streamed.push_back(item.payload());
    }
  }
  EXPECT_THAT(streamed, ::testing::ElementsAre("b", "c"));
  grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(services::ReasonOf(end), "QUEUE_DRAINED");
  v1::GetItemsResponse after;
  grpc::Status drained = Get(&after, 1, true);
  EXPECT_EQ(drained.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Put({"late"}).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(QueueServiceTest, ConsumeRespectsCreditAndAutoCredit) {
  ASSERT_TRUE(Put({"1", "2", "3", "4", "5"}).ok());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub_->Consume(&context);
  v1::ConsumeRequest start;
  start.mutable_start()->set_queue(queue_);
  start.mutable_start()->set_mode(v1::QUEUE_GET_MODE_LEASE);
  start.mutable_start()->set_credit(2);
  start.mutable_start()->set_auto_credit(true);
  ASSERT_TRUE(stream->Write(start));
  v1::ConsumeResponse message;
  ASSERT_TRUE(stream->Read(&message));
  ASSERT_TRUE(message.has_started());
  std::vector<std::string> receipts;
  while (receipts.size() < 2 && stream->Read(&message)) {
    for (const auto& item : message.deliveries().items()) {
      receipts.push_back(item.receipt());
    }
  }
  ASSERT_THAT(receipts, SizeIs(2));
  EXPECT_EQ(message.deliveries().credit(), 0);
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.in_flight() == 2; }));
  EXPECT_EQ(Describe().depth(), 3);  // no credit: nothing more sent
  // Acking one returns one credit: exactly one more item comes.
  v1::ConsumeRequest ack;
  ack.mutable_ack()->set_correlation_id(7);
  ack.mutable_ack()->add_receipts(receipts[0]);
  ASSERT_TRUE(stream->Write(ack));
  bool settled = false;
  int delivered = 0;
  while ((!settled || delivered < 1) && stream->Read(&message)) {
    if (message.has_settled()) {
      EXPECT_EQ(message.settled().correlation_id(), 7u);
      EXPECT_EQ(message.settled().results(0).status().code(), 0);
      settled = true;
    }
    delivered += message.deliveries().items_size();
  }
  EXPECT_EQ(delivered, 1);
  ASSERT_TRUE(AwaitQueue([](const v1::QueueInfo& q) { return q.depth() == 2; }));
  // Leaving the stream puts its unacked deliveries back at once.
  context.TryCancel();
  stream->Finish();
  ASSERT_TRUE(
      AwaitQueue([](const v1::QueueInfo& q) { return q.in_flight() == 0 && q.depth() == 4; }));
}

TEST_F(QueueServiceTest, ProduceAnswersEveryBatchInOrder) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub_->Produce(&context);
  v1::ProduceRequest start;
  start.mutable_start()->set_queue(queue_);
  ASSERT_TRUE(stream->Write(start));
  for (uint64_t batch = 1; batch <= 20; ++batch) {
    v1::ProduceRequest request;
    request.mutable_batch()->set_correlation_id(batch);
    for (int i = 0; i < 5; ++i) {
      request.mutable_batch()->add_items()->set_payload(absl::StrCat(batch, ".", i));
    }
    ASSERT_TRUE(stream->Write(request));
  }
  v1::ProduceRequest empty;
  empty.mutable_batch()->set_correlation_id(99);  // no items: answered INVALID_ARGUMENT
  ASSERT_TRUE(stream->Write(empty));
  ASSERT_TRUE(stream->WritesDone());
  std::vector<uint64_t> answered;
  v1::ProduceResponse response;
  while (stream->Read(&response)) {
    answered.push_back(response.correlation_id());
    if (response.correlation_id() == 99) {
      EXPECT_EQ(response.status().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    } else {
      EXPECT_EQ(response.status().code(), 0);
      EXPECT_THAT(response.item_ids(), SizeIs(5));
    }
  }
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_THAT(answered, SizeIs(21));
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(answered[i], i + 1);
  }
  v1::GetItemsResponse got;
  ASSERT_TRUE(Get(&got, 1000).ok());
  ASSERT_THAT(got.items(), SizeIs(100));
  EXPECT_EQ(got.items(0).payload(), "1.0");
  EXPECT_EQ(got.items(99).payload(), "20.4");
}

// Batches written back to back while the answers are read on another thread: the server handles
// a batch while it writes the answer to the one before, the shape under which it once started the
// next read into the request it was still parsing. Every batch is answered in order and every
// item is in the queue exactly once, in order.
TEST_F(QueueServiceTest, ProduceAtFullRateAnswersEveryBatchAndKeepsEveryItem) {
  constexpr int kStreams = 3, kBatches = 4000;
  std::vector<std::string> queues;
  std::vector<std::thread> producers;
  std::atomic<int> failures{0};
  for (int s = 0; s < kStreams; ++s) {
    queues.push_back(absl::StrCat(queue_, "-rate-", s));
    producers.emplace_back([&, s, name = queues.back()] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto stream = stub_->Produce(&context);
      std::thread reader([&] {
        v1::ProduceResponse response;
        uint64_t expected = 1;
        while (stream->Read(&response)) {
          if (response.correlation_id() != expected++ || response.status().code() != 0 ||
              response.item_ids_size() != 1) {
            ++failures;
          }
        }
        if (expected != kBatches + 1) ++failures;
      });
      v1::ProduceRequest start;
      start.mutable_start()->set_queue(name);
      bool ok = stream->Write(start);
      for (int b = 1; ok && b <= kBatches; ++b) {
        v1::ProduceRequest request;
        request.mutable_batch()->set_correlation_id(static_cast<uint64_t>(b));
        request.mutable_batch()->add_items()->set_payload(absl::StrCat(b));
        ok = stream->Write(request);
      }
      if (!ok || !stream->WritesDone()) ++failures;
      reader.join();
      if (!stream->Finish().ok()) ++failures;
    });
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (const std::string& name : queues) {
    std::vector<std::string> payloads;
    while (payloads.size() < kBatches) {
      v1::GetItemsRequest request;
      request.set_queue(name);
      request.set_max_items(1000);
      v1::GetItemsResponse got;
      auto context = Context();
      ASSERT_TRUE(stub_->GetItems(context.get(), request, &got).ok());
      if (got.items().empty()) break;
      for (const auto& item : got.items()) payloads.push_back(item.payload());
    }
    ASSERT_THAT(payloads, SizeIs(kBatches)) << name;
    for (int b = 1; b <= kBatches; ++b) {
      ASSERT_EQ(payloads[b - 1], absl::StrCat(b)) << name;
    }
  }
}

TEST_F(QueueServiceTest, BadRequestsGetTheRightCodes) {
  v1::PutItemsRequest no_items;
  no_items.set_queue(queue_);
  v1::PutItemsResponse put_response;
  grpc::Status status = stub_->PutItems(Context().get(), no_items, &put_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("items"));

  v1::PutItemsRequest bad_name;
  bad_name.set_queue("a b");
  bad_name.add_items()->set_payload("x");
  status = stub_->PutItems(Context().get(), bad_name, &put_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_NAME");
  EXPECT_THAT(status.error_message(), HasSubstr("a b"));

  v1::QueueConfig config;
  config.set_max_item_bytes(4);
  ASSERT_TRUE(Create(queue_, config).ok());
  status = Put({"too long"});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(services::ReasonOf(status), "ITEM_TOO_LARGE");

  v1::QueueConfig bad_config;
  bad_config.set_max_items(-5);
  status = Create(queue_ + "-bad", bad_config);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("max_items -5"));

  v1::DescribeQueueRequest describe;
  describe.set_name("it/never-created");
  v1::DescribeQueueResponse described;
  status = stub_->DescribeQueue(Context().get(), describe, &described);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "QUEUE_NOT_FOUND");

  v1::GetItemsRequest take_with_lease_field;
  take_with_lease_field.set_queue(queue_);
  take_with_lease_field.set_visibility_timeout_ms(1000);
  v1::GetItemsResponse got;
  status = stub_->GetItems(Context().get(), take_with_lease_field, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetItemsRequest too_many;
  too_many.set_queue(queue_);
  too_many.set_max_items(1001);
  status = stub_->GetItems(Context().get(), too_many, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("max_items 1001"));

  v1::GetItemsRequest session;
  session.set_queue(queue_);
  session.set_mode(v1::QUEUE_GET_MODE_LEASE);
  session.set_session_id("nope");
  status = stub_->GetItems(Context().get(), session, &got);
  EXPECT_NE(status.error_code(), grpc::StatusCode::OK);

  v1::AckItemsRequest ack;
  ack.set_queue(queue_);
  ack.add_receipts("garbage");
  v1::AckItemsResponse acked;
  ASSERT_TRUE(stub_->AckItems(Context().get(), ack, &acked).ok());
  EXPECT_EQ(acked.results(0).status().code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));

  // The server is still fine.
  EXPECT_TRUE(Put({"ok"}).ok());
}

TEST_F(QueueServiceTest, MetricsShowDepthAndItemCounts) {
  ASSERT_TRUE(Put({"1", "2", "3"}).ok());
  v1::GetItemsResponse got;
  ASSERT_TRUE(Get(&got).ok());
  const std::string label = absl::StrCat("queue=\"", queue_, "\"");
  EXPECT_EQ(Sample("spindle_queue_depth{" + label + "}"), 2);
  EXPECT_EQ(Sample("spindle_queue_items_total{op=\"put\"," + label + "}"), 3);
  EXPECT_EQ(Sample("spindle_queue_items_total{op=\"get\"," + label + "}"), 1);
  auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok());
  EXPECT_THAT(*body, HasSubstr("spindle_queue_wait_seconds_count"));
  EXPECT_THAT(*body, HasSubstr("spindle_queue_inflight{"));
}

// ---- a consumer in another process, killed with SIGKILL ----

// Not a test: run by KilledConsumersLeasesComeBack in a child process. Leases items on a Consume
// stream, prints READY, and waits to be killed.
TEST(QueueHelper, DISABLED_HoldLeasesUntilKilled) {
  const char* address = std::getenv("SPINDLE_TEST_ADDRESS");
  const char* queue = std::getenv("SPINDLE_TEST_QUEUE");
  ASSERT_NE(address, nullptr);
  ASSERT_NE(queue, nullptr);
  auto stub = v1::QueueService::NewStub(OwnChannel(address));
  grpc::ClientContext context;
  auto stream = stub->Consume(&context);
  v1::ConsumeRequest start;
  start.mutable_start()->set_queue(queue);
  start.mutable_start()->set_mode(v1::QUEUE_GET_MODE_LEASE);
  start.mutable_start()->set_visibility_timeout_ms(3'600'000);  // only the kill can free them
  start.mutable_start()->set_credit(3);
  ASSERT_TRUE(stream->Write(start));
  int items = 0;
  v1::ConsumeResponse message;
  while (items < 3 && stream->Read(&message)) {
    items += message.deliveries().items_size();
  }
  std::printf("READY %d\n", items);
  std::fflush(stdout);
  absl::SleepFor(absl::Seconds(60));  // bounded: the parent kills us long before
}

TEST_F(QueueServiceTest, KilledConsumersLeasesComeBack) {
  ASSERT_TRUE(Put({"1", "2", "3"}).ok());
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    env_strings.emplace_back(*e);
  }
  env_strings.push_back("SPINDLE_TEST_ADDRESS=" + server_->listen_address());
  env_strings.push_back("SPINDLE_TEST_QUEUE=" + queue_);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  std::string filter = "--gtest_filter=QueueHelper.DISABLED_HoldLeasesUntilKilled";
  std::string disabled = "--gtest_also_run_disabled_tests";
  char* argv[] = {self.data(), filter.data(), disabled.data(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  // Wait (bounded) for READY from the child.
  std::string output;
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (output.find("READY") == std::string::npos && absl::Now() < end) {
    char buffer[256];
    ssize_t n = read(out[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    output.append(buffer, n);
  }
  close(out[0]);
  ASSERT_THAT(output, HasSubstr("READY 3"));
  EXPECT_EQ(Describe().in_flight(), 3);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  // The connection drops, the stream ends, and its leases go back at once (not after an hour).
  ASSERT_TRUE(
      AwaitQueue([](const v1::QueueInfo& q) { return q.in_flight() == 0 && q.depth() == 3; }));
  v1::GetItemsResponse again;
  ASSERT_TRUE(Get(&again, 10).ok());
  ASSERT_THAT(again.items(), SizeIs(3));
  EXPECT_EQ(again.items(0).payload(), "1");
  EXPECT_EQ(again.items(0).delivery_count(), 2);
}

}  // namespace
}  // namespace spindle
