#include "spindle/coro/internal/event_count.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace spindle::coro::internal {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) noexcept {
  // EINTR and EAGAIN (value already changed) both mean "look again"; callers loop.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr,
          nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word, int count) noexcept {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr, nullptr,
          0);
}

}  // namespace spindle::coro::internal
