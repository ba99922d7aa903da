// SpawnPolicy: the file format (every section, every error) and every rule on specs.
#include "spindle/process/spawn_policy.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spindle/common/status.h"

namespace spindle::process {
namespace {

using ::testing::HasSubstr;

// Names resolved without the system's databases, so the tests are hermetic.
SpawnPolicy::NameLookup FakeNames() {
  SpawnPolicy::NameLookup names;
  names.user = [](const std::string& name) -> std::optional<uint32_t> {
    if (name == "nobody") return 65534;
    if (name == "app") return 1000;
    return std::nullopt;
  };
  names.group = [](const std::string& name) -> std::optional<uint32_t> {
    if (name == "nogroup") return 65534;
    if (name == "app") return 1000;
    return std::nullopt;
  };
  return names;
}

std::unique_ptr<SpawnPolicy> Policy(const std::string& text) {
  auto policy = SpawnPolicy::Parse(text, "test.json", FakeNames());
  EXPECT_TRUE(policy.ok()) << policy.status();
  return policy.ok() ? std::move(*policy) : nullptr;
}

// The message of a file that must not parse.
std::string ParseError(const std::string& text) {
  auto policy = SpawnPolicy::Parse(text, "test.json", FakeNames());
  EXPECT_FALSE(policy.ok()) << text;
  if (policy.ok()) return "";
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(policy.status()), "INVALID_SPAWN_POLICY");
  return std::string(policy.status().message());
}

ProcessSpec Cmd(std::vector<std::string> argv) {
  ProcessSpec spec;
  spec.command.argv = std::move(argv);
  return spec;
}

void ExpectDenied(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(Reason(status), "SPAWN_POLICY");
  EXPECT_EQ(status.message(), message);
}

// A scratch directory under the test's temp dir, removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = absl::StrCat(::testing::TempDir(), "/spawn_policy_XXXXXX");
    path_ = *NormalizeAbsolutePath(::mkdtemp(pattern.data()));
  }
  ~ScratchDir() { (void)std::system(absl::StrCat("rm -rf '", path_, "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- the file ----

TEST(SpawnPolicyParseTest, FullPolicyParses) {
  auto policy = Policy(R"({
    // Comments are allowed.
    "executables": {"allow": ["/usr/bin/", "/opt/jobs/run"], "deny": ["/usr/bin/sudo"]},
    "run_as": {"users": ["app", 1001], "groups": [1000], "default_user": "nobody",
               "default_group": "nogroup"},
    "limits": {"default": {"cpu_seconds": 60, "nice": 5}, "max": {"cpu_seconds": 3600,
               "open_files": 4096}, "min_nice": 0},
    "environment": {"allow": ["PATH", "LC_*"]},
    /* block comments too */
    "cwd": {"allow": ["/srv/jobs", "/tmp"], "default": "/tmp/work"},
    "identities": {"max_live_processes": 16, "overrides": {"token:ci": 4}}
  })");
  ASSERT_NE(policy, nullptr);
  const SpawnPolicyRules& r = policy->rules();
  ASSERT_TRUE(r.executables.has_value());
  EXPECT_EQ(r.executables->allow.size(), 2u);
  EXPECT_TRUE(r.executables->allow[0].prefix);
  EXPECT_FALSE(r.executables->allow[1].prefix);
  EXPECT_EQ(r.run_as->users, (std::set<uint32_t>{1000, 1001}));
  EXPECT_EQ(r.run_as->default_user, 65534u);
  EXPECT_EQ(r.run_as->default_group, 65534u);
  EXPECT_EQ(r.limits->defaults.values.at("cpu_seconds"), 60);
  EXPECT_EQ(r.limits->defaults.nice, 5);
  EXPECT_EQ(r.limits->max.values.at("open_files"), 4096);
  EXPECT_EQ(r.environment->exact, std::vector<std::string>{"PATH"});
  EXPECT_EQ(r.environment->prefixes, std::vector<std::string>{"LC_"});
  EXPECT_EQ(r.cwd->default_cwd, "/tmp/work");
  EXPECT_EQ(r.identities->max_live_processes, 16);
  EXPECT_EQ(r.identities->overrides.at("token:ci"), 4);
  EXPECT_THAT(policy->Summary(), HasSubstr("executables=allow:2,deny:1"));
  EXPECT_THAT(policy->Summary(), HasSubstr("identities=max_live_processes:16,overrides:1"));
}

TEST(SpawnPolicyParseTest, EmptyObjectRestrictsNothing) {
  auto policy = Policy("{}");
  ASSERT_NE(policy, nullptr);
  ProcessSpec spec = Cmd({"/bin/sh", "-c", "true"});
  spec.command.env.set["ANY"] = "1";
  EXPECT_TRUE(policy->ApplyToSpec(spec, std::nullopt).ok());
  EXPECT_EQ(spec.command.executable, "");
  EXPECT_EQ(policy->Summary(), "empty");
}

TEST(SpawnPolicyParseTest, BadJsonNamesLineAndColumn) {
  EXPECT_THAT(ParseError("{\n  \"executables\": {\n    \"allow\": [\"/bin/\",]\n  }\n}"),
              HasSubstr("spawn policy 'test.json': line 3, column 23: not valid JSON"));
  EXPECT_THAT(ParseError(""), HasSubstr("line 1, column 1: not valid JSON"));
}

TEST(SpawnPolicyParseTest, TopLevelMustBeAnObject) {
  EXPECT_EQ(ParseError("[]"),
            "spawn policy 'test.json': the file must hold a JSON object, not an array");
}

TEST(SpawnPolicyParseTest, UnknownSectionsAndKeysAreErrors) {
  EXPECT_THAT(ParseError(R"({"executable": {}})"),
              HasSubstr("spawn policy 'test.json': executable: unknown section"));
  EXPECT_THAT(ParseError(R"({"executables": {"alow": []}})"),
              HasSubstr("executables.alow: unknown key (known: allow, deny)"));
  EXPECT_THAT(ParseError(R"({"limits": {"max": {"cpu": 1}}})"),
              HasSubstr("limits.max.cpu: unknown limit"));
  EXPECT_THAT(ParseError(R"({"limits": {"max": {"nice": 1}}})"),
              HasSubstr("limits.max.nice: unknown limit"));
}

TEST(SpawnPolicyParseTest, ExecutablePathsMustBeAbsoluteAndNormalized) {
  EXPECT_THAT(ParseError(R"({"executables": {"allow": "/bin/"}})"),
              HasSubstr("executables.allow: must be an array of paths, not a string"));
  EXPECT_THAT(ParseError(R"({"executables": {"allow": ["bin/"]}})"),
              HasSubstr("executables.allow[0]: 'bin/' is not an absolute path"));
  EXPECT_THAT(ParseError(R"({"executables": {"deny": ["/usr/bin/../sbin/x"]}})"),
              HasSubstr("executables.deny[0]: '/usr/bin/../sbin/x' is not normalized (write "
                        "'/usr/sbin/x')"));
  EXPECT_THAT(ParseError(R"({"executables": {"deny": [7]}})"),
              HasSubstr("executables.deny[0]: must be a string, not an integer"));
}

TEST(SpawnPolicyParseTest, UsersAndGroupsByNameOrId) {
  EXPECT_THAT(ParseError(R"({"run_as": {"users": ["nosuchuser"]}})"),
              HasSubstr("run_as.users[0]: 'nosuchuser' is not a known user"));
  EXPECT_THAT(ParseError(R"({"run_as": {"default_group": "nosuchgroup"}})"),
              HasSubstr("run_as.default_group: 'nosuchgroup' is not a known group"));
  EXPECT_THAT(ParseError(R"({"run_as": {"users": [-1]}})"),
              HasSubstr("run_as.users[0]: -1 is out of range 0..4294967294 (a user name or id)"));
  EXPECT_THAT(ParseError(R"({"run_as": {"groups": [4294967295]}})"),
              HasSubstr("run_as.groups[0]: 4294967295 is out of range"));
  EXPECT_THAT(ParseError(R"({"run_as": {"users": [1.5]}})"),
              HasSubstr("run_as.users[0]: must be an integer, not 1.5"));
  EXPECT_THAT(ParseError(R"({"run_as": {"users": {}}})"),
              HasSubstr("run_as.users: must be an array of names or ids, not an object"));
}

TEST(SpawnPolicyParseTest, SystemNamesResolveRoot) {
  auto policy =
      SpawnPolicy::Parse(R"({"run_as": {"users": ["root"], "groups": ["root"]}})", "system.json");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE((*policy)->rules().run_as->users.contains(0));
  EXPECT_TRUE((*policy)->rules().run_as->groups.contains(0));
}

TEST(SpawnPolicyParseTest, LimitRangesAndConsistency) {
  EXPECT_THAT(ParseError(R"({"limits": {"max": {"cpu_seconds": 0}}})"),
              HasSubstr("limits.max.cpu_seconds: 0 is out of range 1.."));
  EXPECT_THAT(ParseError(R"({"limits": {"max": {"address_space_bytes": 1024}}})"),
              HasSubstr("limits.max.address_space_bytes: 1024 is out of range 1048576.."));
  EXPECT_THAT(ParseError(R"({"limits": {"default": {"open_files": "many"}}})"),
              HasSubstr("limits.default.open_files: must be an integer, not 'many'"));
  EXPECT_THAT(ParseError(R"({"limits": {"default": {"open_files": 18446744073709551615}}})"),
              HasSubstr("limits.default.open_files: 18446744073709551615 is out of range"));
  EXPECT_THAT(
      ParseError(R"({"limits": {"default": {"cpu_seconds": 10}, "max": {"cpu_seconds": 5}}})"),
      HasSubstr("limits.default.cpu_seconds: 10 is over limits.max.cpu_seconds 5"));
  EXPECT_THAT(ParseError(R"({"limits": {"default": {"nice": -5}, "min_nice": 0}})"),
              HasSubstr("limits.default.nice: -5 is below limits.min_nice 0"));
  EXPECT_THAT(ParseError(R"({"limits": {"min_nice": 20}})"),
              HasSubstr("limits.min_nice: 20 is out of range -20..19"));
}

TEST(SpawnPolicyParseTest, EnvironmentNames) {
  EXPECT_THAT(ParseError(R"({"environment": {"allow": ["A=B"]}})"),
              HasSubstr("environment.allow[0]: 'A=B' is not a variable name"));
  EXPECT_THAT(ParseError(R"({"environment": {"allow": [""]}})"),
              HasSubstr("environment.allow[0]: '' is not a variable name"));
  EXPECT_THAT(ParseError(R"({"environment": {"allow": ["A*B*"]}})"),
              HasSubstr("environment.allow[0]: 'A*B*' is not a variable name"));
  auto everything = Policy(R"({"environment": {"allow": ["*"]}})");
  ASSERT_NE(everything, nullptr);
  EXPECT_TRUE(everything->InheritsVariable("ANYTHING"));
}

TEST(SpawnPolicyParseTest, CwdNeedsRootsAndADefaultUnderThem) {
  EXPECT_THAT(ParseError(R"({"cwd": {"default": "/tmp"}})"),
              HasSubstr("cwd.allow: required, with at least one directory"));
  EXPECT_THAT(ParseError(R"({"cwd": {"allow": []}})"), HasSubstr("cwd.allow: required"));
  EXPECT_THAT(ParseError(R"({"cwd": {"allow": ["/srv"], "default": "/srvx"}})"),
              HasSubstr("cwd.default: '/srvx' is not under a root of cwd.allow"));
  EXPECT_THAT(ParseError(R"({"cwd": {"allow": ["/srv/"]}})"),
              HasSubstr("cwd.allow[0]: '/srv/' is not normalized (write '/srv')"));
}

TEST(SpawnPolicyParseTest, IdentityLimits) {
  EXPECT_THAT(ParseError(R"({"identities": {"max_live_processes": -1}})"),
              HasSubstr("identities.max_live_processes: -1 is out of range 0..1048576"));
  EXPECT_THAT(ParseError(R"({"identities": {"overrides": {"token:ci": "x"}}})"),
              HasSubstr("identities.overrides['token:ci']: must be an integer, not 'x'"));
  EXPECT_THAT(ParseError(R"({"identities": {"overrides": []}})"),
              HasSubstr("identities.overrides: must be an object of identity: limit"));
  EXPECT_THAT(ParseError(R"({"identities": {"overrides": {"": 1}}})"),
              HasSubstr("an identity is 1..1024 bytes"));
}

TEST(SpawnPolicyParseTest, OversizedFileIsRefused) {
  std::string text = absl::StrCat("{}", std::string(kMaxSpawnPolicyBytes, ' '));
  EXPECT_THAT(ParseError(text), HasSubstr("bytes is more than the limit of 1048576"));
}

TEST(SpawnPolicyParseTest, LoadNamesTheFile) {
  auto missing = SpawnPolicy::Load("/nonexistent/policy.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("spawn policy '/nonexistent/policy.json': cannot read (No such file"));
  ScratchDir dir;
  const std::string path = dir.path() + "/p.json";
  std::ofstream(path) << R"({"executables": {"allow": ["/bin/"]}})";
  auto loaded = SpawnPolicy::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE((*loaded)->rules().executables->has_allow);
}

TEST(NormalizeAbsolutePathTest, Lexical) {
  EXPECT_EQ(NormalizeAbsolutePath("/a//b/./c/../d"), "/a/b/d");
  EXPECT_EQ(NormalizeAbsolutePath("/../../x"), "/x");
  EXPECT_EQ(NormalizeAbsolutePath("/"), "/");
  EXPECT_EQ(NormalizeAbsolutePath("/a/b/", true), "/a/b/");
  EXPECT_EQ(NormalizeAbsolutePath("/a/b/", false), "/a/b");
  EXPECT_EQ(NormalizeAbsolutePath("a/b"), std::nullopt);
  EXPECT_EQ(NormalizeAbsolutePath(""), std::nullopt);
  EXPECT_EQ(NormalizeAbsolutePath(std::string("/a\0b", 4)), std::nullopt);
}

// ---- executables ----

TEST(SpawnPolicyExecutablesTest, PrefixAllowsBelowItOnly) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/"]}})");
  ProcessSpec ok = Cmd({"/usr/bin/true"});
  EXPECT_TRUE(policy->ApplyToSpec(ok, std::nullopt).ok());
  EXPECT_EQ(ok.command.executable, "/usr/bin/true");
  EXPECT_EQ(ok.command.argv[0], "/usr/bin/true");

  ProcessSpec bad = Cmd({"/bin/sh"});
  ExpectDenied(policy->ApplyToSpec(bad, std::nullopt),
               "spec.command.argv[0] '/bin/sh' is not under an allowed executable prefix (policy "
               "rule executables.allow)");
}

TEST(SpawnPolicyExecutablesTest, DotDotCannotLeaveAPrefix) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/"]}})");
  ProcessSpec spec = Cmd({"/usr/bin/../sbin/nologin"});
  ExpectDenied(policy->ApplyToSpec(spec, std::nullopt),
               "spec.command.argv[0] '/usr/bin/../sbin/nologin' (resolved to '/usr/sbin/nologin') "
               "is not under an allowed executable prefix (policy rule executables.allow)");
}

