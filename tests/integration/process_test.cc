// ProcessService over a real channel: an in-process server shared by the suite, plus the real
// spindled binary where subreaping matters.
#include <dirent.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/common/status_convert.h"
#include "services/server/spindle_server.h"
#include "spindle/common/status.h"
#include "spindle/process/cgroup.h"
#include "spindle/v1/process.grpc.pb.h"
#include "tests/support/proc_files.h"
#include "tests/support/spindled_process.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

services::ServerConfig EphemeralConfig() {
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  config.max_processes = 4096;
  return config;
}

int CountFds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (struct dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // The directory's own fd.
}

// Children of `pid` (all threads) and their states from /proc.
std::vector<std::pair<pid_t, char>> ChildStates(pid_t pid) {
  std::vector<std::pair<pid_t, char>> out;
  std::string task_dir = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = ::opendir(task_dir.c_str());
  if (dir == nullptr) return out;
  while (struct dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(absl::StrCat(task_dir, "/", e->d_name, "/children"));
    pid_t child;
    while (in >> child) {
      std::ifstream stat(absl::StrCat("/proc/", child, "/stat"));
      std::string line;
      std::getline(stat, line);
      auto close = line.rfind(')');
      char state = close != std::string::npos && close + 2 < line.size() ? line[close + 2] : '?';
      out.emplace_back(child, state);
    }
  }
  ::closedir(dir);
  return out;
}

using ::spindle::testing::Exists;
using ::spindle::testing::ReadFile;
using ::spindle::testing::StateOf;

bool Dead(pid_t pid) { return StateOf(pid) == 'Z' || StateOf(pid) == 'X'; }

// The cgroup v2 directory `pid` is in; empty without cgroup v2.
std::string CgroupDirOf(pid_t pid) {
  auto mount = process::FindCgroup2Mount(ReadFile("/proc/self/mountinfo"));
  auto path = process::UnifiedCgroupPath(ReadFile(absl::StrCat("/proc/", pid, "/cgroup")));
  if (!mount.has_value() || !path.has_value()) return "";
  absl::string_view relative = *path;
  if (mount->root != "/") absl::ConsumePrefix(&relative, mount->root);
  return absl::StrCat(mount->mount_point, relative == "/" ? "" : relative);
}

// Whether the server at `metrics_address` gives processes cgroups (its own probe's answer).
bool CgroupsEnabled(const std::string& metrics_address) {
  auto body = testing::HttpGet(metrics_address, "/metrics");
  return body.ok() && absl::StrContains(*body, "\nspindle_process_cgroups_enabled 1");
}

int64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(6), "kB")), &kb);
      return kb * 1024;
    }
  }
  return 0;
}

class ProcessServiceTest : public ::testing::Test {
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
    stub_ = v1::ProcessService::NewStub(channel_);
  }

  static std::unique_ptr<grpc::ClientContext> Context(int seconds = 20) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
    return context;
  }

  static v1::ProcessSpec Spec(std::vector<std::string> argv) {
    v1::ProcessSpec spec;
    for (auto& a : argv) spec.mutable_command()->add_argv(a);
    return spec;
  }

  v1::Process Spawn(const v1::ProcessSpec& spec) {
    v1::SpawnRequest request;
    *request.mutable_spec() = spec;
    v1::SpawnResponse response;
    auto context = Context();
    grpc::Status status = stub_->Spawn(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.process();
  }

  v1::Process WaitFinal(const std::string& id) {
    v1::WaitProcessRequest request;
    request.set_process_id(id);
    v1::WaitProcessResponse response;
    auto context = Context();
    grpc::Status status = stub_->WaitProcess(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.reached());
    return response.process();
  }

  v1::RunResponse Run(const v1::ProcessSpec& spec, grpc::Status* status, int seconds = 20) {
    v1::RunRequest request;
    *request.mutable_spec() = spec;
    v1::RunResponse response;
    auto context = Context(seconds);
    *status = stub_->Run(context.get(), request, &response);
    return response;
  }

  static services::SpindleServer* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ProcessService::Stub> stub_;
};

services::SpindleServer* ProcessServiceTest::server_ = nullptr;

