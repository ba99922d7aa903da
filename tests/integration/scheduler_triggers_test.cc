// SchedulerService triggers over a real channel to a real server: a delay trigger that spawns
// /bin/true and whose run shows up in WatchTriggerRuns and ListTriggerRuns; the trigger
// lifecycle (pause, fire, resume, delete); validation (bad cron, unknown zone, bad name); errors
// with their reasons; pool_task triggers that submit to a real command pool and report the task.
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/pool.grpc.pb.h"
#include "spindle/v1/scheduler.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"
#include "tests/support/in_process_server.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

class SchedulerTriggersTest : public testing::InProcessServerTest {
 protected:
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
    stub_ = v1::SchedulerService::NewStub(channel_);
  }

  static void Deadline(grpc::ClientContext& context, int seconds = 30) {
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  static v1::TriggerSpec SpawnSpec(const std::string& executable) {
    v1::TriggerSpec spec;
    spec.mutable_action()->mutable_spawn()->mutable_command()->add_argv(executable);
    return spec;
  }

  static v1::TaskSpec ShellTask(const std::string& script) {
    v1::TaskSpec task;
    auto* argv = task.mutable_command()->mutable_command()->mutable_argv();
    argv->Add("/bin/sh");
    argv->Add("-c");
    argv->Add(std::string(script));
    return task;
  }

  // Creates a command pool of `size` slots through PoolService.
  void CreateCommandPool(const std::string& name, int size) {
    auto pools = v1::PoolService::NewStub(channel_);
    grpc::ClientContext context;
    Deadline(context);
    v1::CreatePoolRequest request;
    request.set_name(name);
    request.mutable_spec()->set_kind(v1::POOL_KIND_COMMAND);
    request.mutable_spec()->set_size(size);
    v1::CreatePoolResponse response;
    grpc::Status status = pools->CreatePool(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Watches `name`'s runs until one is final; returns it.
  v1::TriggerRun AwaitFinalRun(const std::string& name) {
    grpc::ClientContext context;
    Deadline(context);
    v1::WatchTriggerRunsRequest watch;
    watch.set_name(name);
    auto reader = stub_->WatchTriggerRuns(&context, watch);
    v1::WatchTriggerRunsResponse event;
    v1::TriggerRun final_run;
    while (reader->Read(&event)) {
      const v1::TriggerRunState state = event.run().state();
      if (state != v1::TRIGGER_RUN_STATE_RUNNING && state != v1::TRIGGER_RUN_STATE_QUEUED) {
        final_run = event.run();
        break;
      }
    }
    context.TryCancel();
    (void)reader->Finish();
    return final_run;
  }

  grpc::Status Create(const std::string& name, const v1::TriggerSpec& spec,
                      v1::CreateTriggerResponse* response = nullptr) {
    grpc::ClientContext context;
    Deadline(context);
    v1::CreateTriggerRequest request;
    request.set_name(name);
    *request.mutable_spec() = spec;
    v1::CreateTriggerResponse ignored;
    return stub_->CreateTrigger(&context, request, response ? response : &ignored);
  }

  // Creates a spawn trigger; the server runs it through the processes capability's table.
  bool CreateSpawnTrigger(const std::string& name, const v1::TriggerSpec& spec,
                          v1::CreateTriggerResponse* response = nullptr) {
    grpc::Status status = Create(name, spec, response);
    EXPECT_TRUE(status.ok()) << services::ReasonOf(status) << ": " << status.error_message();
    return status.ok();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> stub_;
};

TEST_F(SchedulerTriggersTest, DelayTriggerSpawnsAndItsRunIsWatchedAndListed) {
  v1::TriggerSpec spec = SpawnSpec("/bin/true");
  spec.mutable_schedule()->set_delay_ms(300);
  (*spec.mutable_labels())["suite"] = "scheduler";
  v1::CreateTriggerResponse created;
  ASSERT_TRUE(CreateSpawnTrigger("it/true-once", spec, &created));
  EXPECT_TRUE(created.created());
  EXPECT_EQ(created.trigger().state(), v1::TRIGGER_STATE_ACTIVE);
  EXPECT_TRUE(created.trigger().has_next_run_at());

  grpc::ClientContext watch_context;
  Deadline(watch_context);
  v1::WatchTriggerRunsRequest watch;
  watch.set_name("it/true-once");
  auto reader = stub_->WatchTriggerRuns(&watch_context, watch);
  v1::WatchTriggerRunsResponse event;
  std::vector<v1::TriggerRunState> states;
  v1::TriggerRun final_run;
  while (reader->Read(&event)) {
    states.push_back(event.run().state());
    if (event.run().state() != v1::TRIGGER_RUN_STATE_RUNNING) {
      final_run = event.run();
      break;
    }
  }
  watch_context.TryCancel();
  (void)reader->Finish();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0], v1::TRIGGER_RUN_STATE_RUNNING);
  EXPECT_EQ(final_run.state(), v1::TRIGGER_RUN_STATE_SUCCEEDED) << final_run.error();
  EXPECT_EQ(final_run.number(), 1);
  EXPECT_FALSE(final_run.process_id().empty());
  EXPECT_EQ(final_run.exit().exit_code(), 0);
  EXPECT_EQ(final_run.exit().reason(), v1::PROCESS_EXIT_REASON_EXITED);

  grpc::ClientContext list_context;
  Deadline(list_context);
  v1::ListTriggerRunsRequest list;
  list.set_name("it/true-once");
  v1::ListTriggerRunsResponse runs;
  ASSERT_TRUE(stub_->ListTriggerRuns(&list_context, list, &runs).ok());
  ASSERT_EQ(runs.runs_size(), 1);
  EXPECT_EQ(runs.runs(0).state(), v1::TRIGGER_RUN_STATE_SUCCEEDED);
  EXPECT_EQ(runs.runs(0).process_id(), final_run.process_id());

  grpc::ClientContext get_context;
  Deadline(get_context);
  v1::GetTriggerRequest get;
  get.set_name("it/true-once");
  v1::GetTriggerResponse got;
  ASSERT_TRUE(stub_->GetTrigger(&get_context, get, &got).ok());
  EXPECT_EQ(got.trigger().state(), v1::TRIGGER_STATE_COMPLETED);
  EXPECT_EQ(got.trigger().run_count(), 1);
  EXPECT_EQ(got.trigger().spec().labels().at("suite"), "scheduler");
}

TEST_F(SchedulerTriggersTest, PausedTriggerCanBeFiredResumedAndDeleted) {
  v1::TriggerSpec spec = SpawnSpec("/bin/true");
  spec.mutable_schedule()->set_interval_ms(3'600'000);
  spec.set_paused(true);
  ASSERT_TRUE(CreateSpawnTrigger("it/hourly", spec));
  {
    grpc::ClientContext context;
    Deadline(context);
    v1::FireTriggerRequest fire;
    fire.set_name("it/hourly");
    v1::FireTriggerResponse fired;
    ASSERT_TRUE(stub_->FireTrigger(&context, fire, &fired).ok());
    EXPECT_TRUE(fired.run().manual());
    EXPECT_NE(fired.run().state(), v1::TRIGGER_RUN_STATE_SKIPPED);
  }
  {
    grpc::ClientContext context;
    Deadline(context);
    v1::ResumeTriggerRequest resume;
    resume.set_name("it/hourly");
    v1::ResumeTriggerResponse resumed;
    ASSERT_TRUE(stub_->ResumeTrigger(&context, resume, &resumed).ok());
    EXPECT_EQ(resumed.trigger().state(), v1::TRIGGER_STATE_ACTIVE);
    EXPECT_EQ(resumed.trigger().run_count(), 0);  // The manual run does not count.
  }
  {
    grpc::ClientContext context;
    Deadline(context);
    v1::ListTriggersRequest list;
    list.set_name_prefix("it/");
    list.add_states(v1::TRIGGER_STATE_ACTIVE);
    v1::ListTriggersResponse listed;
    ASSERT_TRUE(stub_->ListTriggers(&context, list, &listed).ok());
    bool found = false;
    for (const auto& trigger : listed.triggers()) found |= trigger.name() == "it/hourly";
    EXPECT_TRUE(found);
  }
  {
    grpc::ClientContext context;
    Deadline(context);
    v1::DeleteTriggerRequest del;
    del.set_name("it/hourly");
    del.set_cancel_running(true);
    v1::DeleteTriggerResponse deleted;
    ASSERT_TRUE(stub_->DeleteTrigger(&context, del, &deleted).ok());
  }
  grpc::ClientContext context;
  Deadline(context);
  v1::DeleteTriggerRequest again;
  again.set_name("it/hourly");
  v1::DeleteTriggerResponse ignored;
  grpc::Status status = stub_->DeleteTrigger(&context, again, &ignored);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "TRIGGER_NOT_FOUND");
}

