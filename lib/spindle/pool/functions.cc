#include "spindle/pool/functions.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "spindle/common/status.h"

namespace spindle::pool {
namespace {

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    table[i] = c;
  }
  return table;
}

absl::StatusOr<std::string> Sleep(const CallContext& call) {
  int64_t ms = 0;
  if (call.args().size() != 1 || !absl::SimpleAtoi(call.args()[0], &ms) || ms < 0 ||
      ms > 86'400'000) {
    return InvalidArgument("FUNCTION_ERROR",
                           "sleep: expects one argument, milliseconds 0..86400000");
  }
  if (call.WaitCancelled(absl::Milliseconds(ms))) {
    return Cancelled("sleep: cancelled");
  }
  return absl::StrCat("slept ", ms, " ms");
}

absl::StatusOr<std::string> Checksum(const CallContext& call) {
  if (call.args().size() > 1) {
    return InvalidArgument("FUNCTION_ERROR", "checksum: expects at most one argument, a path");
  }
  uint32_t crc = 0;
  if (call.args().empty()) {
    crc = Crc32(0, call.input().data(), call.input().size());
  } else {
    const std::string& path = call.args()[0];
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return FailedPrecondition(
          "FUNCTION_ERROR", absl::StrCat("checksum: open '", path, "': ", std::strerror(errno)));
    }
    std::string buffer(1 << 16, '\0');
    while (true) {
      if (call.cancelled()) {
        ::close(fd);
        return Cancelled("checksum: cancelled");
      }
      ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return FailedPrecondition(
            "FUNCTION_ERROR", absl::StrCat("checksum: read '", path, "': ", std::strerror(err)));
      }
      if (n == 0) {
        break;
      }
      crc = Crc32(crc, buffer.data(), static_cast<size_t>(n));
    }
    ::close(fd);
  }
  return absl::StrFormat("crc32:%08x", crc);
}

}  // namespace

uint32_t Crc32(uint32_t crc, const char* data, size_t size) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) {
    crc = table[(crc ^ static_cast<unsigned char>(data[i])) & 0xff] ^ (crc >> 8);
  }
  return ~crc;
}

FunctionRegistry::FunctionRegistry() {
  Register("sleep", Sleep);
  Register("checksum", Checksum);
  Register("echo",
           [](const CallContext& call) -> absl::StatusOr<std::string> { return call.input(); });
  Register("fail", [](const CallContext& call) -> absl::StatusOr<std::string> {
    return absl::UnknownError(absl::StrJoin(call.args(), " "));
  });
}

void FunctionRegistry::Register(const std::string& name, Function function) {
  absl::MutexLock lock(&mu_);
  functions_[name] = std::make_shared<const Function>(std::move(function));
}

std::shared_ptr<const Function> FunctionRegistry::Find(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : it->second;
}

std::vector<std::string> FunctionRegistry::Names() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, fn] : functions_) {
    names.push_back(name);
  }
  return names;
}

}  // namespace spindle::pool
