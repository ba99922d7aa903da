#include "spindle/coro/latch.h"

#include "absl/base/internal/raw_logging.h"

namespace spindle::coro {

Latch::Latch(int64_t count) : count_(count < 0 ? 0 : count), zero_(count <= 0) {
  ABSL_RAW_CHECK(count >= 0, "Latch count must be >= 0");
}

void Latch::CountDown(int64_t n) {
  ABSL_RAW_CHECK(n >= 0, "Latch::CountDown() by a negative amount");
  int64_t current = count_.load(std::memory_order_acquire);
  while (current > 0) {
    const int64_t next = current > n ? current - n : 0;
    if (count_.compare_exchange_weak(current, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      if (next == 0) {
        zero_.Set();
      }
      return;
    }
  }
}

}  // namespace spindle::coro
