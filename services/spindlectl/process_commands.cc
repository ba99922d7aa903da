// spindlectl run | spawn | ps | wait | kill | restart | rm | watch | logs [-f] | attach: the
// process commands.
//
// `run` and `attach` pass the process's stdout/stderr through and exit with its exit code (or
// 128 + the signal number, as shells do), so `spindlectl run -- make test` behaves like the
// command itself. The other commands print a human summary or, with --json, one JSON object per
// line.
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "services/spindlectl/cli.h"
#include "spindle/v1/process.grpc.pb.h"

namespace spindle::cli {
namespace {

// Flags shared by run, spawn and attach.
struct SpecFlags {
  std::vector<std::string> argv;
  std::string name;
  std::vector<std::string> labels;
  std::vector<std::string> env;
  std::string cwd;
  int64_t timeout_ms = 0;
  int64_t grace_ms = -1;
  bool merge = false;
  bool stdin_pipe = false;
  bool clean_env = false;
  bool pty = false;
  std::string restart;
  std::string session;
  int64_t buffer_bytes = 0;
};

void AddSpecFlags(CLI::App* cmd, SpecFlags& f) {
  cmd->add_option("--name", f.name, "display name");
  cmd->add_option("-l,--label", f.labels, "label key=value (repeatable)");
  cmd->add_option("-e,--env", f.env, "environment variable KEY=value (repeatable)");
  cmd->add_flag("--clean-env", f.clean_env, "start from an empty environment");
  cmd->add_option("--cwd", f.cwd, "absolute working directory");
  cmd->add_option("--timeout", f.timeout_ms, "wall-clock limit of the process, ms");
  cmd->add_option("--grace", f.grace_ms, "ms between the stop signal and SIGKILL");
  cmd->add_flag("--merge", f.merge, "merge stderr into stdout (2>&1)");
  cmd->add_option("--buffer-bytes", f.buffer_bytes, "output ring buffer size per stream");
  cmd->add_option("--session", f.session, "bind to this session id (dies with it)");
  cmd->add_option("command", f.argv, "program and arguments (after --)")->required();
}

bool BuildSpec(const SpecFlags& f, v1::ProcessSpec* spec) {
  for (const auto& a : f.argv) spec->mutable_command()->add_argv(a);
  spec->set_name(f.name);
  for (const auto& kv : f.labels) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "spindlectl: --label '%s' is not key=value\n", kv.c_str());
      return false;
    }
    (*spec->mutable_labels())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& kv : f.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "spindlectl: --env '%s' is not KEY=value\n", kv.c_str());
      return false;
    }
    (*spec->mutable_command()->mutable_env()->mutable_set())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  spec->mutable_command()->mutable_env()->set_clean(f.clean_env);
  spec->mutable_command()->set_cwd(f.cwd);
  spec->set_timeout_ms(f.timeout_ms);
  if (f.grace_ms >= 0) spec->set_kill_grace_ms(f.grace_ms);
  if (f.merge) spec->set_stderr_mode(v1::PROCESS_OUTPUT_MODE_MERGE);
  spec->set_output_buffer_bytes(f.buffer_bytes);
  spec->set_session_id(f.session);
  if (f.stdin_pipe) spec->set_stdin_mode(v1::PROCESS_STDIN_MODE_PIPE);
  if (f.pty) spec->mutable_pty();
  if (!f.restart.empty()) {
    static const std::map<std::string, v1::ProcessRestartMode> kModes = {
        {"never", v1::PROCESS_RESTART_MODE_NEVER},
        {"on-failure", v1::PROCESS_RESTART_MODE_ON_FAILURE},
        {"always", v1::PROCESS_RESTART_MODE_ALWAYS}};
    auto it = kModes.find(f.restart);
    if (it == kModes.end()) {
      std::fprintf(stderr, "spindlectl: --restart '%s' must be never, on-failure or always\n",
                   f.restart.c_str());
      return false;
    }
    spec->mutable_restart()->set_mode(it->second);
  }
  return true;
}

// The shell convention: the exit code, or 128 + the signal.
int ProcessExitCode(const v1::ProcessStatus& status) {
  if (status.exit().signal_number() != 0) return 128 + status.exit().signal_number();
  return status.exit().exit_code() < 0 ? kError : status.exit().exit_code();
}

