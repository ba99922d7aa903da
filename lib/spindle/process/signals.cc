#include "spindle/process/signals.h"

#include <csignal>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "spindle/common/status.h"

namespace spindle::process {
namespace {

struct NamedSignal {
  const char* name;  // Without "SIG".
  int number;
};

constexpr NamedSignal kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"POLL", SIGPOLL},     {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

constexpr int kMaxSignal = 64;

absl::Status Bad(absl::string_view field, absl::string_view value, absl::string_view why) {
  return InvalidArgument("INVALID_SIGNAL", absl::StrCat(field, ": signal '", value, "' ", why));
}

}  // namespace

absl::StatusOr<int> ResolveSignal(absl::string_view field, const SignalSpec& spec) {
  if (spec.name.empty()) {
    if (spec.number < 1 || spec.number > kMaxSignal) {
      return Bad(field, absl::StrCat(spec.number), "is not a signal number (1..64)");
    }
    return spec.number;
  }
  if (spec.name.size() > 128) {
    return Bad(field, spec.name.substr(0, 32), "is longer than 128 bytes");
  }
  std::string upper = absl::AsciiStrToUpper(spec.name);
  absl::string_view name = upper;
  int number = 0;
  if (absl::SimpleAtoi(name, &number)) {
    if (number < 1 || number > kMaxSignal) {
      return Bad(field, spec.name, "is not a signal number (1..64)");
    }
    return number;
  }
  absl::ConsumePrefix(&name, "SIG");
  for (const NamedSignal& s : kSignals) {
    if (name == s.name) {
      return s.number;
    }
  }
  const int rtmin = SIGRTMIN;
  const int rtmax = SIGRTMAX;
  if (name == "RTMIN") {
    return rtmin;
  }
  if (name == "RTMAX") {
    return rtmax;
  }
  for (auto [prefix, base, sign] : {std::tuple{"RTMIN+", rtmin, 1}, {"RTMAX-", rtmax, -1}}) {
    absl::string_view rest = name;
    if (absl::ConsumePrefix(&rest, prefix) && absl::SimpleAtoi(rest, &number) && number >= 0) {
      int value = base + sign * number;
      if (value >= rtmin && value <= rtmax) {
        return value;
      }
    }
  }
  return Bad(field, spec.name, "is not a known signal name or number");
}

std::string SignalName(int signal_number) {
  for (const NamedSignal& s : kSignals) {
    if (s.number == signal_number && std::string_view(s.name) != "IOT" &&
        std::string_view(s.name) != "POLL") {
      return absl::StrCat("SIG", s.name);
    }
  }
  if (signal_number == SIGRTMIN) {
    return "SIGRTMIN";
  }
  if (signal_number > SIGRTMIN && signal_number <= SIGRTMAX) {
    return absl::StrCat("SIGRTMIN+", signal_number - SIGRTMIN);
  }
  return absl::StrCat("SIG", signal_number);
}

}  // namespace spindle::process
