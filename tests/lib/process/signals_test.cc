#include "spindle/process/signals.h"

#include <csignal>

#include "gtest/gtest.h"
#include "spindle/common/status.h"

namespace spindle::process {
namespace {

int Resolve(std::string name) {
  SignalSpec spec;
  spec.name = std::move(name);
  auto s = ResolveSignal("signal", spec);
  return s.ok() ? *s : -1;
}

TEST(SignalsTest, ResolvesNamesCaseInsensitivelyWithOrWithoutSig) {
  EXPECT_EQ(Resolve("SIGTERM"), SIGTERM);
  EXPECT_EQ(Resolve("term"), SIGTERM);
  EXPECT_EQ(Resolve("Kill"), SIGKILL);
  EXPECT_EQ(Resolve("9"), 9);
  EXPECT_EQ(Resolve("SIGRTMIN+2"), SIGRTMIN + 2);
}

TEST(SignalsTest, RejectsUnknownNamesAndBadNumbers) {
  SignalSpec bad;
  bad.name = "SIGNOPE";
  auto s = ResolveSignal("signal", bad);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Reason(s.status()), "INVALID_SIGNAL");
  EXPECT_NE(s.status().message().find("SIGNOPE"), absl::string_view::npos);
  EXPECT_EQ(Resolve("0"), -1);
  SignalSpec number;
  number.number = 65;
  EXPECT_FALSE(ResolveSignal("signal", number).ok());
  EXPECT_FALSE(ResolveSignal("signal", SignalSpec{}).ok());
}

TEST(SignalsTest, NamesSignals) {
  EXPECT_EQ(SignalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(SIGRTMIN + 1), "SIGRTMIN+1");
}

}  // namespace
}  // namespace spindle::process
