#include "spindle/trigger/cron.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

namespace spindle::trigger {
namespace {

constexpr absl::string_view kField = "spec.schedule.cron.expression";
constexpr size_t kMaxExpressionBytes = 256;
constexpr int kSearchYears = 8;

struct FieldRule {
  const char* name;
  int low;
  int high;
  const char* const* names;  // Index 0 names value `low` ... or nullptr.
};

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

constexpr FieldRule kRules[] = {
    {"minute", 0, 59, nullptr},       {"hour", 0, 23, nullptr},
    {"day-of-month", 1, 31, nullptr}, {"month", 1, 12, kMonthNames},
    {"day-of-week", 0, 7, kDayNames},
};

class FieldParser {
 public:
  FieldParser(absl::string_view expression, const FieldRule& rule)
      : expression_(expression), rule_(rule) {}

  absl::Status Error(absl::string_view why) const {
    return InvalidArgument("INVALID_CRON",
                           absl::StrCat(kField, ": '", expression_, "': ", rule_.name, " ", why));
  }

  absl::StatusOr<int> Value(absl::string_view text) const {
    if (rule_.names != nullptr) {
      const std::string upper = absl::AsciiStrToUpper(text);
      const int count = rule_.high - rule_.low + 1 - (rule_.high == 7 ? 1 : 0);
      for (int i = 0; i < count; ++i) {
        if (upper == rule_.names[i]) {
          return rule_.low + i;
        }
      }
    }
    int value = 0;
    if (text.empty() || !absl::SimpleAtoi(text, &value) ||
        text.find_first_not_of("0123456789") != absl::string_view::npos) {
      return Error(absl::StrCat("'", text, "' is not a number", rule_.names ? " or a name" : ""));
    }
    if (value < rule_.low || value > rule_.high) {
      return Error(absl::StrCat(value, " is out of range ", rule_.low, "-", rule_.high));
    }
    return value;
  }

  // Sets the bits of `field` (values low..high) into `bits` (indexed by value).
  absl::StatusOr<std::vector<bool>> Parse(absl::string_view field) const {
    std::vector<bool> bits(rule_.high + 1, false);
    if (field.empty()) {
      return Error("is empty");
    }
    for (absl::string_view item : absl::StrSplit(field, ',')) {
      absl::string_view range = item;
      int step = 1;
      if (const size_t slash = item.find('/'); slash != absl::string_view::npos) {
        range = item.substr(0, slash);
        absl::string_view step_text = item.substr(slash + 1);
        if (!absl::SimpleAtoi(step_text, &step) || step < 1 ||
            step_text.find_first_not_of("0123456789") != absl::string_view::npos) {
          return Error(absl::StrCat("step '", step_text, "' must be a positive number"));
        }
      }
      int from = rule_.low;
      int to = rule_.high;
      if (range == "*") {
        // The whole range.
      } else if (const size_t dash = range.find('-'); dash != absl::string_view::npos) {
        absl::StatusOr<int> a = Value(range.substr(0, dash));
        if (!a.ok()) return a.status();
        absl::StatusOr<int> b = Value(range.substr(dash + 1));
        if (!b.ok()) return b.status();
        from = *a;
        to = *b;
        if (from > to) {
          return Error(absl::StrCat("range '", range, "' runs backwards"));
        }
      } else {
        absl::StatusOr<int> a = Value(range);
        if (!a.ok()) return a.status();
        from = *a;
        to = item.find('/') != absl::string_view::npos ? rule_.high : *a;  // "5/15" = 5-max/15.
      }
      for (int v = from; v <= to; v += step) {
        bits[v] = true;
      }
    }
    return bits;
  }

