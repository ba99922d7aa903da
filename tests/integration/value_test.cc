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

  // The value's entry; a failed read fails the test and returns an empty entry.
  v1::ValueEntry MustGet(const std::string& name) {
    v1::GetValueRequest request;
    request.set_name(name);
    v1::GetValueResponse response;
    grpc::Status status = stub_->GetValue(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    return response.entry();
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
  v1::ValueEntry entry = MustGet(name_);
  EXPECT_EQ(entry.data().int64_value(), kClients * kAdds);
  EXPECT_EQ(entry.type(), v1::VALUE_TYPE_INT64);
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

// ---- ValueStream ----

using ValueStream = grpc::ClientReaderWriter<v1::ValueStreamRequest, v1::ValueStreamResponse>;

v1::ValueStreamRequest StreamAdd(uint64_t call_id, const std::string& name, int64_t delta) {
  v1::ValueStreamRequest request;
  request.set_call_id(call_id);
  request.mutable_add_to_value()->set_name(name);
  request.mutable_add_to_value()->set_int64_delta(delta);
  return request;
}

// The status of a stream answer as a grpc::Status, so ReasonOf can read its ErrorInfo.
grpc::Status StatusOf(const v1::ValueStreamResponse& response) {
  return grpc::Status(static_cast<grpc::StatusCode>(response.status().code()),
                      response.status().message(), response.status().SerializeAsString());
}

TEST_F(ValueServiceTest, ValueStreamAppliesEachOperationInOrderAndAnswersEach) {
  auto context = Context();
  std::unique_ptr<ValueStream> stream = stub_->ValueStream(context.get());
  v1::ValueStreamRequest request;
  request.set_call_id(1);
  request.mutable_set_value()->set_name(name_);
  request.mutable_set_value()->mutable_data()->set_int64_value(5);
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Write(StreamAdd(2, name_, 3)));
  request.Clear();
  request.set_call_id(3);
  request.mutable_get_value()->set_name(name_);
  ASSERT_TRUE(stream->Write(request));
  request.Clear();
  request.set_call_id(4);
  auto* cas = request.mutable_compare_and_swap_value();
  cas->set_name(name_);
  cas->mutable_expected_value()->set_int64_value(8);
  cas->mutable_new_value()->set_int64_value(80);
  ASSERT_TRUE(stream->Write(request));
  request.set_call_id(5);  // the same swap again: 8 is gone, so it is not swapped
  ASSERT_TRUE(stream->Write(request));
  request.Clear();
  request.set_call_id(6);
  request.mutable_delete_value()->set_name(name_);
  ASSERT_TRUE(stream->Write(request));
  request.Clear();
  request.set_call_id(7);
  request.mutable_get_value()->set_name(name_);
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->WritesDone());

  std::vector<v1::ValueStreamResponse> answers;
  v1::ValueStreamResponse response;
  while (stream->Read(&response)) {
    answers.push_back(response);
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_THAT(answers, SizeIs(7));
  for (size_t i = 0; i < answers.size(); ++i) {
    EXPECT_EQ(answers[i].call_id(), i + 1) << "answers come in request order";
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(answers[i].status().code(), 0)
        << "call " << i + 1 << ": " << answers[i].status().message();
  }
  EXPECT_GT(answers[0].set_value().entry().version(), 0);
  EXPECT_EQ(answers[1].add_to_value().result().int64_value(), 8);
  EXPECT_GT(answers[1].add_to_value().version(), answers[0].set_value().entry().version());
  EXPECT_EQ(answers[2].get_value().entry().data().int64_value(), 8);
  EXPECT_TRUE(answers[3].compare_and_swap_value().swapped());
  EXPECT_FALSE(answers[4].compare_and_swap_value().swapped());
  EXPECT_EQ(answers[4].compare_and_swap_value().current().data().int64_value(), 80);
  EXPECT_GT(answers[5].delete_value().version(), 0);
  EXPECT_EQ(answers[6].status().code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_EQ(services::ReasonOf(StatusOf(answers[6])), "VALUE_NOT_FOUND");
  EXPECT_EQ(answers[6].result_case(), v1::ValueStreamResponse::RESULT_NOT_SET);
}

TEST_F(ValueServiceTest, ValueStreamAnswersBadOperationsAndGoesOn) {
  ASSERT_TRUE(SetInt(name_, 1).ok());
  v1::SetValueRequest text;
  text.set_name(name_ + "-text");
  text.mutable_data()->set_string_value("text");
  v1::SetValueResponse set_response;
  ASSERT_TRUE(stub_->SetValue(Context().get(), text, &set_response).ok());

  auto context = Context();
  std::unique_ptr<ValueStream> stream = stub_->ValueStream(context.get());
  v1::ValueStreamRequest empty;
  empty.set_call_id(1);  // no operation
  ASSERT_TRUE(stream->Write(empty));
  ASSERT_TRUE(stream->Write(StreamAdd(2, "../etc", 1)));
  ASSERT_TRUE(stream->Write(StreamAdd(3, name_ + "-text", 1)));  // Add on a string
  v1::ValueStreamRequest stale;
  stale.set_call_id(4);
  stale.mutable_set_value()->set_name(name_);
  stale.mutable_set_value()->mutable_data()->set_int64_value(9);
  stale.mutable_set_value()->set_only_if_version(set_response.entry().version() + 1000);
  ASSERT_TRUE(stream->Write(stale));
  v1::ValueStreamRequest negative_ttl = StreamAdd(5, name_, 1);
  negative_ttl.mutable_add_to_value()->set_ttl_ms(-1);
  ASSERT_TRUE(stream->Write(negative_ttl));
  v1::ValueStreamRequest no_delta;
  no_delta.set_call_id(6);
  no_delta.mutable_add_to_value()->set_name(name_);
  ASSERT_TRUE(stream->Write(no_delta));
  ASSERT_TRUE(stream->Write(StreamAdd(7, name_, 1)));  // still served
  ASSERT_TRUE(stream->WritesDone());

  std::vector<v1::ValueStreamResponse> answers;
  v1::ValueStreamResponse response;
  while (stream->Read(&response)) {
    answers.push_back(response);
  }
  ASSERT_TRUE(stream->Finish().ok()) << "a failed operation does not end the stream";
  ASSERT_THAT(answers, SizeIs(7));
  auto code = [&](int i) { return static_cast<grpc::StatusCode>(answers[i].status().code()); };
  auto reason = [&](int i) { return services::ReasonOf(StatusOf(answers[i])); };
  EXPECT_EQ(code(0), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(reason(0), "MISSING_OPERATION");
  EXPECT_THAT(answers[0].status().message(), HasSubstr("call 1"));
  EXPECT_EQ(code(1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(reason(1), "INVALID_NAME");
  EXPECT_EQ(code(2), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(reason(2), "TYPE_MISMATCH");
  EXPECT_EQ(code(3), grpc::StatusCode::ABORTED);
  EXPECT_EQ(reason(3), "VERSION_MISMATCH");
  EXPECT_EQ(code(4), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(answers[4].status().message(), HasSubstr("ttl_ms -1"));
  EXPECT_EQ(code(5), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(reason(5), "MISSING_DELTA");
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(answers[i].result_case(), v1::ValueStreamResponse::RESULT_NOT_SET) << i;
  }
  EXPECT_EQ(code(6), grpc::StatusCode::OK);
  EXPECT_EQ(answers[6].add_to_value().result().int64_value(), 2)
      << "only the good add applied: the bad ones changed nothing";
}

TEST_F(ValueServiceTest, ValueStreamAddsFromSixteenClientsSumExactly) {
  constexpr int kClients = 16, kAdds = 500;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      auto stub = v1::ValueService::NewStub(OwnChannel(server_->listen_address()));
      auto context = Context();
      std::unique_ptr<ValueStream> stream = stub->ValueStream(context.get());
      v1::ValueStreamResponse response;
      for (int i = 0; i < kAdds; ++i) {  // one in flight, as a client that needs each result
        if (!stream->Write(StreamAdd(i, name_, 1)) || !stream->Read(&response) ||
            response.status().code() != 0 || response.call_id() != static_cast<uint64_t>(i)) {
          failures.fetch_add(1);
          break;
        }
      }
      stream->WritesDone();
      if (stream->Read(&response) || !stream->Finish().ok()) {
        failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(MustGet(name_).data().int64_value(), kClients * kAdds);
}

TEST_F(ValueServiceTest, ValueStreamClientThatSendsWithoutReadingLosesNothing) {
  // 20,000 adds sent before a single answer is read: far more than the server holds for a
  // client that does not read, so the writer is held back by flow control until the reads start.
  constexpr int kAdds = 20'000;
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  std::unique_ptr<ValueStream> stream = stub_->ValueStream(context.get());
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 1; i <= kAdds && stream->Write(StreamAdd(i, name_, 1)); ++i) {
      written.fetch_add(1);
    }
    stream->WritesDone();
  });
  int answered = 0;
  bool in_order = true;
  v1::ValueStreamResponse response;
  while (stream->Read(&response)) {
    ++answered;
    in_order = in_order && response.call_id() == static_cast<uint64_t>(answered) &&
               response.add_to_value().result().int64_value() == answered;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(written.load(), kAdds);
  EXPECT_EQ(answered, kAdds);
  EXPECT_TRUE(in_order) << "each answer is its own add's result, in request order";
}

TEST_F(ValueServiceTest, ValueStreamCancelledMidwayLeavesEveryAnsweredAddApplied) {
  auto context = Context();
  std::unique_ptr<ValueStream> stream = stub_->ValueStream(context.get());
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(stream->Write(StreamAdd(i, name_, 1)));
  }
  v1::ValueStreamResponse response;
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(stream->Read(&response));
    ASSERT_EQ(response.call_id(), static_cast<uint64_t>(i));
  }
  context->TryCancel();
  while (stream->Read(&response)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);

  const int64_t applied = MustGet(name_).data().int64_value();
  EXPECT_GE(applied, 10) << "every answered add stays applied";
  EXPECT_LE(applied, 100) << "nothing is applied twice";

  // The server still serves streams.
  auto again_context = Context();
  std::unique_ptr<ValueStream> again = stub_->ValueStream(again_context.get());
  v1::ValueStreamRequest read;
  read.set_call_id(1);
  read.mutable_get_value()->set_name(name_);
  ASSERT_TRUE(again->Write(read));
  ASSERT_TRUE(again->Read(&response));
  EXPECT_EQ(response.get_value().entry().data().int64_value(), applied);
  again->WritesDone();
  EXPECT_FALSE(again->Read(&response));
  EXPECT_TRUE(again->Finish().ok());
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
