#include "spindle/process/proc_usage.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace spindle::process {
namespace {

TEST(ProcUsageTest, ParsesStatAndStatusWithAnAwkwardCommand) {
  // comm may hold blanks and parentheses; fields are counted from the last ')'.
  const std::string stat =
      "4242 (a) b (c) S 17 4242 4242 0 -1 4194304 1500 0 3 0 250 40 0 0 20 0 1 0 100 1000 50\n";
  const std::string status =
      "Name:\ta\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\nvoluntary_ctxt_switches:\t7\n"
      "nonvoluntary_ctxt_switches:\t2\n";
  pid_t ppid = 0;
  auto usage = ParseProcUsage(stat, status, &ppid);
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(ppid, 17);
  EXPECT_EQ(usage->minor_faults, 1500);
  EXPECT_EQ(usage->major_faults, 3);
  const int64_t tick_ms = 1000 / ::sysconf(_SC_CLK_TCK);
  EXPECT_EQ(usage->user_cpu_ms, 250 * tick_ms);
  EXPECT_EQ(usage->system_cpu_ms, 40 * tick_ms);
  EXPECT_EQ(usage->max_rss_bytes, 2048 * 1024);
  EXPECT_EQ(usage->voluntary_context_switches, 7);
  EXPECT_EQ(usage->involuntary_context_switches, 2);
}

TEST(ProcUsageTest, MalformedStatIsRejected) {
  pid_t ppid = 0;
  EXPECT_FALSE(ParseProcUsage("", "", &ppid).has_value());
  EXPECT_FALSE(ParseProcUsage("12 (x S 1 2", "", &ppid).has_value());
  EXPECT_FALSE(ParseProcUsage("12 (x) S 1 2 3", "", &ppid).has_value());  // too short
  EXPECT_FALSE(ParseProcUsage("12 (x) S one 2 3 4 5 6 7 8 9 10 11 12 13", "", &ppid).has_value());
}

TEST(ProcUsageTest, ReadsItselfAndChecksTheParent) {
  auto usage = ReadLiveUsage(::getpid(), ::getppid());
  ASSERT_TRUE(usage.has_value());
  EXPECT_GT(usage->max_rss_bytes, 0);
  EXPECT_GT(usage->minor_faults, 0);
  EXPECT_FALSE(ReadLiveUsage(::getpid(), ::getppid() + 1).has_value());  // a reused pid
  EXPECT_FALSE(ReadLiveUsage(0, 0).has_value());
  EXPECT_FALSE(ReadLiveUsage(-1, 0).has_value());
}

}  // namespace
}  // namespace spindle::process
