// CronSchedule: field syntax, day-of-month/day-of-week rules, macros, time zones and DST.
#include "spindle/trigger/cron.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "spindle/common/status.h"

namespace spindle::trigger {
namespace {

using ::testing::HasSubstr;

absl::Time Utc(int y, int mo, int d, int h, int mi, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

CronSchedule MustParse(absl::string_view expression, absl::string_view zone = "") {
  absl::StatusOr<CronSchedule> cron = CronSchedule::Parse(expression, zone);
  EXPECT_TRUE(cron.ok()) << cron.status();
  return *std::move(cron);
}

TEST(CronScheduleTest, NextIsStrictlyAfter) {
  CronSchedule cron = MustParse("*/15 * * * *");
  EXPECT_EQ(cron.Next(Utc(2024, 1, 1, 10, 7)), Utc(2024, 1, 1, 10, 15));
  EXPECT_EQ(cron.Next(Utc(2024, 1, 1, 10, 15)), Utc(2024, 1, 1, 10, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 1, 1, 23, 50)), Utc(2024, 1, 2, 0, 0));
}

TEST(CronScheduleTest, NamesRangesAndLists) {
  // 2024-01-05 is a Friday.
  CronSchedule weekdays = MustParse("0 9 * * mon-FRI");
  EXPECT_EQ(weekdays.Next(Utc(2024, 1, 5, 9, 0)), Utc(2024, 1, 8, 9, 0));
  CronSchedule list = MustParse("0 6,18 1,15 JAN,Jul *");
  EXPECT_EQ(list.Next(Utc(2024, 1, 1, 7, 0)), Utc(2024, 1, 1, 18, 0));
  EXPECT_EQ(list.Next(Utc(2024, 1, 15, 18, 0)), Utc(2024, 7, 1, 6, 0));
  CronSchedule offset_step = MustParse("5/20 * * * *");
  EXPECT_EQ(offset_step.Next(Utc(2024, 1, 1, 0, 6)), Utc(2024, 1, 1, 0, 25));
  EXPECT_EQ(offset_step.Next(Utc(2024, 1, 1, 0, 45)), Utc(2024, 1, 1, 1, 5));
  CronSchedule sunday_seven = MustParse("0 0 * * 7");
  EXPECT_EQ(sunday_seven.Next(Utc(2024, 1, 1, 0, 0)), Utc(2024, 1, 7, 0, 0));
}

TEST(CronScheduleTest, BothDayFieldsRestrictedMeansEither) {
  // The 13th or any Friday: 2024-09-06 is a Friday, 2024-09-13 too; 2024-10-04 Friday.
  CronSchedule cron = MustParse("0 0 13 * 5");
  EXPECT_EQ(cron.Next(Utc(2024, 9, 1, 0, 0)), Utc(2024, 9, 6, 0, 0));
  EXPECT_EQ(cron.Next(Utc(2024, 10, 11, 0, 0)), Utc(2024, 10, 13, 0, 0));
  // Only one restricted: both must hold (the '*' matches every day).
  CronSchedule friday_only = MustParse("0 0 * * 5");
  EXPECT_EQ(friday_only.Next(Utc(2024, 10, 11, 0, 0)), Utc(2024, 10, 18, 0, 0));
}

TEST(CronScheduleTest, Macros) {
  EXPECT_EQ(MustParse("@hourly").Next(Utc(2024, 1, 1, 10, 7)), Utc(2024, 1, 1, 11, 0));
  EXPECT_EQ(MustParse("@daily").Next(Utc(2024, 1, 1, 10, 7)), Utc(2024, 1, 2, 0, 0));
  EXPECT_EQ(MustParse("@weekly").Next(Utc(2024, 1, 1, 10, 7)), Utc(2024, 1, 7, 0, 0));
  EXPECT_EQ(MustParse("@monthly").Next(Utc(2024, 1, 1, 10, 7)), Utc(2024, 2, 1, 0, 0));
  EXPECT_EQ(MustParse("@yearly").Next(Utc(2024, 1, 1, 10, 7)), Utc(2025, 1, 1, 0, 0));
}

TEST(CronScheduleTest, ReadsFieldsInTheTimeZone) {
  CronSchedule paris = MustParse("0 9 * * *", "Europe/Paris");
  EXPECT_EQ(paris.Next(Utc(2024, 1, 10, 0, 0)), Utc(2024, 1, 10, 8, 0));  // CET = UTC+1.
  EXPECT_EQ(paris.Next(Utc(2024, 7, 10, 0, 0)), Utc(2024, 7, 10, 7, 0));  // CEST = UTC+2.
}

TEST(CronScheduleTest, TimeInADstGapFiresAfterTheGap) {
  // Paris, 2024-03-31: 02:00 -> 03:00 local (01:00 UTC). 02:30 does not exist.
  CronSchedule cron = MustParse("30 2 * * *", "Europe/Paris");
  EXPECT_EQ(cron.Next(Utc(2024, 3, 30, 12, 0)), Utc(2024, 3, 31, 1, 0));
  EXPECT_EQ(cron.Next(Utc(2024, 3, 31, 1, 0)), Utc(2024, 4, 1, 0, 30));
}

TEST(CronScheduleTest, TimeInADstFoldFiresOnce) {
  // Paris, 2024-10-27: 03:00 -> 02:00 local; 02:30 happens at 00:30 and 01:30 UTC.
  CronSchedule cron = MustParse("30 2 * * *", "Europe/Paris");
  EXPECT_EQ(cron.Next(Utc(2024, 10, 26, 12, 0)), Utc(2024, 10, 27, 0, 30));
  EXPECT_EQ(cron.Next(Utc(2024, 10, 27, 0, 30)), Utc(2024, 10, 28, 1, 30));
}

TEST(CronScheduleTest, ImpossibleDateNeverFires) {
  EXPECT_EQ(MustParse("0 0 31 2 *").Next(Utc(2024, 1, 1, 0, 0)), absl::InfiniteFuture());
  EXPECT_EQ(MustParse("0 0 29 2 *").Next(Utc(2024, 3, 1, 0, 0)), Utc(2028, 2, 29, 0, 0));
}

TEST(CronScheduleTest, RejectsBadExpressionsNamingTheProblem) {
  const auto error = [](absl::string_view expression, absl::string_view zone = "") {
    absl::StatusOr<CronSchedule> cron = CronSchedule::Parse(expression, zone);
    EXPECT_EQ(cron.status().code(), absl::StatusCode::kInvalidArgument) << expression;
    return Reason(cron.status()) + " " + std::string(cron.status().message());
  };
  EXPECT_THAT(error("61 * * * *"), HasSubstr("INVALID_CRON spec.schedule.cron.expression"));
  EXPECT_THAT(error("61 * * * *"), HasSubstr("minute 61 is out of range 0-59"));
  EXPECT_THAT(error("* * *"), HasSubstr("has 3 fields"));
  EXPECT_THAT(error("* * * FOO *"), HasSubstr("month 'FOO'"));
  EXPECT_THAT(error("5-1 * * * *"), HasSubstr("runs backwards"));
  EXPECT_THAT(error("*/0 * * * *"), HasSubstr("step '0'"));
  EXPECT_THAT(error("@every 5m"), HasSubstr("not a known macro"));
  EXPECT_THAT(error(""), HasSubstr("length 0"));
  EXPECT_THAT(error("* * * * *", "Mars/Olympus_Mons"), HasSubstr("UNKNOWN_TIMEZONE"));
  EXPECT_THAT(error("* * * * *", "Mars/Olympus_Mons"),
              HasSubstr("spec.schedule.cron.timezone: 'Mars/Olympus_Mons'"));
}

}  // namespace
}  // namespace spindle::trigger
