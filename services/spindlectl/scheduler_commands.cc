// spindlectl sleep | fetch | trigger create|get|list|pause|resume|fire|delete|runs|watch
//
//   spindlectl sleep 1500
//   spindlectl fetch --concurrency 50 --timeout-ms 5000 -H 'User-Agent: me' URL...
//   spindlectl trigger create nightly --cron '0 3 * * *' --tz Europe/Paris -- /usr/bin/backup -v
//   spindlectl trigger create soon --delay-ms 2000 -- /bin/echo hello
//   spindlectl trigger runs nightly
//   spindlectl trigger watch --final-only
//
// Human output: fetch prints one line per URL as it completes ("index status bytes ms url" or
// the error), then the totals; trigger commands print the trigger or run in short lines.
// --json prints each response message as one JSON line.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/scheduler.grpc.pb.h"

namespace spindle::cli {
namespace {

struct SchedulerArgs {
  int64_t duration_ms = 0;
  // fetch
  std::vector<std::string> urls;
  int32_t concurrency = 0;
  int64_t fetch_timeout_ms = 0;
  int64_t connect_timeout_ms = 0;
  int64_t max_body_bytes = 0;
  int32_t max_redirects = -1;
  std::vector<std::string> headers;
  bool decompress = false;
  bool print_body = false;
  // triggers
  std::string name;
  std::string at;
  int64_t delay_ms = 0;
  int64_t every_ms = 0;
  std::string cron;
  std::string timezone;
  std::string overlap;
  int64_t jitter_ms = 0;
  int64_t max_runs = 0;
  std::vector<std::string> labels;
  bool paused = false;
  std::string request_id;
  int64_t run_timeout_ms = 0;
  std::vector<std::string> command;
  std::string prefix;
  std::string selector;
  std::vector<std::string> states;
  int32_t page_size = 0;
  std::string page_token;
  bool cancel_running = false;
  bool final_only = false;
  int64_t count = 0;
};

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()),
                          absl::UTCTimeZone());
}

std::string StateName(v1::TriggerState state) {
  return std::string(absl::StripPrefix(v1::TriggerState_Name(state), "TRIGGER_STATE_"));
}

std::string RunStateName(v1::TriggerRunState state) {
  return std::string(absl::StripPrefix(v1::TriggerRunState_Name(state), "TRIGGER_RUN_STATE_"));
}

void PrintRun(const v1::TriggerRun& run) {
  std::printf("%s #%ld\t%s%s\tscheduled %s\tstarted %s\tended %s", run.trigger().c_str(),
              static_cast<long>(run.number()), RunStateName(run.state()).c_str(),
              run.manual() ? " (manual)" : "", Time(run.scheduled_at()).c_str(),
              Time(run.started_at()).c_str(), Time(run.ended_at()).c_str());
  if (!run.process_id().empty()) std::printf("\tprocess %s", run.process_id().c_str());
  if (run.has_exit()) std::printf("\texit %d", run.exit().exit_code());
  if (!run.error().empty()) std::printf("\t%s", run.error().c_str());
  std::printf("\n");
}

void PrintTrigger(const v1::Trigger& trigger) {
  std::printf("%s\t%s\tnext %s\truns %ld\tskipped %ld\tfailed %ld\trunning %d\n",
              trigger.name().c_str(), StateName(trigger.state()).c_str(),
              Time(trigger.next_run_at()).c_str(), static_cast<long>(trigger.run_count()),
              static_cast<long>(trigger.skipped_count()), static_cast<long>(trigger.failed_count()),
              trigger.running());
}

bool ParseHeader(const std::string& text, v1::FetchHeader* out) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "spindlectl: header '%s' is not 'Name: value'\n", text.c_str());
    return false;
  }
  out->set_name(text.substr(0, colon));
  out->set_value(std::string(absl::StripLeadingAsciiWhitespace(text.substr(colon + 1))));
  return true;
}

int Sleep(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::SleepRequest request;
  request.set_duration_ms(a.duration_ms);
  v1::SleepResponse response;
  // The deadline covers the sleep (a duration over the default timeout is no error).
  auto context = cli.WaitContext(std::max<int64_t>(a.duration_ms, 1));
  grpc::Status status = stub->Sleep(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("slept %ld ms\n", static_cast<long>(response.slept_ms()));
  });
}

