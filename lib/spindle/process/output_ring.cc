#include "spindle/process/output_ring.h"

#include <algorithm>
#include <cstring>

namespace spindle::process {

void OutputRing::Append(absl::string_view data) {
  if (data.empty()) {
    return;
  }
  end_ += static_cast<int64_t>(data.size());
  if (static_cast<int64_t>(data.size()) >= capacity_) {
    data.remove_prefix(data.size() - static_cast<size_t>(capacity_));
  }
  const auto n = static_cast<int64_t>(data.size());
  const auto used = static_cast<int64_t>(buffer_.size());
  if (used < capacity_) {
    // Still growing: the ring has not wrapped, bytes sit at [0, size_).
    if (size_ + n <= capacity_ && end_ - n == size_) {
      buffer_.insert(buffer_.end(), data.begin(), data.end());
      size_ += n;
      return;
    }
    buffer_.resize(static_cast<size_t>(capacity_));
  }
  // Full-size buffer: byte at absolute offset o lives at o % capacity_.
  int64_t pos = (end_ - n) % capacity_;
  int64_t first = std::min(n, capacity_ - pos);
  std::memcpy(buffer_.data() + pos, data.data(), static_cast<size_t>(first));
  std::memcpy(buffer_.data(), data.data() + first, static_cast<size_t>(n - first));
  size_ = std::min(capacity_, size_ + n);
}

std::string OutputRing::Read(int64_t offset, int64_t max_bytes, int64_t* dropped) const {
  *dropped = 0;
  if (offset < start_offset()) {
    *dropped = start_offset() - offset;
    return "";
  }
  if (offset >= end_ || max_bytes <= 0) {
    return "";
  }
  int64_t n = std::min(max_bytes, end_ - offset);
  std::string out(static_cast<size_t>(n), '\0');
  if (static_cast<int64_t>(buffer_.size()) < capacity_) {
    // Not wrapped yet: offset o lives at o - start_offset() (= o, nothing dropped).
    std::memcpy(out.data(), buffer_.data() + (offset - start_offset()), static_cast<size_t>(n));
    return out;
  }
  int64_t pos = offset % capacity_;
  int64_t first = std::min(n, capacity_ - pos);
  std::memcpy(out.data(), buffer_.data() + pos, static_cast<size_t>(first));
  std::memcpy(out.data() + first, buffer_.data(), static_cast<size_t>(n - first));
  return out;
}

}  // namespace spindle::process
