// spindled: the Spindle server. Parses flags, sets up the process (signals, subreaper, logs),
// starts a SpindleServer and drains it on SIGTERM or SIGINT.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "services/common/build_info.h"
#include "services/common/logging.h"
#include "services/server/spindle_server.h"

namespace {

using spindle::services::ServerConfig;

// Registers every flag on `app`, each with its SPINDLE_* environment variable.
void AddFlags(CLI::App& app, ServerConfig& config, int64_t& grace_ms) {
  app.add_option("--listen", config.listen,
                 "gRPC listen address host:port; port 0 picks a free port")
      ->envname("SPINDLE_LISTEN")
      ->capture_default_str();
  app.add_option("--metrics-listen", config.metrics_listen,
                 "Prometheus /metrics listen address host:port; port 0 picks a free port; "
                 "empty turns metrics off")
      ->envname("SPINDLE_METRICS_LISTEN")
      ->capture_default_str();
  app.add_option("--max-message-bytes", config.max_message_bytes,
                 "largest gRPC message in either direction, bytes")
      ->envname("SPINDLE_MAX_MESSAGE_BYTES")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-processes", config.max_processes,
                 "most processes (running and retained) at once")
      ->envname("SPINDLE_MAX_PROCESSES")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-names", config.max_names,
                 "most names per kind (queues, locks, values, pools)")
      ->envname("SPINDLE_MAX_NAMES")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-sessions", config.max_sessions, "most sessions open at once")
      ->envname("SPINDLE_MAX_SESSIONS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-waiters", config.max_waiters,
                 "most blocked waiters (locks, queues, process waits) at once")
      ->envname("SPINDLE_MAX_WAITERS")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--output-buffer-bytes", config.default_output_buffer_bytes,
                 "default ring buffer per captured output stream, bytes")
      ->envname("SPINDLE_OUTPUT_BUFFER_BYTES")
      ->check(CLI::Range(int64_t{4096}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-output-buffer-bytes", config.max_output_buffer_bytes,
                 "largest ring buffer a spawn may ask for, bytes")
      ->envname("SPINDLE_MAX_OUTPUT_BUFFER_BYTES")
      ->check(CLI::Range(int64_t{4096}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--executor-threads", config.executor_threads,
                 "coroutine executor worker threads; 0 means one per core")
      ->envname("SPINDLE_EXECUTOR_THREADS")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--shutdown-grace-ms", grace_ms,
                 "on SIGTERM/SIGINT, how long in-flight calls may finish before they are "
                 "cancelled, milliseconds")
      ->envname("SPINDLE_SHUTDOWN_GRACE_MS")
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}))
      ->capture_default_str();
  // Transport security and authentication (docs/SECURITY.md).
  app.add_option("--tls-cert", config.tls.cert_file,
                 "PEM server certificate chain; with --tls-key turns TLS on")
      ->envname("SPINDLE_TLS_CERT");
  app.add_option("--tls-key", config.tls.key_file, "PEM private key of --tls-cert")
      ->envname("SPINDLE_TLS_KEY");
  app.add_option("--tls-client-ca", config.tls.client_ca_file,
                 "PEM CA bundle; clients must present a certificate it signed (mTLS)")
      ->envname("SPINDLE_TLS_CLIENT_CA");
  app.add_option("--tls-reload-interval-s", config.tls.reload_interval_s,
                 "how often the TLS files are re-read (rotation without restart), seconds")
      ->envname("SPINDLE_TLS_RELOAD_INTERVAL_S")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--auth-tokens", config.auth.tokens_file,
                 "bearer tokens file, lines of 'name role token [expires=RFC3339]'; roles "
                 "read-only, sync, exec, admin; re-read when it changes")
      ->envname("SPINDLE_AUTH_TOKENS");
  app.add_flag("--metrics-require-token", config.auth.metrics_require_token,
               "put /metrics behind HTTP basic auth: user = token name, password = token")
      ->envname("SPINDLE_METRICS_REQUIRE_TOKEN");
  app.add_flag("--insecure", config.insecure,
               "allow a non-loopback --listen with neither TLS nor tokens (anyone who reaches "
               "the port can spawn processes)")
      ->envname("SPINDLE_INSECURE");
  app.add_option("--spawn-policy", config.spawn_policy_file,
                 "JSON file of what clients may spawn: executables, run-as users, rlimits, "
                 "environment, working directories, live processes per client "
                 "(docs/SECURITY.md); read at start, a bad file stops it")
      ->envname("SPINDLE_SPAWN_POLICY");
  app.add_option("--cgroups", config.cgroups,
                 "cgroup v2 per spawned process, so killing its tree reaches every descendant: "
                 "auto (where the host allows it), off, or required (start fails without it)")
      ->envname("SPINDLE_CGROUPS")
      ->check(CLI::IsMember({"auto", "off", "required"}))
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn, error or off")
      ->envname("SPINDLE_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  ServerConfig config;
  int64_t grace_ms = absl::ToInt64Milliseconds(config.shutdown_grace);
  CLI::App app{"spindled: processes, pools, locks, queues and values over gRPC"};
  app.set_version_flag("--version", spindle::services::kVersion);
  AddFlags(app, config, grace_ms);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);  // --help, --version
    }
    std::fprintf(stderr, "spindled: %s (see --help)\n", e.what());
    return 2;
  }
  config.shutdown_grace = absl::Milliseconds(grace_ms);

  if (auto status = spindle::services::InitLogging(config.log_level); !status.ok()) {
    std::fprintf(stderr, "spindled: %s\n", std::string(status.message()).c_str());
    return 2;
  }

  // Signals are taken synchronously by this thread; every thread started later inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Orphaned descendants of the processes we spawn are re-parented to us and reaped (PID 1 ready).
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    spdlog::warn("event=subreaper_unavailable errno={}", errno);
  }

  // Debian's Abseil is built with assertions on, which makes every absl::Mutex record its lock
  // order in a global graph (deadlock detection): a global lock and graph updates on every lock of
  // a fresh mutex and in every mutex's destructor, on every call's hot path. The tests keep it on
  // (they run the same code under it and under TSan); the server turns it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto server = spindle::services::SpindleServer::Start(config);
  if (!server.ok()) {
    std::fprintf(stderr, "spindled: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  spdlog::info("event=started version={} pid={}", spindle::services::kVersion, getpid());

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("event=signal signal={}", strsignal(signal_number));
  (*server)->Shutdown(config.shutdown_grace);
  return 0;
}
