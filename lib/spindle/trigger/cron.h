// CronSchedule: a 5-field Vixie cron expression read in an IANA time zone.
//
//   absl::StatusOr<CronSchedule> cron = CronSchedule::Parse("*/15 9-17 * * MON-FRI",
//                                                           "Europe/Paris");
//   absl::Time next = cron->Next(absl::Now());     // strictly after; InfiniteFuture if never
//
// Syntax: "minute hour day-of-month month day-of-week"; each field a comma list of "*", "N",
// "A-B", with an optional "/STEP" ("*/10", "1-30/2", "5/15" = 5-max/15); months JAN-DEC and days
// SUN-SAT by name (any case); day of week 0-7 with 0 and 7 = Sunday. When both day fields are
// restricted (neither starts with '*') a day matching either fires. Macros: @yearly (@annually),
// @monthly, @weekly, @daily (@midnight), @hourly.
//
// Time zones: the fields are civil time in the zone (absl::LoadTimeZone reads the system's
// zoneinfo). A civil time that does not exist (DST gap) fires at the first instant after the gap;
// one that occurs twice (DST fold) fires once, at its first occurrence.
//
// Thread-safety: immutable after Parse; thread-safe.
#ifndef SPINDLE_TRIGGER_CRON_H_
#define SPINDLE_TRIGGER_CRON_H_

#include <bitset>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace spindle::trigger {

class CronSchedule {
 public:
  // INVALID_ARGUMENT (INVALID_CRON) naming the bad field and value, e.g. "spec.schedule.cron.
  // expression: '61 * * * *': minute 61 is out of range 0-59"; INVALID_ARGUMENT
  // (UNKNOWN_TIMEZONE) for a zone absl cannot load. `timezone` empty means UTC.
  static absl::StatusOr<CronSchedule> Parse(absl::string_view expression,
                                            absl::string_view timezone);

  // The first fire time strictly after `after`; InfiniteFuture when none within 8 years (e.g.
  // "0 0 31 2 *").
  absl::Time Next(absl::Time after) const;

 private:
  CronSchedule() = default;
  bool DayMatches(const absl::CivilDay& day) const;

  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31.
  std::bitset<13> months_;         // 1..12.
  std::bitset<7> days_of_week_;    // 0 = Sunday.
  bool dom_star_ = false;
  bool dow_star_ = false;
  absl::TimeZone zone_;
};

}  // namespace spindle::trigger

#endif  // SPINDLE_TRIGGER_CRON_H_
