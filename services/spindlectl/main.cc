// spindlectl: the command-line client of Spindle. Each command group lives in its own file and
// registers itself below.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "services/common/build_info.h"
#include "services/spindlectl/cli.h"

int main(int argc, char** argv) {
  spindle::cli::GlobalOptions options;
  CLI::App app{"spindlectl: command-line client of Spindle"};
  app.set_version_flag("--version", spindle::services::kVersion);
  app.require_subcommand(1);
  app.add_option("-a,--address", options.address, "server address host:port")
      ->envname("SPINDLE_ADDRESS")
      ->capture_default_str();
  app.add_flag("--json", options.json, "print results as JSON (one object per line)");
  app.add_option("--timeout-ms", options.timeout_ms,
                 "deadline of each call, milliseconds; 0 for none")
      ->envname("SPINDLE_TIMEOUT_MS")
      ->check(CLI::NonNegativeNumber)
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