std::string Summary(const v1::ProcessStatus& s) {
  std::string state = v1::ProcessState_Name(s.state()).substr(strlen("PROCESS_STATE_"));
  if (s.has_exit() && s.pid() == 0) return state + " (" + s.exit().message() + ")";
  return state + " pid " + std::to_string(s.pid());
}

std::string ReadAllStdin() {
  std::string data;
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), stdin)) > 0) data.append(buffer, n);
  return data;
}

void WriteAll(FILE* out, const std::string& data) {
  std::fwrite(data.data(), 1, data.size(), out);
  std::fflush(out);
}

int Run(Cli& cli, const SpecFlags& flags, bool with_stdin) {
  v1::RunRequest request;
  if (!BuildSpec(flags, request.mutable_spec())) return kUsage;
  if (with_stdin) {
    request.mutable_spec()->set_stdin_mode(v1::PROCESS_STDIN_MODE_DATA);
    request.mutable_spec()->set_stdin_data(ReadAllStdin());
  }
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::RunResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->Run(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  if (cli.options().json) {
    cli.Print(response, [](const google::protobuf::Message&) {});
  } else {
    WriteAll(stdout, response.stdout_data());
    WriteAll(stderr, response.stderr_data());
  }
  return ProcessExitCode(response.process().status());
}

int Spawn(Cli& cli, const SpecFlags& flags) {
  v1::SpawnRequest request;
  if (!BuildSpec(flags, request.mutable_spec())) return kUsage;
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::SpawnResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->Spawn(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s\n", response.process().id().c_str());
  });
}

// Parses --state names (running, exited, ...) into `out`; false (after a message) on a bad one.
bool ParseStates(const std::vector<std::string>& names, google::protobuf::RepeatedField<int>* out) {
  for (const auto& s : names) {
    v1::ProcessState state;
    std::string upper;
    for (char c : s) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!v1::ProcessState_Parse("PROCESS_STATE_" + upper, &state)) {
      std::fprintf(stderr, "spindlectl: --state '%s' is not a process state\n", s.c_str());
      return false;
    }
    out->Add(state);
  }
  return true;
}

int Ps(Cli& cli, const std::vector<std::string>& states, const std::string& selector,
       const std::string& prefix) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::ListProcessesRequest request;
  if (!ParseStates(states, request.mutable_states())) return kUsage;
  request.set_label_selector(selector);
  request.set_name_prefix(prefix);
  request.set_page_size(1000);
  bool header = !cli.options().json;
  do {
    v1::ListProcessesResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->ListProcesses(context.get(), request, &response);
    if (!status.ok()) return cli.Fail(status);
    if (header) {
      std::printf("%-22s %-16s %-9s %-8s %-22s %s\n", "ID", "NAME", "STATE", "PID", "EXIT",
                  "COMMAND");
      header = false;
    }
    for (const auto& p : response.processes()) {
      cli.Print(p, [&](const google::protobuf::Message&) {
        std::string command;
        for (const auto& a : p.spec().command().argv()) command += (command.empty() ? "" : " ") + a;
        std::string exit = p.status().has_exit() ? p.status().exit().message() : "";
        std::printf("%-22s %-16s %-9s %-8d %-22s %s\n", p.id().c_str(),
                    p.spec().name().empty() ? "-" : p.spec().name().c_str(),
                    v1::ProcessState_Name(p.status().state()).substr(14).c_str(), p.status().pid(),
                    exit.empty() ? "-" : exit.c_str(), command.c_str());
      });
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return kOk;
}

int Restart(Cli& cli, const std::string& id, int64_t grace_ms) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::RestartProcessRequest request;
  request.set_process_id(id);
  if (grace_ms >= 0) request.set_grace_ms(grace_ms);
  v1::RestartProcessResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->RestartProcess(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s %s\n", id.c_str(), Summary(response.process().status()).c_str());
  });
}

int Remove(Cli& cli, const std::string& id, bool force) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::DeleteProcessRequest request;
  request.set_process_id(id);
  request.set_force(force);
  v1::DeleteProcessResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DeleteProcess(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(
      response, [&](const google::protobuf::Message&) { std::printf("deleted %s\n", id.c_str()); });
}

