// The spawn policy over real channels: an in-process SpindleServer with a policy file and bearer
// tokens, real spawns allowed and refused through ProcessService (Spawn, Run, Attach),
// PoolService (COMMAND tasks, WORKER commands) and SchedulerService (spawn and pool_task
// triggers), the per-identity live-process limit with two tokens, the rejections metric, and
// spindled refusing to start on a bad policy file (flag and SPINDLE_SPAWN_POLICY).
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/server/spindle_server.h"
#include "spindle/v1/pool.grpc.pb.h"
#include "spindle/v1/process.grpc.pb.h"
#include "spindle/v1/scheduler.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"
#include "tests/support/spindled_process.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kAliceToken[] = "alice-token-0123456789abcdef";
constexpr char kBobToken[] = "bob-token-0123456789abcdef";

// A scratch directory under the test's temp dir, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = getenv("TEST_TMPDIR");
    std::string pattern =
        absl::StrCat(base != nullptr ? base : "/tmp", "/spindle-spawn-policy-XXXXXX");
    path_ = fs::canonical(mkdtemp(pattern.data())).string();
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

// Everything the suite's server allows: programs under /usr/bin/ except env, CPU time 30 s by
// default and open files at most 256, PATH/LANG/JOB_* variables, the scratch dir as cwd root,
// two live processes per identity (one for bob).
std::string PolicyFile(const std::string& cwd_root) {
  return absl::StrCat(R"({
  // The integration suite's policy.
  "executables": {"allow": ["/usr/bin/"], "deny": ["/usr/bin/env"]},
  "limits": {"default": {"cpu_seconds": 30}, "max": {"open_files": 256}},
  "environment": {"allow": ["PATH", "LANG", "JOB_*"]},
  "cwd": {"allow": [")",
                      cwd_root, R"("]},
  "identities": {"max_live_processes": 2, "overrides": {"token:bob": 1}}
})");
}

class SpawnPolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // In spindled's own environment (set before any thread starts): must not reach children.
    ::setenv("SPINDLE_TEST_SECRET", "hunter2", 1);
    dir_ = new ScratchDir();
    WriteFile(dir_->File("tokens"),
              absl::StrCat("alice exec ", kAliceToken, "\nbob exec ", kBobToken, "\n"));
    WriteFile(dir_->File("policy.json"), PolicyFile(dir_->path()));
    services::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "127.0.0.1:0";
    config.auth.tokens_file = dir_->File("tokens");
    config.spawn_policy_file = dir_->File("policy.json");
    auto server = services::SpindleServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value().release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    auto channel =
        grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
    processes_ = v1::ProcessService::NewStub(channel);
    pools_ = v1::PoolService::NewStub(channel);
    scheduler_ = v1::SchedulerService::NewStub(channel);
  }

  static std::unique_ptr<grpc::ClientContext> Context(const char* token = kAliceToken) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    return context;
  }

  static std::string ReasonOf(grpc::ClientContext& context) {
    auto trailers = context.GetServerTrailingMetadata();
    auto it = trailers.find("spindle-reason");
    return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
  }

  static v1::ProcessSpec Spec(std::vector<std::string> argv) {
    v1::ProcessSpec spec;
    for (auto& a : argv) spec.mutable_command()->add_argv(a);
    return spec;
  }

  struct Answer {
    grpc::Status status;
    std::string reason;
    v1::Process process;
  };
  Answer Spawn(const v1::ProcessSpec& spec, const char* token = kAliceToken) {
    v1::SpawnRequest request;
    *request.mutable_spec() = spec;
    v1::SpawnResponse response;
    auto context = Context(token);
    Answer answer;
    answer.status = processes_->Spawn(context.get(), request, &response);
    answer.reason = ReasonOf(*context);
    answer.process = response.process();
    return answer;
  }

  void Kill(const std::string& id) {
    v1::TerminateProcessRequest request;
    request.set_process_id(id);
    request.mutable_signal()->set_name("KILL");
    request.set_grace_ms(0);
    request.set_wait(true);
    v1::TerminateProcessResponse response;
    auto context = Context();
    grpc::Status status = processes_->TerminateProcess(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  double Rejections() {
    auto body = testing::HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    const std::string series = "spindle_rejections_total{reason=\"SPAWN_POLICY\"} ";
    auto at = body.ok() ? body->find(series) : std::string::npos;
    return at == std::string::npos ? -1.0 : std::stod(body->substr(at + series.size()));
  }

  static ScratchDir* dir_;
  static services::SpindleServer* server_;
  std::unique_ptr<v1::ProcessService::Stub> processes_;
  std::unique_ptr<v1::PoolService::Stub> pools_;
  std::unique_ptr<v1::SchedulerService::Stub> scheduler_;
};

ScratchDir* SpawnPolicyTest::dir_ = nullptr;
services::SpindleServer* SpawnPolicyTest::server_ = nullptr;

TEST_F(SpawnPolicyTest, AllowedRunGetsThePolicyDefaults) {
  v1::RunRequest request;
  *request.mutable_spec() = Spec({"sh", "-c", "ulimit -t; pwd; echo \"$JOB_ID\""});
  auto& env = *request.mutable_spec()->mutable_command()->mutable_env()->mutable_set();
  env["JOB_ID"] = "42";
  env["PATH"] = "/usr/bin";  // so "sh" resolves to /usr/bin/sh whatever the test's PATH is
  v1::RunResponse response;
  auto context = Context();
  grpc::Status status = processes_->Run(context.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.process().status().exit().exit_code(), 0) << response.stderr_data();
  EXPECT_EQ(response.stdout_data(), absl::StrCat("30\n", dir_->path(), "\n42\n"));
  EXPECT_EQ(response.process().spec().command().executable(), "/usr/bin/sh");
  EXPECT_EQ(response.process().spec().limits().cpu_seconds(), 30);
  EXPECT_EQ(response.process().spec().limits().open_files(), 256);
}

TEST_F(SpawnPolicyTest, LimitsNameThePolicyAndItsPerIdentityLimit) {
  auto channel = grpc::CreateChannel(server_->listen_address(), grpc::InsecureChannelCredentials());
  v1::GetLimitsResponse limits;
  auto context = Context();
  ASSERT_TRUE(v1::ServerService::NewStub(channel)->GetLimits(context.get(), {}, &limits).ok());
  EXPECT_EQ(limits.spawn_policy_file(), dir_->File("policy.json"));
  EXPECT_EQ(limits.max_live_processes_per_identity(), 2);
}

TEST_F(SpawnPolicyTest, ExecutableOutsideTheAllowListIsDenied) {
  const double before = Rejections();
  Answer answer = Spawn(Spec({"/bin/sh", "-c", "true"}));
  EXPECT_EQ(answer.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(answer.status.error_message(),
            "spec.command.argv[0] '/bin/sh' is not under an allowed executable prefix (policy "
            "rule executables.allow)");
  EXPECT_EQ(answer.reason, "SPAWN_POLICY");
  EXPECT_EQ(Rejections(), before + 1);
}

TEST_F(SpawnPolicyTest, DenyWinsAndRunIsCheckedToo) {
  v1::RunRequest request;
  *request.mutable_spec() = Spec({"env"});
  v1::RunResponse response;
  auto context = Context();
  grpc::Status status = processes_->Run(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "spec.command.argv[0] 'env' (resolved to '/usr/bin/env') is denied (policy rule "
            "executables.deny '/usr/bin/env')");
  EXPECT_EQ(ReasonOf(*context), "SPAWN_POLICY");
}

TEST_F(SpawnPolicyTest, EnvironmentCwdAndLimitsAreChecked) {
  v1::ProcessSpec env = Spec({"/usr/bin/true"});
  (*env.mutable_command()->mutable_env()->mutable_set())["LD_PRELOAD"] = "/tmp/x.so";
  Answer a = Spawn(env);
  EXPECT_EQ(a.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(a.status.error_message(),
            "spec.command.env.set['LD_PRELOAD'] is not an allowed variable (policy rule "
            "environment.allow)");

  v1::ProcessSpec cwd = Spec({"/usr/bin/true"});
  cwd.mutable_command()->set_cwd("/etc");
  Answer b = Spawn(cwd);
  EXPECT_EQ(b.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(b.status.error_message(),
            "spec.command.cwd '/etc' is not under an allowed working directory root (policy "
            "rule cwd.allow)");

  v1::ProcessSpec limits = Spec({"/usr/bin/true"});
  limits.mutable_limits()->set_open_files(100000);
  Answer c = Spawn(limits);
  EXPECT_EQ(c.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(c.status.error_message(),
            "spec.limits.open_files 100000 is over the maximum 256 (policy rule "
            "limits.max.open_files)");
  EXPECT_EQ(c.reason, "SPAWN_POLICY");
}

TEST_F(SpawnPolicyTest, InheritedEnvironmentIsScrubbed) {
  v1::RunRequest request;
  *request.mutable_spec() = Spec({"/usr/bin/sh", "-c", "echo \"[$SPINDLE_TEST_SECRET]\""});
  v1::RunResponse response;
  auto context = Context();
  grpc::Status status = processes_->Run(context.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.stdout_data(), "[]\n");
  EXPECT_STREQ(::getenv("SPINDLE_TEST_SECRET"), "hunter2");
}

TEST_F(SpawnPolicyTest, LiveProcessLimitPerTokenIdentity) {
  Answer a1 = Spawn(Spec({"/usr/bin/sleep", "60"}), kAliceToken);
  Answer a2 = Spawn(Spec({"/usr/bin/sleep", "60"}), kAliceToken);
  ASSERT_TRUE(a1.status.ok()) << a1.status.error_message();
  ASSERT_TRUE(a2.status.ok()) << a2.status.error_message();
  Answer a3 = Spawn(Spec({"/usr/bin/sleep", "60"}), kAliceToken);
  EXPECT_EQ(a3.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(a3.status.error_message(),
            "identity 'token:alice' has 2 live processes; a new process would exceed its limit "
            "of 2 (policy rule identities.max_live_processes)");
  EXPECT_EQ(a3.reason, "SPAWN_POLICY");

  // Bob has his own count, and his own (smaller) limit.
  Answer b1 = Spawn(Spec({"/usr/bin/sleep", "60"}), kBobToken);
  ASSERT_TRUE(b1.status.ok()) << b1.status.error_message();
  Answer b2 = Spawn(Spec({"/usr/bin/sleep", "60"}), kBobToken);
  EXPECT_EQ(b2.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(b2.status.error_message(),
              HasSubstr("identity 'token:bob' has 1 live processes; a new process would exceed "
                        "its limit of 1 (policy rule identities.overrides['token:bob'])"));

  // Pools count too: a COMMAND pool of size 1 is one more live process for bob.
  v1::CreatePoolRequest pool;
  pool.set_name("bob-pool");
  pool.mutable_spec()->set_kind(v1::POOL_KIND_COMMAND);
  pool.mutable_spec()->set_size(1);
  v1::CreatePoolResponse created;
  auto context = Context(kBobToken);
  grpc::Status status = pools_->CreatePool(context.get(), pool, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("pool 'bob-pool' of size 1 would exceed"));

  // A process that ended frees its slot.
  Kill(a1.process.id());
  Answer a4 = Spawn(Spec({"/usr/bin/sleep", "60"}), kAliceToken);
  EXPECT_TRUE(a4.status.ok()) << a4.status.error_message();
  for (const Answer* live : {&a2, &b1, &a4}) {
    if (live->status.ok()) Kill(live->process.id());
  }
}

TEST_F(SpawnPolicyTest, AttachSpawnIsChecked) {
  auto context = Context();
  auto stream = processes_->Attach(context.get());
  v1::AttachRequest open;
  *open.mutable_open()->mutable_spawn() = Spec({"/bin/sh"});
  ASSERT_TRUE(stream->Write(open));
  v1::AttachResponse response;
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("is not under an allowed executable prefix"));
}

TEST_F(SpawnPolicyTest, PoolWorkerCommandsAndCommandTasksAreChecked) {
  v1::CreatePoolRequest worker;
  worker.set_name("policy-workers");
  worker.mutable_spec()->set_kind(v1::POOL_KIND_WORKER);
  worker.mutable_spec()->set_size(1);
  auto* command = worker.mutable_spec()->mutable_worker()->mutable_command();
  command->add_argv("/bin/sh");
  command->add_argv("-c");
  command->add_argv("exit 0");
  v1::CreatePoolResponse created;
  auto context = Context();
  grpc::Status status = pools_->CreatePool(context.get(), worker, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "spec.worker.command.argv[0] '/bin/sh' is not under an allowed executable prefix "
            "(policy rule executables.allow)");
  EXPECT_EQ(ReasonOf(*context), "SPAWN_POLICY");

  v1::CreatePoolRequest pool;
  pool.set_name("policy-commands");
  pool.mutable_spec()->set_kind(v1::POOL_KIND_COMMAND);
  pool.mutable_spec()->set_size(1);
  auto create = Context();
  ASSERT_TRUE(pools_->CreatePool(create.get(), pool, &created).ok());

  v1::SubmitTaskRequest task;
  task.set_pool("policy-commands");
  task.mutable_task()->mutable_command()->mutable_command()->add_argv("/bin/sh");
  v1::SubmitTaskResponse submitted;
  auto submit = Context();
  status = pools_->SubmitTask(submit.get(), task, &submitted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "task.command.command.argv[0] '/bin/sh' is not under an allowed executable prefix "
            "(policy rule executables.allow)");
  EXPECT_EQ(ReasonOf(*submit), "SPAWN_POLICY");

  v1::DeletePoolRequest remove;
  remove.set_name("policy-commands");
  remove.set_force(true);
  v1::DeletePoolResponse removed;
  auto del = Context();
  EXPECT_TRUE(pools_->DeletePool(del.get(), remove, &removed).ok());
}

TEST_F(SpawnPolicyTest, SpawnTriggersAreCheckedAtCreation) {
  v1::CreateTriggerRequest request;
  request.set_name("policy-trigger");
  request.mutable_spec()->mutable_schedule()->set_interval_ms(60000);
  *request.mutable_spec()->mutable_action()->mutable_spawn() = Spec({"/bin/sh", "-c", "true"});
  v1::CreateTriggerResponse response;
  auto context = Context();
  grpc::Status status = scheduler_->CreateTrigger(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(),
              HasSubstr("spec.command.argv[0] '/bin/sh' is not under an allowed executable "
                        "prefix (policy rule executables.allow)"));
  EXPECT_EQ(ReasonOf(*context), "SPAWN_POLICY");
}

TEST_F(SpawnPolicyTest, TriggerRunsCountAgainstTheTriggersCreator) {
  v1::CreateTriggerRequest request;
  request.set_name("bob-trigger");
  request.mutable_spec()->mutable_schedule()->set_interval_ms(3600000);
  request.mutable_spec()->set_overlap(v1::TRIGGER_OVERLAP_POLICY_ALLOW);
  *request.mutable_spec()->mutable_action()->mutable_spawn() = Spec({"/usr/bin/sleep", "60"});
  v1::CreateTriggerResponse created;
  auto create = Context(kBobToken);
  ASSERT_TRUE(scheduler_->CreateTrigger(create.get(), request, &created).ok());

  // Bob's one live process is a run of his trigger: a process he spawns himself is refused.
  v1::FireTriggerRequest fire;
  fire.set_name("bob-trigger");
  v1::FireTriggerResponse first;
  auto fire_context = Context(kBobToken);
  ASSERT_TRUE(scheduler_->FireTrigger(fire_context.get(), fire, &first).ok());
  ASSERT_EQ(first.run().state(), v1::TRIGGER_RUN_STATE_RUNNING) << first.run().error();
  Answer b1 = Spawn(Spec({"/usr/bin/sleep", "60"}), kBobToken);
  EXPECT_EQ(b1.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(b1.status.error_message(), HasSubstr("identity 'token:bob' has 1 live processes"));

  // And a second run, fired by anyone, fails on bob's limit; alice's count is untouched.
  v1::FireTriggerResponse second;
  auto alice_fires = Context(kAliceToken);
  ASSERT_TRUE(scheduler_->FireTrigger(alice_fires.get(), fire, &second).ok());
  EXPECT_EQ(second.run().state(), v1::TRIGGER_RUN_STATE_FAILED);
  EXPECT_THAT(second.run().error(), HasSubstr("identity 'token:bob'"));
  Answer a1 = Spawn(Spec({"/usr/bin/sleep", "60"}), kAliceToken);
  EXPECT_TRUE(a1.status.ok()) << a1.status.error_message();
  if (a1.status.ok()) Kill(a1.process.id());

  v1::DeleteTriggerRequest remove;
  remove.set_name("bob-trigger");
  remove.set_cancel_running(true);
  v1::DeleteTriggerResponse removed;
  auto delete_context = Context(kBobToken);
  EXPECT_TRUE(scheduler_->DeleteTrigger(delete_context.get(), remove, &removed).ok());
}

// ---- identities without tokens ----

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void OpenSsl(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  auto result = testing::RunCommand(args);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->exit.code, 0) << result->err;
}

// A certificate for `name` signed by the CA "ca" in `dir` (the CA is made on first use).
void MakeCert(const ScratchDir& dir, const std::string& name, const std::string& usage) {
  if (!fs::exists(dir.File("ca.pem"))) {
    OpenSsl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", dir.File("ca.key"), "-out", dir.File("ca.pem"), "-days", "2", "-subj",
             "/CN=spawn-policy-ca"});
  }
  WriteFile(dir.File(name + ".ext"), absl::StrCat("subjectAltName=DNS:localhost,IP:127.0.0.1\n",
                                                  "extendedKeyUsage=", usage, "\n"));
  OpenSsl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           dir.File(name + ".key"), "-out", dir.File(name + ".csr"), "-subj", "/CN=" + name});
  OpenSsl({"x509", "-req", "-in", dir.File(name + ".csr"), "-CA", dir.File("ca.pem"), "-CAkey",
           dir.File("ca.key"), "-CAcreateserial", "-out", dir.File(name + ".pem"), "-days", "2",
           "-extfile", dir.File(name + ".ext")});
}

grpc::Status SpawnSleep(v1::ProcessService::Stub& stub, std::string* id) {
  v1::SpawnRequest request;
  request.mutable_spec()->mutable_command()->add_argv("/usr/bin/sleep");
  request.mutable_spec()->mutable_command()->add_argv("60");
  v1::SpawnResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::Status status = stub.Spawn(&context, request, &response);
  if (id != nullptr) *id = response.process().id();
  return status;
}

TEST(SpawnPolicyIdentityTest, PeerAddressWithoutPortWhenNoTokenOrCertificate) {
  ScratchDir dir;
  WriteFile(dir.File("policy.json"), R"({"identities": {"max_live_processes": 1}})");
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.spawn_policy_file = dir.File("policy.json");
  auto server = services::SpindleServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto first = v1::ProcessService::NewStub(
      grpc::CreateChannel((*server)->listen_address(), grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(SpawnSleep(*first, nullptr).ok());
  // Another connection (another source port) is the same peer.
  grpc::ChannelArguments separate;
  separate.SetInt("spindle.test.separate-connection", 1);
  auto second = v1::ProcessService::NewStub(grpc::CreateCustomChannel(
      (*server)->listen_address(), grpc::InsecureChannelCredentials(), separate));
  grpc::Status refused = SpawnSleep(*second, nullptr);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("identity 'peer:127.0.0.1' has 1 live processes"));
}

TEST(SpawnPolicyIdentityTest, ClientCertificateSubjectWithMutualTls) {
  ScratchDir dir;
  MakeCert(dir, "server", "serverAuth");
  MakeCert(dir, "alpha", "clientAuth");
  MakeCert(dir, "beta", "clientAuth");
  WriteFile(dir.File("policy.json"), R"({"identities": {"max_live_processes": 1}})");
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.tls.cert_file = dir.File("server.pem");
  config.tls.key_file = dir.File("server.key");
  config.tls.client_ca_file = dir.File("ca.pem");
  config.spawn_policy_file = dir.File("policy.json");
  auto server = services::SpindleServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = [&](const std::string& client) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadText(dir.File("ca.pem"));
    options.pem_cert_chain = ReadText(dir.File(client + ".pem"));
    options.pem_private_key = ReadText(dir.File(client + ".key"));
    return v1::ProcessService::NewStub(
        grpc::CreateChannel((*server)->listen_address(), grpc::SslCredentials(options)));
  };
  auto alpha = stub("alpha");
  grpc::Status first = SpawnSleep(*alpha, nullptr);
  ASSERT_TRUE(first.ok()) << first.error_message();
  grpc::Status refused = SpawnSleep(*alpha, nullptr);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("identity 'cert:CN=alpha' has 1 live processes"));
  auto beta = stub("beta");
  grpc::Status other = SpawnSleep(*beta, nullptr);
  EXPECT_TRUE(other.ok()) << other.error_message();
}

// ---- start-up ----

TEST(SpawnPolicyStartTest, BadFileStopsTheServer) {
  ScratchDir dir;
  WriteFile(dir.File("bad.json"), "{\n  \"executables\": {\"allow\": [\"usr/bin/\"]}\n}\n");
  services::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "";
  config.spawn_policy_file = dir.File("bad.json");
  auto server = services::SpindleServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(server.status().message(),
            absl::StrCat("--spawn-policy: spawn policy '", dir.File("bad.json"),
                         "': executables.allow[0]: 'usr/bin/' is not an absolute path of at most "
                         "4096 bytes without NUL"));
  config.spawn_policy_file = dir.File("missing.json");
  EXPECT_THAT(services::SpindleServer::Start(config).status().message(),
              HasSubstr("cannot read (No such file or directory)"));
}

TEST(SpawnPolicyStartTest, SpindledRefusesABadFileWithOneLine) {
  ScratchDir dir;
  WriteFile(dir.File("broken.json"), "{\n  \"limits\": {\"max\": {\"cpu_seconds\": 1,}}\n}\n");
  auto flag = testing::RunCommand({testing::SpindledPath(), "--listen=127.0.0.1:0",
                                   "--metrics-listen=127.0.0.1:0", "--spawn-policy",
                                   dir.File("broken.json")});
  ASSERT_TRUE(flag.ok()) << flag.status();
  EXPECT_TRUE(flag->exit.exited);
  EXPECT_EQ(flag->exit.code, 1);
  EXPECT_THAT(flag->err, HasSubstr(absl::StrCat("spindled: --spawn-policy: spawn policy '",
                                                dir.File("broken.json"),
                                                "': line 2, column 39: not valid JSON")));
  // One line: the error, nothing else.
  EXPECT_EQ(std::count(flag->err.begin(), flag->err.end(), '\n'), 1) << flag->err;

  // The same from SPINDLE_SPAWN_POLICY.
  auto env = testing::RunCommand(
      {"/usr/bin/env", absl::StrCat("SPINDLE_SPAWN_POLICY=", dir.File("broken.json")),
       testing::SpindledPath(), "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0"});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->exit.code, 1);
  EXPECT_THAT(env->err, HasSubstr("--spawn-policy: spawn policy '"));
}

TEST(SpawnPolicyStartTest, SpindledLogsThePolicyInForce) {
  ScratchDir dir;
  WriteFile(dir.File("ok.json"), R"({"executables": {"allow": ["/usr/bin/"]}})");
  testing::SpindledProcess spindled;
  ASSERT_TRUE(spindled.Start({"--spawn-policy", dir.File("ok.json")}).ok()) << spindled.logs();
  EXPECT_THAT(spindled.logs(),
              HasSubstr(absl::StrCat("event=spawn_policy file=", dir.File("ok.json"),
                                     " executables=allow:1,deny:0")));
}

}  // namespace
}  // namespace spindle
