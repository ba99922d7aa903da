// Fuzzes the validation of what clients send that is parsed from free text: names and name
// prefixes (lib/spindle/common/names.h), labels and label selectors
// (lib/spindle/common/labels.h) and cron expressions with their next fire times
// (lib/spindle/trigger/cron.h). Bad input must be INVALID_ARGUMENT, never a crash, a hang or an
// answer that breaks the contract (a fire time not after the time asked about).
//
// Input: byte 0 picks the validator, byte 1 the time zone (cron), the rest is the text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fuzz/contract.h"
#include "spindle/common/labels.h"
#include "spindle/common/names.h"
#include "spindle/trigger/cron.h"

namespace {

// Refusals are INVALID_ARGUMENT with a message (they name the field).
void CheckRefusal(const absl::Status& status) {
  CHECK_CONTRACT(status.ok() || (status.code() == absl::StatusCode::kInvalidArgument &&
                                 !status.message().empty()));
}

// A fixed set: absl::LoadTimeZone reads zoneinfo files, and a fuzzed name would make it open
// arbitrary paths.
constexpr const char* kZones[] = {"",
                                  "UTC",
                                  "Europe/Paris",
                                  "America/New_York",
                                  "Australia/Lord_Howe",
                                  "Asia/Kathmandu",
                                  "No/Such_Zone"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t which = data[0] % 5;
  const char* zone = kZones[data[1] % (sizeof(kZones) / sizeof(kZones[0]))];
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  switch (which) {
    case 0: {
      absl::Status status = spindle::ValidateName("name", text);
      CheckRefusal(status);
      if (status.ok()) {
        CHECK_CONTRACT(!text.empty() && text.size() <= spindle::kMaxNameLength);
        // A valid name is a valid prefix too.
        CHECK_CONTRACT(spindle::ValidatePrefix("prefix", text).ok());
      }
      break;
    }
    case 1:
      CheckRefusal(spindle::ValidatePrefix("prefix", text));
      break;
    case 2: {
      // "key=value" lines.
      spindle::Labels labels;
      for (absl::string_view line : absl::StrSplit(text, '\n')) {
        std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
        labels[kv.first] = kv.second;
      }
      absl::Status status = spindle::ValidateLabels("labels", labels);
      CheckRefusal(status);
      if (status.ok()) {
        // Every label matches the selector of its own pair, when the selector syntax can spell
        // the value: it splits terms at ',' and trims blanks, so a value with a comma or
        // surrounding blanks can be stored but not selected with k=v (found by this fuzzer;
        // reported, not a crash).
        for (const auto& [key, value] : labels) {
          if (value.find(',') != std::string::npos ||
              absl::StripAsciiWhitespace(value) != absl::string_view(value)) {
            continue;
          }
          auto selector = spindle::LabelSelector::Parse("s", key + "=" + value);
          if (selector.ok()) CHECK_CONTRACT(selector->Matches(labels));
        }
      }
      break;
    }
    case 3: {
      auto selector = spindle::LabelSelector::Parse("selector", text);
      CheckRefusal(selector.status());
      if (selector.ok()) (void)selector->Matches({{"a", "b"}, {"env", "prod"}});
      break;
    }
    case 4: {
      auto cron = spindle::trigger::CronSchedule::Parse(text, zone);
      CheckRefusal(cron.status());
      if (cron.ok()) {
        absl::Time t = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00:00Z
        for (int i = 0; i < 3; ++i) {
          const absl::Time next = cron->Next(t);
          CHECK_CONTRACT(next > t);
          if (next == absl::InfiniteFuture()) break;
          t = next;
        }
      }
      break;
    }
  }
  return 0;
}
