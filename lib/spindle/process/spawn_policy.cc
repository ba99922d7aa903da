#include "spindle/process/spawn_policy.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

namespace spindle::process {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxPath = 4096;
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

// ---- paths ----

// `path` with symlinks resolved, or "" when it does not exist (or cannot be resolved).
std::string RealPath(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) return "";
  std::string out(real);
  std::free(real);
  return out;
}

// Whether `path` is `root` or below it. Both normalized; `root` without a trailing '/' unless "/".
bool UnderRoot(absl::string_view path, absl::string_view root) {
  if (root == "/") return absl::StartsWith(path, "/");
  return path == root ||
         (absl::StartsWith(path, root) && path.size() > root.size() && path[root.size()] == '/');
}

bool PathRuleMatches(const SpawnPolicyRules::PathRule& rule, absl::string_view path,
                     bool use_real) {
  const std::string& target = use_real ? rule.real : rule.path;
  if (target.empty() || path.empty()) return false;
  if (!rule.prefix) return path == target;
  // `target` of a prefix ends in '/' as written; its real form does not.
  absl::string_view dir = target;
  if (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  return UnderRoot(path, dir) && path != dir;
}

// Like exec: every PATH entry in turn, the first executable regular file wins. The absolute path,
// or nullopt when none is found. Relative PATH entries resolve against spindled's cwd (the
// caller refuses a result that is not absolute).
std::optional<std::string> LookUpInPath(const std::string& file, absl::string_view path_var) {
  for (absl::string_view dir : absl::StrSplit(path_var, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    struct stat st;
    if (::access(candidate.c_str(), X_OK) == 0 && ::stat(candidate.c_str(), &st) == 0 &&
        !S_ISDIR(st.st_mode)) {
      return candidate;
    }
  }
  return std::nullopt;
}

// ---- parsing ----

// Why a value in the file is wrong; carries the rule's dotted path.
struct ParseError {
  std::string rule;
  std::string what;
};

const char* TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number with a fraction";
    default:
      return "something else";
  }
}

// Quotes a scalar for a message; containers only by type (no deep dumps).
std::string Quote(const Json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.size() > 200) s = s.substr(0, 200) + "...";
    return absl::StrCat("'", s, "'");
  }
  if (v.is_primitive()) return v.dump(-1, ' ', false, Json::error_handler_t::replace);
  return TypeName(v);
}

class Parser {
 public:
  explicit Parser(const SpawnPolicy::NameLookup& names) : names_(names) {}

  std::optional<ParseError> Parse(const Json& doc, SpawnPolicyRules& rules) {
    if (!doc.is_object()) {
      return Fail("", absl::StrCat("the file must hold a JSON object, not ", TypeName(doc)));
    }
    for (const auto& [key, value] : doc.items()) {
      std::optional<ParseError> e;
      if (key == "executables") {
        e = ParseExecutables(value, rules.executables.emplace());
      } else if (key == "run_as") {
        e = ParseRunAs(value, rules.run_as.emplace());
      } else if (key == "limits") {
        e = ParseLimits(value, rules.limits.emplace());
      } else if (key == "environment") {
        e = ParseEnvironment(value, rules.environment.emplace());
      } else if (key == "cwd") {
        e = ParseCwd(value, rules.cwd.emplace());
      } else if (key == "identities") {
        e = ParseIdentities(value, rules.identities.emplace());
      } else {
        e = Fail(key,
                 "unknown section (known: executables, run_as, limits, environment, cwd, "
                 "identities)");
      }
      if (e.has_value()) return e;
    }
    return std::nullopt;
  }

 private:
  static ParseError Fail(std::string rule, std::string what) {
    return ParseError{std::move(rule), std::move(what)};
  }

  // Calls `each(key, value)` for the keys of an object, refusing keys not in `known`.
  template <typename F>
  static std::optional<ParseError> Object(const std::string& rule, const Json& v,
                                          std::initializer_list<absl::string_view> known, F each) {
    if (!v.is_object()) return Fail(rule, absl::StrCat("must be an object, not ", TypeName(v)));
    for (const auto& [key, value] : v.items()) {
      bool ok = false;
      for (absl::string_view k : known) ok = ok || k == key;
      if (!ok) {
        return Fail(absl::StrCat(rule, ".", key),
                    absl::StrCat("unknown key (known: ", absl::StrJoin(known, ", "), ")"));
      }
      if (auto e = each(key, value); e.has_value()) return e;
    }
    return std::nullopt;
  }

