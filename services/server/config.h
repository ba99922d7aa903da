// Everything spindled is configured with: flags, with SPINDLE_* environment variables as defaults.
#ifndef SPINDLE_SERVICES_SERVER_CONFIG_H_
#define SPINDLE_SERVICES_SERVER_CONFIG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"

namespace spindle::process {
class CgroupTree;
class SpawnPolicy;
}  // namespace spindle::process

namespace spindle::services {

// TLS on the gRPC port (docs/SECURITY.md). Both files empty: plaintext.
struct TlsConfig {
  // PEM server certificate chain and private key; both or neither.
  std::string cert_file;
  std::string key_file;
  // PEM CA bundle; set: every client must present a certificate it signed (mTLS).
  std::string client_ca_file;
  // How often the three files are re-read, seconds; changed files apply to new connections.
  int reload_interval_s = 60;
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// Bearer-token authentication and roles (docs/SECURITY.md). Empty tokens_file: no tokens.
struct AuthConfig {
  // Lines of `name role token [expires=RFC3339]`; re-read when it changes.
  std::string tokens_file;
  // /metrics asks for HTTP basic auth: user = token name, password = token.
  bool metrics_require_token = false;
  // How often the tokens file is checked for changes; zero checks on every call.
  absl::Duration tokens_reload_interval = absl::Seconds(1);
};

struct ServerConfig {
  // gRPC listen address, host:port; port 0 picks a free port (the log and GetServerInfo say which).
  std::string listen = "127.0.0.1:50051";
  // Prometheus /metrics listen address; empty turns metrics off; port 0 picks a free port.
  std::string metrics_listen = "127.0.0.1:9464";
  // Largest gRPC message in either direction, bytes.
  int64_t max_message_bytes = 16 << 20;
  // Most processes (running and retained) at once.
  int64_t max_processes = 1024;
  // Most names per kind (queues, locks, values, pools).
  int64_t max_names = 100000;
  // Most sessions at once.
  int64_t max_sessions = 100000;
  // Most waiters at once across the server.
  int64_t max_waiters = 1000000;
  // Default and largest per-stream output ring buffer, bytes.
  int64_t default_output_buffer_bytes = 1 << 20;
  int64_t max_output_buffer_bytes = 64 << 20;
  // Executor worker threads; 0 means one per core.
  int executor_threads = 0;
  // How long SIGTERM waits for in-flight calls before cancelling them.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // trace, debug, info, warn, error, off.
  std::string log_level = "info";
  // Transport security and authentication; see TlsConfig and AuthConfig.
  TlsConfig tls;
  AuthConfig auth;
  // Allows a non-loopback --listen with neither TLS nor tokens (loud warning in the log).
  bool insecure = false;
  // What clients may spawn (docs/SECURITY.md "Spawn policy"): the JSON file, empty for none, and
  // the policy read from it. SpindleServer::Start reads the file when `spawn_policy` is null (a
  // bad file stops the start); every capability that spawns processes shares the one object.
  std::string spawn_policy_file;
  std::shared_ptr<process::SpawnPolicy> spawn_policy;
  // Cgroup v2 for process trees (docs/api/processes.md): "auto" uses it where the host allows,
  // "off" never, "required" fails the start without it. SpindleServer::Start probes and sets
  // `cgroup_tree` (null: not used) unless it is already set.
  std::string cgroups = "auto";
  std::shared_ptr<process::CgroupTree> cgroup_tree;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SERVER_CONFIG_H_
