#include "services/auth/authorizer.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/auth/method_access.h"
#include "spindle/common/status.h"

namespace spindle::services::auth {
namespace {

constexpr absl::string_view kDenyReasons[] = {"TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED",
                                              "ROLE_DENIED"};

absl::Status Unauthenticated(absl::string_view reason, absl::string_view message) {
  return Error(absl::StatusCode::kUnauthenticated, reason, message);
}

}  // namespace

Authorizer::Authorizer(const AuthConfig& config, std::shared_ptr<prometheus::Registry> registry)
    : config_(config),
      registry_(std::move(registry)),
      denied_(prometheus::BuildCounter()
                  .Name("spindle_auth_denied_total")
                  .Help("Calls refused by authentication or authorization, by reason.")
                  .Register(*registry_)),
      tokens_gauge_(prometheus::BuildGauge()
                        .Name("spindle_auth_tokens")
                        .Help("Bearer tokens loaded from the tokens file.")
                        .Register(*registry_)
                        .Add({})),
      reloads_(prometheus::BuildCounter()
                   .Name("spindle_auth_token_reloads_total")
                   .Help("Re-reads of the tokens file after it changed, by result.")
                   .Register(*registry_)),
      reloads_ok_(reloads_.Add({{"result", "ok"}})),
      reloads_failed_(reloads_.Add({{"result", "error"}})) {
  for (absl::string_view reason : kDenyReasons) {
    denied_.Add({{"reason", std::string(reason)}});
  }
}

absl::StatusOr<std::shared_ptr<Authorizer>> Authorizer::Create(
    const AuthConfig& config, std::shared_ptr<prometheus::Registry> registry) {
  std::shared_ptr<Authorizer> authorizer(new Authorizer(config, std::move(registry)));
  auto loaded = authorizer->Load();
  if (!loaded.ok()) {
    return loaded.status();
  }
  if (loaded->first.entries().empty()) {
    return InvalidArgument("INVALID_TOKENS_FILE",
                           absl::StrCat("--auth-tokens '", config.tokens_file,
                                        "' holds no token: every call would be refused"));
  }
  absl::MutexLock lock(&authorizer->mu_);
  authorizer->tokens_gauge_.Set(static_cast<double>(loaded->first.entries().size()));
  authorizer->table_ = std::make_shared<const TokenTable>(std::move(loaded->first));
  authorizer->stamp_ = authorizer->last_seen_ = loaded->second;
  authorizer->next_check_ns_.store(absl::ToUnixNanos(absl::Now() + config.tokens_reload_interval));
  return authorizer;
}

absl::StatusOr<std::pair<TokenTable, Authorizer::FileStamp>> Authorizer::Load() const {
  const std::string& path = config_.tokens_file;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return InvalidArgument("INVALID_TOKENS_FILE",
                           absl::StrCat("--auth-tokens '", path, "': ", strerror(errno)));
  }
  FileStamp stamp{st.st_ino, st.st_size,
                  static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    return InvalidArgument("INVALID_TOKENS_FILE",
                           absl::StrCat("--auth-tokens '", path, "' cannot be read"));
  }
  SPINDLE_ASSIGN_OR_RETURN(TokenTable table, TokenTable::Parse(text.str(), path));
  return std::make_pair(std::move(table), stamp);
}