  static std::optional<ParseError> Strings(const std::string& rule, const Json& v,
                                           std::vector<std::string>& out) {
    if (!v.is_array()) {
      return Fail(rule, absl::StrCat("must be an array of strings, not ", TypeName(v)));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) {
        return Fail(absl::StrCat(rule, "[", i, "]"),
                    absl::StrCat("must be a string, not ", TypeName(v[i])));
      }
      out.push_back(v[i].get<std::string>());
    }
    return std::nullopt;
  }

  static std::optional<ParseError> Integer(const std::string& rule, const Json& v, int64_t lo,
                                           int64_t hi, int64_t& out) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) {
        return Fail(rule, absl::StrCat(u, " is out of range ", lo, "..", hi));
      }
      out = static_cast<int64_t>(u);
      return std::nullopt;
    }
    if (!v.is_number_integer()) {
      return Fail(rule, absl::StrCat("must be an integer, not ", Quote(v)));
    }
    int64_t n = v.get<int64_t>();
    if (n < lo || n > hi) return Fail(rule, absl::StrCat(n, " is out of range ", lo, "..", hi));
    out = n;
    return std::nullopt;
  }

  static std::optional<ParseError> Path(const std::string& rule, const Json& v, bool allow_prefix,
                                        std::string& out) {
    if (!v.is_string()) return Fail(rule, absl::StrCat("must be a string, not ", TypeName(v)));
    const std::string s = v.get<std::string>();
    std::optional<std::string> normal = NormalizeAbsolutePath(s, allow_prefix);
    if (!normal.has_value()) {
      return Fail(rule, absl::StrCat(Quote(v), " is not an absolute path of at most ", kMaxPath,
                                     " bytes without NUL"));
    }
    if (*normal != s) {
      return Fail(rule, absl::StrCat(Quote(v), " is not normalized (write '", *normal, "')"));
    }
    out = *normal;
    return std::nullopt;
  }

  static std::optional<ParseError> PathRules(const std::string& rule, const Json& v, bool resolve,
                                             std::vector<SpawnPolicyRules::PathRule>& out) {
    if (!v.is_array()) {
      return Fail(rule, absl::StrCat("must be an array of paths, not ", TypeName(v)));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      SpawnPolicyRules::PathRule r;
      if (auto e = Path(absl::StrCat(rule, "[", i, "]"), v[i], true, r.path); e.has_value()) {
        return e;
      }
      r.prefix = r.path.back() == '/';
      if (resolve) r.real = RealPath(r.path);
      out.push_back(std::move(r));
    }
    return std::nullopt;
  }

  std::optional<ParseError> ParseExecutables(const Json& v, SpawnPolicyRules::Executables& out) {
    return Object("executables", v, {"allow", "deny"},
                  [&](const std::string& key, const Json& value) -> std::optional<ParseError> {
                    if (key == "allow") {
                      out.has_allow = true;
                      return PathRules("executables.allow", value, false, out.allow);
                    }
                    return PathRules("executables.deny", value, true, out.deny);
                  });
  }

  std::optional<ParseError> Id(const std::string& rule, const Json& v, bool user, uint32_t& out) {
    if (v.is_string()) {
      const std::string name = v.get<std::string>();
      const auto& lookup = user ? names_.user : names_.group;
      std::optional<uint32_t> id;
      if (!name.empty() && name.size() <= 256 && name.find('\0') == std::string::npos && lookup) {
        id = lookup(name);
      }
      if (!id.has_value()) {
        return Fail(rule, absl::StrCat(Quote(v), " is not a known ", user ? "user" : "group"));
      }
      out = *id;
      return std::nullopt;
    }
    int64_t n = 0;
    // (uid_t)-1 means "unchanged" to setresuid: never a real id.
    if (auto e = Integer(rule, v, 0, int64_t{UINT32_MAX} - 1, n); e.has_value()) {
      e->what = absl::StrCat(e->what, " (a ", user ? "user" : "group", " name or id)");
      return e;
    }
    out = static_cast<uint32_t>(n);
    return std::nullopt;
  }

  std::optional<ParseError> Ids(const std::string& rule, const Json& v, bool user,
                                std::set<uint32_t>& out) {
    if (!v.is_array()) {
      return Fail(rule, absl::StrCat("must be an array of names or ids, not ", TypeName(v)));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      uint32_t id = 0;
      if (auto e = Id(absl::StrCat(rule, "[", i, "]"), v[i], user, id); e.has_value()) return e;
      out.insert(id);
    }
    return std::nullopt;
  }

  std::optional<ParseError> ParseRunAs(const Json& v, SpawnPolicyRules::RunAs& out) {
    return Object("run_as", v, {"users", "groups", "default_user", "default_group"},
                  [&](const std::string& key, const Json& value) -> std::optional<ParseError> {
                    const std::string rule = absl::StrCat("run_as.", key);
                    if (key == "users") return Ids(rule, value, true, out.users);
                    if (key == "groups") return Ids(rule, value, false, out.groups);
                    uint32_t id = 0;
                    const bool user = key == "default_user";
                    if (auto e = Id(rule, value, user, id); e.has_value()) return e;
                    (user ? out.default_user : out.default_group) = id;
                    return std::nullopt;
                  });
  }

  static std::optional<ParseError> ParseLimitValues(const std::string& rule, const Json& v,
                                                    bool with_nice, PolicyLimits& out) {
    struct Range {
      const char* name;
      int64_t lo;
    };
    static constexpr Range kRanges[] = {{"cpu_seconds", 1}, {"address_space_bytes", 1 << 20},
                                        {"open_files", 3},  {"processes", 1},
                                        {"core_bytes", 0},  {"file_size_bytes", 0}};
    std::vector<absl::string_view> known;
    for (const Range& r : kRanges) known.push_back(r.name);
    if (with_nice) known.push_back("nice");
    if (!v.is_object()) return Fail(rule, absl::StrCat("must be an object, not ", TypeName(v)));
    for (const auto& [key, value] : v.items()) {
      const std::string field = absl::StrCat(rule, ".", key);
      if (with_nice && key == "nice") {
        int64_t n = 0;
        if (auto e = Integer(field, value, -20, 19, n); e.has_value()) return e;
        out.nice = static_cast<int32_t>(n);
        continue;
      }
      const Range* range = nullptr;
      for (const Range& r : kRanges) {
        if (key == r.name) range = &r;
      }
      if (range == nullptr) {
        return Fail(field, absl::StrCat("unknown limit (known: ", absl::StrJoin(known, ", "), ")"));
      }
      int64_t n = 0;
      if (auto e = Integer(field, value, range->lo, std::numeric_limits<int64_t>::max(), n);
          e.has_value()) {
        return e;
      }
      out.values[key] = n;
    }
    return std::nullopt;
  }

  std::optional<ParseError> ParseLimits(const Json& v, SpawnPolicyRules::Limits& out) {
    auto e = Object("limits", v, {"default", "max", "min_nice"},
                    [&](const std::string& key, const Json& value) -> std::optional<ParseError> {
                      if (key == "default") {
                        return ParseLimitValues("limits.default", value, true, out.defaults);
                      }
                      if (key == "max") {
                        return ParseLimitValues("limits.max", value, false, out.max);
                      }
                      int64_t n = 0;
                      if (auto e = Integer("limits.min_nice", value, -20, 19, n); e.has_value()) {
                        return e;
                      }
                      out.min_nice = static_cast<int32_t>(n);
                      return std::nullopt;
                    });
    if (e.has_value()) return e;
    for (const auto& [name, value] : out.defaults.values) {
      auto max = out.max.values.find(name);
      if (max != out.max.values.end() && value > max->second) {
        return Fail(absl::StrCat("limits.default.", name),
                    absl::StrCat(value, " is over limits.max.", name, " ", max->second));
      }
    }
    if (out.defaults.nice.has_value() && out.min_nice.has_value() &&
        *out.defaults.nice < *out.min_nice) {
      return Fail("limits.default.nice",
                  absl::StrCat(*out.defaults.nice, " is below limits.min_nice ", *out.min_nice));
    }
    return std::nullopt;
  }

  std::optional<ParseError> ParseEnvironment(const Json& v, SpawnPolicyRules::Environment& out) {
    return Object("environment", v, {"allow"},
                  [&](const std::string&, const Json& value) -> std::optional<ParseError> {
                    std::vector<std::string> names;
                    if (auto e = Strings("environment.allow", value, names); e.has_value()) {
                      return e;
                    }
                    for (size_t i = 0; i < names.size(); ++i) {
                      std::string name = names[i];
                      const bool prefix = !name.empty() && name.back() == '*';
                      if (prefix) name.pop_back();
                      if ((name.empty() && !prefix) || name.size() > 1024 ||
                          name.find_first_of(std::string("=*\0", 3)) != std::string::npos) {
                        return Fail(
                            absl::StrCat("environment.allow[", i, "]"),
                            absl::StrCat("'", names[i],
                                         "' is not a variable name (1..1024 bytes without '=' or "
                                         "NUL; a final '*' makes it a prefix)"));
                      }
                      (prefix ? out.prefixes : out.exact).push_back(std::move(name));
                    }
                    return std::nullopt;
                  });
  }

  std::optional<ParseError> ParseCwd(const Json& v, SpawnPolicyRules::Cwd& out) {
    bool has_allow = false;
    auto e = Object(
        "cwd", v, {"allow", "default"},
        [&](const std::string& key, const Json& value) -> std::optional<ParseError> {
          if (key == "default") return Path("cwd.default", value, false, out.default_cwd);
          has_allow = true;
          if (!value.is_array()) {
            return Fail("cwd.allow",
                        absl::StrCat("must be an array of directories, not ", TypeName(value)));
          }
          for (size_t i = 0; i < value.size(); ++i) {
            std::string root;
            if (auto e = Path(absl::StrCat("cwd.allow[", i, "]"), value[i], false, root);
                e.has_value()) {
              return e;
            }
            out.real_roots.push_back(RealPath(root));
            out.roots.push_back(std::move(root));
          }
          return std::nullopt;
        });
    if (e.has_value()) return e;
    if (!has_allow || out.roots.empty()) {
      return Fail("cwd.allow", "required, with at least one directory, when cwd is given");
    }
    if (out.default_cwd.empty()) {
      out.default_cwd = out.roots.front();
    } else {
      bool under = false;
      for (const std::string& root : out.roots) under = under || UnderRoot(out.default_cwd, root);
      if (!under) {
        return Fail("cwd.default",
                    absl::StrCat("'", out.default_cwd, "' is not under a root of cwd.allow"));
      }
    }
    return std::nullopt;
  }

  std::optional<ParseError> ParseIdentities(const Json& v, SpawnPolicyRules::Identities& out) {
    constexpr int64_t kMax = int64_t{1} << 20;
    return Object(
        "identities", v, {"max_live_processes", "overrides"},
        [&](const std::string& key, const Json& value) -> std::optional<ParseError> {
          if (key == "max_live_processes") {
            int64_t n = 0;
            if (auto e = Integer("identities.max_live_processes", value, 0, kMax, n);
                e.has_value()) {
              return e;
            }
            out.max_live_processes = n;
            return std::nullopt;
          }
          if (!value.is_object()) {
            return Fail(
                "identities.overrides",
                absl::StrCat("must be an object of identity: limit, not ", TypeName(value)));
          }
          for (const auto& [identity, limit] : value.items()) {
            const std::string rule = absl::StrCat("identities.overrides['", identity, "']");
            if (identity.empty() || identity.size() > 1024) {
              return Fail(rule, "an identity is 1..1024 bytes");
            }
            int64_t n = 0;
            if (auto e = Integer(rule, limit, 0, kMax, n); e.has_value()) return e;
            out.overrides[identity] = n;
          }
          return std::nullopt;
        });
  }

  const SpawnPolicy::NameLookup& names_;
};

