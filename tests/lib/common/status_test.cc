#include "spindle/common/status.h"

#include <gtest/gtest.h>

namespace spindle {
namespace {

absl::Status FailsWith(absl::Status s) {
  SPINDLE_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

absl::StatusOr<int> Doubled(absl::StatusOr<int> v) {
  SPINDLE_ASSIGN_OR_RETURN(int x, v);
  return 2 * x;
}

TEST(StatusTest, ErrorCarriesCodeMessageAndReason) {
  absl::Status s = ResourceExhausted("QUEUE_FULL", "queue 'jobs' is full (100 items)");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "queue 'jobs' is full (100 items)");
  EXPECT_EQ(Reason(s), "QUEUE_FULL");
}

TEST(StatusTest, ReasonIsEmptyWithoutPayload) {
  EXPECT_EQ(Reason(absl::NotFoundError("x")), "");
  EXPECT_EQ(Reason(absl::OkStatus()), "");
}

TEST(StatusTest, AnnotateKeepsCodeAndReason) {
  absl::Status s = Annotate(NotFound("QUEUE_NOT_FOUND", "no queue 'a'"), "Put");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "Put: no queue 'a'");
  EXPECT_EQ(Reason(s), "QUEUE_NOT_FOUND");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

TEST(StatusTest, ReturnIfErrorReturnsTheError) {
  EXPECT_TRUE(FailsWith(absl::OkStatus()).ok());
  EXPECT_EQ(FailsWith(Aborted("VERSION_MISMATCH", "v")).code(), absl::StatusCode::kAborted);
}

TEST(StatusTest, AssignOrReturnAssignsOrReturns) {
  EXPECT_EQ(*Doubled(21), 42);
  EXPECT_EQ(Doubled(absl::OutOfRangeError("end")).status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace spindle
