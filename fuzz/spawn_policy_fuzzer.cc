// Fuzzes the spawn policy (lib/spindle/process/spawn_policy.h): the parser of the policy file,
// which an operator writes but which must never crash spindled at start whatever it holds, and
// the rules applied to a spec. Parse errors must be INVALID_ARGUMENT (INVALID_SPAWN_POLICY);
// applying a parsed policy must answer OK, PERMISSION_DENIED (SPAWN_POLICY) or an exec error; a
// spec it accepted must pass again unchanged (ApplyToSpec is idempotent: Run and the scheduler
// apply it twice).
//
// Input: the policy text, then optionally a NUL byte and bytes that build a spec
// (FuzzedDataProvider).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/contract.h"
#include "spindle/common/status.h"
#include "spindle/process/spawn_policy.h"

namespace {

using spindle::process::ProcessSpec;
using spindle::process::SpawnPolicy;

// Hermetic and fast: no NSS lookups.
const SpawnPolicy::NameLookup& Names() {
  static const SpawnPolicy::NameLookup* names = [] {
    auto* n = new SpawnPolicy::NameLookup;
    n->user = [](const std::string& name) -> std::optional<uint32_t> {
      if (name == "nobody") return 65534;
      if (name == "app") return 1000;
      return std::nullopt;
    };
    n->group = n->user;
    return n;
  }();
  return *names;
}

const char* const kPrograms[] = {
    "/usr/bin/true", "true",           "/bin/sh",    "sh", "/usr/bin/../bin/env",
    "./x",           "/nonexistent/x", "/usr/sbin/", "/"};
const char* const kDirs[] = {"", "/tmp", "/tmp/../etc", "/etc", "/srv/jobs/a", "/", "relative"};

bool SameSpec(const ProcessSpec& a, const ProcessSpec& b) {
  return a.command.argv == b.command.argv && a.command.executable == b.command.executable &&
         a.command.cwd == b.command.cwd && a.command.env.set == b.command.env.set &&
         a.limits.cpu_seconds == b.limits.cpu_seconds &&
         a.limits.address_space_bytes == b.limits.address_space_bytes &&
         a.limits.open_files == b.limits.open_files && a.limits.processes == b.limits.processes &&
         a.limits.core_bytes == b.limits.core_bytes &&
         a.limits.file_size_bytes == b.limits.file_size_bytes && a.limits.nice == b.limits.nice &&
         a.run_as.uid == b.run_as.uid && a.run_as.gid == b.run_as.gid &&
         a.run_as.supplementary_gids == b.run_as.supplementary_gids;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string text = input.substr(0, nul);
  auto policy = SpawnPolicy::Parse(text, "fuzz.json", Names());
  if (!policy.ok()) {
    CHECK_CONTRACT(policy.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_CONTRACT(spindle::Reason(policy.status()) == "INVALID_SPAWN_POLICY");
    return 0;
  }
  (void)(*policy)->Summary();
  if (nul == std::string::npos) return 0;

  FuzzedDataProvider in(data + nul + 1, size - nul - 1);
  ProcessSpec spec;
  spec.command.argv.push_back(in.ConsumeBool() ? in.PickValueInArray(kPrograms)
                                               : in.ConsumeRandomLengthString(64));
  if (in.ConsumeBool()) spec.command.executable = in.PickValueInArray(kPrograms);
  spec.command.cwd =
      in.ConsumeBool() ? in.PickValueInArray(kDirs) : in.ConsumeRandomLengthString(64);
  spec.command.env.clean = in.ConsumeBool();
  for (int i = in.ConsumeIntegralInRange(0, 3); i > 0; --i) {
    spec.command.env.set[in.ConsumeRandomLengthString(16)] = in.ConsumeRandomLengthString(16);
  }
  if (in.ConsumeBool()) spec.command.env.unset.push_back("PATH");
  if (in.ConsumeBool()) spec.limits.cpu_seconds = in.ConsumeIntegral<int64_t>();
  if (in.ConsumeBool()) spec.limits.open_files = in.ConsumeIntegral<int64_t>();
  if (in.ConsumeBool()) spec.limits.core_bytes = in.ConsumeIntegral<int64_t>();
  if (in.ConsumeBool()) spec.limits.nice = in.ConsumeIntegralInRange<int32_t>(-20, 19);
  if (in.ConsumeBool()) spec.run_as.uid = in.ConsumeIntegral<uint32_t>();
  if (in.ConsumeBool()) spec.run_as.gid = in.ConsumeIntegral<uint32_t>();
  if (in.ConsumeBool()) spec.run_as.supplementary_gids.push_back(in.ConsumeIntegral<uint32_t>());
  std::optional<std::string> inherited_path;
  if (in.ConsumeBool()) inherited_path = in.ConsumeBool() ? "/usr/bin:/bin" : "relative::/nope";

  SpawnPolicy& p = **policy;
  absl::Status first = p.ApplyToSpec(spec, inherited_path);
  if (!first.ok()) {
    const auto code = first.code();
    CHECK_CONTRACT(code == absl::StatusCode::kPermissionDenied ||
                   code == absl::StatusCode::kFailedPrecondition ||
                   code == absl::StatusCode::kInvalidArgument);
    if (code == absl::StatusCode::kPermissionDenied) {
      CHECK_CONTRACT(spindle::Reason(first) == "SPAWN_POLICY");
      CHECK_CONTRACT(first.message().find("policy rule") != absl::string_view::npos);
    }
    return 0;
  }
  ProcessSpec again = spec;
  CHECK_CONTRACT(p.ApplyToSpec(again, inherited_path).ok());
  CHECK_CONTRACT(SameSpec(spec, again));

  // The per-identity count never goes negative or past the limit.
  const std::string identity = in.ConsumeRandomLengthString(16);
  int64_t held = 0;
  for (int i = in.ConsumeIntegralInRange(0, 8); i > 0; --i) {
    const int64_t n = in.ConsumeIntegralInRange<int64_t>(0, 4);
    if (in.ConsumeBool()) {
      if (p.AcquireProcesses(identity, n, "fuzz").ok()) held += n;
    } else if (held >= n) {
      p.ReleaseProcesses(identity, n);
      held -= n;
    }
    CHECK_CONTRACT(p.LiveProcesses(identity) >= 0);
    CHECK_CONTRACT(p.LiveProcesses(identity) <= held);
  }
  p.ReleaseProcesses(identity, held);
  CHECK_CONTRACT(p.LiveProcesses(identity) == 0);
  return 0;
}
