// Shared plumbing of spindlectl's commands: the channel, output in human or JSON form, and exit
// codes that tell a script what went wrong.
//
// Exit codes: 0 success; 1 any other error; 2 bad usage; 3 not found; 4 timed out (deadline
// exceeded); 5 server unavailable; 6 precondition failed or conflict (FAILED_PRECONDITION,
// ALREADY_EXISTS, ABORTED); 7 permission or authentication denied.
#ifndef SPINDLE_SERVICES_SPINDLECTL_CLI_H_
#define SPINDLE_SERVICES_SPINDLECTL_CLI_H_

#include <google/protobuf/message.h>
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace spindle::cli {

enum ExitCode : int {
  kOk = 0,
  kError = 1,
  kUsage = 2,
  kNotFound = 3,
  kTimeout = 4,
  kUnavailable = 5,
  kConflict = 6,
  kDenied = 7,
};

// Options every command shares.
struct GlobalOptions {
  std::string address = "127.0.0.1:50051";
  bool json = false;
  int64_t timeout_ms = 10000;
  bool timeout_given = false;  // --timeout-ms or SPINDLE_TIMEOUT_MS was set (see WaitContext)
};

// How the channel is secured and the calls authenticated (--tls-ca, --token, ...).
struct SecurityOptions {
  bool tls = false;             // TLS with the system's roots
  std::string tls_ca;           // PEM roots to trust instead; implies TLS
  std::string tls_cert;         // PEM client certificate for mTLS; with tls_key
  std::string tls_key;          // PEM private key of tls_cert
  std::string tls_server_name;  // name to expect in the server's certificate, if not the host
  std::string token;            // bearer token sent with every call
};

class Cli {
 public:
  // `options` is read at each call, so it may be filled in after construction (by parsing).
  explicit Cli(const GlobalOptions& options);

  const GlobalOptions& options() const { return options_; }
  SecurityOptions& security() { return security_; }
  std::shared_ptr<grpc::Channel> channel();
  // A context with the --timeout-ms deadline (0: none) and the credentials.
  std::unique_ptr<grpc::ClientContext> Context() const;
  // A context for a call that rightly lasts long: a wait bounded on the server by `bound_ms`
  // (0: unbounded), a follow, a watch, a stream of work. When --timeout-ms was given it is the
  // deadline, as for every call; otherwise the deadline is `bound_ms` plus the default timeout,
  // or none for an unbounded wait (it ends on the server's terms or on Ctrl-C). With the
  // credentials.
  std::unique_ptr<grpc::ClientContext> WaitContext(int64_t bound_ms) const;

  // Prints `message` as JSON (with --json) or via `human` otherwise; returns kOk.
  int Print(const google::protobuf::Message& message,
            const std::function<void(const google::protobuf::Message&)>& human) const;
  // Prints the error to stderr (as JSON with --json) and returns the exit code for it.
  int Fail(const grpc::Status& status) const;

 private:
  const GlobalOptions& options_;
  SecurityOptions security_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Maps a status code to an exit code (see the header comment).
int ExitCodeFor(grpc::StatusCode code);

// The status code's name as gRPC spells it ("NOT_FOUND").
const char* StatusCodeName(grpc::StatusCode code);

// Protobuf message as one-line JSON (proto3 JSON mapping, default values included).
std::string ToJson(const google::protobuf::Message& message);

// A subcommand group adds its commands to `app`; each callback stores its result in `*exit_code`.
using CommandAdder = void (*)(CLI::App& app, Cli& cli, int* exit_code);

// One function per command group, each in its own <group>_commands.cc; main.cc calls them all.
void AddServerCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddSchedulerCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddPoolCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddSyncCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddQueueCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddValueCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddProcessCommands(CLI::App& app, Cli& cli, int* exit_code);
void AddSecurityOptions(CLI::App& app, Cli& cli, int* exit_code);  // global --tls-*, --token
// The hidden `completion bash` command: prints a bash completion script generated from `app`
// as it is when the command runs (so add it after every other command; it walks them all).
void AddCompletionCommand(CLI::App& app, Cli& cli, int* exit_code);

}  // namespace spindle::cli

#endif  // SPINDLE_SERVICES_SPINDLECTL_CLI_H_