TEST(SpawnPolicyExecutablesTest, ExactEntries) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/true"]}})");
  ProcessSpec ok = Cmd({"/usr/bin/true"});
  EXPECT_TRUE(policy->ApplyToSpec(ok, std::nullopt).ok());
  ProcessSpec bad = Cmd({"/usr/bin/false"});
  ExpectDenied(policy->ApplyToSpec(bad, std::nullopt),
               "spec.command.argv[0] '/usr/bin/false' is not an allowed executable (policy rule "
               "executables.allow)");
  auto both = Policy(R"({"executables": {"allow": ["/usr/bin/true", "/opt/"]}})");
  ProcessSpec neither = Cmd({"/usr/bin/false"});
  EXPECT_THAT(both->ApplyToSpec(neither, std::nullopt).message(),
              HasSubstr("is neither an allowed executable nor under an allowed executable prefix"));
}

TEST(SpawnPolicyExecutablesTest, EmptyAllowListAllowsNothing) {
  auto policy = Policy(R"({"executables": {"allow": []}})");
  ProcessSpec spec = Cmd({"/usr/bin/true"});
  EXPECT_EQ(policy->ApplyToSpec(spec, std::nullopt).code(), absl::StatusCode::kPermissionDenied);
}

TEST(SpawnPolicyExecutablesTest, DenyWinsOverAllow) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/"], "deny": ["/usr/bin/env"]}})");
  ProcessSpec spec = Cmd({"/usr/bin/env"});
  ExpectDenied(policy->ApplyToSpec(spec, std::nullopt),
               "spec.command.argv[0] '/usr/bin/env' is denied (policy rule executables.deny "
               "'/usr/bin/env')");
  auto prefix = Policy(R"({"executables": {"allow": ["/usr/"], "deny": ["/usr/sbin/"]}})");
  ProcessSpec sbin = Cmd({"/usr/sbin/nologin"});
  EXPECT_THAT(prefix->ApplyToSpec(sbin, std::nullopt).message(),
              HasSubstr("is denied (policy rule executables.deny '/usr/sbin/')"));
}