// Prints process events until --count came, the stream ends or --timeout-ms (if given) passed.
int WatchProcesses(Cli& cli, const std::vector<std::string>& states, const std::string& selector,
                   const std::string& prefix, bool initial, int64_t count) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::WatchProcessesRequest request;
  if (!ParseStates(states, request.mutable_states())) return kUsage;
  request.set_label_selector(selector);
  request.set_name_prefix(prefix);
  request.set_send_initial(initial);
  auto context = cli.WaitContext(0);
  auto reader = stub->WatchProcesses(context.get(), request);
  v1::WatchProcessesResponse event;
  int64_t seen = 0;
  while ((count == 0 || seen < count) && reader->Read(&event)) {
    ++seen;
    cli.Print(event, [&](const google::protobuf::Message&) {
      const auto& p = event.process();
      std::printf("%-13s %-22s %s\n", v1::ProcessEventType_Name(event.type()).substr(19).c_str(),
                  p.id().c_str(), Summary(p.status()).c_str());
    });
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

int Wait(Cli& cli, const std::string& id, int64_t max_wait_ms, bool running) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::WaitProcessRequest request;
  request.set_process_id(id);
  request.set_max_wait_ms(max_wait_ms);
  if (running) request.set_until(v1::PROCESS_WAIT_CONDITION_RUNNING);
  v1::WaitProcessResponse response;
  auto context = cli.WaitContext(max_wait_ms);
  grpc::Status status = stub->WaitProcess(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s %s\n", id.c_str(), Summary(response.process().status()).c_str());
  });
  return response.reached() ? kOk : kTimeout;
}

int Kill(Cli& cli, const std::string& id, const std::string& signal, const std::string& target,
         bool terminate, int64_t grace_ms, bool wait) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  if (terminate) {
    v1::TerminateProcessRequest request;
    request.set_process_id(id);
    if (!signal.empty()) request.mutable_signal()->set_name(signal);
    if (grace_ms >= 0) request.set_grace_ms(grace_ms);
    request.set_wait(wait);
    v1::TerminateProcessResponse response;
    auto context = wait ? cli.WaitContext(0) : cli.Context();
    grpc::Status status = stub->TerminateProcess(context.get(), request, &response);
    if (!status.ok()) return cli.Fail(status);
    return cli.Print(response, [&](const google::protobuf::Message&) {
      std::printf("%s %s\n", id.c_str(), Summary(response.process().status()).c_str());
    });
  }
  v1::SignalProcessRequest request;
  request.set_process_id(id);
  request.mutable_signal()->set_name(signal.empty() ? "TERM" : signal);
  if (target == "group") {
    request.set_target(v1::PROCESS_SIGNAL_TARGET_GROUP);
  } else if (target == "tree") {
    request.set_target(v1::PROCESS_SIGNAL_TARGET_TREE);
  } else if (target != "process") {
    std::fprintf(stderr, "spindlectl: --target '%s' must be process, group or tree\n",
                 target.c_str());
    return kUsage;
  }
  v1::SignalProcessResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->SignalProcess(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s: signal delivered to %d process(es)\n", id.c_str(), response.delivered());
  });
}