// 1-based line and column of byte `offset` in `text`.
std::pair<size_t, size_t> LineColumn(absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

// "LC_ALL" for messages about a variable, trimmed.
std::string ShortQuote(absl::string_view s) {
  if (s.size() > 200) return absl::StrCat("'", s.substr(0, 200), "...'");
  return absl::StrCat("'", s, "'");
}

const char* const kLimitNames[] = {"cpu_seconds", "address_space_bytes", "open_files",
                                   "processes",   "core_bytes",          "file_size_bytes"};

std::optional<int64_t>* LimitField(ProcessLimits& l, absl::string_view name) {
  if (name == "cpu_seconds") return &l.cpu_seconds;
  if (name == "address_space_bytes") return &l.address_space_bytes;
  if (name == "open_files") return &l.open_files;
  if (name == "processes") return &l.processes;
  if (name == "core_bytes") return &l.core_bytes;
  if (name == "file_size_bytes") return &l.file_size_bytes;
  return nullptr;
}

std::string IdList(const std::set<uint32_t>& ids, const std::optional<uint32_t>& extra) {
  std::set<uint32_t> all = ids;
  if (extra.has_value()) all.insert(*extra);
  if (all.empty()) return "none";
  return absl::StrJoin(all, ", ");
}

}  // namespace