TEST(SpawnPolicyExecutablesTest, DenyFollowsSymlinks) {
  ScratchDir dir;
  const std::string link = dir.path() + "/innocent";
  ASSERT_EQ(::symlink("/usr/bin/env", link.c_str()), 0);
  auto policy = Policy(absl::StrCat(R"({"executables": {"allow": [")", dir.path(),
                                    R"(/"], "deny": ["/usr/bin/env"]}})"));
  ProcessSpec spec = Cmd({link});
  auto status = policy->ApplyToSpec(spec, std::nullopt);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("really '/usr/bin/env', is denied"));

  // And a deny entry that is itself a symlink denies its target under any name.
  const std::string deny_link = dir.path() + "/denied";
  ASSERT_EQ(::symlink("/usr/bin/true", deny_link.c_str()), 0);
  auto by_link = Policy(absl::StrCat(R"({"executables": {"deny": [")", deny_link, R"("]}})"));
  ProcessSpec target = Cmd({"/usr/bin/true"});
  EXPECT_EQ(by_link->ApplyToSpec(target, std::nullopt).code(), absl::StatusCode::kPermissionDenied);
}

TEST(SpawnPolicyExecutablesTest, BareNamesResolveThroughThePathTheProcessGets) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/"]}})");
  ProcessSpec inherited = Cmd({"true"});
  ASSERT_TRUE(policy->ApplyToSpec(inherited, "/usr/bin:/bin").ok());
  EXPECT_EQ(inherited.command.executable, "/usr/bin/true");
  EXPECT_EQ(inherited.command.argv[0], "true");

  // The client's PATH wins over the inherited one: the check follows it.
  ProcessSpec own = Cmd({"true"});
  own.command.env.set["PATH"] = "/bin";
  ExpectDenied(policy->ApplyToSpec(own, "/usr/bin"),
               "spec.command.argv[0] 'true' (resolved to '/bin/true') is not under an allowed "
               "executable prefix (policy rule executables.allow)");

  ProcessSpec missing = Cmd({"no-such-program-xyz"});
  auto status = policy->ApplyToSpec(missing, "/usr/bin");
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("not found in PATH /usr/bin"));
}