 private:
  absl::string_view expression_;
  const FieldRule& rule_;
};

absl::string_view ExpandMacro(absl::string_view expression) {
  const std::string lower = absl::AsciiStrToLower(expression);
  if (lower == "@yearly" || lower == "@annually") return "0 0 1 1 *";
  if (lower == "@monthly") return "0 0 1 * *";
  if (lower == "@weekly") return "0 0 * * 0";
  if (lower == "@daily" || lower == "@midnight") return "0 0 * * *";
  if (lower == "@hourly") return "0 * * * *";
  return expression;
}

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(absl::string_view expression,
                                                 absl::string_view timezone) {
  if (expression.empty() || expression.size() > kMaxExpressionBytes) {
    return InvalidArgument(
        "INVALID_CRON", absl::StrCat(kField, ": length ", expression.size(), " is out of range 1..",
                                     kMaxExpressionBytes));
  }
  CronSchedule schedule;
  const std::string zone_name = timezone.empty() ? "UTC" : std::string(timezone);
  if (!absl::LoadTimeZone(zone_name, &schedule.zone_)) {
    return InvalidArgument("UNKNOWN_TIMEZONE",
                           absl::StrCat("spec.schedule.cron.timezone: '", zone_name,
                                        "' is not a known IANA time zone"));
  }
  const absl::string_view expanded = ExpandMacro(absl::StripAsciiWhitespace(expression));
  if (absl::StartsWith(expanded, "@")) {
    return InvalidArgument("INVALID_CRON", absl::StrCat(kField, ": '", expression,
                                                        "' is not a known macro (@yearly, "
                                                        "@monthly, @weekly, @daily, @hourly)"));
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(expanded, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return InvalidArgument("INVALID_CRON",
                           absl::StrCat(kField, ": '", expression, "' has ", fields.size(),
                                        " fields; want 5 (minute hour day-of-month month "
                                        "day-of-week)"));
  }
  std::vector<bool> bits[5];
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<std::vector<bool>> parsed = FieldParser(expression, kRules[i]).Parse(fields[i]);
    if (!parsed.ok()) {
      return parsed.status();
    }
    bits[i] = std::move(*parsed);
  }
  for (int v = 0; v < 60; ++v) schedule.minutes_[v] = bits[0][v];
  for (int v = 0; v < 24; ++v) schedule.hours_[v] = bits[1][v];
  for (int v = 1; v <= 31; ++v) schedule.days_of_month_[v] = bits[2][v];
  for (int v = 1; v <= 12; ++v) schedule.months_[v] = bits[3][v];
  for (int v = 0; v <= 7; ++v) {
    if (bits[4][v]) schedule.days_of_week_[v % 7] = true;
  }
  schedule.dom_star_ = absl::StartsWith(fields[2], "*");
  schedule.dow_star_ = absl::StartsWith(fields[4], "*");
  return schedule;
}

bool CronSchedule::DayMatches(const absl::CivilDay& day) const {
  if (!months_[day.month()]) {
    return false;
  }
  const bool dom = days_of_month_[day.day()];
  int weekday = 0;  // 0 = Sunday.
  switch (absl::GetWeekday(day)) {
    case absl::Weekday::sunday:
      weekday = 0;
      break;
    case absl::Weekday::monday:
      weekday = 1;
      break;
    case absl::Weekday::tuesday:
      weekday = 2;
      break;
    case absl::Weekday::wednesday:
      weekday = 3;
      break;
    case absl::Weekday::thursday:
      weekday = 4;
      break;
    case absl::Weekday::friday:
      weekday = 5;
      break;
    case absl::Weekday::saturday:
      weekday = 6;
      break;
  }
  const bool dow = days_of_week_[weekday];
  if (dom_star_ || dow_star_) {
    return dom && dow;  // A '*' field matches every day, so this is the restricted one.
  }
  return dom || dow;
}

absl::Time CronSchedule::Next(absl::Time after) const {
  if (after == absl::InfiniteFuture()) {
    return absl::InfiniteFuture();
  }
  const absl::CivilMinute start = absl::ToCivilMinute(after, zone_);
  const absl::CivilDay first_day(start);
  const absl::CivilDay last_day = first_day + 366 * kSearchYears;
  for (absl::CivilDay day = first_day; day <= last_day; ++day) {
    if (!DayMatches(day)) {
      continue;
    }
    for (int hour = 0; hour < 24; ++hour) {
      if (!hours_[hour]) continue;
      for (int minute = 0; minute < 60; ++minute) {
        if (!minutes_[minute]) continue;
        const absl::CivilMinute civil(day.year(), day.month(), day.day(), hour, minute);
        if (civil < start) continue;
        const absl::TimeZone::TimeInfo info = zone_.At(civil);
        // UNIQUE: pre == post. SKIPPED (gap): fire at the transition, the first instant after
        // the gap. REPEATED (fold): the first occurrence.
        const absl::Time t = info.kind == absl::TimeZone::TimeInfo::SKIPPED ? info.trans : info.pre;
        if (t > after) {
          return t;
        }
      }
    }
  }
  return absl::InfiniteFuture();
}

}  // namespace spindle::trigger
