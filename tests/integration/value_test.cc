// ValueService over a real channel to a real in-process server: concurrent adds, CAS and
// conditional writes, watches, TTL, element operations, errors, metrics.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/value.grpc.pb.h"
#include "tests/support/own_channel.h"
#include "tests/support/spindled_process.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return context;
}

using spindle::testing::OwnChannel;

class ValueServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    services::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "127.0.0.1:0";
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
    stub_ = v1::ValueService::NewStub(OwnChannel(server_->listen_address()));
    name_ = absl::StrCat("it/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  grpc::Status SetInt(const std::string& name, int64_t v, v1::SetValueResponse* out = nullptr,
                      int64_t only_if_version = 0) {
    v1::SetValueRequest request;
    request.set_name(name);
    request.mutable_data()->set_int64_value(v);
    request.set_only_if_version(only_if_version);
    v1::SetValueResponse response;
    return stub_->SetValue(Context().get(), request, out != nullptr ? out : &response);
  }

  static services::SpindleServer* server_;
  std::unique_ptr<v1::ValueService::Stub> stub_;
  std::string name_;
};

services::SpindleServer* ValueServiceTest::server_ = nullptr;

TEST_F(ValueServiceTest, ConcurrentAddsFromSixteenClientsSumExactly) {
  constexpr int kClients = 16, kAdds = 500;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      auto stub = v1::ValueService::NewStub(OwnChannel(server_->listen_address()));
      for (int i = 0; i < kAdds; ++i) {
        v1::AddToValueRequest request;
        request.set_name(name_);
        request.set_int64_delta(1);
        v1::AddToValueResponse response;
        const grpc::Status status = stub->AddToValue(Context().get(), request, &response);
        if (!status.ok() && failures.fetch_add(1) == 0) {
          ADD_FAILURE() << "add " << i << ": code " << status.error_code() << " "
                        << status.error_message();
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
  v1::GetValueRequest get;
  get.set_name(name_);
  v1::GetValueResponse value;
  ASSERT_TRUE(stub_->GetValue(Context().get(), get, &value).ok());
  EXPECT_EQ(value.entry().data().int64_value(), kClients * kAdds);
  EXPECT_EQ(value.entry().type(), v1::VALUE_TYPE_INT64);
}

TEST_F(ValueServiceTest, StaleVersionWriteIsAbortedAndCasReportsTheConflict) {
  v1::SetValueResponse first;
  ASSERT_TRUE(SetInt(name_, 1, &first).ok());
  ASSERT_TRUE(SetInt(name_, 2, nullptr, first.entry().version()).ok());
  grpc::Status stale = SetInt(name_, 3, nullptr, first.entry().version());
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(stale), "VERSION_MISMATCH");

  v1::CompareAndSwapValueRequest cas;
  cas.set_name(name_);
  cas.mutable_expected_value()->set_int64_value(1);  // it is 2 now
  cas.mutable_new_value()->set_int64_value(10);
  v1::CompareAndSwapValueResponse swapped;
  ASSERT_TRUE(stub_->CompareAndSwapValue(Context().get(), cas, &swapped).ok());
  EXPECT_FALSE(swapped.swapped());
  EXPECT_EQ(swapped.current().data().int64_value(), 2);
  cas.mutable_expected_value()->set_int64_value(2);
  ASSERT_TRUE(stub_->CompareAndSwapValue(Context().get(), cas, &swapped).ok());
  EXPECT_TRUE(swapped.swapped());
  EXPECT_EQ(swapped.current().data().int64_value(), 10);
}

TEST_F(ValueServiceTest, WatchSeesEveryChangeInOrder) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::WatchValuesRequest request;
  request.set_prefix(name_ + "/");
  request.set_progress_interval_ms(100);
  auto reader = stub_->WatchValues(&context, request);
  // A heartbeat tells us the watch is live before we write.
  v1::WatchValuesResponse message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_TRUE(message.has_progress());
  EXPECT_FALSE(message.store_epoch().empty());
  constexpr int kWriters = 4, kWrites = 50;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto stub = v1::ValueService::NewStub(OwnChannel(server_->listen_address()));
      for (int i = 0; i < kWrites; ++i) {
        v1::AddToValueRequest add;
        add.set_name(absl::StrCat(name_, "/", w));
        add.set_int64_delta(1);
        v1::AddToValueResponse response;
        ASSERT_TRUE(stub->AddToValue(Context().get(), add, &response).ok());
      }
    });
  }
  for (auto& t : writers) {
    t.join();
  }
  v1::DeleteValueRequest del;
  del.set_name(name_ + "/0");
  v1::DeleteValueResponse deleted;
  ASSERT_TRUE(stub_->DeleteValue(Context().get(), del, &deleted).ok());
  std::vector<int64_t> last(kWriters, 0);
  int64_t last_version = 0;
  int events = 0;
  bool saw_delete = false;
  while (!saw_delete && reader->Read(&message)) {
    for (const auto& event : message.events().events()) {
      EXPECT_GT(event.version(), last_version);
      last_version = event.version();
      if (event.kind() == v1::VALUE_EVENT_KIND_DELETE) {
        saw_delete = true;
        EXPECT_EQ(event.entry().name(), name_ + "/0");
        continue;
      }
      int w = std::stoi(event.entry().name().substr(name_.size() + 1));
      EXPECT_EQ(event.entry().data().int64_value(), last[w] + 1);
      last[w] = event.entry().data().int64_value();
      ++events;
    }
  }
  EXPECT_TRUE(saw_delete);
  EXPECT_EQ(events, kWriters * kWrites);
  EXPECT_EQ(last_version, deleted.version());
  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ValueServiceTest, WatchFromACompactedVersionEndsWithCompacted) {
  ASSERT_TRUE(SetInt(name_, 1).ok());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WatchValuesRequest request;
  request.set_name(name_);
  request.set_initial_state(true);
  auto reader = stub_->WatchValues(&context, request);
  v1::WatchValuesResponse message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_THAT(message.events().events(), SizeIs(1));
  EXPECT_EQ(message.events().events(0).entry().data().int64_value(), 1);
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_TRUE(message.progress().initial_state_done());
  context.TryCancel();
  reader->Finish();
}