TEST(SpawnPolicyExecutablesTest, RelativePathsAreRefused) {
  auto policy = Policy(R"({"executables": {"allow": ["/"]}})");
  ProcessSpec spec = Cmd({"./run.sh"});
  ExpectDenied(policy->ApplyToSpec(spec, std::nullopt),
               "spec.command.argv[0] './run.sh' is a relative path; the spawn policy needs an "
               "absolute path or a name looked up in PATH (policy rule executables)");
}

TEST(SpawnPolicyExecutablesTest, ExecutableFieldIsWhatIsChecked) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/true"]}})");
  ProcessSpec spec = Cmd({"/usr/bin/true"});
  spec.command.executable = "/bin/sh";
  ExpectDenied(policy->ApplyToSpec(spec, std::nullopt),
               "spec.command.executable '/bin/sh' is not an allowed executable (policy rule "
               "executables.allow)");
}

// ---- run_as ----

TEST(SpawnPolicyRunAsTest, DefaultsFillUnsetIds) {
  auto policy = Policy(R"({"run_as": {"default_user": "nobody", "default_group": "nogroup"}})");
  ProcessSpec spec = Cmd({"/bin/true"});
  ASSERT_TRUE(policy->ApplyToSpec(spec, std::nullopt).ok());
  EXPECT_EQ(spec.run_as.uid, 65534u);
  EXPECT_EQ(spec.run_as.gid, 65534u);
}

