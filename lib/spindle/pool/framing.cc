#include "spindle/pool/framing.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spindle/common/status.h"

namespace spindle::pool {

void AppendFrame(char type, absl::string_view payload, std::string& out) {
  const auto n = static_cast<uint32_t>(payload.size());
  const char header[kFrameHeaderBytes] = {
      type, static_cast<char>((n >> 24) & 0xff), static_cast<char>((n >> 16) & 0xff),
      static_cast<char>((n >> 8) & 0xff), static_cast<char>(n & 0xff)};
  out.append(header, kFrameHeaderBytes);
  out.append(payload.data(), payload.size());
}

absl::StatusOr<std::optional<Frame>> FrameReader::Next() {
  const size_t available = buffer_.size() - consumed_;
  if (available < kFrameHeaderBytes) {
    return std::nullopt;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  const char type = static_cast<char>(p[0]);
  if (type != kFrameReady && type != kFrameOk && type != kFrameError && type != kFrameTask) {
    return InvalidArgument("BAD_FRAME",
                           absl::StrFormat("worker sent a frame of unknown type 0x%02x", p[0]));
  }
  const uint32_t n =
      (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | uint32_t{p[4]};
  if (n > kMaxFramePayload) {
    return InvalidArgument(
        "BAD_FRAME",
        absl::StrCat("worker sent a frame of ", n, " bytes, over the limit of ", kMaxFramePayload));
  }
  if (available < kFrameHeaderBytes + n) {
    return std::nullopt;
  }
  Frame frame;
  frame.type = type;
  frame.payload.assign(buffer_.data() + consumed_ + kFrameHeaderBytes, n);
  consumed_ += kFrameHeaderBytes + n;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > (1u << 16) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return frame;
}

}  // namespace spindle::pool