TEST_F(ValueServiceTest, TtlExpiresAndTheWatchSaysSo) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::WatchValuesRequest request;
  request.set_name(name_);
  request.set_progress_interval_ms(100);
  auto reader = stub_->WatchValues(&context, request);
  v1::WatchValuesResponse message;
  ASSERT_TRUE(reader->Read(&message));  // first heartbeat: the watch is registered
  v1::SetValueRequest set;
  set.set_name(name_);
  set.mutable_data()->set_string_value("short-lived");
  set.set_ttl_ms(200);
  v1::SetValueResponse response;
  ASSERT_TRUE(stub_->SetValue(Context().get(), set, &response).ok());
  EXPECT_TRUE(response.entry().has_expire_time());
  bool expired = false;
  while (!expired && reader->Read(&message)) {
    for (const auto& event : message.events().events()) {
      expired = expired || event.kind() == v1::VALUE_EVENT_KIND_EXPIRE;
    }
  }
  EXPECT_TRUE(expired);
  v1::GetValueRequest get;
  get.set_name(name_);
  v1::GetValueResponse got;
  EXPECT_EQ(stub_->GetValue(Context().get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  context.TryCancel();
  reader->Finish();
}

TEST_F(ValueServiceTest, FencedWritesApplyOnlyWhileTheGrantIsHeld) {
  auto locks = v1::LockService::NewStub(OwnChannel(server_->listen_address()));
  auto acquire = [&](v1::LockGrant* grant) {
    v1::AcquireRequest request;
    request.set_name(name_ + "-lock");
    request.set_lease_ttl_ms(60'000);
    v1::AcquireResponse response;
    grpc::Status status = locks->Acquire(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_TRUE(response.acquired());
    *grant = response.grant();
  };
  auto release = [&](const v1::LockGrant& grant) {
    v1::ReleaseRequest request;
    request.set_lease_id(grant.lease_id());
    v1::ReleaseResponse response;
    ASSERT_TRUE(locks->Release(Context().get(), request, &response).ok());
  };
  auto fenced_set = [&](int64_t v, int64_t token) {
    v1::SetValueRequest request;
    request.set_name(name_);
    request.mutable_data()->set_int64_value(v);
    request.mutable_fence()->set_lock_name(name_ + "-lock");
    request.mutable_fence()->set_fencing_token(token);
    v1::SetValueResponse response;
    return stub_->SetValue(Context().get(), request, &response);
  };

  v1::LockGrant first;
  ASSERT_NO_FATAL_FAILURE(acquire(&first));
  ASSERT_TRUE(fenced_set(1, first.fencing_token()).ok());
  ASSERT_NO_FATAL_FAILURE(release(first));
  v1::LockGrant second;
  ASSERT_NO_FATAL_FAILURE(acquire(&second));
  EXPECT_GT(second.fencing_token(), first.fencing_token());

  // The first holder's token is stale now: set, add, cas and delete are all refused.
  grpc::Status stale = fenced_set(2, first.fencing_token());
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(stale), "STALE_FENCING_TOKEN");
  EXPECT_THAT(stale.error_message(), HasSubstr(absl::StrCat(first.fencing_token())));
  {
    v1::AddToValueRequest request;
    request.set_name(name_);
    request.set_int64_delta(5);
    request.mutable_fence()->set_lock_name(name_ + "-lock");
    request.mutable_fence()->set_fencing_token(first.fencing_token());
    v1::AddToValueResponse response;
    grpc::Status status = stub_->AddToValue(Context().get(), request, &response);
    EXPECT_EQ(services::ReasonOf(status), "STALE_FENCING_TOKEN");
  }
  {
    v1::CompareAndSwapValueRequest request;
    request.set_name(name_);
    request.mutable_expected_value()->set_int64_value(1);
    request.mutable_new_value()->set_int64_value(9);
    request.mutable_fence()->set_lock_name(name_ + "-lock");
    request.mutable_fence()->set_fencing_token(first.fencing_token());
    v1::CompareAndSwapValueResponse response;
    grpc::Status status = stub_->CompareAndSwapValue(Context().get(), request, &response);
    EXPECT_EQ(services::ReasonOf(status), "STALE_FENCING_TOKEN");
  }
  {
    v1::DeleteValueRequest request;
    request.set_name(name_);
    request.mutable_fence()->set_lock_name(name_ + "-lock");
    request.mutable_fence()->set_fencing_token(first.fencing_token());
    v1::DeleteValueResponse response;
    grpc::Status status = stub_->DeleteValue(Context().get(), request, &response);
    EXPECT_EQ(services::ReasonOf(status), "STALE_FENCING_TOKEN");
  }
  // Nothing the stale holder sent was applied.
  v1::GetValueRequest get;
  get.set_name(name_);
  v1::GetValueResponse got;
  ASSERT_TRUE(stub_->GetValue(Context().get(), get, &got).ok());
  EXPECT_EQ(got.entry().data().int64_value(), 1);

  // The current holder writes.
  EXPECT_TRUE(fenced_set(3, second.fencing_token()).ok());
  ASSERT_NO_FATAL_FAILURE(release(second));
  EXPECT_EQ(services::ReasonOf(fenced_set(4, second.fencing_token())), "STALE_FENCING_TOKEN");

  // Malformed fences name the field.
  grpc::Status bad = fenced_set(5, 0);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("fence.fencing_token"));
  v1::SetValueRequest request;
  request.set_name(name_);
  request.mutable_data()->set_int64_value(6);
  request.mutable_fence()->set_lock_name("bad name");
  request.mutable_fence()->set_fencing_token(1);
  v1::SetValueResponse response;
  bad = stub_->SetValue(Context().get(), request, &response);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("fence.lock_name"));
}