std::optional<std::string> NormalizeAbsolutePath(absl::string_view path, bool keep_trailing_slash) {
  if (path.empty() || path.front() != '/' || path.size() > kMaxPath ||
      path.find('\0') != absl::string_view::npos) {
    return std::nullopt;
  }
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out = absl::StrCat("/", absl::StrJoin(parts, "/"));
  if (keep_trailing_slash && path.back() == '/' && out.back() != '/') out.push_back('/');
  return out;
}

SpawnPolicy::NameLookup SpawnPolicy::SystemNames() {
  NameLookup names;
  names.user = [](const std::string& name) -> std::optional<uint32_t> {
    struct passwd pwd;
    struct passwd* result = nullptr;
    std::vector<char> buffer(16384);
    if (::getpwnam_r(name.c_str(), &pwd, buffer.data(), buffer.size(), &result) != 0 ||
        result == nullptr) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(pwd.pw_uid);
  };
  names.group = [](const std::string& name) -> std::optional<uint32_t> {
    struct group grp;
    struct group* result = nullptr;
    std::vector<char> buffer(65536);
    if (::getgrnam_r(name.c_str(), &grp, buffer.data(), buffer.size(), &result) != 0 ||
        result == nullptr) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(grp.gr_gid);
  };
  return names;
}

