#include "spindle/coro/internal/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/internal/mutex.h"

namespace spindle::coro::internal {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// Expired timers handled per pass; the rest are picked up by the next pass at once.
constexpr size_t kMaxTimersPerPass = 4096;
constexpr uint32_t kReadEvents = EPOLLIN | EPOLLPRI | EPOLLHUP | EPOLLERR | EPOLLRDHUP;
constexpr uint32_t kWriteEvents = EPOLLOUT | EPOLLHUP | EPOLLERR;

thread_local const Reactor* tls_reactor = nullptr;

absl::Status ErrnoStatus(int error, absl::string_view what) {
  return absl::ErrnoToStatus(error, what);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(Executor* executor) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    return ErrnoStatus(errno, "executor reactor: epoll_create1");
  }
  const int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd < 0) {
    const int error = errno;
    close(epoll_fd);
    return ErrnoStatus(error, "executor reactor: timerfd_create");
  }
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) {
    const int error = errno;
    close(epoll_fd);
    close(timer_fd);
    return ErrnoStatus(error, "executor reactor: eventfd");
  }
  std::unique_ptr<Reactor> reactor(new Reactor(executor, epoll_fd, timer_fd, wake_fd));
  for (int fd : {timer_fd, wake_fd}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
      return ErrnoStatus(errno, "executor reactor: epoll_ctl");
    }
  }
  return reactor;
}

Reactor::Reactor(Executor* executor, int epoll_fd, int timer_fd, int wake_fd)
    : executor_(executor),
      epoll_fd_(epoll_fd),
      timer_fd_(timer_fd),
      wake_fd_(wake_fd),
      armed_deadline_ns_(kNever) {}

Reactor::~Reactor() {
  Stop();
  close(wake_fd_);
  close(timer_fd_);
  close(epoll_fd_);
}

void Reactor::Start(const std::string& thread_name) {
  thread_ = std::thread([this, thread_name] {
    pthread_setname_np(pthread_self(), thread_name.substr(0, 15).c_str());
    Run();
  });
}

void Reactor::Stop() {
  if (!thread_.joinable()) {
    return;
  }
  stop_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
}

bool Reactor::OnReactorThread() const noexcept { return tls_reactor == this; }

void Reactor::Run() {
  tls_reactor = this;
  epoll_event events[256];
  while (!stop_.load(std::memory_order_acquire)) {
    const int count = epoll_wait(epoll_fd_, events, 256, -1);
    if (count < 0) {
      if (errno != EINTR) {
        ABSL_RAW_LOG(ERROR, "executor reactor: epoll_wait: %s", strerror(errno));
      }
      continue;
    }
    bool timers_due = false;
    for (int i = 0; i < count; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t value;
        (void)!read(wake_fd_, &value, sizeof(value));
      } else if (fd == timer_fd_) {
        uint64_t expirations;
        (void)!read(timer_fd_, &expirations, sizeof(expirations));
        timers_due = true;
      } else {
        ProcessFd(fd, events[i].events);
      }
    }
    if (timers_due) {
      ProcessTimers();
    }
    if (!deferred_.empty()) {
      executor_->InjectBatch(deferred_, /*force=*/false);
      deferred_.clear();
    }
  }
  tls_reactor = nullptr;
}

// Timers

