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
  RequestLog<int> log(absl::Minutes(10), 100);
  log.Record("a", 1, kStart);
  log.Record("a", 2, kStart + absl::Minutes(5));
  EXPECT_EQ(*log.Find("a", kStart + absl::Minutes(9)), 2);
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

}  // namespace
}  // namespace spindle