TEST(SpawnPolicyRunAsTest, OnlyAllowedUsersAndGroups) {
  auto policy = Policy(R"({"run_as": {"users": ["app"], "groups": ["app"],
                                      "default_user": "nobody"}})");
  ProcessSpec root = Cmd({"/bin/true"});
  root.run_as.uid = 0;
  ExpectDenied(policy->ApplyToSpec(root, std::nullopt),
               "spec.run_as.uid 0 is not an allowed user (policy rule run_as.users; allowed: "
               "1000, 65534)");

  // A uid without gid runs with gid = uid, which must be allowed too.
  ProcessSpec app = Cmd({"/bin/true"});
  app.run_as.uid = 1000;
  EXPECT_TRUE(policy->ApplyToSpec(app, std::nullopt).ok());
  EXPECT_EQ(app.run_as.gid, 1000u);

  ProcessSpec nobody = Cmd({"/bin/true"});  // default user, gid = 65534: not an allowed group.
  ExpectDenied(policy->ApplyToSpec(nobody, std::nullopt),
               "spec.run_as.gid 65534 is not an allowed group (policy rule run_as.groups; "
               "allowed: 1000)");

  ProcessSpec extra = Cmd({"/bin/true"});
  extra.run_as.uid = 1000;
  extra.run_as.supplementary_gids = {1000, 0};
  ExpectDenied(policy->ApplyToSpec(extra, std::nullopt),
               "spec.run_as.supplementary_gids[1] 0 is not an allowed group (policy rule "
               "run_as.groups; allowed: 1000)");
}

