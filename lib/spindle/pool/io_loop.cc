#include "spindle/pool/io_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"

namespace spindle::pool {

IoLoop::IoLoop()
    : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // The wake fd.
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  thread_ = std::thread([this] { Run(); });
}

IoLoop::~IoLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

absl::StatusOr<IoLoop::HandlerId> IoLoop::Add(int fd, uint32_t events, Handler handler) {
  absl::MutexLock lock(&mu_);
  HandlerId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ResourceExhausted("IO_FAILED",
                             absl::StrCat("epoll_ctl(ADD, fd ", fd, "): ", std::strerror(errno)));
  }
  handlers_.emplace(id, Entry{fd, std::make_shared<Handler>(std::move(handler))});
  return id;
}

void IoLoop::Modify(HandlerId id, uint32_t events) {
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find(id);
  if (it == handlers_.end()) {
    return;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, it->second.fd, &ev);
}

void IoLoop::Remove(HandlerId id) {
  absl::MutexLock lock(&mu_);
  auto it = handlers_.find(id);
  if (it == handlers_.end()) {
    return;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
  handlers_.erase(it);
}

void IoLoop::Run() {
  std::vector<epoll_event> events(64);
  while (true) {
    int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    for (int i = 0; i < n; ++i) {
      const HandlerId id = events[i].data.u64;
      if (id == 0) {
        uint64_t value;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &value, sizeof(value));
        absl::MutexLock lock(&mu_);
        if (stop_) {
          return;
        }
        continue;
      }
      std::shared_ptr<Handler> handler;
      {
        absl::MutexLock lock(&mu_);
        auto it = handlers_.find(id);
        if (it == handlers_.end()) {
          continue;
        }
        handler = it->second.handler;
      }
      (*handler)(events[i].events);
    }
  }
}

}  // namespace spindle::pool
