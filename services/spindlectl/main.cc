// spindlectl: the command-line client of Spindle. Each command group lives in its own file and
// registers itself below.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "services/common/build_info.h"
#include "services/spindlectl/cli.h"

namespace {

// Every option that collects several values (--label, --env, --state, --header, ...) takes one
// value per occurrence: repeat the flag for more. Otherwise CLI11 lets such an option swallow the
// words after it, and the `--` that should start a command only ends the option's list, so
// `spawn -l app=x -- sh -c ...` failed on `-c`.
void OneValuePerOccurrence(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    if (option->nonpositional() && option->get_items_expected_max() > 1) {
      option->allow_extra_args(false);
    }
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    OneValuePerOccurrence(*sub);
  }
}

}  // namespace

int main(int argc, char** argv) {
  spindle::cli::GlobalOptions options;
  CLI::App app{"spindlectl: command-line client of Spindle"};
  app.set_version_flag("--version", spindle::services::kVersion);
  app.require_subcommand(1);
  // The global options below also work after the command (`spindlectl info --json`): every
  // subcommand, added after this line, inherits the fallthrough to its parent.
  app.fallthrough();
  app.add_option("-a,--address", options.address, "server address host:port")
      ->envname("SPINDLE_ADDRESS")
      ->capture_default_str();
  app.add_flag("--json", options.json, "print results as JSON (one object per line)");
  app.add_option("--timeout-ms", options.timeout_ms,
                 "deadline of each call, milliseconds; 0 for none. Unless given, calls that wait "
                 "(watches, follows, waits without a bound) have none")
      ->envname("SPINDLE_TIMEOUT_MS")
      ->check(CLI::NonNegativeNumber)
      ->each([&options](const std::string&) { options.timeout_given = true; })
      ->capture_default_str();

  // Options are parsed before any callback runs, so the commands see them through `cli`.
  spindle::cli::Cli cli(options);
  int exit_code = spindle::cli::kOk;
  // ---- command groups (one line each) ----
  spindle::cli::AddSyncCommands(app, cli, &exit_code);
  spindle::cli::AddServerCommands(app, cli, &exit_code);
  spindle::cli::AddSecurityOptions(app, cli, &exit_code);
  spindle::cli::AddProcessCommands(app, cli, &exit_code);
  spindle::cli::AddQueueCommands(app, cli, &exit_code);
  spindle::cli::AddValueCommands(app, cli, &exit_code);
  spindle::cli::AddPoolCommands(app, cli, &exit_code);
  spindle::cli::AddSchedulerCommands(app, cli, &exit_code);
  // ---- end of command groups ----
  spindle::cli::AddCompletionCommand(app, cli, &exit_code);  // last: it walks the others
  OneValuePerOccurrence(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);
    }
    std::fprintf(stderr, "spindlectl: %s (see --help)\n", e.what());
    return spindle::cli::kUsage;
  }
  return exit_code;
}