int Logs(Cli& cli, const std::string& id, bool follow, const std::string& stream, int64_t tail) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  v1::ReadOutputRequest request;
  request.set_process_id(id);
  request.set_follow(follow);
  if (tail >= 0) request.set_tail_bytes(tail);
  if (stream == "stdout") {
    request.set_stream(v1::PROCESS_OUTPUT_STREAM_STDOUT);
  } else if (stream == "stderr") {
    request.set_stream(v1::PROCESS_OUTPUT_STREAM_STDERR);
  } else if (stream != "both") {
    std::fprintf(stderr, "spindlectl: --stream '%s' must be stdout, stderr or both\n",
                 stream.c_str());
    return kUsage;
  }
  // A follow runs until the process is final: no deadline unless --timeout-ms was given.
  auto context = follow ? cli.WaitContext(0) : cli.Context();
  auto reader = stub->ReadOutput(context.get(), request);
  v1::ReadOutputResponse message;
  while (reader->Read(&message)) {
    if (cli.options().json) {
      std::printf("%s\n", ToJson(message).c_str());
      std::fflush(stdout);
    } else if (message.has_chunk()) {
      WriteAll(message.chunk().stream() == v1::PROCESS_OUTPUT_STREAM_STDERR ? stderr : stdout,
               message.chunk().data());
    } else if (message.has_gap()) {
      std::fprintf(stderr, "[spindlectl: %ld bytes dropped]\n",
                   static_cast<long>(message.gap().dropped_bytes()));
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? kOk : cli.Fail(status);
}

int Attach(Cli& cli, const std::string& id, const SpecFlags& flags, bool interactive) {
  auto stub = v1::ProcessService::NewStub(cli.channel());
  // Runs as long as the process: no deadline unless --timeout-ms was given.
  auto context = cli.WaitContext(0);
  auto stream = stub->Attach(context.get());
  v1::AttachRequest open;
  if (!id.empty()) {
    open.mutable_open()->set_process_id(id);
  } else {
    SpecFlags spawn = flags;
    spawn.stdin_pipe = spawn.stdin_pipe || interactive;
    if (!BuildSpec(spawn, open.mutable_open()->mutable_spawn())) return kUsage;
  }
  open.mutable_open()->set_attach_stdin(interactive);
  if (!stream->Write(open)) return cli.Fail(stream->Finish());
  std::thread input;
  if (interactive) {
    input = std::thread([&stream]() {
      char buffer[65536];
      ssize_t n;
      while ((n = ::read(0, buffer, sizeof(buffer))) > 0) {
        v1::AttachRequest data;
        data.set_stdin_data(std::string(buffer, static_cast<size_t>(n)));
        if (!stream->Write(data)) return;
      }
      stream->WritesDone();
    });
    input.detach();  // A blocked read(0) must not keep spindlectl alive after the exit.
  } else {
    stream->WritesDone();
  }
  v1::AttachResponse message;
  int code = kOk;
  while (stream->Read(&message)) {
    if (cli.options().json) {
      std::printf("%s\n", ToJson(message).c_str());
      std::fflush(stdout);
    } else if (message.has_chunk()) {
      WriteAll(message.chunk().stream() == v1::PROCESS_OUTPUT_STREAM_STDERR ? stderr : stdout,
               message.chunk().data());
    }
    if (message.has_exited()) code = ProcessExitCode(message.exited());
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) code = cli.Fail(status);
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);  // The stdin thread may sit in read(0) and uses `stream`.
}

}  // namespace