TEST_F(ProcessServiceTest, RunCollectsOutputAndExitStatus) {
  grpc::Status status;
  v1::ProcessSpec spec = Spec({"/bin/sh", "-c", "echo hello; echo oops >&2; exit 7"});
  auto response = Run(spec, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.stdout_data(), "hello\n");
  EXPECT_EQ(response.stderr_data(), "oops\n");
  EXPECT_EQ(response.process().status().state(), v1::PROCESS_STATE_EXITED);
  EXPECT_EQ(response.process().status().exit().reason(), v1::PROCESS_EXIT_REASON_EXITED);
  EXPECT_EQ(response.process().status().exit().exit_code(), 7);
  EXPECT_TRUE(response.process().status().has_ended_at());
}

TEST_F(ProcessServiceTest, StdinRoundTripsThroughCat) {
  v1::ProcessSpec spec = Spec({"/bin/cat"});
  spec.set_stdin_mode(v1::PROCESS_STDIN_MODE_DATA);
  spec.set_stdin_data(std::string(100000, 'q') + "end");
  grpc::Status status;
  auto response = Run(spec, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.stdout_data(), std::string(100000, 'q') + "end");

  // And through a PIPE with WriteStdin.
  v1::ProcessSpec pipe = Spec({"/bin/cat"});
  pipe.set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  v1::Process p = Spawn(pipe);
  auto context = Context();
  v1::WriteStdinResponse written;
  auto writer = stub_->WriteStdin(context.get(), &written);
  v1::WriteStdinRequest chunk;
  chunk.set_process_id(p.id());
  chunk.set_data("first ");
  ASSERT_TRUE(writer->Write(chunk));
  chunk.clear_process_id();
  chunk.set_data("second");
  chunk.set_close(true);
  ASSERT_TRUE(writer->Write(chunk));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(written.stdin_offset(), 12);
  EXPECT_TRUE(written.closed());
  v1::Process done = WaitFinal(p.id());
  EXPECT_EQ(done.status().stdout_bytes(), 12);
}

TEST_F(ProcessServiceTest, StdinOfAProcessThatStoppedReadingIsABrokenPipeWithItsOffset) {
  v1::ProcessSpec spec = Spec({"/usr/bin/head", "-c", "5"});
  spec.set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  v1::Process p = Spawn(spec);
  auto context = Context();
  v1::WriteStdinResponse written;
  auto writer = stub_->WriteStdin(context.get(), &written);
  v1::WriteStdinRequest chunk;
  chunk.set_process_id(p.id());
  chunk.set_data(std::string(4 << 20, 'x'));  // far more than a pipe holds: head leaves first
  writer->Write(chunk);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(services::ReasonOf(status), "STDIN_BROKEN_PIPE");
  int64_t offset = -1;
  ASSERT_TRUE(absl::SimpleAtoi(services::ErrorMetadataOf(status)["stdin_offset"], &offset))
      << status.error_message();
  EXPECT_GE(offset, 5);
  EXPECT_LT(offset, int64_t{4} << 20);
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("stdin_offset ", offset)));
  EXPECT_EQ(WaitFinal(p.id()).status().exit().exit_code(), 0);
}

