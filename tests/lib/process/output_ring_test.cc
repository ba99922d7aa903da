#include "spindle/process/output_ring.h"

#include <string>

#include "gtest/gtest.h"

namespace spindle::process {
namespace {

TEST(OutputRingTest, ReadsBackWhatWasAppended) {
  OutputRing ring(16);
  ring.Append("hello ");
  ring.Append("world");
  int64_t dropped = -1;
  EXPECT_EQ(ring.Read(0, 100, &dropped), "hello world");
  EXPECT_EQ(dropped, 0);
  EXPECT_EQ(ring.Read(6, 3, &dropped), "wor");
  EXPECT_EQ(ring.end_offset(), 11);
  EXPECT_EQ(ring.start_offset(), 0);
  EXPECT_EQ(ring.Read(11, 10, &dropped), "");
}

TEST(OutputRingTest, KeepsOnlyTheLastCapacityBytesAndReportsTheGap) {
  OutputRing ring(8);
  ring.Append("0123456789");  // Larger than the ring.
  EXPECT_EQ(ring.start_offset(), 2);
  int64_t dropped = 0;
  EXPECT_EQ(ring.Read(0, 100, &dropped), "");
  EXPECT_EQ(dropped, 2);
  EXPECT_EQ(ring.Read(2, 100, &dropped), "23456789");
  ring.Append("abc");
  EXPECT_EQ(ring.start_offset(), 5);
  EXPECT_EQ(ring.Read(5, 100, &dropped), "56789abc");
  EXPECT_EQ(ring.Read(9, 2, &dropped), "9a");
}

TEST(OutputRingTest, WrapsAcrossManySmallAppends) {
  OutputRing ring(7);
  std::string all;
  for (int i = 0; i < 100; ++i) {
    std::string piece = std::to_string(i);
    ring.Append(piece);
    all += piece;
  }
  int64_t dropped = 0;
  EXPECT_EQ(ring.end_offset(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(ring.Read(ring.start_offset(), 100, &dropped), all.substr(all.size() - 7));
}

TEST(OutputRingTest, MemoryStaysBoundedByCapacity) {
  OutputRing ring(4096);
  std::string block(1000, 'x');
  for (int i = 0; i < 10000; ++i) {
    ring.Append(block);
  }
  EXPECT_EQ(ring.end_offset(), 10'000'000);
  EXPECT_EQ(ring.start_offset(), 10'000'000 - 4096);
  int64_t dropped = 0;
  EXPECT_EQ(ring.Read(ring.start_offset(), 1 << 20, &dropped).size(), 4096u);
}

}  // namespace
}  // namespace spindle::process