void AddProcessCommands(CLI::App& app, Cli& cli, int* exit_code) {
  static SpecFlags run_flags, spawn_flags, attach_flags;
  static bool run_stdin = false;
  CLI::App* run = app.add_subcommand("run", "run a process to completion (like subprocess.run)");
  AddSpecFlags(run, run_flags);
  run->add_flag("-i,--stdin", run_stdin, "send spindlectl's stdin to the process");
  run->callback([&cli, exit_code]() { *exit_code = Run(cli, run_flags, run_stdin); });

  CLI::App* spawn = app.add_subcommand("spawn", "start a process and print its id");
  AddSpecFlags(spawn, spawn_flags);
  spawn->add_flag("--stdin-pipe", spawn_flags.stdin_pipe, "give it a stdin pipe (WriteStdin)");
  spawn->add_option("--restart", spawn_flags.restart, "never | on-failure | always");
  spawn->callback([&cli, exit_code]() { *exit_code = Spawn(cli, spawn_flags); });

  static std::vector<std::string> ps_states;
  static std::string ps_selector, ps_prefix;
  CLI::App* ps = app.add_subcommand("ps", "list processes");
  ps->add_option("--state", ps_states, "only these states (running, exited, ...)");
  ps->add_option("-l,--selector", ps_selector, "label selector, e.g. app=web,tier!=db");
  ps->add_option("--prefix", ps_prefix, "name prefix");
  ps->callback([&cli, exit_code]() { *exit_code = Ps(cli, ps_states, ps_selector, ps_prefix); });

  static std::string wait_id;
  static int64_t wait_max = 0;
  static bool wait_running = false;
  CLI::App* wait = app.add_subcommand("wait", "wait until a process is final");
  wait->add_option("id", wait_id, "process id")->required();
  wait->add_option("--max-wait-ms", wait_max, "give up after this long (exit code 4)");
  wait->add_flag("--running", wait_running, "wait until RUNNING instead");
  wait->callback([&cli, exit_code]() { *exit_code = Wait(cli, wait_id, wait_max, wait_running); });

  static std::string kill_id, kill_signal, kill_target = "process";
  static bool kill_terminate = false, kill_wait = false;
  static int64_t kill_grace = -1;
  CLI::App* kill = app.add_subcommand("kill", "signal a process, or --terminate its tree");
  kill->add_option("id", kill_id, "process id")->required();
  kill->add_option("-s,--signal", kill_signal, "signal name or number (default TERM)");
  kill->add_option("--target", kill_target, "process | group | tree");
  kill->add_flag("--terminate", kill_terminate, "stop for good: stop signal, grace, SIGKILL tree");
  kill->add_option("--grace", kill_grace, "with --terminate: ms before SIGKILL");
  kill->add_flag("--wait", kill_wait, "with --terminate: return once the tree is gone");
  kill->callback([&cli, exit_code]() {
    *exit_code =
        Kill(cli, kill_id, kill_signal, kill_target, kill_terminate, kill_grace, kill_wait);
  });

  static std::string restart_id;
  static int64_t restart_grace = -1;
  CLI::App* restart = app.add_subcommand(
      "restart", "stop a process (its tree) and start it again with the same spec");
  restart->add_option("id", restart_id, "process id")->required();
  restart->add_option("--grace", restart_grace, "ms between the stop signal and SIGKILL");
  restart->callback([&cli, exit_code]() { *exit_code = Restart(cli, restart_id, restart_grace); });

  static std::string rm_id;
  static bool rm_force = false;
  CLI::App* rm = app.add_subcommand("rm", "delete a final process's record (--force: kill first)");
  rm->add_option("id", rm_id, "process id")->required();
  rm->add_flag("-f,--force", rm_force, "terminate it first if it still runs");
  rm->callback([&cli, exit_code]() { *exit_code = Remove(cli, rm_id, rm_force); });

  static std::vector<std::string> watch_states;
  static std::string watch_selector, watch_prefix;
  static bool watch_initial = false;
  static int64_t watch_count = 0;
  CLI::App* watch = app.add_subcommand("watch", "follow process events (started, exited, ...)");
  watch->add_option("--state", watch_states, "only processes in these states");
  watch->add_option("-l,--selector", watch_selector, "label selector, e.g. app=web");
  watch->add_option("--prefix", watch_prefix, "name prefix");
  watch->add_flag("--initial", watch_initial, "first one event per matching process");
  watch->add_option("--count", watch_count, "stop after this many events (0: until Ctrl-C)");
  watch->callback([&cli, exit_code]() {
    *exit_code =
        WatchProcesses(cli, watch_states, watch_selector, watch_prefix, watch_initial, watch_count);
  });

  static std::string logs_id, logs_stream = "both";
  static bool logs_follow = false;
  static int64_t logs_tail = -1;
  CLI::App* logs = app.add_subcommand("logs", "print a process's output");
  logs->add_option("id", logs_id, "process id")->required();
  logs->add_flag("-f,--follow", logs_follow, "keep printing new output until it exits");
  logs->add_option("--stream", logs_stream, "stdout | stderr | both");
  logs->add_option("--tail", logs_tail, "start this many bytes before the end");
  logs->callback([&cli, exit_code]() {
    *exit_code = Logs(cli, logs_id, logs_follow, logs_stream, logs_tail);
  });

  static std::string attach_id;
  static bool attach_interactive = false;
  CLI::App* attach = app.add_subcommand(
      "attach", "attach to a process (--id) or spawn one (-- argv), passing stdio through");
  attach->add_option("--id", attach_id, "attach to this existing process");
  attach->add_flag("-i,--stdin", attach_interactive, "send spindlectl's stdin to the process");
  attach->add_option("--name", attach_flags.name, "display name of a spawned process");
  attach->add_flag("--merge", attach_flags.merge, "merge stderr into stdout");
  attach->add_flag("-t,--tty", attach_flags.pty, "run the spawned process on a pty");
  attach->add_option("command", attach_flags.argv, "program and arguments (after --)");
  attach->callback([&cli, exit_code]() {
    if (attach_id.empty() && attach_flags.argv.empty()) {
      std::fprintf(stderr, "spindlectl: attach needs --id or a command after --\n");
      *exit_code = kUsage;
      return;
    }
    *exit_code = Attach(cli, attach_id, attach_flags, attach_interactive);
  });
}

}  // namespace spindle::cli