TEST_F(ProcessServiceTest, FollowSeesOutputAsItIsWritten) {
  v1::ProcessSpec spec = Spec({"/bin/cat"});
  spec.set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  v1::Process p = Spawn(spec);

  auto read_context = Context();
  v1::ReadOutputRequest read;
  read.set_process_id(p.id());
  read.set_follow(true);
  auto reader = stub_->ReadOutput(read_context.get(), read);

  auto write_context = Context();
  v1::WriteStdinResponse written;
  auto writer = stub_->WriteStdin(write_context.get(), &written);
  v1::WriteStdinRequest chunk;
  chunk.set_process_id(p.id());
  for (std::string line : {"one\n", "two\n"}) {
    chunk.set_data(line);
    ASSERT_TRUE(writer->Write(chunk));
    v1::ReadOutputResponse got;
    ASSERT_TRUE(reader->Read(&got));
    ASSERT_TRUE(got.has_chunk());
    EXPECT_EQ(got.chunk().data(), line);
  }
  chunk.set_data("");
  chunk.set_close(true);
  ASSERT_TRUE(writer->Write(chunk));
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  v1::ReadOutputResponse last;
  ASSERT_TRUE(reader->Read(&last));
  EXPECT_TRUE(last.has_exited());
  EXPECT_EQ(last.exited().exit().exit_code(), 0);
  EXPECT_FALSE(reader->Read(&last));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ProcessServiceTest, ReadOutputMarksDroppedBytesWithAGap) {
  v1::ProcessSpec spec = Spec({"/bin/sh", "-c", "head -c 100000 /dev/zero"});
  spec.set_output_buffer_bytes(4096);
  v1::Process p = Spawn(spec);
  WaitFinal(p.id());
  auto context = Context();
  v1::ReadOutputRequest read;
  read.set_process_id(p.id());
  read.set_stream(v1::PROCESS_OUTPUT_STREAM_STDOUT);
  auto reader = stub_->ReadOutput(context.get(), read);
  v1::ReadOutputResponse got;
  ASSERT_TRUE(reader->Read(&got));
  ASSERT_TRUE(got.has_gap());
  EXPECT_EQ(got.gap().dropped_bytes(), 100000 - 4096);
  ASSERT_TRUE(reader->Read(&got));
  ASSERT_TRUE(got.has_chunk());
  EXPECT_EQ(got.chunk().offset(), 100000 - 4096);
  EXPECT_EQ(got.chunk().data().size(), 4096u);
  ASSERT_TRUE(reader->Read(&got));
  EXPECT_TRUE(got.has_exited());
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ProcessServiceTest, TimeoutKillsSleep) {
  v1::ProcessSpec spec = Spec({"/bin/sleep", "100"});
  spec.set_timeout_ms(300);
  spec.set_kill_grace_ms(2000);
  grpc::Status status;
  absl::Time start = absl::Now();
  auto response = Run(spec, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(response.process().status().exit().reason(), v1::PROCESS_EXIT_REASON_TIMED_OUT);
  EXPECT_EQ(response.process().status().exit().signal_name(), "SIGTERM");
  EXPECT_THAT(response.process().status().exit().message(), HasSubstr("timeout of 300 ms"));
}

TEST_F(ProcessServiceTest, RunDeadlineKillsTheTree) {
  v1::ProcessSpec spec = Spec({"/bin/sh", "-c", "sleep 100 & sleep 100; wait"});
  spec.set_kill_grace_ms(0);
  spec.set_name("deadline-victim");
  grpc::Status status;
  Run(spec, &status, /*seconds=*/1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  // The process ends CALLER_GONE shortly after.
  v1::ListProcessesRequest list;
  list.set_name_prefix("deadline-victim");
  absl::Time until = absl::Now() + absl::Seconds(10);
  v1::ListProcessesResponse listed;
  while (absl::Now() < until) {
    auto context = Context();
    ASSERT_TRUE(stub_->ListProcesses(context.get(), list, &listed).ok());
    ASSERT_EQ(listed.processes_size(), 1);
    if (listed.processes(0).status().state() == v1::PROCESS_STATE_EXITED) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(listed.processes(0).status().exit().reason(), v1::PROCESS_EXIT_REASON_CALLER_GONE);
}

TEST_F(ProcessServiceTest, BadRequestsGetTheRightCodes) {
  grpc::Status status;
  Run(Spec({"/no/such/binary"}), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("No such file or directory"));
  EXPECT_EQ(services::ReasonOf(status), "EXEC_FAILED");

  v1::ProcessSpec negative = Spec({"/bin/true"});
  negative.mutable_limits()->set_cpu_seconds(-5);
  v1::SpawnRequest spawn;
  *spawn.mutable_spec() = negative;
  v1::SpawnResponse spawned;
  auto context = Context();
  status = stub_->Spawn(context.get(), spawn, &spawned);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.limits.cpu_seconds: -5"));

  v1::Process p = Spawn(Spec({"/bin/sleep", "100"}));
  v1::SignalProcessRequest signal;
  signal.set_process_id(p.id());
  signal.mutable_signal()->set_name("SIGWHATEVER");
  v1::SignalProcessResponse signalled;
  context = Context();
  status = stub_->SignalProcess(context.get(), signal, &signalled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("SIGWHATEVER"));
  signal.mutable_signal()->set_number(0);
  context = Context();
  EXPECT_EQ(stub_->SignalProcess(context.get(), signal, &signalled).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::GetProcessRequest get;
  get.set_process_id("p-unknown");
  v1::GetProcessResponse got;
  context = Context();
  status = stub_->GetProcess(context.get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("p-unknown"));
  EXPECT_EQ(services::ReasonOf(status), "PROCESS_NOT_FOUND");

  v1::TerminateProcessRequest terminate;
  terminate.set_process_id(p.id());
  terminate.set_grace_ms(0);
  terminate.set_wait(true);
  v1::TerminateProcessResponse terminated;
  context = Context();
  ASSERT_TRUE(stub_->TerminateProcess(context.get(), terminate, &terminated).ok());
  EXPECT_EQ(terminated.process().status().state(), v1::PROCESS_STATE_EXITED);
  EXPECT_EQ(terminated.process().status().exit().reason(), v1::PROCESS_EXIT_REASON_TERMINATED);
  signal.mutable_signal()->set_name("TERM");
  context = Context();
  status = stub_->SignalProcess(context.get(), signal, &signalled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(services::ReasonOf(status), "PROCESS_EXITED");
}

TEST_F(ProcessServiceTest, CancellingWaitLeavesTheProcessRunning) {
  v1::Process p = Spawn(Spec({"/bin/sleep", "100"}));
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    v1::WaitProcessRequest wait;
    wait.set_process_id(p.id());
    v1::WaitProcessResponse waited;
    EXPECT_EQ(stub_->WaitProcess(&context, wait, &waited).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    grpc::ClientContext context;
    v1::WaitProcessRequest wait;
    wait.set_process_id(p.id());
    v1::WaitProcessResponse waited;
    absl::Notification done;
    grpc::Status status;
    stub_->async()->WaitProcess(&context, &wait, &waited, [&](grpc::Status s) {
      status = s;
      done.Notify();
    });
    absl::SleepFor(absl::Milliseconds(50));
    context.TryCancel();
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  }
  v1::WaitProcessRequest bounded;
  bounded.set_process_id(p.id());
  bounded.set_max_wait_ms(50);
  v1::WaitProcessResponse waited;
  auto context = Context();
  ASSERT_TRUE(stub_->WaitProcess(context.get(), bounded, &waited).ok());
  EXPECT_FALSE(waited.reached());
  EXPECT_EQ(waited.process().status().state(), v1::PROCESS_STATE_RUNNING);
  v1::TerminateProcessRequest terminate;
  terminate.set_process_id(p.id());
  terminate.set_grace_ms(0);
  v1::TerminateProcessResponse terminated;
  context = Context();
  ASSERT_TRUE(stub_->TerminateProcess(context.get(), terminate, &terminated).ok());
  WaitFinal(p.id());
}

TEST_F(ProcessServiceTest, ThousandsOfWaitsCostNoThreads) {
  auto threads = [] {
    int n = 0;
    DIR* dir = ::opendir("/proc/self/task");
    while (struct dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
    ::closedir(dir);
    return n;
  };
  v1::ProcessSpec spec = Spec({"/bin/cat"});
  spec.set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  v1::Process p = Spawn(spec);
  constexpr int kWaits = 2000;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts(kWaits);
  std::vector<v1::WaitProcessResponse> responses(kWaits);
  v1::WaitProcessRequest wait;
  wait.set_process_id(p.id());
  std::atomic<int> done{0};
  std::atomic<int> ok{0};
  absl::Notification all;
  int before = threads();
  for (int i = 0; i < kWaits; ++i) {
    contexts[i] = Context(60);
    stub_->async()->WaitProcess(contexts[i].get(), &wait, &responses[i], [&](grpc::Status s) {
      if (s.ok()) ok++;
      if (++done == kWaits) all.Notify();
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(done.load(), 0);
  EXPECT_LT(threads(), before + 50);
  v1::CloseStdinRequest close;
  close.set_process_id(p.id());
  v1::CloseStdinResponse closed;
  auto context = Context();
  ASSERT_TRUE(stub_->CloseStdin(context.get(), close, &closed).ok());
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(ok.load(), kWaits);
}

TEST_F(ProcessServiceTest, ThousandSpawnsLeaveNoZombieAndNoFd) {
  // Warm up gRPC's and the executor's own fds first.
  for (int i = 0; i < 10; ++i) {
    grpc::Status status;
    Run(Spec({"/bin/true"}), &status);
  }
  int fds_before = CountFds();
  for (int i = 0; i < 1000; ++i) {
    grpc::Status status;
    Run(Spec({"/bin/true"}), &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // Reaping is done by the time Run answered; give stray fds a bounded moment anyway.
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (CountFds() > fds_before && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_LE(CountFds(), fds_before);
  for (const auto& [pid, state] : ChildStates(::getpid())) {
    EXPECT_NE(state, 'Z') << "zombie child " << pid;
  }
}

TEST_F(ProcessServiceTest, HugeOutputKeepsServerMemoryFlat) {
  int64_t before = RssBytes();
  v1::ProcessSpec spec = Spec({"/bin/sh", "-c", "head -c 536870912 /dev/zero"});
  v1::Process p = Spawn(spec);
  v1::Process done = WaitFinal(p.id());
  EXPECT_EQ(done.status().stdout_bytes(), 536870912);
  EXPECT_EQ(done.status().stdout_dropped_bytes(), 536870912 - (1 << 20));
  EXPECT_LT(RssBytes() - before, 64 << 20) << "server RSS grew by " << RssBytes() - before;
}

TEST_F(ProcessServiceTest, RestartPolicyBacksOffAndCountsRestarts) {
  v1::ProcessSpec spec = Spec({"/bin/sh", "-c", "exit 3"});
  spec.mutable_restart()->set_mode(v1::PROCESS_RESTART_MODE_ON_FAILURE);
  spec.mutable_restart()->set_initial_backoff_ms(50);
  spec.mutable_restart()->set_jitter(0);
  spec.mutable_restart()->set_max_start_failures(2);
  spec.mutable_restart()->set_min_uptime_ms(5000);
  absl::Time start = absl::Now();
  v1::Process p = Spawn(spec);
  v1::Process done = WaitFinal(p.id());
  // Backoffs of 50 and 100 ms happened before the third quick failure made it FATAL.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(150));
  EXPECT_EQ(done.status().state(), v1::PROCESS_STATE_FATAL);
  EXPECT_EQ(done.status().restart_count(), 2);
  EXPECT_EQ(done.status().start_failures(), 3);
  EXPECT_THAT(done.status().last_failure(), HasSubstr("exited with code 3"));
}

TEST_F(ProcessServiceTest, WatchSeesStateChanges) {
  auto context = Context();
  v1::WatchProcessesRequest watch;
  watch.set_name_prefix("watched");
  auto reader = stub_->WatchProcesses(context.get(), watch);
  v1::ProcessSpec spec = Spec({"/bin/true"});
  spec.set_name("watched");
  v1::Process p = Spawn(spec);
  std::vector<v1::ProcessState> states;
  v1::WatchProcessesResponse event;
  while (reader->Read(&event)) {
    EXPECT_EQ(event.process().id(), p.id());
    states.push_back(event.process().status().state());
    if (event.process().status().state() == v1::PROCESS_STATE_EXITED) break;
  }
  context->TryCancel();
  reader->Finish();
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states.back(), v1::PROCESS_STATE_EXITED);
}

TEST_F(ProcessServiceTest, AttachSpawnsStreamsStdinAndEndsWithExit) {
  auto context = Context();
  auto stream = stub_->Attach(context.get());
  v1::AttachRequest open;
  *open.mutable_open()->mutable_spawn() = Spec({"/bin/cat"});
  open.mutable_open()->mutable_spawn()->set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  open.mutable_open()->set_attach_stdin(true);
  ASSERT_TRUE(stream->Write(open));
  v1::AttachResponse got;
  ASSERT_TRUE(stream->Read(&got));
  ASSERT_TRUE(got.has_started());
  v1::AttachRequest data;
  data.set_stdin_data("ping\n");
  ASSERT_TRUE(stream->Write(data));
  ASSERT_TRUE(stream->Read(&got));
  ASSERT_TRUE(got.has_chunk());
  EXPECT_EQ(got.chunk().data(), "ping\n");
  stream->WritesDone();  // Half-close: EOF for cat.
  ASSERT_TRUE(stream->Read(&got));
  ASSERT_TRUE(got.has_exited());
  EXPECT_EQ(got.exited().exit().exit_code(), 0);
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ProcessServiceTest, PtyGivesATerminalOfTheAskedSizeAndResizeReachesIt) {
  auto context = Context();
  auto stream = stub_->Attach(context.get());
  v1::AttachRequest open;
  // Prints the terminal's size, waits for a line, prints the size again.
  *open.mutable_open()->mutable_spawn() =
      Spec({"/bin/sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo tty=yes; stty size; read x; stty size"});
  open.mutable_open()->mutable_spawn()->set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  open.mutable_open()->mutable_spawn()->mutable_pty()->set_rows(33);
  open.mutable_open()->mutable_spawn()->mutable_pty()->set_cols(101);
  open.mutable_open()->set_attach_stdin(true);
  ASSERT_TRUE(stream->Write(open));
  v1::AttachResponse got;
  ASSERT_TRUE(stream->Read(&got));
  ASSERT_TRUE(got.has_started());
  std::string output;
  // Reads output until `want` shows up (bounded by the call's deadline).
  auto read_until = [&](const std::string& want) {
    while (output.find(want) == std::string::npos) {
      if (!stream->Read(&got)) return false;
      if (got.has_chunk()) output += got.chunk().data();
      if (got.has_exited()) return output.find(want) != std::string::npos;
    }
    return true;
  };
  ASSERT_TRUE(read_until("33 101")) << output;
  EXPECT_THAT(output, HasSubstr("tty=yes"));
  v1::AttachRequest resize;
  resize.mutable_resize()->set_rows(40);
  resize.mutable_resize()->set_cols(120);
  ASSERT_TRUE(stream->Write(resize));
  v1::AttachRequest line;
  line.set_stdin_data("go\n");
  ASSERT_TRUE(stream->Write(line));
  ASSERT_TRUE(read_until("40 120")) << output;
  while (!got.has_exited() && stream->Read(&got)) {
  }
  ASSERT_TRUE(got.has_exited());
  EXPECT_EQ(got.exited().exit().exit_code(), 0);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ProcessServiceTest, ListPagesAndDeleteForgets) {
  for (int i = 0; i < 3; ++i) {
    v1::ProcessSpec spec = Spec({"/bin/true"});
    spec.set_name("paged");
    spec.mutable_labels()->insert({"batch", "p1"});
    WaitFinal(Spawn(spec).id());
  }
  v1::ListProcessesRequest list;
  list.set_label_selector("batch=p1");
  list.set_page_size(2);
  v1::ListProcessesResponse page;
  auto context = Context();
  ASSERT_TRUE(stub_->ListProcesses(context.get(), list, &page).ok());
  ASSERT_EQ(page.processes_size(), 2);
  ASSERT_FALSE(page.next_page_token().empty());
  list.set_page_token(page.next_page_token());
  v1::ListProcessesResponse rest;
  context = Context();
  ASSERT_TRUE(stub_->ListProcesses(context.get(), list, &rest).ok());
  ASSERT_EQ(rest.processes_size(), 1);
  v1::DeleteProcessRequest del;
  del.set_process_id(rest.processes(0).id());
  v1::DeleteProcessResponse deleted;
  context = Context();
  ASSERT_TRUE(stub_->DeleteProcess(context.get(), del, &deleted).ok());
  context = Context();
  EXPECT_EQ(stub_->DeleteProcess(context.get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ProcessServiceTest, MetricsCountSpawnsAndExits) {
  grpc::Status status;
  Run(Spec({"/bin/true"}), &status);
  auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("spindle_process_spawns_total{result=\"ok\"}"));
  EXPECT_THAT(*body, HasSubstr("spindle_process_spawn_seconds_bucket"));
  EXPECT_THAT(*body, HasSubstr("spindle_process_exits_total{reason=\"exited\"}"));
  EXPECT_THAT(*body, HasSubstr("spindle_processes{state=\"EXITED\"}"));
  EXPECT_THAT(*body, HasSubstr("spindle_process_output_bytes_total{stream=\"stdout\"}"));
  EXPECT_THAT(*body, HasSubstr("spindle_process_output_dropped_bytes_total"));
}

// The real binary: spindled is the subreaper of what it spawns, so a daemonised grandchild is
// killed with its tree and reaped.
TEST(SpindledProcessTreeTest, TerminateKillsDaemonisedGrandchildAndReapsIt) {
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start().ok()) << spindled.logs();
  auto channel = grpc::CreateChannel(spindled.address(), grpc::InsecureChannelCredentials());
  auto stub = v1::ProcessService::NewStub(channel);
  v1::SpawnRequest spawn;
  // The grandchild double-forks into its own session (a daemon) and ignores TERM.
  for (std::string a : {"/bin/sh", "-c",
                        "trap '' TERM; setsid sh -c 'trap \"\" TERM; sleep 100' & "
                        "echo $!; sleep 100"}) {
    spawn.mutable_spec()->mutable_command()->add_argv(a);
  }
  spawn.mutable_spec()->set_kill_grace_ms(300);
  v1::SpawnResponse spawned;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->Spawn(&context, spawn, &spawned).ok());
  // Its output names the daemon's pid.
  v1::ReadOutputRequest read;
  read.set_process_id(spawned.process().id());
  read.set_follow(true);
  grpc::ClientContext read_context;
  read_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub->ReadOutput(&read_context, read);
  v1::ReadOutputResponse got;
  ASSERT_TRUE(reader->Read(&got));
  int daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(got.chunk().data()), &daemon));
  read_context.TryCancel();
  reader->Finish();
  ASSERT_EQ(::kill(daemon, 0), 0);

  v1::TerminateProcessRequest terminate;
  terminate.set_process_id(spawned.process().id());
  terminate.set_wait(true);
  v1::TerminateProcessResponse terminated;
  grpc::ClientContext terminate_context;
  terminate_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(stub->TerminateProcess(&terminate_context, terminate, &terminated).ok());
  EXPECT_EQ(terminated.process().status().exit().signal_name(), "SIGKILL");
  // The daemon died and spindled (its subreaper) reaped it: no zombie child is left.
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (::kill(daemon, 0) == 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_NE(::kill(daemon, 0), 0) << "daemon " << daemon << " survived or was not reaped";
  // Orphans (the daemon's own child) are reaped by the subreaper's sweep, within two intervals.
  auto zombies = [&] {
    int n = 0;
    for (const auto& [pid, state] : ChildStates(spindled.pid())) n += state == 'Z';
    return n;
  };
  until = absl::Now() + absl::Seconds(10);
  while (zombies() > 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(zombies(), 0);
  // A clean shutdown, so its cgroups (when it used them) go too.
  EXPECT_TRUE(spindled.SignalAndWait(SIGTERM, absl::Seconds(30)).has_value());
}

// A descendant that double-forks, calls setsid() and clears its environment leaves the process
// tree and drops the cookie; its cgroup still holds it, so TerminateProcess kills it.
TEST_F(ProcessServiceTest, TerminateKillsADaemonThatEscapedTheTreeThroughItsCgroup) {
  if (!CgroupsEnabled(server_->metrics_address())) {
    GTEST_SKIP() << "the server found no usable cgroup v2 (spindle_process_cgroups_enabled 0)";
  }
  v1::ProcessSpec spec =
      Spec({"/bin/sh", "-c",
            "trap '' TERM; sh -c 'setsid env -i /bin/sh -c \"$0\" &' \"$1\"; exec sleep 100", "sh",
            "trap '' TERM; echo $$; exec sleep 100"});
  spec.set_kill_grace_ms(300);
  v1::Process spawned = Spawn(spec);
  ASSERT_FALSE(spawned.id().empty());
  pid_t root = static_cast<pid_t>(spawned.status().pid());
  // The daemon prints its pid.
  v1::ReadOutputRequest read;
  read.set_process_id(spawned.id());
  read.set_follow(true);
  auto read_context = Context(10);
  auto reader = stub_->ReadOutput(read_context.get(), read);
  v1::ReadOutputResponse got;
  ASSERT_TRUE(reader->Read(&got));
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(got.chunk().data()), &daemon));
  read_context->TryCancel();
  reader->Finish();
  EXPECT_FALSE(absl::StrContains(ReadFile(absl::StrCat("/proc/", daemon, "/environ")),
                                 "SPINDLE_PROCESS_ID"));
  // Both are in the process's own cgroup, named after it, while it runs.
  std::string dir = CgroupDirOf(root);
  EXPECT_TRUE(absl::EndsWith(dir, absl::StrCat("/", spawned.id()))) << dir;
  EXPECT_TRUE(Exists(dir));
  EXPECT_EQ(CgroupDirOf(daemon), dir);

  v1::TerminateProcessRequest terminate;
  terminate.set_process_id(spawned.id());
  terminate.set_wait(true);
  v1::TerminateProcessResponse terminated;
  auto context = Context(10);
  ASSERT_TRUE(stub_->TerminateProcess(context.get(), terminate, &terminated).ok());
  EXPECT_EQ(terminated.process().status().exit().signal_name(), "SIGKILL");
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (!Dead(daemon) && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  if (!Dead(daemon)) ::kill(daemon, SIGKILL);  // Started by this test: do not leave it behind.
  EXPECT_TRUE(Dead(daemon)) << "daemon " << daemon << " escaped";
  // Its cgroup goes once the last member is gone (at once, or at the next housekeeping).
  until = absl::Now() + absl::Seconds(10);
  while (Exists(dir) && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(Exists(dir)) << dir;
}

TEST_F(ProcessServiceTest, MetricsSayWhetherCgroupsAreUsed) {
  auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(*body, HasSubstr("spindle_process_cgroups_enabled"));
}

// --cgroups=off: processes stay in the server's cgroup and no directory is made.
TEST(ProcessCgroupsFlagTest, OffKeepsProcessesInTheServersCgroup) {
  services::ServerConfig config = EphemeralConfig();
  config.cgroups = "off";
  auto server = services::SpindleServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_FALSE(CgroupsEnabled((*server)->metrics_address()));
  auto stub = v1::ProcessService::NewStub(
      grpc::CreateChannel((*server)->listen_address(), grpc::InsecureChannelCredentials()));
  v1::RunRequest run;
  for (std::string a : {"/bin/sh", "-c", "cat /proc/self/cgroup"}) {
    run.mutable_spec()->mutable_command()->add_argv(a);
  }
  v1::RunResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(stub->Run(&context, run, &response).ok());
  EXPECT_EQ(response.stdout_data(), ReadFile("/proc/self/cgroup"));
}

TEST(ProcessCgroupsFlagTest, BadValueIsRejected) {
  services::ServerConfig config = EphemeralConfig();
  config.cgroups = "sometimes";
  auto server = services::SpindleServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--cgroups: 'sometimes'"));

  auto result = testing::RunCommand({testing::SpindledPath(), "--listen", "127.0.0.1:0",
                                     "--metrics-listen", "", "--cgroups=sometimes"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->exit.exited);
  EXPECT_EQ(result->exit.code, 2);
  EXPECT_THAT(result->err, HasSubstr("--cgroups"));
}

// The real binary with --cgroups=required, where the host allows it: started, and its parent
// cgroup is gone after a clean shutdown.
TEST(ProcessCgroupsFlagTest, RequiredStartsWhereCgroupsWorkAndCleansUpOnShutdown) {
  if (!process::CgroupTree::Create(false).ok()) {
    GTEST_SKIP() << "cgroup v2 is not usable on this host";
  }
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start({"--cgroups=required"}).ok()) << spindled.logs();
  std::string logs = spindled.logs();
  auto at = logs.find("event=cgroups enabled=true mode=required dir=");
  ASSERT_NE(at, std::string::npos) << logs;
  std::string dir =
      logs.substr(at + std::string("event=cgroups enabled=true mode=required dir=").size());
  dir = dir.substr(0, dir.find('\n'));
  EXPECT_TRUE(Exists(dir)) << dir;
  auto stub = v1::ProcessService::NewStub(
      grpc::CreateChannel(spindled.address(), grpc::InsecureChannelCredentials()));
  v1::SpawnRequest spawn;
  spawn.mutable_spec()->mutable_command()->add_argv("/bin/sleep");
  spawn.mutable_spec()->mutable_command()->add_argv("100");
  v1::SpawnResponse spawned;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(stub->Spawn(&context, spawn, &spawned).ok());
  EXPECT_TRUE(Exists(absl::StrCat(dir, "/", spawned.process().id())));
  auto exit = spindled.SignalAndWait(SIGTERM, absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(Exists(dir)) << dir << " left behind; log:\n" << spindled.logs();
}

}  // namespace
}  // namespace spindle
