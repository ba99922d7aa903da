#include "spindle/coro/deadline.h"

#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "spindle/coro/internal/lag_tracker.h"

namespace spindle::coro {

DeadlineSource::DeadlineSource(Executor& executor, absl::Time deadline,
                               const CancellationToken& parent)
    : executor_(&executor), deadline_(deadline), source_(parent) {
  if (deadline == absl::InfiniteFuture()) {
    return;
  }
  const absl::Duration remaining = deadline - absl::Now();
  if (remaining <= absl::ZeroDuration()) {
    source_.Cancel(ExceededStatus());
    return;
  }
  timer_.fire = &DeadlineSource::OnFire;
  timer_.context = this;
  timer_.wait_for_fire = true;
  const int64_t now = internal::MonotonicNowNs();
  const int64_t delta = absl::ToInt64Nanoseconds(remaining);
  executor_->reactor_->AddTimer(&timer_, delta > std::numeric_limits<int64_t>::max() - now
                                             ? std::numeric_limits<int64_t>::max()
                                             : now + delta);
  armed_ = true;
}

DeadlineSource::~DeadlineSource() {
  if (armed_) {
    executor_->reactor_->CancelTimer(&timer_);
  }
}

absl::Status DeadlineSource::ExceededStatus() const {
  return spindle::DeadlineExceeded(
      absl::StrCat("deadline ", absl::FormatTime(deadline_, absl::UTCTimeZone()), " exceeded"));
}

void DeadlineSource::OnFire(internal::Timer* timer) noexcept {
  auto* self = static_cast<DeadlineSource*>(timer->context);
  self->source_.Cancel(self->ExceededStatus());
}

}  // namespace spindle::coro
