// SpawnPolicy: what a network client may make spindled run — the spawn policy file
// (`spindled --spawn-policy FILE`, docs/SECURITY.md "Spawn policy"), parsed, and the checks every
// spawn goes through: ProcessService Spawn/Run/Attach, COMMAND pool tasks, WORKER pool workers and
// the scheduler's spawn and pool_task triggers.
//
// The file is JSON (comments allowed). Every section is optional; an absent section restricts
// nothing. Unknown keys are errors, so a typo cannot silently turn a rule off.
//
//   {
//     "executables": {"allow": ["/usr/bin/", "/opt/jobs/run"], "deny": ["/usr/bin/sudo"]},
//     "run_as": {"users": ["nobody", 1000], "groups": [65534], "default_user": "nobody",
//                "default_group": "nogroup"},
//     "limits": {"default": {"cpu_seconds": 60}, "max": {"cpu_seconds": 3600}, "min_nice": 0},
//     "environment": {"allow": ["PATH", "HOME", "LANG", "LC_*"]},
//     "cwd": {"allow": ["/srv/jobs", "/tmp"], "default": "/srv/jobs"},
//     "identities": {"max_live_processes": 16, "overrides": {"token:ci": 4}}
//   }
//
// Rules (each message names the rule, the field and the value):
//  - executables: the program (`executable`, or argv[0] when that is empty) is resolved to a
//    normalized absolute path (a bare name through PATH, as exec would) and the command's
//    `executable` is set to it, so what was checked is exactly what is exec'd. An entry ending in
//    '/' is a directory prefix, any other an exact path. `allow` matches the path as written;
//    `deny` also matches the path with symlinks resolved (on both sides), and deny wins.
//  - run_as: `users`/`groups` are the allowed sets (names resolved when the file is read);
//    `default_user`/`default_group` fill an unset uid/gid (and are allowed). With the section, a
//    spec that sets a uid but no gid gets the default group, or gid = uid.
//  - limits: `default` fills unset rlimits; `max` caps them (an unset one becomes the max);
//    `min_nice` is the lowest nice value allowed.
//  - environment: `allow` lists variable names ("LC_*" is a prefix, "*" anything). A variable a
//    client sets outside it is refused (not dropped: a silently missing variable is harder to
//    debug than an error); spindled's own environment is scrubbed to the allowed names.
//  - cwd: the working directory must be one of the `allow` roots or under one, as written and with
//    symlinks resolved; an empty cwd becomes `default` (else the first root).
//  - identities: at most `max_live_processes` live processes per client identity ("token:<name>",
//    "cert:<subject>", "peer:<ip>"); `overrides` sets it per identity. Spawns made without an
//    identity are not counted (a trigger's runs carry its creator's identity).
//
// Codes: PERMISSION_DENIED with reason SPAWN_POLICY for a spawn outside the rules;
// RESOURCE_EXHAUSTED with reason SPAWN_POLICY over an identity's live-process limit (it passes
// once processes end, so clients may retry). Every refusal is counted in Stats().rejections.
//
// Thread-safety: thread-safe. The rules are immutable after Parse; the per-identity counts are
// guarded by a mutex.
#ifndef SPINDLE_PROCESS_SPAWN_POLICY_H_
#define SPINDLE_PROCESS_SPAWN_POLICY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "spindle/process/types.h"

namespace spindle::process {

// The reason of every refusal (status details and spindle_rejections_total{reason}).
inline constexpr absl::string_view kSpawnPolicyReason = "SPAWN_POLICY";
// The reason of a policy file that does not parse or breaks a rule of its own.
inline constexpr absl::string_view kInvalidSpawnPolicyReason = "INVALID_SPAWN_POLICY";
// Largest policy file accepted, bytes.
inline constexpr size_t kMaxSpawnPolicyBytes = 1 << 20;

// The rlimits of ProcessLimits, by their field names ("cpu_seconds", ...), for default and max.
struct PolicyLimits {
  std::map<std::string, int64_t> values;
  std::optional<int32_t> nice;  // Only in `default`.
};

// The parsed rules, section by section; see the file comment. (Defined at namespace scope, not
// nested, so that std::optional of them is default-constructible under clang too.)
struct SpawnPolicyPathRule {
  std::string path;  // Normalized, absolute; ends in '/' for a prefix.
  bool prefix = false;
  std::string real;  // `path` with symlinks resolved (deny only; empty when it does not exist).
};
struct SpawnPolicyExecutables {
  std::vector<SpawnPolicyPathRule> allow;  // Empty with `has_allow`: nothing is allowed.
  bool has_allow = false;
  std::vector<SpawnPolicyPathRule> deny;
};
struct SpawnPolicyRunAs {
  std::set<uint32_t> users;
  std::set<uint32_t> groups;
  std::optional<uint32_t> default_user;
  std::optional<uint32_t> default_group;
};
struct SpawnPolicyLimits {
  PolicyLimits defaults;
  PolicyLimits max;
  std::optional<int32_t> min_nice;
};
struct SpawnPolicyEnvironment {
  std::vector<std::string> exact;
  std::vector<std::string> prefixes;  // Without the '*'; "" (from "*") allows everything.
};
struct SpawnPolicyCwd {
  std::vector<std::string> roots;       // Normalized, absolute, no trailing '/' (but "/").
  std::vector<std::string> real_roots;  // Same order; empty when the root does not exist.
  std::string default_cwd;
};
struct SpawnPolicyIdentities {
  std::optional<int64_t> max_live_processes;
  std::map<std::string, int64_t> overrides;
};

// The whole file. Absent sections are nullopt.
struct SpawnPolicyRules {
  using PathRule = SpawnPolicyPathRule;
  using Executables = SpawnPolicyExecutables;
  using RunAs = SpawnPolicyRunAs;
  using Limits = SpawnPolicyLimits;
  using Environment = SpawnPolicyEnvironment;
  using Cwd = SpawnPolicyCwd;
  using Identities = SpawnPolicyIdentities;
  std::optional<Executables> executables;
  std::optional<RunAs> run_as;
  std::optional<Limits> limits;
  std::optional<Environment> environment;
  std::optional<Cwd> cwd;
  std::optional<Identities> identities;
};

class SpawnPolicy {
 public:
  // How user and group names in the file become ids; nullopt: no such name. The defaults use
  // getpwnam_r/getgrnam_r; tests and fuzzers inject fakes.
  struct NameLookup {
    std::function<std::optional<uint32_t>(const std::string&)> user;
    std::function<std::optional<uint32_t>(const std::string&)> group;
  };
  static NameLookup SystemNames();