int Fetch(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::FetchUrlsRequest request;
  for (const std::string& url : a.urls) request.add_targets()->set_url(url);
  request.set_max_concurrency(a.concurrency);
  request.set_timeout_ms(a.fetch_timeout_ms);
  request.set_connect_timeout_ms(a.connect_timeout_ms);
  request.set_max_body_bytes(a.max_body_bytes);
  if (a.max_redirects >= 0) request.set_max_redirects(a.max_redirects);
  for (const std::string& header : a.headers) {
    if (!ParseHeader(header, request.add_headers())) return kUsage;
  }
  request.set_decompress(a.decompress);
  // Bounded by the per-URL timeouts on the server: no deadline unless --timeout-ms was given.
  auto context = cli.WaitContext(0);
  auto reader = stub->FetchUrls(context.get(), request);
  v1::FetchUrlsResponse message;
  int failed = 0;
  while (reader->Read(&message)) {
    cli.Print(message, [&](const google::protobuf::Message&) {
      if (message.has_result()) {
        const v1::FetchResult& r = message.result();
        if (r.error().empty()) {
          std::printf("%d\t%d\t%zu%s\t%ld ms\t%s\n", r.index(), r.status_code(), r.body().size(),
                      r.body_truncated() ? "+" : "", static_cast<long>(r.timing().total_ms()),
                      r.url().c_str());
          if (a.print_body) std::printf("%s\n", r.body().c_str());
        } else {
          std::printf("%d\t%s\t%s\t%s\n", r.index(), r.error_reason().c_str(), r.url().c_str(),
                      r.error().c_str());
        }
      } else {
        std::printf("completed %d, failed %d, %ld ms\n", message.summary().completed(),
                    message.summary().failed(), static_cast<long>(message.summary().elapsed_ms()));
      }
    });
    if (message.has_summary()) failed = message.summary().failed();
    std::fflush(stdout);
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return cli.Fail(status);
  return failed > 0 ? kError : kOk;
}

int Create(Cli& cli, const SchedulerArgs& a) {
  v1::CreateTriggerRequest request;
  request.set_name(a.name);
  request.set_request_id(a.request_id);
  v1::TriggerSpec* spec = request.mutable_spec();
  int schedules = 0;
  if (!a.at.empty()) {
    absl::Time at;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, a.at, &at, &error)) {
      std::fprintf(stderr, "spindlectl: --at '%s' is not an RFC 3339 time: %s\n", a.at.c_str(),
                   error.c_str());
      return kUsage;
    }
    spec->mutable_schedule()->mutable_at()->set_seconds(absl::ToUnixSeconds(at));
    ++schedules;
  }
  if (a.delay_ms != 0) {
    spec->mutable_schedule()->set_delay_ms(a.delay_ms);
    ++schedules;
  }
  if (a.every_ms != 0) {
    spec->mutable_schedule()->set_interval_ms(a.every_ms);
    ++schedules;
  }
  if (!a.cron.empty()) {
    spec->mutable_schedule()->mutable_cron()->set_expression(a.cron);
    spec->mutable_schedule()->mutable_cron()->set_timezone(a.timezone);
    ++schedules;
  }
  if (schedules != 1) {
    std::fprintf(stderr, "spindlectl: give exactly one of --at, --delay-ms, --every-ms, --cron\n");
    return kUsage;
  }
  if (a.command.empty()) {
    std::fprintf(stderr, "spindlectl: give the command to run after --\n");
    return kUsage;
  }
  v1::ProcessSpec* spawn = spec->mutable_action()->mutable_spawn();
  for (const std::string& arg : a.command) spawn->mutable_command()->add_argv(arg);
  spawn->set_timeout_ms(a.run_timeout_ms);
  if (!a.overlap.empty()) {
    v1::TriggerOverlapPolicy policy;
    if (!v1::TriggerOverlapPolicy_Parse(
            "TRIGGER_OVERLAP_POLICY_" + absl::AsciiStrToUpper(a.overlap), &policy)) {
      std::fprintf(stderr, "spindlectl: --overlap '%s' is not skip, queue, allow or replace\n",
                   a.overlap.c_str());
      return kUsage;
    }
    spec->set_overlap(policy);
  }
  spec->set_jitter_ms(a.jitter_ms);
  spec->set_max_runs(a.max_runs);
  spec->set_paused(a.paused);
  for (const std::string& label : a.labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    (*spec->mutable_labels())[kv.first] = kv.second;
  }
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::CreateTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CreateTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s ", response.created() ? "created" : "exists");
    PrintTrigger(response.trigger());
  });
}