absl::StatusOr<std::unique_ptr<SpawnPolicy>> SpawnPolicy::Parse(absl::string_view text,
                                                                absl::string_view source,
                                                                const NameLookup& names) {
  auto invalid = [&](absl::string_view what) {
    return InvalidArgument(kInvalidSpawnPolicyReason,
                           absl::StrCat("spawn policy '", source, "': ", what));
  };
  if (text.size() > kMaxSpawnPolicyBytes) {
    return invalid(
        absl::StrCat(text.size(), " bytes is more than the limit of ", kMaxSpawnPolicyBytes));
  }
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/true,
                      /*ignore_comments=*/true);
  } catch (const Json::parse_error& e) {
    auto [line, column] = LineColumn(text, e.byte == 0 ? 0 : e.byte - 1);
    // nlohmann's message repeats the position; keep only what went wrong.
    std::string what = e.what();
    if (auto at = what.find("syntax error"); at != std::string::npos) what = what.substr(at);
    return invalid(
        absl::StrCat("line ", line, ", column ", column, ": not valid JSON (", what, ")"));
  } catch (const Json::exception& e) {
    return invalid(absl::StrCat("not valid JSON (", e.what(), ")"));
  }
  SpawnPolicyRules rules;
  Parser parser(names);
  std::optional<ParseError> error;
  try {
    error = parser.Parse(doc, rules);
  } catch (const Json::exception& e) {
    // The walker checks every type before it converts; this is a last line of defence.
    return invalid(absl::StrCat("unexpected value (", e.what(), ")"));
  }
  if (error.has_value()) {
    return invalid(error->rule.empty() ? error->what
                                       : absl::StrCat(error->rule, ": ", error->what));
  }
  return std::make_unique<SpawnPolicy>(std::move(rules));
}