TEST_F(SchedulerTriggersTest, BadCronAndUnknownTimeZoneAreInvalidArgument) {
  v1::TriggerSpec spec = SpawnSpec("/bin/true");
  spec.mutable_schedule()->mutable_cron()->set_expression("61 * * * *");
  grpc::Status status = Create("it/bad-cron", spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_CRON");
  EXPECT_THAT(status.error_message(), HasSubstr("spec.schedule.cron.expression"));

  spec.mutable_schedule()->mutable_cron()->set_expression("0 9 * * MON-FRI");
  spec.mutable_schedule()->mutable_cron()->set_timezone("Atlantis/Capital");
  status = Create("it/bad-zone", spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "UNKNOWN_TIMEZONE");
  EXPECT_THAT(status.error_message(), HasSubstr("Atlantis/Capital"));
}

TEST_F(SchedulerTriggersTest, MalformedRequestsNameTheField) {
  v1::TriggerSpec no_schedule = SpawnSpec("/bin/true");
  grpc::Status status = Create("it/x", no_schedule);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.schedule"));

  v1::TriggerSpec spec = SpawnSpec("/bin/true");
  spec.mutable_schedule()->set_interval_ms(10);
  status = Create("it/x", spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.schedule.interval_ms 10"));

  spec.mutable_schedule()->set_interval_ms(1000);
  status = Create("bad name", spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(services::ReasonOf(status), "INVALID_NAME");

  spec.mutable_action()->mutable_spawn()->set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  status = Create("it/x", spec);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.action.spawn.stdin_mode"));

  v1::TriggerSpec pool;
  pool.mutable_schedule()->set_delay_ms(1000);
  pool.mutable_action()->mutable_pool_task()->set_pool("it-no-such-pool");
  *pool.mutable_action()->mutable_pool_task()->mutable_task() = ShellTask("true");
  status = Create("it/pool", pool);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.action.pool_task.pool"));
  EXPECT_THAT(status.error_message(), HasSubstr("it-no-such-pool"));
}

TEST_F(SchedulerTriggersTest, UnknownTriggerIsNotFound) {
  grpc::ClientContext context;
  Deadline(context);
  v1::GetTriggerRequest get;
  get.set_name("it/nope");
  v1::GetTriggerResponse response;
  grpc::Status status = stub_->GetTrigger(&context, get, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(services::ReasonOf(status), "TRIGGER_NOT_FOUND");

  grpc::ClientContext watch_context;
  Deadline(watch_context);
  v1::WatchTriggerRunsRequest watch;
  watch.set_name("it/nope");
  auto reader = stub_->WatchTriggerRuns(&watch_context, watch);
  v1::WatchTriggerRunsResponse event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SchedulerTriggersTest, StatsCountTriggers) {
  v1::TriggerSpec spec = SpawnSpec("/bin/true");
  spec.mutable_schedule()->set_interval_ms(3'600'000);
  spec.set_paused(true);
  ASSERT_TRUE(CreateSpawnTrigger("it/counted", spec));
  auto server_stub = v1::ServerService::NewStub(channel_);
  grpc::ClientContext context;
  Deadline(context);
  v1::GetStatsResponse stats;
  ASSERT_TRUE(server_stub->GetStats(&context, {}, &stats).ok());
  EXPECT_GE(stats.tables().triggers(), 1);
}

TEST_F(SchedulerTriggersTest, PoolTaskTriggerSubmitsToThePoolAndReportsTheTaskResult) {
  ASSERT_NO_FATAL_FAILURE(CreateCommandPool("it-trigger-pool", 1));
  v1::TriggerSpec spec;
  spec.mutable_schedule()->set_delay_ms(200);
  spec.mutable_action()->mutable_pool_task()->set_pool("it-trigger-pool");
  *spec.mutable_action()->mutable_pool_task()->mutable_task() = ShellTask("exit 0");
  // A task the pool could not run is refused at creation, naming the field.
  v1::TriggerSpec wrong = spec;
  wrong.mutable_action()->mutable_pool_task()->mutable_task()->set_payload("not a command");
  grpc::Status status = Create("it/pool-wrong", wrong);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.action.pool_task.task.payload"));
  wrong.mutable_action()->mutable_pool_task()->clear_task();
  wrong.mutable_action()->mutable_pool_task()->mutable_task()->set_priority(1);
  status = Create("it/pool-wrong", wrong);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.action.pool_task.task"));

  ASSERT_TRUE(CreateSpawnTrigger("it/pool-ok", spec));
  v1::TriggerRun run = AwaitFinalRun("it/pool-ok");
  EXPECT_EQ(run.state(), v1::TRIGGER_RUN_STATE_SUCCEEDED) << run.error();
  EXPECT_TRUE(run.process_id().empty());
  ASSERT_FALSE(run.task_id().empty());
  EXPECT_EQ(run.task_result().outcome(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(run.task_result().exit().exit_code(), 0);

  // The task is the pool's own, labelled with the trigger that made it.
  auto pools = v1::PoolService::NewStub(channel_);
  grpc::ClientContext context;
  Deadline(context);
  v1::GetTaskRequest get;
  get.set_task_id(run.task_id());
  v1::GetTaskResponse task;
  ASSERT_TRUE(pools->GetTask(&context, get, &task).ok());
  EXPECT_EQ(task.task().pool(), "it-trigger-pool");
  EXPECT_EQ(task.task().spec().labels().at("spindle.dev/trigger"), "it/pool-ok");
}

TEST_F(SchedulerTriggersTest, FailingPoolTaskFailsTheRunWithItsExit) {
  ASSERT_NO_FATAL_FAILURE(CreateCommandPool("it-trigger-pool-fail", 1));
  v1::TriggerSpec spec;
  spec.mutable_schedule()->set_delay_ms(200);
  spec.mutable_action()->mutable_pool_task()->set_pool("it-trigger-pool-fail");
  *spec.mutable_action()->mutable_pool_task()->mutable_task() = ShellTask("exit 7");
  ASSERT_TRUE(CreateSpawnTrigger("it/pool-fail", spec));
  v1::TriggerRun run = AwaitFinalRun("it/pool-fail");
  EXPECT_EQ(run.state(), v1::TRIGGER_RUN_STATE_FAILED);
  EXPECT_FALSE(run.error().empty());
  EXPECT_EQ(run.task_result().outcome(), v1::TASK_STATE_FAILED);
  EXPECT_EQ(run.task_result().exit().exit_code(), 7);
}

}  // namespace
}  // namespace spindle
