#include "spindle/pool/framing.h"

#include <gtest/gtest.h>

namespace spindle::pool {
namespace {

TEST(FrameReaderTest, RoundTripsFramesSplitAcrossReads) {
  std::string bytes;
  AppendFrame(kFrameReady, "", bytes);
  AppendFrame(kFrameOk, "hello", bytes);
  AppendFrame(kFrameError, std::string(70000, 'x'), bytes);
  FrameReader reader;
  std::vector<Frame> frames;
  for (size_t i = 0; i < bytes.size(); i += 7) {
    reader.Append(absl::string_view(bytes).substr(i, 7));
    while (true) {
      auto next = reader.Next();
      ASSERT_TRUE(next.ok());
      if (!next->has_value()) break;
      frames.push_back(std::move(**next));
    }
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].type, kFrameReady);
  EXPECT_EQ(frames[1].payload, "hello");
  EXPECT_EQ(frames[2].type, kFrameError);
  EXPECT_EQ(frames[2].payload.size(), 70000u);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderTest, HeaderIsTypeThenBigEndianLength) {
  std::string bytes;
  AppendFrame(kFrameTask, "abc", bytes);
  EXPECT_EQ(bytes, std::string("T\0\0\0\x03"
                               "abc",
                               8));
}

TEST(FrameReaderTest, UnknownTypeIsAnError) {
  FrameReader reader;
  reader.Append(std::string("Z\0\0\0\0", 5));
  EXPECT_FALSE(reader.Next().ok());
}

TEST(FrameReaderTest, OversizedFrameIsAnError) {
  FrameReader reader;
  reader.Append(std::string("O\xff\xff\xff\xff", 5));
  EXPECT_FALSE(reader.Next().ok());
}

}  // namespace
}  // namespace spindle::pool
