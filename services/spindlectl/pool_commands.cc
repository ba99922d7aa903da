// spindlectl pool create | submit | map | status | watch | close | join | terminate | delete |
// tasks | task | wait | cancel
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_split.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/pool.grpc.pb.h"

namespace spindle::cli {
namespace {

std::string Strip(std::string s) {
  constexpr const char* kPrefixes[] = {"POOL_KIND_", "POOL_STATE_", "TASK_STATE_",
                                       "TASK_EVENT_TYPE_", "POOL_WORKER_STATE_"};
  for (const char* p : kPrefixes) {
    if (s.rfind(p, 0) == 0) return s.substr(std::string(p).size());
  }
  return s;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void PrintPool(const v1::Pool& p) {
  const auto& s = p.stats();
  std::printf("%s  %s  %s  size=%d  workers=%d (busy %d, idle %d, starting %d)\n", p.name().c_str(),
              Strip(v1::PoolKind_Name(p.spec().kind())).c_str(),
              Strip(v1::PoolState_Name(p.state())).c_str(), p.spec().size(), s.workers(),
              s.workers_busy(), s.workers_idle(), s.workers_starting());
  std::printf(
      "  tasks: queued %ld, running %ld, backoff %ld, succeeded %ld, failed %ld, "
      "timed out %ld, cancelled %ld (submitted %ld, retries %ld, handed ahead %ld)\n",
      static_cast<long>(s.tasks_queued()), static_cast<long>(s.tasks_running()),
      static_cast<long>(s.tasks_backoff()), static_cast<long>(s.tasks_succeeded()),
      static_cast<long>(s.tasks_failed()), static_cast<long>(s.tasks_timed_out()),
      static_cast<long>(s.tasks_cancelled()), static_cast<long>(s.tasks_submitted()),
      static_cast<long>(s.task_retries()), static_cast<long>(s.tasks_handed_ahead()));
  if (s.submits_waiting() > 0) {
    std::printf("  submits waiting for room: %d\n", s.submits_waiting());
  }
  if (s.worker_restarts() > 0 || s.worker_recycles() > 0) {
    std::printf("  workers restarted %ld, recycled %ld\n", static_cast<long>(s.worker_restarts()),
                static_cast<long>(s.worker_recycles()));
  }
  for (const auto& w : p.workers()) {
    std::printf("  %-6s %-9s pid=%d tasks=%ld %s\n", w.id().c_str(),
                Strip(v1::PoolWorkerState_Name(w.state())).c_str(), w.pid(),
                static_cast<long>(w.tasks_done()), w.task_id().c_str());
  }
  if (!p.last_worker_error().empty()) {
    std::printf("  last worker error: %s\n", p.last_worker_error().c_str());
  }
}

void PrintTask(const v1::Task& t) {
  std::printf("%s  %s  attempt=%d  worker=%s\n", t.id().c_str(),
              Strip(v1::TaskState_Name(t.state())).c_str(), t.attempt(), t.worker_id().c_str());
  if (t.has_result()) {
    const auto& r = t.result();
    if (!r.error().empty())
      std::printf("  error (%s): %s\n", r.error_reason().c_str(), r.error().c_str());
    if (!r.output().empty()) std::printf("  output: %s\n", r.output().c_str());
    if (!r.stdout_data().empty()) std::printf("  stdout: %s", r.stdout_data().c_str());
    if (!r.stderr_data().empty()) std::printf("  stderr: %s", r.stderr_data().c_str());
  }
}

// What a line of input or a submit becomes, by pool kind.
struct WorkOptions {
  std::string payload;
  std::string function;
  std::vector<std::string> args;
  std::vector<std::string> command;
};

int Create(Cli& cli, const std::string& name, const std::string& kind, int size, int max_queued,
           int64_t timeout_ms, int max_tasks_per_worker, int retries,
           const std::vector<std::string>& labels, const std::vector<std::string>& command) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::CreatePoolRequest request;
  request.set_name(name);
  v1::PoolKind k = v1::POOL_KIND_UNSPECIFIED;
  if (!v1::PoolKind_Parse("POOL_KIND_" + Upper(kind), &k)) {
    std::fprintf(stderr, "spindlectl: --kind '%s' is not command, worker or thread\n",
                 kind.c_str());
    return kUsage;
  }
  v1::PoolSpec* spec = request.mutable_spec();
  spec->set_kind(k);
  spec->set_size(size);
  spec->set_max_queued(max_queued);
  spec->set_default_task_timeout_ms(timeout_ms);
  spec->set_max_tasks_per_worker(max_tasks_per_worker);
  if (retries > 0) spec->mutable_retry()->set_max_attempts(retries + 1);
  for (const auto& label : labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    (*spec->mutable_labels())[kv.first] = kv.second;
  }
  if (!command.empty()) {
    for (const auto& a : command) spec->mutable_worker()->mutable_command()->add_argv(a);
  }
  v1::CreatePoolResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CreatePool(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s %s\n", response.created() ? "created" : "exists", name.c_str());
    PrintPool(response.pool());
  });
}

bool FillWork(v1::PoolKind kind, const WorkOptions& w, const std::string& line, bool from_line,
              v1::TaskSpec* spec) {
  switch (kind) {
    case v1::POOL_KIND_WORKER:
      spec->set_payload(from_line ? line : w.payload);
      return true;
    case v1::POOL_KIND_COMMAND: {
      auto* argv = spec->mutable_command()->mutable_command()->mutable_argv();
      if (from_line) {
        if (w.command.empty()) {
          argv->Add("/bin/sh");
          argv->Add("-c");
          argv->Add(std::string(line));
        } else {
          for (const auto& a : w.command) argv->Add(std::string(a));
          argv->Add(std::string(line));
        }
      } else {
        for (const auto& a : w.command) argv->Add(std::string(a));
      }
      return !argv->empty();
    }
    case v1::POOL_KIND_THREAD: {
      auto* call = spec->mutable_call();
      call->set_function(w.function);
      for (const auto& a : w.args) call->add_args(a);
      if (from_line) call->add_args(line);
      return !w.function.empty();
    }
    default:
      return false;
  }
}

absl::StatusOr<v1::PoolKind> KindOf(Cli& cli, const std::string& pool, grpc::Status* status) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::GetPoolRequest request;
  request.set_name(pool);
  v1::GetPoolResponse response;
  auto context = cli.Context();
  *status = stub->GetPool(context.get(), request, &response);
  if (!status->ok()) return absl::UnknownError("");
  return response.pool().spec().kind();
}