TEST(SpawnPolicyRunAsTest, EmptySectionForbidsNamingAUser) {
  auto policy = Policy(R"({"run_as": {}})");
  ProcessSpec none = Cmd({"/bin/true"});
  EXPECT_TRUE(policy->ApplyToSpec(none, std::nullopt).ok());
  EXPECT_FALSE(none.run_as.IsSet());
  ProcessSpec named = Cmd({"/bin/true"});
  named.run_as.uid = 1000;
  EXPECT_THAT(policy->ApplyToSpec(named, std::nullopt).message(), HasSubstr("allowed: none"));
}

// ---- limits ----

TEST(SpawnPolicyLimitsTest, DefaultsFillAndMaximaCap) {
  auto policy = Policy(R"({"limits": {"default": {"cpu_seconds": 60, "open_files": 256},
                                      "max": {"cpu_seconds": 3600, "core_bytes": 0}}})");
  ProcessSpec spec = Cmd({"/bin/true"});
  ASSERT_TRUE(policy->ApplyToSpec(spec, std::nullopt).ok());
  EXPECT_EQ(spec.limits.cpu_seconds, 60);
  EXPECT_EQ(spec.limits.open_files, 256);
  EXPECT_EQ(spec.limits.core_bytes, 0);  // unset, capped: set to the max
  EXPECT_FALSE(spec.limits.address_space_bytes.has_value());

  ProcessSpec own = Cmd({"/bin/true"});
  own.limits.cpu_seconds = 3600;
  ASSERT_TRUE(policy->ApplyToSpec(own, std::nullopt).ok());
  EXPECT_EQ(own.limits.cpu_seconds, 3600);

  ProcessSpec over = Cmd({"/bin/true"});
  over.limits.cpu_seconds = 7200;
  ExpectDenied(policy->ApplyToSpec(over, std::nullopt),
               "spec.limits.cpu_seconds 7200 is over the maximum 3600 (policy rule "
               "limits.max.cpu_seconds)");
}

TEST(SpawnPolicyLimitsTest, MinimumNice) {
  auto policy = Policy(R"({"limits": {"min_nice": 5}})");
  ProcessSpec unset = Cmd({"/bin/true"});
  ASSERT_TRUE(policy->ApplyToSpec(unset, std::nullopt).ok());
  EXPECT_EQ(unset.limits.nice, 5);
  ProcessSpec greedy = Cmd({"/bin/true"});
  greedy.limits.nice = -10;
  ExpectDenied(policy->ApplyToSpec(greedy, std::nullopt),
               "spec.limits.nice -10 is below the minimum 5 (policy rule limits.min_nice)");
  auto with_default = Policy(R"({"limits": {"default": {"nice": 10}}})");
  ProcessSpec spec = Cmd({"/bin/true"});
  ASSERT_TRUE(with_default->ApplyToSpec(spec, std::nullopt).ok());
  EXPECT_EQ(spec.limits.nice, 10);
}

// ---- environment ----

TEST(SpawnPolicyEnvironmentTest, VariablesOutsideTheListAreRefused) {
  auto policy = Policy(R"({"environment": {"allow": ["PATH", "JOB_*"]}})");
  ProcessSpec ok = Cmd({"/bin/true"});
  ok.command.env.set = {{"PATH", "/bin"}, {"JOB_ID", "7"}};
  ok.command.env.unset = {"LD_PRELOAD"};  // unsetting is always fine
  EXPECT_TRUE(policy->ApplyToSpec(ok, std::nullopt).ok());

  ProcessSpec bad = Cmd({"/bin/true"});
  bad.command.env.set = {{"JOB_ID", "7"}, {"LD_PRELOAD", "/tmp/x.so"}};
  ExpectDenied(policy->ApplyToSpec(bad, std::nullopt),
               "spec.command.env.set['LD_PRELOAD'] is not an allowed variable (policy rule "
               "environment.allow)");
}