int Get(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::GetTriggerRequest request;
  request.set_name(a.name);
  v1::GetTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    PrintTrigger(response.trigger());
    if (response.trigger().has_last_run()) PrintRun(response.trigger().last_run());
  });
}

int List(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::ListTriggersRequest request;
  request.set_name_prefix(a.prefix);
  request.set_label_selector(a.selector);
  request.set_page_size(a.page_size);
  request.set_page_token(a.page_token);
  for (const std::string& state : a.states) {
    v1::TriggerState parsed;
    if (!v1::TriggerState_Parse("TRIGGER_STATE_" + absl::AsciiStrToUpper(state), &parsed)) {
      std::fprintf(stderr, "spindlectl: --state '%s' is not active, paused or completed\n",
                   state.c_str());
      return kUsage;
    }
    request.add_states(parsed);
  }
  v1::ListTriggersResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->ListTriggers(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    for (const v1::Trigger& trigger : response.triggers()) PrintTrigger(trigger);
    if (!response.next_page_token().empty()) {
      std::printf("more: --page-token %s\n", response.next_page_token().c_str());
    }
  });
}

int Pause(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::PauseTriggerRequest request;
  request.set_name(a.name);
  v1::PauseTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->PauseTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response,
                   [&](const google::protobuf::Message&) { PrintTrigger(response.trigger()); });
}

int Resume(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::ResumeTriggerRequest request;
  request.set_name(a.name);
  v1::ResumeTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->ResumeTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response,
                   [&](const google::protobuf::Message&) { PrintTrigger(response.trigger()); });
}

int Fire(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::FireTriggerRequest request;
  request.set_name(a.name);
  request.set_request_id(a.request_id);
  v1::FireTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->FireTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) { PrintRun(response.run()); });
}

int Delete(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::DeleteTriggerRequest request;
  request.set_name(a.name);
  request.set_cancel_running(a.cancel_running);
  request.set_request_id(a.request_id);
  v1::DeleteTriggerResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DeleteTrigger(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("deleted %s\n", a.name.c_str());
  });
}

int Runs(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::ListTriggerRunsRequest request;
  request.set_name(a.name);
  request.set_page_size(a.page_size);
  request.set_page_token(a.page_token);
  v1::ListTriggerRunsResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->ListTriggerRuns(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    for (const v1::TriggerRun& run : response.runs()) PrintRun(run);
    if (!response.next_page_token().empty()) {
      std::printf("more: --page-token %s\n", response.next_page_token().c_str());
    }
  });
}

int Watch(Cli& cli, const SchedulerArgs& a) {
  auto stub = v1::SchedulerService::NewStub(cli.channel());
  v1::WatchTriggerRunsRequest request;
  request.set_name(a.name);
  request.set_label_selector(a.selector);
  request.set_final_only(a.final_only);
  // Runs until cancelled or --count runs came: no deadline unless --timeout-ms was given.
  auto context = cli.WaitContext(0);
  auto reader = stub->WatchTriggerRuns(context.get(), request);
  v1::WatchTriggerRunsResponse message;
  int64_t seen = 0;
  while ((a.count == 0 || seen < a.count) && reader->Read(&message)) {
    cli.Print(message, [&](const google::protobuf::Message&) { PrintRun(message.run()); });
    std::fflush(stdout);
    ++seen;
  }
  if (a.count > 0 && seen >= a.count) {
    context->TryCancel();
    reader->Finish();
    return kOk;
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? kOk : cli.Fail(status);
}

}  // namespace