std::shared_ptr<const TokenTable> Authorizer::Current() {
  const absl::Time now = absl::Now();
  if (absl::ToUnixNanos(now) < next_check_ns_.load(std::memory_order_relaxed)) {
    absl::ReaderMutexLock lock(&mu_);  // the common case: no exclusive lock per call
    return table_;
  }
  absl::MutexLock lock(&mu_);
  if (absl::ToUnixNanos(now) < next_check_ns_.load(std::memory_order_relaxed)) {
    return table_;  // another call did the check meanwhile
  }
  next_check_ns_.store(absl::ToUnixNanos(now + config_.tokens_reload_interval),
                       std::memory_order_relaxed);
  struct stat st;
  if (stat(config_.tokens_file.c_str(), &st) != 0) {
    return table_;  // a file being replaced; the next check will see the new one
  }
  FileStamp seen{st.st_ino, st.st_size,
                 static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
  if (seen == last_seen_) {
    return table_;
  }
  last_seen_ = seen;
  auto loaded = Load();
  if (!loaded.ok()) {
    reloads_failed_.Increment();
    spdlog::error("event=auth_tokens_reload_failed file={} error=\"{}\" (the previous tokens stay)",
                  config_.tokens_file, std::string(loaded.status().message()));
    return table_;
  }
  reloads_ok_.Increment();
  tokens_gauge_.Set(static_cast<double>(loaded->first.entries().size()));
  spdlog::info("event=auth_tokens_reloaded file={} tokens={}", config_.tokens_file,
               loaded->first.entries().size());
  table_ = std::make_shared<const TokenTable>(std::move(loaded->first));
  stamp_ = loaded->second;
  return table_;
}

absl::Status Authorizer::Deny(absl::string_view reason, absl::Status status) {
  denied_.Add({{"reason", std::string(reason)}}).Increment();
  return status;
}

absl::StatusOr<Identity> Authorizer::Authorize(absl::string_view method,
                                               absl::string_view authorization) {
  const Access access = RequiredAccess(method);
  if (access == Access::kOpen) {
    return Identity{};
  }
  absl::string_view token = absl::StripAsciiWhitespace(authorization);
  if (token.size() < 7 || !absl::EqualsIgnoreCase(token.substr(0, 7), "bearer ")) {
    return Deny(
        "TOKEN_MISSING",
        Unauthenticated("TOKEN_MISSING",
                        absl::StrCat("no bearer token for '", method,
                                     "': send the header 'authorization: Bearer <token>'")));
  }
  token = absl::StripLeadingAsciiWhitespace(token.substr(7));
  std::shared_ptr<const TokenTable> table = Current();
  const TokenEntry* entry = table->Find(token);
  if (entry == nullptr) {
    return Deny("TOKEN_INVALID",
                Unauthenticated("TOKEN_INVALID",
                                absl::StrCat("the bearer token for '", method, "' is not valid")));
  }
  if (absl::Now() >= entry->expires) {
    return Deny("TOKEN_EXPIRED",
                Unauthenticated("TOKEN_EXPIRED",
                                absl::StrCat("the token of '", entry->name, "' expired at ",
                                             absl::FormatTime(absl::RFC3339_sec, entry->expires,
                                                              absl::UTCTimeZone()))));
  }
  if (!RoleAllows(entry->role, access)) {
    return Deny("ROLE_DENIED",
                PermissionDenied("ROLE_DENIED",
                                 absl::StrCat("the token of '", entry->name, "' has role '",
                                              RoleName(entry->role), "', which may not call '",
                                              method, "' (needs ", AllowedRoles(access), ")")));
  }
  return Identity{entry->name, entry->role};
}

std::string Authorizer::TokenName(absl::string_view authorization) {
  absl::string_view token = absl::StripAsciiWhitespace(authorization);
  if (token.size() < 7 || !absl::EqualsIgnoreCase(token.substr(0, 7), "bearer ")) {
    return "";
  }
  token = absl::StripLeadingAsciiWhitespace(token.substr(7));
  std::shared_ptr<const TokenTable> table = Current();
  const TokenEntry* entry = table->Find(token);
  if (entry == nullptr || absl::Now() >= entry->expires) {
    return "";
  }
  return entry->name;
}

bool Authorizer::CheckBasicAuth(const std::string& user, const std::string& password) {
  std::shared_ptr<const TokenTable> table = Current();
  const TokenEntry* entry = table->Find(password);
  const bool ok = entry != nullptr && entry->name == user && absl::Now() < entry->expires;
  if (!ok) {
    denied_.Add({{"reason", "TOKEN_INVALID"}}).Increment();
  }
  return ok;
}

size_t Authorizer::token_count() const {
  absl::MutexLock lock(&mu_);
  return table_ == nullptr ? 0 : table_->entries().size();
}

}  // namespace spindle::services::auth