TEST(SpawnPolicyEnvironmentTest, InheritedVariablesAreScrubbed) {
  auto policy = Policy(R"({"environment": {"allow": ["PATH", "LC_*"]}})");
  EXPECT_TRUE(policy->InheritsVariable("PATH"));
  EXPECT_TRUE(policy->InheritsVariable("LC_ALL"));
  EXPECT_FALSE(policy->InheritsVariable("AWS_SECRET_ACCESS_KEY"));
  EXPECT_FALSE(policy->InheritsVariable("PATHX"));
  auto none = Policy("{}");
  EXPECT_TRUE(none->InheritsVariable("AWS_SECRET_ACCESS_KEY"));
}

TEST(SpawnPolicyEnvironmentTest, ScrubbedPathIsNotUsedToResolve) {
  auto policy = Policy(R"({"environment": {"allow": ["HOME"]},
                           "executables": {"allow": ["/usr/local/bin/", "/usr/bin/"]}})");
  // PATH is not inherited, so exec's default PATH applies, not the inherited /tmp.
  ProcessSpec spec = Cmd({"true"});
  ASSERT_TRUE(policy->ApplyToSpec(spec, "/tmp").ok());
  EXPECT_EQ(spec.command.executable, "/usr/bin/true");
}

// ---- cwd ----

TEST(SpawnPolicyCwdTest, RootsAndDefault) {
  auto policy = Policy(R"({"cwd": {"allow": ["/tmp", "/srv/jobs"], "default": "/srv/jobs"}})");
  ProcessSpec unset = Cmd({"/bin/true"});
  ASSERT_TRUE(policy->ApplyToSpec(unset, std::nullopt).ok());
  EXPECT_EQ(unset.command.cwd, "/srv/jobs");

  ProcessSpec below = Cmd({"/bin/true"});
  below.command.cwd = "/srv/jobs/a/./b/";
  ASSERT_TRUE(policy->ApplyToSpec(below, std::nullopt).ok());
  EXPECT_EQ(below.command.cwd, "/srv/jobs/a/b");

  ProcessSpec outside = Cmd({"/bin/true"});
  outside.command.cwd = "/etc";
  ExpectDenied(policy->ApplyToSpec(outside, std::nullopt),
               "spec.command.cwd '/etc' is not under an allowed working directory root (policy "
               "rule cwd.allow)");

  ProcessSpec sibling = Cmd({"/bin/true"});
  sibling.command.cwd = "/srv/jobsX";
  EXPECT_EQ(policy->ApplyToSpec(sibling, std::nullopt).code(), absl::StatusCode::kPermissionDenied);

  ProcessSpec escape = Cmd({"/bin/true"});
  escape.command.cwd = "/tmp/../etc";
  EXPECT_EQ(policy->ApplyToSpec(escape, std::nullopt).code(), absl::StatusCode::kPermissionDenied);
}

TEST(SpawnPolicyCwdTest, SymlinkOutOfTheRootsIsRefused) {
  ScratchDir dir;
  const std::string link = dir.path() + "/etc-link";
  ASSERT_EQ(::symlink("/etc", link.c_str()), 0);
  ASSERT_EQ(::mkdir((dir.path() + "/inside").c_str(), 0700), 0);
  auto policy = Policy(absl::StrCat(R"({"cwd": {"allow": [")", dir.path(), R"("]}})"));
  ProcessSpec spec = Cmd({"/bin/true"});
  spec.command.cwd = link;
  auto status = policy->ApplyToSpec(spec, std::nullopt);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("is really '/etc', which is not under an allowed "
                                          "working directory root"));
  ProcessSpec inside = Cmd({"/bin/true"});
  inside.command.cwd = dir.path() + "/inside";
  EXPECT_TRUE(policy->ApplyToSpec(inside, std::nullopt).ok());
}

// ---- identities ----