absl::StatusOr<std::unique_ptr<SpawnPolicy>> SpawnPolicy::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument(
        kInvalidSpawnPolicyReason,
        absl::StrCat("spawn policy '", path, "': cannot read (", std::strerror(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::Status SpawnPolicy::Deny(absl::string_view message) const {
  rejections_.fetch_add(1, std::memory_order_relaxed);
  return PermissionDenied(kSpawnPolicyReason, message);
}

absl::Status SpawnPolicy::ApplyToSpec(ProcessSpec& spec,
                                      const std::optional<std::string>& inherited_path) const {
  SPINDLE_RETURN_IF_ERROR(ApplyToCommand("spec.command", spec.command, inherited_path));
  SPINDLE_RETURN_IF_ERROR(ApplyToLimits("spec.limits", spec.limits));
  return ApplyToRunAs("spec.run_as", spec.run_as);
}

absl::Status SpawnPolicy::ApplyToCommand(absl::string_view field, ProcessCommand& command,
                                         const std::optional<std::string>& inherited_path) const {
  if (command.argv.empty()) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat(field, ".argv: must not be empty"));
  }
  // The environment first: it decides the PATH a bare program name is looked up in.
  SPINDLE_RETURN_IF_ERROR(CheckEnvironment(field, command));
  SPINDLE_RETURN_IF_ERROR(CheckCwd(field, command));
  return CheckExecutable(field, command, inherited_path);
}

absl::Status SpawnPolicy::CheckExecutable(absl::string_view field, ProcessCommand& command,
                                          const std::optional<std::string>& inherited_path) const {
  if (!rules_.executables.has_value()) return absl::OkStatus();
  const SpawnPolicyRules::Executables& rule = *rules_.executables;
  const bool from_argv = command.executable.empty();
  const std::string program = from_argv ? command.argv[0] : command.executable;
  const std::string where =
      absl::StrCat(field, from_argv ? ".argv[0] " : ".executable ", ShortQuote(program));
  std::string path = program;
  if (program.find('/') == std::string::npos) {
    // A bare name: PATH as the process will see it (set by the client, else inherited unless the
    // environment is clean, unset or not allowed, else exec's default).
    std::string path_var = kDefaultPath;
    auto set = command.env.set.find("PATH");
    const bool unset = std::find(command.env.unset.begin(), command.env.unset.end(), "PATH") !=
                       command.env.unset.end();
    if (set != command.env.set.end()) {
      path_var = set->second;
    } else if (!command.env.clean && !unset && inherited_path.has_value() &&
               InheritsVariable("PATH")) {
      path_var = *inherited_path;
    }
    std::optional<std::string> found = LookUpInPath(program, path_var);
    if (!found.has_value()) {
      return FailedPrecondition(
          "EXEC_FAILED", absl::StrCat(where, ": cannot execute: not found in PATH ", path_var));
    }
    path = *found;
  } else if (program.front() != '/') {
    return Deny(absl::StrCat(where,
                             " is a relative path; the spawn policy needs an absolute path or a "
                             "name looked up in PATH (policy rule executables)"));
  }
  std::optional<std::string> normal = NormalizeAbsolutePath(path);
  if (!normal.has_value() || path.front() != '/') {
    return Deny(absl::StrCat(where, " resolves to ", ShortQuote(path),
                             ", which is not an absolute path (policy rule executables)"));
  }
  const std::string shown =
      *normal == program ? where : absl::StrCat(where, " (resolved to '", *normal, "')");
  const std::string real = RealPath(*normal);
  for (const auto& deny : rule.deny) {
    if (PathRuleMatches(deny, *normal, false) || PathRuleMatches(deny, real, false) ||
        PathRuleMatches(deny, *normal, true) || PathRuleMatches(deny, real, true)) {
      return Deny(absl::StrCat(
          shown, real.empty() || real == *normal ? "" : absl::StrCat(", really '", real, "',"),
          " is denied (policy rule executables.deny '", deny.path, "')"));
    }
  }
  if (rule.has_allow) {
    bool allowed = false;
    bool any_prefix = false, any_exact = false;
    for (const auto& allow : rule.allow) {
      allowed = allowed || PathRuleMatches(allow, *normal, false);
      (allow.prefix ? any_prefix : any_exact) = true;
    }
    if (!allowed) {
      const char* what = any_prefix && any_exact ? "is neither an allowed executable nor under "
                                                   "an allowed executable prefix"
                         : any_exact             ? "is not an allowed executable"
                                                 : "is not under an allowed executable prefix";
      return Deny(absl::StrCat(shown, " ", what, " (policy rule executables.allow)"));
    }
  }
  // What was checked is what will be exec'd.
  command.executable = *normal;
  return absl::OkStatus();
}

bool SpawnPolicy::VariableAllowed(absl::string_view name) const {
  const SpawnPolicyRules::Environment& env = *rules_.environment;
  for (const std::string& exact : env.exact) {
    if (name == exact) return true;
  }
  for (const std::string& prefix : env.prefixes) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

bool SpawnPolicy::InheritsVariable(absl::string_view name) const {
  return !rules_.environment.has_value() || VariableAllowed(name);
}

absl::Status SpawnPolicy::CheckEnvironment(absl::string_view field,
                                           const ProcessCommand& command) const {
  if (!rules_.environment.has_value()) return absl::OkStatus();
  for (const auto& [name, value] : command.env.set) {
    if (!VariableAllowed(name)) {
      return Deny(absl::StrCat(field, ".env.set[", ShortQuote(name),
                               "] is not an allowed variable (policy rule environment.allow)"));
    }
  }
  return absl::OkStatus();
}

absl::Status SpawnPolicy::CheckCwd(absl::string_view field, ProcessCommand& command) const {
  if (!rules_.cwd.has_value()) return absl::OkStatus();
  const SpawnPolicyRules::Cwd& rule = *rules_.cwd;
  if (command.cwd.empty()) {
    command.cwd = rule.default_cwd;
    return absl::OkStatus();
  }
  const std::string where = absl::StrCat(field, ".cwd ", ShortQuote(command.cwd));
  std::optional<std::string> normal = NormalizeAbsolutePath(command.cwd);
  if (!normal.has_value()) {
    return Deny(absl::StrCat(where, " is not an absolute path (policy rule cwd.allow)"));
  }
  bool under = false;
  for (const std::string& root : rule.roots) under = under || UnderRoot(*normal, root);
  if (!under) {
    return Deny(absl::StrCat(where,
                             " is not under an allowed working directory root (policy rule "
                             "cwd.allow)"));
  }
  // A symlink below a root must not lead out of every root.
  const std::string real = RealPath(*normal);
  if (!real.empty() && real != *normal) {
    bool real_under = false;
    for (size_t i = 0; i < rule.roots.size(); ++i) {
      real_under = real_under || UnderRoot(real, rule.roots[i]) ||
                   (!rule.real_roots[i].empty() && UnderRoot(real, rule.real_roots[i]));
    }
    if (!real_under) {
      return Deny(absl::StrCat(where, " is really '", real,
                               "', which is not under an allowed working directory root (policy "
                               "rule cwd.allow)"));
    }
  }
  command.cwd = *normal;
  return absl::OkStatus();
}

absl::Status SpawnPolicy::ApplyToLimits(absl::string_view field, ProcessLimits& limits) const {
  if (!rules_.limits.has_value()) return absl::OkStatus();
  const SpawnPolicyRules::Limits& rule = *rules_.limits;
  for (const char* name : kLimitNames) {
    std::optional<int64_t>* value = LimitField(limits, name);
    auto def = rule.defaults.values.find(name);
    if (!value->has_value() && def != rule.defaults.values.end()) *value = def->second;
    auto max = rule.max.values.find(name);
    if (max == rule.max.values.end()) continue;
    if (!value->has_value()) {
      *value = max->second;
    } else if (**value > max->second) {
      return Deny(absl::StrCat(field, ".", name, " ", **value, " is over the maximum ", max->second,
                               " (policy rule limits.max.", name, ")"));
    }
  }
  if (!limits.nice.has_value() && rule.defaults.nice.has_value()) limits.nice = rule.defaults.nice;
  if (rule.min_nice.has_value()) {
    if (!limits.nice.has_value()) {
      if (*rule.min_nice > 0) limits.nice = rule.min_nice;
    } else if (*limits.nice < *rule.min_nice) {
      return Deny(absl::StrCat(field, ".nice ", *limits.nice, " is below the minimum ",
                               *rule.min_nice, " (policy rule limits.min_nice)"));
    }
  }
  return absl::OkStatus();
}

absl::Status SpawnPolicy::ApplyToRunAs(absl::string_view field, ProcessUser& user) const {
  if (!rules_.run_as.has_value()) return absl::OkStatus();
  const SpawnPolicyRules::RunAs& rule = *rules_.run_as;
  if (!user.uid.has_value() && rule.default_user.has_value()) user.uid = rule.default_user;
  if (!user.gid.has_value()) {
    if (rule.default_group.has_value()) {
      user.gid = rule.default_group;
    } else if (user.uid.has_value()) {
      user.gid = user.uid;  // What the process table does; explicit, so it is checked.
    }
  }
  if (user.uid.has_value() && !rule.users.contains(*user.uid) && rule.default_user != user.uid) {
    return Deny(absl::StrCat(field, ".uid ", *user.uid,
                             " is not an allowed user (policy rule run_as.users; allowed: ",
                             IdList(rule.users, rule.default_user), ")"));
  }
  auto group_ok = [&](uint32_t gid) {
    return rule.groups.contains(gid) || rule.default_group == gid;
  };
  if (user.gid.has_value() && !group_ok(*user.gid)) {
    return Deny(absl::StrCat(field, ".gid ", *user.gid,
                             " is not an allowed group (policy rule run_as.groups; allowed: ",
                             IdList(rule.groups, rule.default_group), ")"));
  }
  for (size_t i = 0; i < user.supplementary_gids.size(); ++i) {
    if (!group_ok(user.supplementary_gids[i])) {
      return Deny(absl::StrCat(field, ".supplementary_gids[", i, "] ", user.supplementary_gids[i],
                               " is not an allowed group (policy rule run_as.groups; allowed: ",
                               IdList(rule.groups, rule.default_group), ")"));
    }
  }
  return absl::OkStatus();
}

int64_t SpawnPolicy::LimitFor(absl::string_view identity) const {
  const SpawnPolicyRules::Identities& rule = *rules_.identities;
  auto it = rule.overrides.find(std::string(identity));
  if (it != rule.overrides.end()) return it->second;
  return rule.max_live_processes.value_or(-1);
}

absl::Status SpawnPolicy::AcquireProcesses(absl::string_view identity, int64_t count,
                                           absl::string_view what) {
  if (identity.empty() || !rules_.identities.has_value() || count <= 0) return absl::OkStatus();
  const int64_t limit = LimitFor(identity);
  if (limit < 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  int64_t& live = live_[identity];
  if (live + count > limit) {
    const int64_t had = live;
    if (live == 0) live_.erase(std::string(identity));
    rejections_.fetch_add(1, std::memory_order_relaxed);
    const bool overridden = rules_.identities->overrides.contains(std::string(identity));
    return ResourceExhausted(
        kSpawnPolicyReason,
        absl::StrCat("identity ", ShortQuote(identity), " has ", had, " live processes; ", what,
                     " would exceed its limit of ", limit, " (policy rule ",
                     overridden ? absl::StrCat("identities.overrides['", identity, "']")
                                : std::string("identities.max_live_processes"),
                     ")"));
  }
  live += count;
  return absl::OkStatus();
}

void SpawnPolicy::ReleaseProcesses(absl::string_view identity, int64_t count) {
  if (identity.empty() || !rules_.identities.has_value() || count <= 0) return;
  if (LimitFor(identity) < 0) return;
  absl::MutexLock lock(&mu_);
  auto it = live_.find(identity);
  if (it == live_.end()) return;
  it->second -= count;
  if (it->second <= 0) live_.erase(it);
}

int64_t SpawnPolicy::LiveProcesses(absl::string_view identity) const {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(identity);
  return it == live_.end() ? 0 : it->second;
}

SpawnPolicy::Stats SpawnPolicy::GetStats() const {
  return Stats{rejections_.load(std::memory_order_relaxed)};
}

std::string SpawnPolicy::Summary() const {
  std::vector<std::string> parts;
  if (const auto& e = rules_.executables) {
    parts.push_back(
        absl::StrCat("executables=allow:", e->has_allow ? absl::StrCat(e->allow.size()) : "any",
                     ",deny:", e->deny.size()));
  }
  if (const auto& r = rules_.run_as) {
    parts.push_back(absl::StrCat(
        "run_as=users:", r->users.size(), ",groups:", r->groups.size(), ",default_user:",
        r->default_user.has_value() ? absl::StrCat(*r->default_user) : "none", ",default_group:",
        r->default_group.has_value() ? absl::StrCat(*r->default_group) : "none"));
  }
  if (const auto& l = rules_.limits) {
    parts.push_back(
        absl::StrCat("limits=default:", l->defaults.values.size(), ",max:", l->max.values.size()));
  }
  if (const auto& e = rules_.environment) {
    parts.push_back(absl::StrCat("environment=allow:", e->exact.size() + e->prefixes.size()));
  }
  if (const auto& c = rules_.cwd) {
    parts.push_back(absl::StrCat("cwd=roots:", c->roots.size(), ",default:", c->default_cwd));
  }
  if (const auto& i = rules_.identities) {
    parts.push_back(absl::StrCat(
        "identities=max_live_processes:",
        i->max_live_processes.has_value() ? absl::StrCat(*i->max_live_processes) : "none",
        ",overrides:", i->overrides.size()));
  }
  if (parts.empty()) return "empty";
  return absl::StrJoin(parts, " ");
}

}  // namespace spindle::process