int WaitAndPrint(Cli& cli, const std::string& task_id) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::WaitTaskRequest request;
  request.set_task_id(task_id);
  v1::WaitTaskResponse response;
  auto context = cli.WaitContext(0);  // as long as the task runs, unless --timeout-ms
  grpc::Status status = stub->WaitTask(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  cli.Print(response, [&](const google::protobuf::Message&) { PrintTask(response.task()); });
  if (!response.done()) return kTimeout;
  return response.task().state() == v1::TASK_STATE_SUCCEEDED ? kOk : kError;
}

// How a submit meets a full queue, and its idempotency key.
struct SubmitOptions {
  bool no_wait = false;     // RESOURCE_EXHAUSTED at once instead of waiting for room
  int64_t max_wait_ms = 0;  // bound on the wait for room (0: the call's deadline)
  std::string request_id;
};

int Submit(Cli& cli, const std::string& pool, const WorkOptions& work, int priority,
           int64_t timeout_ms, bool wait, const SubmitOptions& options) {
  grpc::Status status;
  auto kind = KindOf(cli, pool, &status);
  if (!kind.ok()) return cli.Fail(status);
  v1::SubmitTaskRequest request;
  request.set_pool(pool);
  if (!FillWork(*kind, work, "", false, request.mutable_task())) {
    std::fprintf(stderr,
                 "spindlectl: give the work: --payload (worker pools), --call (thread pools) or "
                 "a command after -- (command pools)\n");
    return kUsage;
  }
  request.mutable_task()->set_priority(priority);
  if (timeout_ms >= 0) request.mutable_task()->set_timeout_ms(timeout_ms);
  request.set_wait(!options.no_wait);
  request.set_max_wait_ms(options.max_wait_ms);
  request.set_request_id(options.request_id);
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::SubmitTaskResponse response;
  // Waiting for room is bounded by --max-wait-ms (unless --timeout-ms was given), as queue put.
  auto context = options.max_wait_ms > 0 ? cli.WaitContext(options.max_wait_ms) : cli.Context();
  status = stub->SubmitTask(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  if (!response.submitted()) {
    cli.Print(response, [&](const google::protobuf::Message&) {
      std::printf("not submitted: max wait ran out (the queue stayed full)\n");
    });
    return kTimeout;
  }
  if (wait) return WaitAndPrint(cli, response.task().id());
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s\n", response.task().id().c_str());
  });
}

