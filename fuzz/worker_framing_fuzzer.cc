// Fuzzes the worker-pool framing parser (lib/spindle/pool/framing.h), which reads whatever bytes a
// worker process writes to its stdout: any byte stream, fed in any chunking, must give frames,
// "need more bytes" or BAD_FRAME, never a crash; and what it returns must re-encode to exactly the
// bytes it consumed.
//
// Input: the first byte picks the chunk size (1..256) the stream is appended in; the rest is the
// stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "fuzz/contract.h"
#include "spindle/common/status.h"
#include "spindle/pool/framing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using spindle::pool::Frame;
  using spindle::pool::FrameReader;
  if (size == 0) return 0;
  const size_t chunk = size_t{data[0]} + 1;
  const std::string stream(reinterpret_cast<const char*>(data + 1), size - 1);

  FrameReader reader;
  std::string reencoded;
  size_t fed = 0;
  bool failed = false;
  while (fed < stream.size() && !failed) {
    const size_t n = std::min(chunk, stream.size() - fed);
    reader.Append(absl::string_view(stream).substr(fed, n));
    fed += n;
    while (true) {
      auto next = reader.Next();
      if (!next.ok()) {
        CHECK_CONTRACT(next.status().code() == absl::StatusCode::kInvalidArgument);
        CHECK_CONTRACT(spindle::Reason(next.status()) == "BAD_FRAME");
        failed = true;
        break;
      }
      if (!next->has_value()) break;
      const Frame& frame = **next;
      CHECK_CONTRACT(frame.payload.size() <= spindle::pool::kMaxFramePayload);
      spindle::pool::AppendFrame(frame.type, frame.payload, reencoded);
    }
    CHECK_CONTRACT(reencoded.size() + reader.buffered() == fed || failed);
  }
  // Every frame returned is the stream's next bytes, in order.
  CHECK_CONTRACT(stream.compare(0, reencoded.size(), reencoded) == 0);
  if (!failed) {
    CHECK_CONTRACT(reencoded.size() + reader.buffered() == stream.size());
  }
  return 0;
}