  // Parses a policy file's text; `source` names it in errors. INVALID_ARGUMENT (reason
  // INVALID_SPAWN_POLICY) "spawn policy 'SOURCE': line L, column C: ..." for bad JSON, or
  // "spawn policy 'SOURCE': RULE: ..." naming the rule (e.g. "limits.max.cpu_seconds") that is
  // wrong. Never throws.
  static absl::StatusOr<std::unique_ptr<SpawnPolicy>> Parse(
      absl::string_view text, absl::string_view source, const NameLookup& names = SystemNames());
  // Reads and parses `path`; INVALID_ARGUMENT naming the file when it cannot be read.
  static absl::StatusOr<std::unique_ptr<SpawnPolicy>> Load(const std::string& path);

  explicit SpawnPolicy(SpawnPolicyRules rules) : rules_(std::move(rules)) {}
  SpawnPolicy(const SpawnPolicy&) = delete;
  SpawnPolicy& operator=(const SpawnPolicy&) = delete;

  // Checks a whole process spec and completes it (resolved executable, cwd default, rlimit
  // defaults and caps, run_as defaults). Idempotent: a spec it returned OK for passes again
  // unchanged. `inherited_path` is the PATH the process would inherit from spindled (nullopt:
  // none), used to resolve a bare program name the way exec will.
  absl::Status ApplyToSpec(ProcessSpec& spec,
                           const std::optional<std::string>& inherited_path) const;

  // The parts, for pools: `field` is the field path in messages ("spec.worker.command",
  // "task.command.command", "spec.limits", "spec.run_as").
  absl::Status ApplyToCommand(absl::string_view field, ProcessCommand& command,
                              const std::optional<std::string>& inherited_path) const;
  absl::Status ApplyToLimits(absl::string_view field, ProcessLimits& limits) const;
  absl::Status ApplyToRunAs(absl::string_view field, ProcessUser& user) const;

  // Whether a variable of spindled's own environment is passed on to spawned processes.
  bool InheritsVariable(absl::string_view name) const;

  // Counts `count` more live processes for `identity` (`what` describes them in the message, e.g.
  // "a process" or "pool 'x' of size 4"). RESOURCE_EXHAUSTED (SPAWN_POLICY) when that would exceed
  // its limit. An empty identity, or a policy without `identities`, always passes uncounted.
  absl::Status AcquireProcesses(absl::string_view identity, int64_t count, absl::string_view what);
  // Gives back what AcquireProcesses took. REQUIRES: that many were acquired for `identity`.
  void ReleaseProcesses(absl::string_view identity, int64_t count);
  // Live processes counted for `identity`.
  int64_t LiveProcesses(absl::string_view identity) const;

  struct Stats {
    int64_t rejections = 0;  // Refusals of every rule, PERMISSION_DENIED and RESOURCE_EXHAUSTED.
  };
  Stats GetStats() const;

  const SpawnPolicyRules& rules() const { return rules_; }
  // One line for the startup log: "executables=allow:2,deny:1 run_as=... ...".
  std::string Summary() const;

 private:
  absl::Status Deny(absl::string_view message) const;
  absl::Status CheckExecutable(absl::string_view field, ProcessCommand& command,
                               const std::optional<std::string>& inherited_path) const;
  absl::Status CheckEnvironment(absl::string_view field, const ProcessCommand& command) const;
  absl::Status CheckCwd(absl::string_view field, ProcessCommand& command) const;
  bool VariableAllowed(absl::string_view name) const;
  int64_t LimitFor(absl::string_view identity) const;

  // Constant after construction.
  const SpawnPolicyRules rules_;

  mutable std::atomic<int64_t> rejections_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> live_ ABSL_GUARDED_BY(mu_);
};

// Lexically normalizes an absolute path: collapses "//", drops "." and resolves ".." (never above
// "/"); keeps a trailing '/' when `keep_trailing_slash`. nullopt for a relative path, a NUL byte
// or more than 4096 bytes.
std::optional<std::string> NormalizeAbsolutePath(absl::string_view path,
                                                 bool keep_trailing_slash = false);

}  // namespace spindle::process

#endif  // SPINDLE_PROCESS_SPAWN_POLICY_H_