TEST(SpawnPolicyIdentitiesTest, LiveProcessLimitPerIdentity) {
  auto policy = Policy(R"({"identities": {"max_live_processes": 2,
                                          "overrides": {"token:ci": 1, "token:off": 0}}})");
  EXPECT_TRUE(policy->AcquireProcesses("token:a", 1, "a process").ok());
  EXPECT_TRUE(policy->AcquireProcesses("token:a", 1, "a process").ok());
  absl::Status third = policy->AcquireProcesses("token:a", 1, "a process");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(third), "SPAWN_POLICY");
  EXPECT_EQ(third.message(),
            "identity 'token:a' has 2 live processes; a process would exceed its limit of 2 "
            "(policy rule identities.max_live_processes)");
  // Another identity has its own count.
  EXPECT_TRUE(policy->AcquireProcesses("token:b", 2, "pool 'p' of size 2").ok());
  policy->ReleaseProcesses("token:a", 1);
  EXPECT_EQ(policy->LiveProcesses("token:a"), 1);
  EXPECT_TRUE(policy->AcquireProcesses("token:a", 1, "a process").ok());

  EXPECT_TRUE(policy->AcquireProcesses("token:ci", 1, "a process").ok());
  EXPECT_THAT(policy->AcquireProcesses("token:ci", 1, "a process").message(),
              HasSubstr("limit of 1 (policy rule identities.overrides['token:ci'])"));
  EXPECT_THAT(policy->AcquireProcesses("token:off", 1, "a process").message(),
              HasSubstr("has 0 live processes"));
  EXPECT_EQ(policy->LiveProcesses("token:off"), 0);
  // The server's own spawns carry no identity and are not counted.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(policy->AcquireProcesses("", 1, "a process").ok());
  EXPECT_EQ(policy->GetStats().rejections, 3);
}

TEST(SpawnPolicyIdentitiesTest, NoLimitWithoutTheSection) {
  auto policy = Policy(R"({"identities": {"overrides": {"token:ci": 1}}})");
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(policy->AcquireProcesses("token:x", 1, "p").ok());
  EXPECT_TRUE(policy->AcquireProcesses("token:ci", 1, "p").ok());
  EXPECT_FALSE(policy->AcquireProcesses("token:ci", 1, "p").ok());
}

// ---- the whole spec ----

TEST(SpawnPolicyTest, ApplyIsIdempotentAndCountsRejections) {
  ScratchDir dir;
  auto policy = Policy(absl::StrCat(R"({
    "executables": {"allow": ["/usr/bin/"]},
    "limits": {"default": {"cpu_seconds": 5}, "max": {"open_files": 64}},
    "environment": {"allow": ["PATH"]},
    "cwd": {"allow": [")",
                                    dir.path(), R"("]},
    "run_as": {"users": [1000], "groups": [1000]}
  })"));
  ProcessSpec spec = Cmd({"env", "-i"});
  spec.run_as.uid = 1000;
  ASSERT_TRUE(policy->ApplyToSpec(spec, "/usr/bin").ok());
  ProcessSpec again = spec;
  ASSERT_TRUE(policy->ApplyToSpec(again, "/usr/bin").ok());
  EXPECT_EQ(again.command.executable, spec.command.executable);
  EXPECT_EQ(again.command.cwd, dir.path());
  EXPECT_EQ(again.limits.cpu_seconds, 5);
  EXPECT_EQ(again.limits.open_files, 64);
  EXPECT_EQ(again.run_as.gid, 1000u);
  EXPECT_EQ(policy->GetStats().rejections, 0);

  ProcessSpec bad = Cmd({"/bin/sh"});
  EXPECT_FALSE(policy->ApplyToSpec(bad, std::nullopt).ok());
  EXPECT_EQ(policy->GetStats().rejections, 1);
}

TEST(SpawnPolicyTest, PoolFieldNamesAppearInMessages) {
  auto policy = Policy(R"({"executables": {"allow": ["/usr/bin/"]}, "limits": {"max":
                           {"processes": 10}}, "run_as": {"users": [1]}})");
  ProcessCommand command;
  command.argv = {"/bin/sh"};
  EXPECT_THAT(policy->ApplyToCommand("spec.worker.command", command, std::nullopt).message(),
              HasSubstr("spec.worker.command.argv[0] '/bin/sh' is not under"));
  ProcessLimits limits;
  limits.processes = 11;
  EXPECT_THAT(policy->ApplyToLimits("spec.limits", limits).message(),
              HasSubstr("spec.limits.processes 11 is over the maximum 10"));
  ProcessUser user;
  user.uid = 0;
  EXPECT_THAT(policy->ApplyToRunAs("spec.run_as", user).message(),
              HasSubstr("spec.run_as.uid 0 is not an allowed user"));
  ProcessCommand empty;
  EXPECT_EQ(policy->ApplyToCommand("spec.worker.command", empty, std::nullopt).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace spindle::process