int Map(Cli& cli, const std::string& pool, const WorkOptions& work, bool unordered, int window) {
  grpc::Status status;
  auto kind = KindOf(cli, pool, &status);
  if (!kind.ok()) return cli.Fail(status);
  {
    v1::TaskSpec probe;
    if (!FillWork(*kind, work, "", true, &probe)) {
      std::fprintf(stderr, "spindlectl: --call FUNCTION is required for thread pools\n");
      return kUsage;
    }
  }
  auto stub = v1::PoolService::NewStub(cli.channel());
  auto context = cli.WaitContext(0);  // a map runs as long as its input, unless --timeout-ms
  auto stream = stub->Map(context.get());
  v1::MapRequest first;
  first.mutable_start()->set_pool(pool);
  first.mutable_start()->set_order(unordered ? v1::POOL_MAP_ORDER_UNORDERED
                                             : v1::POOL_MAP_ORDER_ORDERED);
  first.mutable_start()->set_window(window);
  stream->Write(first);
  bool bad_work = false;
  std::thread writer([&] {
    std::string line;
    uint64_t index = 0;
    v1::MapRequest batch;
    auto flush = [&] {
      if (batch.inputs_size() > 0) {
        stream->Write(batch);
        batch.Clear();
      }
    };
    while (std::getline(std::cin, line)) {
      auto* input = batch.add_inputs();
      input->set_index(index++);
      v1::TaskSpec spec;
      if (!FillWork(*kind, work, line, true, &spec)) {
        bad_work = true;
        break;
      }
      if (spec.has_payload()) input->set_payload(spec.payload());
      if (spec.has_command()) *input->mutable_command() = spec.command();
      if (spec.has_call()) *input->mutable_call() = spec.call();
      if (batch.inputs_size() >= 64) flush();
    }
    flush();
    stream->WritesDone();
  });
  v1::MapResponse response;
  int64_t done = 0, failed = 0;
  while (stream->Read(&response)) {
    for (const auto& r : response.results()) {
      ++done;
      if (r.result().outcome() != v1::TASK_STATE_SUCCEEDED) ++failed;
      if (cli.options().json) {
        std::printf("%s\n", ToJson(r).c_str());
      } else if (r.result().outcome() == v1::TASK_STATE_SUCCEEDED) {
        const std::string& out =
            r.result().output().empty() ? r.result().stdout_data() : r.result().output();
        std::printf("%s%s", out.c_str(), (!out.empty() && out.back() == '\n') ? "" : "\n");
      } else {
        std::printf("# %lu %s: %s\n", static_cast<unsigned long>(r.index()),
                    Strip(v1::TaskState_Name(r.result().outcome())).c_str(),
                    r.result().error().c_str());
      }
    }
    if (!response.results().empty()) {
      std::fprintf(stderr, "\r%ld done, %ld not succeeded", static_cast<long>(done),
                   static_cast<long>(failed));
    }
  }
  writer.join();
  status = stream->Finish();
  std::fprintf(stderr, "\n");
  if (bad_work) {
    std::fprintf(stderr, "spindlectl: --call FUNCTION is required for thread pools\n");
    return kUsage;
  }
  if (!status.ok()) return cli.Fail(status);
  return failed > 0 ? kError : kOk;
}

int Status(Cli& cli, const std::string& pool) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  if (!pool.empty()) {
    v1::GetPoolRequest request;
    request.set_name(pool);
    request.set_include_workers(true);
    v1::GetPoolResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->GetPool(context.get(), request, &response);
    if (!status.ok()) return cli.Fail(status);
    return cli.Print(response,
                     [&](const google::protobuf::Message&) { PrintPool(response.pool()); });
  }
  v1::ListPoolsRequest request;
  v1::ListPoolsResponse all;
  do {
    v1::ListPoolsResponse page;
    auto context = cli.Context();
    grpc::Status status = stub->ListPools(context.get(), request, &page);
    if (!status.ok()) return cli.Fail(status);
    for (auto& p : *page.mutable_pools()) *all.add_pools() = std::move(p);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return cli.Print(all, [&](const google::protobuf::Message&) {
    for (const auto& p : all.pools()) PrintPool(p);
  });
}

