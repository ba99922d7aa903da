#include "spindle/common/request_log.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace spindle {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1'000'000);

TEST(RequestLogTest, FindsWhatWasRecordedUntilTheWindowCloses) {
  RequestLog<int> log(absl::Minutes(10), 100);
  EXPECT_EQ(log.Find("a", kStart), nullptr);
  log.Record("a", 7, kStart);
  ASSERT_NE(log.Find("a", kStart + absl::Minutes(9)), nullptr);
  EXPECT_EQ(*log.Find("a", kStart + absl::Minutes(9)), 7);
  EXPECT_EQ(log.Find("a", kStart + absl::Minutes(10)), nullptr);
  EXPECT_EQ(log.size(), 0u);
}

TEST(RequestLogTest, AReplacedAnswerKeepsItsFirstTime) {
  RequestLog<std::string> log(absl::Minutes(10), 100);
  log.Record("a", "pending", kStart);
  log.Record("a", "answered", kStart + absl::Minutes(5));
  EXPECT_EQ(*log.Find("a", kStart + absl::Minutes(9)), "answered");
  EXPECT_EQ(log.Find("a", kStart + absl::Minutes(10)), nullptr);
}

TEST(RequestLogTest, CapacityForgetsTheOldestFirst) {
  RequestLog<int> log(absl::Minutes(10), 3);
  for (int i = 0; i < 5; ++i) {
    log.Record(absl::StrCat("k", i), i, kStart + absl::Seconds(i));
  }
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.Find("k0", kStart + absl::Seconds(5)), nullptr);
  EXPECT_EQ(log.Find("k1", kStart + absl::Seconds(5)), nullptr);
  EXPECT_EQ(*log.Find("k4", kStart + absl::Seconds(5)), 4);
}

TEST(RequestLogTest, AForgottenKeyRecordedAgainLivesItsOwnWindow) {
  RequestLog<std::string> log(absl::Minutes(10), 100);
  log.Record("a", "first", kStart);
  log.Forget("a");
  EXPECT_EQ(log.Find("a", kStart + absl::Minutes(1)), nullptr);
  log.Record("a", "second", kStart + absl::Minutes(5));
  // The first record's window closing does not take the second one with it.
  ASSERT_NE(log.Find("a", kStart + absl::Minutes(11)), nullptr);
  EXPECT_EQ(*log.Find("a", kStart + absl::Minutes(11)), "second");
  EXPECT_EQ(log.Find("a", kStart + absl::Minutes(15)), nullptr);
}

TEST(RequestLogTest, WeightBoundsWhatIsKept) {
  RequestLog<int> log(absl::Minutes(10), 100, /*max_weight=*/10);
  log.Record("a", 1, kStart, 4);
  log.Record("b", 2, kStart, 4);
  EXPECT_EQ(log.weight(), 8u);
  log.Record("c", 3, kStart, 4);  // 12 > 10: the oldest goes
  EXPECT_EQ(log.Find("a", kStart), nullptr);
  EXPECT_EQ(log.weight(), 8u);
  log.Record("b", 5, kStart, 1);  // replacing re-weighs
  EXPECT_EQ(log.weight(), 5u);
  log.Forget("c");
  EXPECT_EQ(log.weight(), 1u);
  log.Record("huge", 9, kStart, 11);  // heavier than the bound: kept by nobody
  EXPECT_EQ(log.Find("huge", kStart), nullptr);
  EXPECT_EQ(log.weight(), 0u);
}

}  // namespace
}  // namespace spindle