void AddSchedulerCommands(CLI::App& app, Cli& cli, int* exit_code) {
  auto a = std::make_shared<SchedulerArgs>();
  auto run = [&cli, exit_code, a](int (*f)(Cli&, const SchedulerArgs&)) {
    return [&cli, exit_code, a, f] { *exit_code = f(cli, *a); };
  };

  auto* sleep = app.add_subcommand("sleep", "wait on the server's executor (a timer, no thread)");
  sleep->add_option("duration_ms", a->duration_ms, "how long, ms")->required();
  sleep->callback(run(&Sleep));

  auto* fetch = app.add_subcommand("fetch", "HTTP GET many URLs at once on the server");
  fetch->add_option("urls", a->urls, "http:// or https:// URLs")->required();
  fetch->add_option("--concurrency", a->concurrency, "transfers at once (0: 16)");
  fetch->add_option("--fetch-timeout-ms", a->fetch_timeout_ms, "per-URL limit, ms (0: 30000)");
  fetch->add_option("--connect-timeout-ms", a->connect_timeout_ms, "connect limit, ms");
  fetch->add_option("--max-body-bytes", a->max_body_bytes, "cut bodies here (0: 1 MiB)");
  fetch->add_option("--max-redirects", a->max_redirects, "redirects to follow (default 5)");
  fetch->add_option("-H,--header", a->headers, "'Name: value', repeatable");
  fetch->add_flag("--decompress", a->decompress, "ask for and decode gzip/deflate/br");
  fetch->add_flag("--body", a->print_body, "print each body after its line");
  fetch->callback(run(&Fetch));

  auto* trigger = app.add_subcommand("trigger", "scheduled runs: create, list, pause, fire, ...");
  trigger->require_subcommand(1);

  auto* create = trigger->add_subcommand("create", "create a trigger that spawns a command");
  create->add_option("name", a->name, "trigger name")->required();
  create->add_option("--at", a->at, "once, at this RFC 3339 time");
  create->add_option("--delay-ms", a->delay_ms, "once, this long after creation");
  create->add_option("--every-ms", a->every_ms, "every interval (>= 1000 ms)");
  create->add_option("--cron", a->cron, "5-field cron expression or @daily, ...");
  create->add_option("--tz", a->timezone, "IANA zone of --cron (default UTC)");
  create->add_option("--overlap", a->overlap, "skip (default), queue, allow, replace");
  create->add_option("--jitter-ms", a->jitter_ms, "random delay added to each fire, ms");
  create->add_option("--max-runs", a->max_runs, "stop after this many runs");
  create->add_option("--label", a->labels, "k=v, repeatable");
  create->add_flag("--paused", a->paused, "create it paused");
  create->add_option("--run-timeout-ms", a->run_timeout_ms, "kill each run after this, ms");
  create->add_option("--request-id", a->request_id, "idempotency key");
  create->add_option("command", a->command, "the command after --")->required();
  create->callback(run(&Create));

  auto* get = trigger->add_subcommand("get", "show a trigger and its last run");
  get->add_option("name", a->name, "trigger name")->required();
  get->callback(run(&Get));

  auto* list = trigger->add_subcommand("list", "list triggers by name");
  list->add_option("--prefix", a->prefix, "only names starting with this");
  list->add_option("--selector", a->selector, "label selector (k=v,k!=v,k,!k)");
  list->add_option("--state", a->states, "active, paused, completed; repeatable");
  list->add_option("--page-size", a->page_size, "page size (0: 100)");
  list->add_option("--page-token", a->page_token, "token from the previous page");
  list->callback(run(&List));

  auto* pause = trigger->add_subcommand("pause", "stop scheduling runs");
  pause->add_option("name", a->name, "trigger name")->required();
  pause->callback(run(&Pause));

  auto* resume = trigger->add_subcommand("resume", "schedule runs again (missed ones skipped)");
  resume->add_option("name", a->name, "trigger name")->required();
  resume->callback(run(&Resume));

  auto* fire = trigger->add_subcommand("fire", "start a run now");
  fire->add_option("name", a->name, "trigger name")->required();
  fire->add_option("--request-id", a->request_id, "idempotency key");
  fire->callback(run(&Fire));

  auto* del = trigger->add_subcommand("delete", "delete a trigger");
  del->add_option("name", a->name, "trigger name")->required();
  del->add_flag("--cancel-running", a->cancel_running, "also stop its runs in progress");
  del->add_option("--request-id", a->request_id, "idempotency key");
  del->callback(run(&Delete));

  auto* runs = trigger->add_subcommand("runs", "list a trigger's runs, newest first");
  runs->add_option("name", a->name, "trigger name")->required();
  runs->add_option("--page-size", a->page_size, "page size (0: 100)");
  runs->add_option("--page-token", a->page_token, "token from the previous page");
  runs->callback(run(&Runs));

  auto* watch = trigger->add_subcommand("watch", "print runs as they start and end");
  watch->add_option("name", a->name, "only this trigger");
  watch->add_option("--selector", a->selector, "only triggers matching this label selector");
  watch->add_flag("--final-only", a->final_only, "only runs that ended or were skipped");
  watch->add_option("--count", a->count, "stop after this many runs (0: until cancelled)");
  watch->callback(run(&Watch));
}

}  // namespace spindle::cli
