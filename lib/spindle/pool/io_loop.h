// IoLoop: one thread running epoll for the pipes and pidfds of pool processes.
//
// Handlers are keyed by an id carried in the epoll data, never by fd, so an event that arrives
// after its handler was removed (and the fd number reused) is dropped. Handlers run on the loop
// thread without the loop's lock held; they may Add, Modify and Remove handlers.
//
// REQUIRES: remove a handler before closing its fd.
// Thread-safety: thread-safe.
#ifndef SPINDLE_POOL_IO_LOOP_H_
#define SPINDLE_POOL_IO_LOOP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace spindle::pool {

class IoLoop {
 public:
  using HandlerId = uint64_t;
  // Called with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLHUP, ...).
  using Handler = std::function<void(uint32_t events)>;

  IoLoop();
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Watches `fd` for `events` (level-triggered). Errors: RESOURCE_EXHAUSTED (IO_FAILED).
  absl::StatusOr<HandlerId> Add(int fd, uint32_t events, Handler handler);
  // Changes the events watched. No-op for an unknown id.
  void Modify(HandlerId id, uint32_t events);
  // Stops watching; the handler does not run again once this returns (unless it is running now
  // on the loop thread). No-op for an unknown id.
  void Remove(HandlerId id);

 private:
  void Run();

  const int epoll_fd_;
  const int wake_fd_;
  absl::Mutex mu_;
  struct Entry {
    int fd;
    std::shared_ptr<Handler> handler;
  };
  absl::flat_hash_map<HandlerId, Entry> handlers_ ABSL_GUARDED_BY(mu_);
  HandlerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace spindle::pool

#endif  // SPINDLE_POOL_IO_LOOP_H_