void Reactor::ArmTimerFd(int64_t deadline_ns) {
  armed_deadline_ns_ = deadline_ns;
  itimerspec spec{};
  if (deadline_ns != kNever) {
    // A deadline at or before 0 would disarm the timerfd; 1 ns is in the past and fires at once.
    const int64_t when = deadline_ns > 0 ? deadline_ns : 1;
    spec.it_value.tv_sec = when / 1000000000;
    spec.it_value.tv_nsec = when % 1000000000;
  }
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void Reactor::AddTimer(Timer* timer, int64_t deadline_ns) {
  MutexLock lock(&timers_mu_);
  timer->deadline_ns = deadline_ns;
  timer->firing = false;
  timers_.Push(timer);
  if (deadline_ns < armed_deadline_ns_) {
    ArmTimerFd(deadline_ns);
  }
}

bool Reactor::CancelTimer(Timer* timer) {
  MutexLock lock(&timers_mu_);
  if (timers_.Remove(timer)) {
    // The timerfd may stay armed for it: the spurious pass re-arms for the next deadline.
    return true;
  }
  if (timer->wait_for_fire && !OnReactorThread()) {
    while (timer->firing) {
      fire_done_.Wait(&timers_mu_);
    }
  }
  return false;
}

void Reactor::ProcessTimers() {
  const int64_t now = MonotonicNowNs();
  bool any_waited_for = false;
  {
    MutexLock lock(&timers_mu_);
    while (!timers_.empty() && timers_.top()->deadline_ns <= now &&
           expired_.size() < kMaxTimersPerPass) {
      Timer* timer = static_cast<Timer*>(timers_.Pop());
      timer_lag_.Record(now - timer->deadline_ns, now);
      if (timer->wait_for_fire) {
        timer->firing = true;
        any_waited_for = true;
      }
      expired_.push_back(timer);
    }
    ArmTimerFd(timers_.empty() ? kNever : timers_.top()->deadline_ns);
  }
  // Callback timers first need their `firing` flag cleared after fire(); collect them apart
  // because fire() of a waiter timer is the last access to it.
  std::vector<Timer*> waited_for;
  for (Timer* timer : expired_) {
    const bool wait_for_fire = timer->wait_for_fire;
    timer->fire(timer);
    if (wait_for_fire) {
      waited_for.push_back(timer);
    }
  }
  expired_.clear();
  if (any_waited_for) {
    MutexLock lock(&timers_mu_);
    for (Timer* timer : waited_for) {
      timer->firing = false;
    }
    fire_done_.SignalAll();
  }
}

int64_t Reactor::pending_timers() const {
  MutexLock lock(&timers_mu_);
  return static_cast<int64_t>(timers_.size());
}

LagStats Reactor::timer_lag() const {
  MutexLock lock(&timers_mu_);
  return timer_lag_.Snapshot(MonotonicNowNs());
}

// Fds

absl::Status Reactor::SyncRegistration(int fd, FdEntry& entry) {
  const uint32_t wanted = (entry.readers.empty() ? 0u : uint32_t{EPOLLIN}) |
                          (entry.writers.empty() ? 0u : uint32_t{EPOLLOUT});
  if (wanted == 0) {
    // The registration exists even when a one-shot event disarmed it. An error here (the fd was
    // closed under us) leaves nothing to clean up. Invalidates `entry`.
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    fds_.erase(fd);
    return absl::OkStatus();
  }
  if (entry.armed_events == wanted) {
    return absl::OkStatus();
  }
  epoll_event event{};
  event.events = wanted | EPOLLONESHOT;
  event.data.fd = fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0) {
    return ErrnoStatus(errno, absl::StrCat("epoll_ctl(MOD) of fd ", fd));
  }
  entry.armed_events = wanted;
  return absl::OkStatus();
}

absl::StatusOr<bool> Reactor::AddFdWaiter(FdWaiter* waiter) {
  const int fd = waiter->fd;
  MutexLock lock(&fds_mu_);
  auto [it, inserted] = fds_.try_emplace(fd);
  FdEntry& entry = it->second;
  (waiter->writable ? entry.writers : entry.readers).PushBack(waiter);
  if (inserted) {
    const uint32_t wanted = waiter->writable ? uint32_t{EPOLLOUT} : uint32_t{EPOLLIN};
    epoll_event event{};
    event.events = wanted | EPOLLONESHOT;
    event.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      const int error = errno;
      fds_.erase(it);
      waiter->queued = false;
      if (error == EPERM) {
        return false;  // A regular file or directory: always ready.
      }
      return ErrnoStatus(error, absl::StrCat("cannot wait for fd ", fd));
    }
    entry.armed_events = wanted;
    return true;
  }
  if (absl::Status status = SyncRegistration(fd, entry); !status.ok()) {
    (waiter->writable ? entry.writers : entry.readers).Remove(waiter);
    if (entry.readers.empty() && entry.writers.empty()) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      fds_.erase(fd);
    }
    return status;
  }
  return true;
}

bool Reactor::RemoveFdWaiter(FdWaiter* waiter) {
  MutexLock lock(&fds_mu_);
  if (!waiter->queued) {
    return false;
  }
  auto it = fds_.find(waiter->fd);
  FdEntry& entry = it->second;
  (waiter->writable ? entry.writers : entry.readers).Remove(waiter);
  // Narrowing the interest can only fail if the fd was closed; the entry goes away then anyway.
  (void)SyncRegistration(waiter->fd, entry);
  return true;
}

void Reactor::ProcessFd(int fd, uint32_t events) {
  WaiterChain<FdWaiter> ready;
  {
    MutexLock lock(&fds_mu_);
    auto it = fds_.find(fd);
    if (it == fds_.end()) {
      return;  // Its last waiter was cancelled after the event was queued.
    }
    FdEntry& entry = it->second;
    entry.armed_events = 0;  // One-shot: disarmed by this event.
    if ((events & kReadEvents) != 0) {
      while (FdWaiter* waiter = entry.readers.PopFront()) {
        ready.PushBack(waiter);
      }
    }
    if ((events & kWriteEvents) != 0) {
      while (FdWaiter* waiter = entry.writers.PopFront()) {
        ready.PushBack(waiter);
      }
    }
    if (absl::Status status = SyncRegistration(fd, entry); !status.ok()) {
      // The fd was closed while waiters remained (a caller bug): wake them rather than strand them.
      while (FdWaiter* waiter = entry.readers.PopFront()) {
        ready.PushBack(waiter);
      }
      while (FdWaiter* waiter = entry.writers.PopFront()) {
        ready.PushBack(waiter);
      }
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      fds_.erase(fd);
    }
  }
  ready.CompleteEach([](FdWaiter* waiter) { waiter->ready(waiter); });
}

int64_t Reactor::registered_fds() const {
  MutexLock lock(&fds_mu_);
  return static_cast<int64_t>(fds_.size());
}

}  // namespace spindle::coro::internal