TEST_F(ValueServiceTest, ArraysAndMapsByElement) {
  v1::SetValueRequest set;
  set.set_name(name_);
  for (double d : {1.5, 2.5, 3.5}) {
    set.mutable_data()->mutable_double_array()->add_items(d);
  }
  v1::SetValueResponse set_response;
  ASSERT_TRUE(stub_->SetValue(Context().get(), set, &set_response).ok());
  v1::AddToValueRequest add;
  add.set_name(name_);
  add.mutable_element()->set_index(-1);
  add.set_double_delta(1);
  v1::AddToValueResponse added;
  ASSERT_TRUE(stub_->AddToValue(Context().get(), add, &added).ok());
  EXPECT_EQ(added.result().double_value(), 4.5);
  v1::GetValueRequest get;
  get.set_name(name_);
  get.mutable_element()->set_index(3);
  v1::GetValueResponse got;
  grpc::Status status = stub_->GetValue(Context().get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(services::ReasonOf(status), "INDEX_OUT_OF_RANGE");

  v1::SetValueRequest key;
  key.set_name(name_ + "-map");
  key.mutable_element()->set_key("color");
  key.mutable_data()->set_string_value("blue");
  ASSERT_TRUE(stub_->SetValue(Context().get(), key, &set_response).ok());
  v1::GetValueRequest keys;
  keys.set_name(name_ + "-map");
  keys.set_keys_only(true);
  ASSERT_TRUE(stub_->GetValue(Context().get(), keys, &got).ok());
  EXPECT_THAT(got.keys(), ::testing::ElementsAre("color"));
  EXPECT_EQ(got.entry().type(), v1::VALUE_TYPE_MAP);
}

TEST_F(ValueServiceTest, WrongTypesBadNamesAndUnknownNamesGetTheRightCodes) {
  v1::SetValueRequest set;
  set.set_name(name_);
  set.mutable_data()->set_string_value("text");
  v1::SetValueResponse set_response;
  ASSERT_TRUE(stub_->SetValue(Context().get(), set, &set_response).ok());
  v1::AddToValueRequest add;
  add.set_name(name_);
  add.set_int64_delta(1);
  v1::AddToValueResponse added;
  grpc::Status status = stub_->AddToValue(Context().get(), add, &added);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(status), "TYPE_MISMATCH");
  EXPECT_THAT(status.error_message(), HasSubstr(name_));

  v1::GetValueRequest get;
  get.set_name("it/never-set");
  v1::GetValueResponse got;
  status = stub_->GetValue(Context().get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "VALUE_NOT_FOUND");

  get.set_name("../etc");
  status = stub_->GetValue(Context().get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_NAME");

  v1::SetValueRequest no_data;
  no_data.set_name(name_);
  status = stub_->SetValue(Context().get(), no_data, &set_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("data"));

  v1::SetValueRequest negative_ttl;
  negative_ttl.set_name(name_);
  negative_ttl.mutable_data()->set_int64_value(1);
  negative_ttl.set_ttl_ms(-1);
  status = stub_->SetValue(Context().get(), negative_ttl, &set_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("ttl_ms -1"));

  v1::AddToValueRequest overflow;
  overflow.set_name(name_ + "-big");
  overflow.set_int64_delta(INT64_MAX);
  ASSERT_TRUE(stub_->AddToValue(Context().get(), overflow, &added).ok());
  overflow.set_int64_delta(1);
  status = stub_->AddToValue(Context().get(), overflow, &added);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(services::ReasonOf(status), "INT64_OVERFLOW");

  v1::ListValuesRequest list;
  list.set_page_size(5000);
  v1::ListValuesResponse listed;
  status = stub_->ListValues(Context().get(), list, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ValueServiceTest, ListPagesInNameOrder) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(SetInt(absl::StrCat(name_, "/", i), i).ok());
  }
  v1::ListValuesRequest request;
  request.set_prefix(name_ + "/");
  request.set_page_size(2);
  std::vector<std::string> names;
  for (int page = 0; page < 5; ++page) {
    v1::ListValuesResponse response;
    ASSERT_TRUE(stub_->ListValues(Context().get(), request, &response).ok());
    for (const auto& entry : response.entries()) {
      names.push_back(entry.name());
    }
    if (response.next_page_token().empty()) {
      break;
    }
    request.set_page_token(response.next_page_token());
  }
  ASSERT_THAT(names, SizeIs(5));
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST_F(ValueServiceTest, MetricsCountValuesAndOps) {
  ASSERT_TRUE(SetInt(name_, 1).ok());
  auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("spindle_values "));
  EXPECT_THAT(*body, HasSubstr("spindle_watchers "));
  EXPECT_THAT(*body, HasSubstr("spindle_value_ops_total{op=\"set\"}"));
}

}  // namespace
}  // namespace spindle
