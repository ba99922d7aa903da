// PoolService over a real channel to a real in-process server: the seeds' Pool examples run
// remotely (bounded concurrency, ordered map, callbacks through WatchTasks), worker crashes and
// recycling, close/join/terminate, timeouts, resize under load, and the error codes.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <set>
#include <thread>

#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/pool.grpc.pb.h"
#include "tests/support/in_process_server.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

constexpr auto kCallBound = std::chrono::seconds(30);

// python/spindle_worker.py of this source tree.
std::string WorkerPy() { return std::string(SPINDLE_SOURCE_DIR) + "/python/spindle_worker.py"; }

class PoolTest : public testing::InProcessServerTest {
 protected:
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
    stub_ = v1::PoolService::NewStub(channel_);
  }

  static void Bound(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() + kCallBound);
  }

  // A unique pool name per test.
  std::string Name() {
    return std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  v1::PoolSpec CommandSpec(int size) {
    v1::PoolSpec spec;
    spec.set_kind(v1::POOL_KIND_COMMAND);
    spec.set_size(size);
    return spec;
  }

  v1::PoolSpec WorkerSpec(int size, const std::string& handler) {
    v1::PoolSpec spec;
    spec.set_kind(v1::POOL_KIND_WORKER);
    spec.set_size(size);
    auto* argv = spec.mutable_worker()->mutable_command()->mutable_argv();
    argv->Add("/usr/bin/python3");
    argv->Add(WorkerPy());
    argv->Add(std::string(handler));
    return spec;
  }

  grpc::Status Create(const std::string& name, const v1::PoolSpec& spec) {
    grpc::ClientContext context;
    Bound(context);
    v1::CreatePoolRequest request;
    request.set_name(name);
    *request.mutable_spec() = spec;
    v1::CreatePoolResponse response;
    return stub_->CreatePool(&context, request, &response);
  }

  std::string Submit(const std::string& pool, const v1::TaskSpec& task) {
    grpc::ClientContext context;
    Bound(context);
    v1::SubmitTaskRequest request;
    request.set_pool(pool);
    *request.mutable_task() = task;
    v1::SubmitTaskResponse response;
    grpc::Status status = stub_->SubmitTask(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.task().id();
  }

  static v1::TaskSpec Command(const std::string& script) {
    v1::TaskSpec task;
    auto* argv = task.mutable_command()->mutable_command()->mutable_argv();
    argv->Add("/bin/sh");
    argv->Add("-c");
    argv->Add(std::string(script));
    return task;
  }

  static v1::TaskSpec Payload(const std::string& payload) {
    v1::TaskSpec task;
    task.set_payload(payload);
    return task;
  }

  v1::Task Wait(const std::string& task_id) {
    grpc::ClientContext context;
    Bound(context);
    v1::WaitTaskRequest request;
    request.set_task_id(task_id);
    v1::WaitTaskResponse response;
    grpc::Status status = stub_->WaitTask(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.done());
    return response.task();
  }

  v1::Pool Get(const std::string& name, bool workers = false) {
    grpc::ClientContext context;
    Bound(context);
    v1::GetPoolRequest request;
    request.set_name(name);
    request.set_include_workers(workers);
    v1::GetPoolResponse response;
    EXPECT_TRUE(stub_->GetPool(&context, request, &response).ok());
    return response.pool();
  }

  v1::JoinPoolResponse Join(const std::string& name) {
    grpc::ClientContext context;
    Bound(context);
    v1::JoinPoolRequest request;
    request.set_name(name);
    v1::JoinPoolResponse response;
    grpc::Status status = stub_->JoinPool(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Close(const std::string& name) {
    grpc::ClientContext context;
    Bound(context);
    v1::ClosePoolRequest request;
    request.set_name(name);
    v1::ClosePoolResponse response;
    return stub_->ClosePool(&context, request, &response);
  }

  template <typename F>
  bool Eventually(F condition) {
    const auto give_up = std::chrono::steady_clock::now() + kCallBound;
    while (std::chrono::steady_clock::now() < give_up) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  static int64_t Nanos(const google::protobuf::Timestamp& t) {
    return t.seconds() * 1'000'000'000 + t.nanos();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PoolService::Stub> stub_;
};

TEST_F(PoolTest, TenTasksOnAPoolOfThreeRunAtMostThreeAtATime) {
  ASSERT_TRUE(Create(Name(), CommandSpec(3)).ok());
  grpc::ClientContext context;
  Bound(context);
  v1::SubmitTasksRequest request;
  request.set_pool(Name());
  for (int i = 0; i < 10; ++i) *request.add_tasks() = Command("sleep 0.1");
  v1::SubmitTasksResponse response;
  ASSERT_TRUE(stub_->SubmitTasks(&context, request, &response).ok());
  ASSERT_EQ(response.task_ids_size(), 10);
  std::vector<std::pair<int64_t, int>> edges;
  for (const auto& id : response.task_ids()) {
    v1::Task task = Wait(id);
    ASSERT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.result().error();
    edges.emplace_back(Nanos(task.started_at()), +1);
    edges.emplace_back(Nanos(task.ended_at()), -1);
  }
  std::sort(edges.begin(), edges.end());  // At equal times an end (-1) sorts first.
  int running = 0, peak = 0;
  for (const auto& [t, delta] : edges) {
    running += delta;
    peak = std::max(peak, running);
  }
  EXPECT_EQ(peak, 3);
}

TEST_F(PoolTest, MapOfAThousandItemsReturnsEveryResultOnceInOrder) {
  ASSERT_TRUE(Create(Name(), WorkerSpec(2, "echo")).ok());
  grpc::ClientContext context;
  Bound(context);
  auto stream = stub_->Map(&context);
  v1::MapRequest first;
  first.mutable_start()->set_pool(Name());
  first.mutable_start()->set_window(100);
  ASSERT_TRUE(stream->Write(first));
  // A writer thread streams the inputs; flow control holds it back when it runs ahead.
  std::thread writer([&] {
    for (int batch = 0; batch < 20; ++batch) {
      v1::MapRequest request;
      for (int i = 0; i < 50; ++i) {
        int n = batch * 50 + i;
        auto* input = request.add_inputs();
        input->set_index(static_cast<uint64_t>(n));
        input->set_payload("item-" + std::to_string(n));
      }
      if (!stream->Write(request)) return;
    }
    stream->WritesDone();
  });
  std::vector<uint64_t> indexes;
  v1::MapResponse response;
  bool summary = false;
  while (stream->Read(&response)) {
    for (const auto& r : response.results()) {
      EXPECT_EQ(r.result().outcome(), v1::TASK_STATE_SUCCEEDED);
      EXPECT_EQ(r.result().output(), "item-" + std::to_string(r.index()));
      indexes.push_back(r.index());
    }
    if (response.has_summary()) {
      summary = true;
      EXPECT_EQ(response.summary().inputs(), 1000);
      EXPECT_EQ(response.summary().succeeded(), 1000);
    }
  }
  writer.join();
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(summary);
  ASSERT_EQ(indexes.size(), 1000u);
  for (size_t i = 0; i < indexes.size(); ++i) ASSERT_EQ(indexes[i], i);
}

TEST_F(PoolTest, UnorderedMapReturnsEveryResultOnce) {
  ASSERT_TRUE(Create(Name(), CommandSpec(4)).ok());
  grpc::ClientContext context;
  Bound(context);
  auto stream = stub_->Map(&context);
  v1::MapRequest request;
  request.mutable_start()->set_pool(Name());
  request.mutable_start()->set_order(v1::POOL_MAP_ORDER_UNORDERED);
  for (int i = 0; i < 40; ++i) {
    auto* input = request.add_inputs();
    input->set_index(static_cast<uint64_t>(i));
    *input->mutable_command() = Command("echo " + std::to_string(i)).command();
  }
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  std::set<uint64_t> seen;
  v1::MapResponse response;
  while (stream->Read(&response)) {
    for (const auto& r : response.results()) {
      EXPECT_TRUE(seen.insert(r.index()).second);
      EXPECT_EQ(r.result().stdout_data(), std::to_string(r.index()) + "\n");
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(seen.size(), 40u);
}

TEST_F(PoolTest, MapWithoutStartIsInvalidArgument) {
  grpc::ClientContext context;
  Bound(context);
  auto stream = stub_->Map(&context);
  v1::MapRequest request;
  request.add_inputs()->set_payload("x");
  stream->Write(request);
  stream->WritesDone();
  v1::MapResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("start"));
}

TEST_F(PoolTest, WatchTasksSeesEveryCompletion) {
  ASSERT_TRUE(Create(Name(), CommandSpec(2)).ok());
  grpc::ClientContext context;
  Bound(context);
  v1::WatchTasksRequest request;
  request.set_pool(Name());
  request.add_types(v1::TASK_EVENT_TYPE_SUCCEEDED);
  // Replay from sequence 1 (a SUCCEEDED event is never the first of a pool), so no completion is
  // missed however late the server registers the stream.
  request.set_after_sequence(1);
  auto reader = stub_->WatchTasks(&context, request);
  std::set<std::string> submitted;
  for (int i = 0; i < 20; ++i) submitted.insert(Submit(Name(), Command("true")));
  std::set<std::string> seen;
  v1::WatchTasksResponse event;
  while (seen.size() < submitted.size() && reader->Read(&event)) {
    EXPECT_EQ(event.event().type(), v1::TASK_EVENT_TYPE_SUCCEEDED);
    seen.insert(event.event().task_id());
  }
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  EXPECT_EQ(seen, submitted);
}

TEST_F(PoolTest, WatchTasksReplaysFromASequence) {
  ASSERT_TRUE(Create(Name(), CommandSpec(2)).ok());
  std::string id = Submit(Name(), Command("true"));
  Wait(id);
  grpc::ClientContext context;
  Bound(context);
  v1::WatchTasksRequest request;
  request.set_pool(Name());
  request.set_after_sequence(0);
  request.add_task_ids(id);
  // after_sequence 0 means "from now"; replay uses after_sequence >= 1 (events are 1-based).
  request.set_after_sequence(1);
  auto reader = stub_->WatchTasks(&context, request);
  std::vector<v1::TaskEventType> types;
  v1::WatchTasksResponse event;
  while (types.size() < 2 && reader->Read(&event)) types.push_back(event.event().type());
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  ASSERT_EQ(types.size(), 2u);
  EXPECT_EQ(types[0], v1::TASK_EVENT_TYPE_STARTED);
  EXPECT_EQ(types[1], v1::TASK_EVENT_TYPE_SUCCEEDED);
}

TEST_F(PoolTest, WatchTasksFromOldestReplaysThePoolsFirstEvent) {
  ASSERT_TRUE(Create(Name(), CommandSpec(1)).ok());
  std::string id = Submit(Name(), Command("true"));
  Wait(id);
  grpc::ClientContext context;
  Bound(context);
  v1::WatchTasksRequest request;
  request.set_pool(Name());
  request.set_from_oldest(true);
  auto reader = stub_->WatchTasks(&context, request);
  std::vector<v1::TaskEvent> events;
  v1::WatchTasksResponse event;
  while (events.size() < 3 && reader->Read(&event)) events.push_back(event.event());
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_EQ(events[0].type(), v1::TASK_EVENT_TYPE_QUEUED);
  EXPECT_EQ(events[1].type(), v1::TASK_EVENT_TYPE_STARTED);
  EXPECT_EQ(events[2].type(), v1::TASK_EVENT_TYPE_SUCCEEDED);
  for (const auto& e : events) EXPECT_EQ(e.task_id(), id);
}

TEST_F(PoolTest, WatchTasksFromOldestWithAfterSequenceIsInvalidArgument) {
  ASSERT_TRUE(Create(Name(), CommandSpec(1)).ok());
  grpc::ClientContext context;
  Bound(context);
  v1::WatchTasksRequest request;
  request.set_pool(Name());
  request.set_from_oldest(true);
  request.set_after_sequence(3);
  auto reader = stub_->WatchTasks(&context, request);
  v1::WatchTasksResponse event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("from_oldest"));
}

TEST_F(PoolTest, WorkerKilledMidTaskIsReplacedAndTheTaskRetried) {
  v1::PoolSpec spec = WorkerSpec(1, "sleep_ms");
  spec.mutable_retry()->set_max_attempts(2);
  spec.mutable_retry()->set_initial_backoff_ms(10);
  ASSERT_TRUE(Create(Name(), spec).ok());
  std::string id = Submit(Name(), Payload("1000"));
  int32_t pid = 0;
  ASSERT_TRUE(Eventually([&] {
    const v1::Pool pool = Get(Name(), true);  // Not a temporary: the loop outlives it otherwise.
    for (const auto& w : pool.workers()) {
      if (w.state() == v1::POOL_WORKER_STATE_BUSY && w.task_id() == id) pid = w.pid();
    }
    return pid > 0;
  }));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  v1::Task task = Wait(id);
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED) << task.result().error();
  EXPECT_EQ(task.result().attempts(), 2);
  v1::Pool pool = Get(Name(), true);
  EXPECT_EQ(pool.stats().worker_restarts(), 1);
  ASSERT_EQ(pool.workers_size(), 1);
  EXPECT_NE(pool.workers(0).pid(), pid);
}

TEST_F(PoolTest, MaxTasksPerWorkerRecyclesWorkers) {
  v1::PoolSpec spec = WorkerSpec(1, "pid");
  spec.set_max_tasks_per_worker(3);
  ASSERT_TRUE(Create(Name(), spec).ok());
  std::set<std::string> pids;
  for (int i = 0; i < 9; ++i) {
    v1::Task task = Wait(Submit(Name(), Payload("")));
    ASSERT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED);
    pids.insert(task.result().output());
  }
  EXPECT_EQ(pids.size(), 3u);
  EXPECT_GE(Get(Name()).stats().worker_recycles(), 2);
}

TEST_F(PoolTest, CloseAndJoinWaitForEveryTask) {
  ASSERT_TRUE(Create(Name(), CommandSpec(2)).ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(Submit(Name(), Command("sleep 0.05")));
  ASSERT_TRUE(Close(Name()).ok());
  v1::JoinPoolResponse joined = Join(Name());
  EXPECT_TRUE(joined.joined());
  EXPECT_EQ(joined.pool().state(), v1::POOL_STATE_CLOSED);
  EXPECT_EQ(joined.pool().stats().tasks_succeeded(), 6);
  // Closed: no new tasks.
  grpc::ClientContext context;
  Bound(context);
  v1::SubmitTaskRequest request;
  request.set_pool(Name());
  *request.mutable_task() = Command("true");
  v1::SubmitTaskResponse response;
  grpc::Status status = stub_->SubmitTask(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(status), "POOL_NOT_OPEN");
}

TEST_F(PoolTest, TerminateKillsRunningTasks) {
  ASSERT_TRUE(Create(Name(), CommandSpec(2)).ok());
  std::string a = Submit(Name(), Command("sleep 60"));
  std::string b = Submit(Name(), Command("sleep 60"));
  std::string queued = Submit(Name(), Command("sleep 60"));
  ASSERT_TRUE(Eventually([&] { return Get(Name()).stats().tasks_running() == 2; }));
  grpc::ClientContext context;
  Bound(context);
  v1::TerminatePoolRequest request;
  request.set_name(Name());
  request.set_grace_ms(200);
  request.set_wait(true);
  v1::TerminatePoolResponse response;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(stub_->TerminatePool(&context, request, &response).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(response.pool().state(), v1::POOL_STATE_TERMINATED);
  for (const auto& id : {a, b, queued}) EXPECT_EQ(Wait(id).state(), v1::TASK_STATE_CANCELLED);
}

TEST_F(PoolTest, TaskTimeoutKillsAHungTask) {
  ASSERT_TRUE(Create(Name(), CommandSpec(1)).ok());
  v1::TaskSpec task = Command("sleep 60");
  task.set_timeout_ms(200);
  v1::Task done = Wait(Submit(Name(), task));
  EXPECT_EQ(done.state(), v1::TASK_STATE_TIMED_OUT);
  EXPECT_EQ(done.result().error_reason(), "TIMED_OUT");
}

TEST_F(PoolTest, ResizeUpAndDownUnderLoadLosesNoTask) {
  ASSERT_TRUE(Create(Name(), WorkerSpec(2, "sleep_ms")).ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(Submit(Name(), Payload("5")));
  for (int size : {4, 1, 3}) {
    grpc::ClientContext context;
    Bound(context);
    v1::ResizePoolRequest request;
    request.set_name(Name());
    request.set_size(size);
    v1::ResizePoolResponse response;
    ASSERT_TRUE(stub_->ResizePool(&context, request, &response).ok());
    EXPECT_EQ(response.pool().spec().size(), size);
  }
  for (const auto& id : ids) EXPECT_EQ(Wait(id).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_TRUE(Eventually([&] { return Get(Name()).stats().workers() == 3; }));
}

TEST_F(PoolTest, WaitTaskHonoursMaxWaitAndTheDeadline) {
  ASSERT_TRUE(Create(Name(), CommandSpec(1)).ok());
  std::string id = Submit(Name(), Command("sleep 60"));
  {
    grpc::ClientContext context;
    Bound(context);
    v1::WaitTaskRequest request;
    request.set_task_id(id);
    request.set_max_wait_ms(50);
    v1::WaitTaskResponse response;
    ASSERT_TRUE(stub_->WaitTask(&context, request, &response).ok());
    EXPECT_FALSE(response.done());
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    v1::WaitTaskRequest request;
    request.set_task_id(id);
    v1::WaitTaskResponse response;
    EXPECT_EQ(stub_->WaitTask(&context, request, &response).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  grpc::ClientContext context;
  Bound(context);
  v1::CancelTaskRequest request;
  request.set_task_id(id);
  request.set_wait(true);
  v1::CancelTaskResponse response;
  ASSERT_TRUE(stub_->CancelTask(&context, request, &response).ok());
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_CANCELLED);
}

// A submit waiting for room in a full queue, retried with its request_id (its client gave up on the
// connection, the server has not noticed yet): the retry takes the wait over and the task is
// submitted once.
TEST_F(PoolTest, RetryOfASubmitWaitingForRoomTakesItsWaitOverAndSubmitsOnce) {
  v1::PoolSpec spec = CommandSpec(1);
  spec.set_max_queued(1);
  ASSERT_TRUE(Create(Name(), spec).ok());
  std::string running = Submit(Name(), Command("sleep 60"));
  ASSERT_TRUE(Eventually([&] { return Get(Name()).stats().tasks_running() == 1; }));
  std::string queued = Submit(Name(), Command("true"));  // the queue is full now

  v1::SubmitTaskRequest request;
  request.set_pool(Name());
  *request.mutable_task() = Command("true");
  request.set_request_id("submit-retry-1");
  request.set_wait(true);
  struct Call {
    grpc::ClientContext context;
    v1::SubmitTaskRequest request;
    v1::SubmitTaskResponse response;
    std::promise<grpc::Status> status;
  };
  // Each call owns its state until its callback ran, also when an assertion ends the test early.
  auto submit = [&](v1::PoolService::Stub& stub) {
    auto call = std::make_shared<Call>();
    Bound(call->context);
    call->request = request;
    stub.async()->SubmitTask(&call->context, &call->request, &call->response,
                             [call](grpc::Status s) { call->status.set_value(std::move(s)); });
    return call;
  };
  std::shared_ptr<Call> first = submit(*stub_);
  ASSERT_TRUE(Eventually([&] { return Get(Name()).stats().submits_waiting() == 1; }));
  // The retry comes on a connection of its own.
  grpc::ChannelArguments args;
  args.SetInt("spindle.test.retry", 1);  // not shared with channel_
  auto other = grpc::CreateCustomChannel(server_->listen_address(),
                                         grpc::InsecureChannelCredentials(), args);
  auto other_stub = v1::PoolService::NewStub(other);
  std::shared_ptr<Call> retry = submit(*other_stub);
  auto first_status = first->status.get_future();
  ASSERT_EQ(first_status.wait_for(kCallBound), std::future_status::ready);
  grpc::Status superseded = first_status.get();
  EXPECT_EQ(superseded.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(services::ReasonOf(superseded), "REQUEST_SUPERSEDED");
  EXPECT_EQ(Get(Name()).stats().submits_waiting(), 1);  // one wait, not two

  grpc::ClientContext context;
  Bound(context);
  v1::CancelTaskRequest cancel;
  cancel.set_task_id(running);
  v1::CancelTaskResponse cancelled;
  ASSERT_TRUE(stub_->CancelTask(&context, cancel, &cancelled).ok());
  auto retry_status = retry->status.get_future();
  ASSERT_EQ(retry_status.wait_for(kCallBound), std::future_status::ready);
  grpc::Status ok = retry_status.get();
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  ASSERT_TRUE(retry->response.submitted());
  EXPECT_EQ(Wait(retry->response.task().id()).state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(Wait(queued).state(), v1::TASK_STATE_SUCCEEDED);
  v1::Pool pool = Get(Name());
  EXPECT_EQ(pool.stats().tasks_submitted(), 3);  // running, queued and the retried one, once
  EXPECT_EQ(pool.stats().submits_waiting(), 0);
}

TEST_F(PoolTest, BadRequestsGetTheRightCodes) {
  v1::PoolSpec spec = CommandSpec(2000);
  grpc::Status status = Create(Name(), spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.size"));
  spec = CommandSpec(-1);
  EXPECT_EQ(Create(Name(), spec).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  spec = CommandSpec(1);
  spec.set_kind(v1::POOL_KIND_UNSPECIFIED);
  status = Create(Name(), spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.kind"));
  spec.set_kind(static_cast<v1::PoolKind>(42));
  status = Create(Name(), spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.kind"));

  v1::Pool unused;
  {
    grpc::ClientContext context;
    Bound(context);
    v1::GetPoolRequest request;
    request.set_name("no-such-pool");
    v1::GetPoolResponse response;
    status = stub_->GetPool(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(services::ReasonOf(status), "POOL_NOT_FOUND");
    EXPECT_THAT(status.error_message(), HasSubstr("no-such-pool"));
  }
  {
    grpc::ClientContext context;
    Bound(context);
    v1::GetTaskRequest request;
    request.set_task_id("p999999-1");
    v1::GetTaskResponse response;
    status = stub_->GetTask(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(services::ReasonOf(status), "TASK_NOT_FOUND");
  }
  ASSERT_TRUE(Create(Name(), CommandSpec(1)).ok());
  {
    grpc::ClientContext context;
    Bound(context);
    v1::SubmitTaskRequest request;
    request.set_pool(Name());
    request.mutable_task()->set_payload("not a command");
    v1::SubmitTaskResponse response;
    status = stub_->SubmitTask(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(services::ReasonOf(status), "WRONG_TASK_KIND");
  }
  {
    grpc::ClientContext context;
    Bound(context);
    v1::JoinPoolRequest request;
    request.set_name(Name());
    v1::JoinPoolResponse response;
    status = stub_->JoinPool(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(services::ReasonOf(status), "POOL_OPEN");
  }
  {
    grpc::ClientContext context;
    Bound(context);
    v1::DeletePoolRequest request;
    request.set_name(Name());
    v1::DeletePoolResponse response;
    status = stub_->DeletePool(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(services::ReasonOf(status), "POOL_NOT_FINISHED");
  }
  {
    grpc::ClientContext context;
    Bound(context);
    v1::DeletePoolRequest request;
    request.set_name(Name());
    request.set_force(true);
    v1::DeletePoolResponse response;
    EXPECT_TRUE(stub_->DeletePool(&context, request, &response).ok());
  }
}

}  // namespace
}  // namespace spindle