int Watch(Cli& cli, const std::string& pool, int64_t after, bool from_oldest, int64_t count) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::WatchTasksRequest request;
  request.set_pool(pool);
  request.set_after_sequence(after);
  request.set_from_oldest(from_oldest);
  // Runs until the pool is deleted, --count events came or --timeout-ms (if given) passed.
  auto context = cli.WaitContext(0);
  auto reader = stub->WatchTasks(context.get(), request);
  v1::WatchTasksResponse event;
  int64_t seen = 0;
  while ((count == 0 || seen < count) && reader->Read(&event)) {
    ++seen;
    const auto& e = event.event();
    if (cli.options().json) {
      std::printf("%s\n", ToJson(event).c_str());
    } else {
      std::printf("%ld %-10s %s attempt=%d %s%s\n", static_cast<long>(e.sequence()),
                  Strip(v1::TaskEventType_Name(e.type())).c_str(), e.task_id().c_str(), e.attempt(),
                  e.worker_id().c_str(),
                  e.has_result() && !e.result().error().empty()
                      ? (" error: " + e.result().error()).c_str()
                      : "");
    }
    std::fflush(stdout);
  }
  if (count > 0 && seen >= count) {
    context->TryCancel();
    reader->Finish();
    return kOk;
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? kOk : cli.Fail(status);
}

int Join(Cli& cli, const std::string& pool, int64_t max_wait_ms) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::JoinPoolRequest request;
  request.set_name(pool);
  request.set_max_wait_ms(max_wait_ms);
  v1::JoinPoolResponse response;
  auto context = cli.WaitContext(max_wait_ms);
  grpc::Status status = stub->JoinPool(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  cli.Print(response, [&](const google::protobuf::Message&) { PrintPool(response.pool()); });
  if (!response.joined()) {
    std::fprintf(stderr, "spindlectl: pool '%s' not finished when --max-wait-ms ran out\n",
                 pool.c_str());
    return kTimeout;
  }
  return kOk;
}

int Tasks(Cli& cli, const std::string& pool, const std::vector<std::string>& states) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  v1::ListTasksRequest request;
  request.set_pool(pool);
  for (const auto& s : states) {
    v1::TaskState state;
    if (!v1::TaskState_Parse("TASK_STATE_" + Upper(s), &state)) {
      std::fprintf(stderr, "spindlectl: --state '%s' is not a task state\n", s.c_str());
      return kUsage;
    }
    request.add_states(state);
  }
  v1::ListTasksResponse all;
  do {
    v1::ListTasksResponse page;
    auto context = cli.Context();
    grpc::Status status = stub->ListTasks(context.get(), request, &page);
    if (!status.ok()) return cli.Fail(status);
    for (auto& t : *page.mutable_tasks()) *all.add_tasks() = std::move(t);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return cli.Print(all, [&](const google::protobuf::Message&) {
    for (const auto& t : all.tasks()) PrintTask(t);
  });
}

// One unary call, printed. `wait_bound_ms`: for a call that waits on the server (see
// Cli::WaitContext); -1 for one that does not.
template <typename Request, typename Response, typename Method>
int Simple(Cli& cli, Request request, Method method,
           const std::function<void(const Response&)>& human, int64_t wait_bound_ms = -1) {
  auto stub = v1::PoolService::NewStub(cli.channel());
  Response response;
  auto context = wait_bound_ms >= 0 ? cli.WaitContext(wait_bound_ms) : cli.Context();
  grpc::Status status = ((*stub).*method)(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) { human(response); });
}

}  // namespace

void AddPoolCommands(CLI::App& app, Cli& cli, int* exit_code) {
  auto* pool = app.add_subcommand("pool", "worker pools: create, submit, map, watch, ...");
  pool->require_subcommand(1);

  {
    struct Args {
      std::string name, kind;
      int size = 0, max_queued = 0, max_tasks_per_worker = 0, retries = 0;
      int64_t timeout_ms = 0;
      std::vector<std::string> labels, command;
    };
    auto a = std::make_shared<Args>();
    auto* c = pool->add_subcommand("create", "create a pool; a worker pool's command after --");
    c->add_option("name", a->name, "pool name")->required();
    c->add_option("--kind", a->kind, "command, worker or thread")->required();
    c->add_option("--size", a->size, "workers (0 = number of cores)");
    c->add_option("--max-queued", a->max_queued, "queue bound (0 = 10000)");
    c->add_option("--timeout-ms", a->timeout_ms, "default task timeout (0 = none)");
    c->add_option("--max-tasks-per-worker", a->max_tasks_per_worker, "recycle workers after N");
    c->add_option("--retries", a->retries, "retries of a failed task");
    c->add_option("--label", a->labels, "k=v label (repeatable)");
    c->add_option("command", a->command, "worker command (after --)");
    c->callback([&cli, exit_code, a] {
      *exit_code = Create(cli, a->name, a->kind, a->size, a->max_queued, a->timeout_ms,
                          a->max_tasks_per_worker, a->retries, a->labels, a->command);
    });
  }
  {
    struct Args {
      std::string pool;
      WorkOptions work;
      int priority = 0;
      int64_t timeout_ms = -1;
      bool wait = false;
      SubmitOptions submit;
    };
    auto a = std::make_shared<Args>();
    auto* c = pool->add_subcommand("submit",
                                   "submit one task; prints its id (or the result with --wait)");
    c->add_option("pool", a->pool, "pool name")->required();
    c->add_option("--payload", a->work.payload, "payload (worker pools)");
    c->add_option("--call", a->work.function, "function (thread pools)");
    c->add_option("--arg", a->work.args, "function argument (repeatable)");
    c->add_option("--priority", a->priority, "-10..10, higher first");
    c->add_option("--timeout-ms", a->timeout_ms, "task timeout (0 = none)");
    c->add_flag("--wait", a->wait, "wait for the result and print it");
    auto* no_wait = c->add_flag("--no-wait", a->submit.no_wait,
                                "fail at once (exit 1, RESOURCE_EXHAUSTED) when the queue is full "
                                "instead of waiting for room");
    c->add_option("--max-wait-ms", a->submit.max_wait_ms,
                  "give up waiting for room after this, ms (exit 4, nothing submitted)")
        ->check(CLI::NonNegativeNumber)
        ->excludes(no_wait);
    c->add_option("--request-id", a->submit.request_id,
                  "idempotency key: a retry returns the first submit's task");
    c->add_option("command", a->work.command, "command (command pools, after --)");
    c->callback([&cli, exit_code, a] {
      *exit_code = Submit(cli, a->pool, a->work, a->priority, a->timeout_ms, a->wait, a->submit);
    });
  }
  {
    struct Args {
      std::string pool;
      WorkOptions work;
      bool unordered = false;
      int window = 0;
    };
    auto a = std::make_shared<Args>();
    auto* c = pool->add_subcommand(
        "map",
        "one task per stdin line (payload; `sh -c LINE` or COMMAND... LINE; --call FN ... LINE); "
        "results on stdout, progress on stderr");
    c->add_option("pool", a->pool, "pool name")->required();
    c->add_option("--call", a->work.function, "function (thread pools)");
    c->add_option("--arg", a->work.args, "leading function argument (repeatable)");
    c->add_flag("--unordered", a->unordered, "results as they finish");
    c->add_option("--window", a->window, "inputs outstanding at most (0 = 1000)");
    c->add_option("command", a->work.command, "command prefix (command pools, after --)");
    c->callback(
        [&cli, exit_code, a] { *exit_code = Map(cli, a->pool, a->work, a->unordered, a->window); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto* c = pool->add_subcommand("status", "one pool with its workers, or every pool");
    c->add_option("pool", *name, "pool name");
    c->callback([&cli, exit_code, name] { *exit_code = Status(cli, *name); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto after = std::make_shared<int64_t>(0);
    auto count = std::make_shared<int64_t>(0);
    auto from_oldest = std::make_shared<bool>(false);
    auto* c = pool->add_subcommand("watch", "follow a pool's task events");
    c->add_option("pool", *name, "pool name")->required();
    auto* after_option = c->add_option("--after", *after, "replay events after this sequence");
    c->add_flag("--from-oldest", *from_oldest, "replay every retained event first")
        ->excludes(after_option);
    c->add_option("--count", *count, "stop after this many events (0: until the pool is deleted)");
    c->callback([&cli, exit_code, name, after, from_oldest, count] {
      *exit_code = Watch(cli, *name, *after, *from_oldest, *count);
    });
  }
  {
    auto name = std::make_shared<std::string>();
    auto size = std::make_shared<int32_t>(0);
    auto* c = pool->add_subcommand(
        "resize", "change a live pool's worker count (shrinking lets busy workers finish)");
    c->add_option("pool", *name, "pool name")->required();
    c->add_option("--size", *size, "new number of workers")->required();
    c->callback([&cli, exit_code, name, size] {
      v1::ResizePoolRequest request;
      request.set_name(*name);
      request.set_size(*size);
      *exit_code = Simple<v1::ResizePoolRequest, v1::ResizePoolResponse>(
          cli, request, &v1::PoolService::Stub::ResizePool,
          [](const v1::ResizePoolResponse& r) { PrintPool(r.pool()); });
    });
  }
  {
    auto name = std::make_shared<std::string>();
    auto* c = pool->add_subcommand("close", "no new tasks; queued and running ones finish");
    c->add_option("pool", *name, "pool name")->required();
    c->callback([&cli, exit_code, name] {
      v1::ClosePoolRequest request;
      request.set_name(*name);
      *exit_code = Simple<v1::ClosePoolRequest, v1::ClosePoolResponse>(
          cli, request, &v1::PoolService::Stub::ClosePool,
          [](const v1::ClosePoolResponse& r) { PrintPool(r.pool()); });
    });
  }
  {
    auto name = std::make_shared<std::string>();
    auto max_wait = std::make_shared<int64_t>(0);
    auto* c = pool->add_subcommand("join", "wait until a closed pool finished every task");
    c->add_option("pool", *name, "pool name")->required();
    c->add_option("--max-wait-ms", *max_wait, "give up after this long (exit 4)");
    c->callback([&cli, exit_code, name, max_wait] { *exit_code = Join(cli, *name, *max_wait); });
  }
  {
    auto name = std::make_shared<std::string>();
    auto grace = std::make_shared<int64_t>(-1);
    auto* c = pool->add_subcommand("terminate", "cancel queued tasks, kill running ones");
    c->add_option("pool", *name, "pool name")->required();
    c->add_option("--grace-ms", *grace, "SIGTERM to SIGKILL (default: the pool's)");
    c->callback([&cli, exit_code, name, grace] {
      v1::TerminatePoolRequest request;
      request.set_name(*name);
      if (*grace >= 0) request.set_grace_ms(*grace);
      request.set_wait(true);
      *exit_code = Simple<v1::TerminatePoolRequest, v1::TerminatePoolResponse>(
          cli, request, &v1::PoolService::Stub::TerminatePool,
          [](const v1::TerminatePoolResponse& r) { PrintPool(r.pool()); }, /*wait_bound_ms=*/0);
    });
  }
  {
    auto name = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    auto* c = pool->add_subcommand("delete", "delete a finished pool (--force: terminate first)");
    c->add_option("pool", *name, "pool name")->required();
    c->add_flag("--force", *force, "terminate a pool that still has work");
    c->callback([&cli, exit_code, name, force] {
      v1::DeletePoolRequest request;
      request.set_name(*name);
      request.set_force(*force);
      *exit_code = Simple<v1::DeletePoolRequest, v1::DeletePoolResponse>(
          cli, request, &v1::PoolService::Stub::DeletePool,
          [&](const v1::DeletePoolResponse&) { std::printf("deleted %s\n", name->c_str()); });
    });
  }
  {
    auto name = std::make_shared<std::string>();
    auto states = std::make_shared<std::vector<std::string>>();
    auto* c = pool->add_subcommand("tasks", "list a pool's tasks");
    c->add_option("pool", *name, "pool name")->required();
    c->add_option("--state", *states, "only these states (queued, running, succeeded, ...)");
    c->callback([&cli, exit_code, name, states] { *exit_code = Tasks(cli, *name, *states); });
  }
  {
    auto id = std::make_shared<std::string>();
    auto* c = pool->add_subcommand("task", "show one task");
    c->add_option("task_id", *id, "task id")->required();
    c->callback([&cli, exit_code, id] {
      v1::GetTaskRequest request;
      request.set_task_id(*id);
      *exit_code = Simple<v1::GetTaskRequest, v1::GetTaskResponse>(
          cli, request, &v1::PoolService::Stub::GetTask,
          [](const v1::GetTaskResponse& r) { PrintTask(r.task()); });
    });
  }
  {
    auto id = std::make_shared<std::string>();
    auto* c = pool->add_subcommand("wait", "wait for a task and print its result");
    c->add_option("task_id", *id, "task id")->required();
    c->callback([&cli, exit_code, id] { *exit_code = WaitAndPrint(cli, *id); });
  }
  {
    auto id = std::make_shared<std::string>();
    auto* c = pool->add_subcommand("cancel", "cancel a task (queued: removed; running: killed)");
    c->add_option("task_id", *id, "task id")->required();
    c->callback([&cli, exit_code, id] {
      v1::CancelTaskRequest request;
      request.set_task_id(*id);
      request.set_wait(true);
      *exit_code = Simple<v1::CancelTaskRequest, v1::CancelTaskResponse>(
          cli, request, &v1::PoolService::Stub::CancelTask,
          [](const v1::CancelTaskResponse& r) { PrintTask(r.task()); }, /*wait_bound_ms=*/0);
    });
  }
}

}  // namespace spindle::cli
