// The reactor: the timer heap, sleeps, fd readiness and process exit.
#include "spindle/coro/internal/reactor.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "spindle/common/status.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/internal/timer_heap.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/task_scope.h"
#include "tests/lib/coro/test_util.h"

extern char** environ;

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::spindle::coro::testing::WaitUntil;
using ::testing::HasSubstr;

constexpr int kManyTimers = 100'000;

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// TimerHeap

std::vector<internal::TimerNode> MakeNodes(const std::vector<int64_t>& deadlines) {
  std::vector<internal::TimerNode> nodes(deadlines.size());
  for (size_t i = 0; i < deadlines.size(); ++i) {
    nodes[i].deadline_ns = deadlines[i];
  }
  return nodes;
}

TEST(TimerHeapTest, PopsInDeadlineOrderThenInsertionOrder) {
  std::vector<int64_t> deadlines;
  std::mt19937 random(42);
  for (int i = 0; i < 1000; ++i) {
    deadlines.push_back(static_cast<int64_t>(random() % 100));
  }
  std::vector<internal::TimerNode> nodes = MakeNodes(deadlines);
  internal::TimerHeap heap;
  for (auto& node : nodes) {
    heap.Push(&node);
  }
  EXPECT_EQ(heap.size(), nodes.size());
  const internal::TimerNode* previous = nullptr;
  while (!heap.empty()) {
    internal::TimerNode* node = heap.Pop();
    EXPECT_FALSE(node->queued());
    if (previous != nullptr) {
      ASSERT_LE(previous->deadline_ns, node->deadline_ns);
      if (previous->deadline_ns == node->deadline_ns) {
        ASSERT_LT(previous->sequence, node->sequence);  // FIFO among equal deadlines.
      }
    }
    previous = node;
  }
}

TEST(TimerHeapTest, RemovingAnyNodeKeepsTheOrder) {
  std::vector<int64_t> deadlines;
  std::mt19937 random(7);
  for (int i = 0; i < 2000; ++i) {
    deadlines.push_back(static_cast<int64_t>(random() % 500));
  }
  std::vector<internal::TimerNode> nodes = MakeNodes(deadlines);
  internal::TimerHeap heap;
  for (auto& node : nodes) {
    heap.Push(&node);
  }
  for (size_t i = 0; i < nodes.size(); i += 3) {
    EXPECT_TRUE(heap.Remove(&nodes[i]));
    EXPECT_FALSE(heap.Remove(&nodes[i]));
  }
  int64_t last = -1;
  size_t popped = 0;
  while (!heap.empty()) {
    internal::TimerNode* node = heap.Pop();
    ASSERT_GE(node->deadline_ns, last);
    last = node->deadline_ns;
    ++popped;
  }
  EXPECT_EQ(popped, nodes.size() - (nodes.size() + 2) / 3);
}

// Sleeps

Task<absl::Status> Sleep(Executor* executor, absl::Duration duration, CancellationToken token) {
  co_return co_await executor->SleepFor(duration, std::move(token));
}

Task<absl::Status> SleepUntil(Executor* executor, absl::Time deadline) {
  co_return co_await executor->SleepUntil(deadline, CancellationToken());
}

Task<void> SleepIntoLatch(Executor* executor, absl::Duration duration, CancellationToken token,
                          std::atomic<int>* ok, std::atomic<int>* cancelled, Latch* done) {
  absl::Status status = co_await executor->SleepFor(duration, std::move(token));
  if (status.ok()) {
    ok->fetch_add(1, std::memory_order_relaxed);
  } else if (status.code() == absl::StatusCode::kCancelled) {
    cancelled->fetch_add(1, std::memory_order_relaxed);
  }
  done->CountDown();
}

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

TEST(SleepTest, SleepForWaitsAtLeastTheDuration) {
  auto executor = MakeExecutor(1);
  const absl::Time start = absl::Now();
  EXPECT_THAT(SyncWait(Sleep(executor.get(), absl::Milliseconds(20), CancellationToken())), IsOk());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(19));  // Wall vs monotonic rounding.
  EXPECT_GE(executor->Stats().timer_lag.count, 1u);
}

TEST(SleepTest, SleepUntilUsesAWallClockDeadline) {
  auto executor = MakeExecutor(1);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(15);
  EXPECT_THAT(SyncWait(SleepUntil(executor.get(), deadline)), IsOk());
  EXPECT_GE(absl::Now(), deadline - absl::Milliseconds(1));
}

TEST(SleepTest, ZeroNegativeOrPastSleepsCompleteAtOnce) {
  auto executor = MakeExecutor(1);
  EXPECT_THAT(SyncWait(Sleep(executor.get(), absl::ZeroDuration(), CancellationToken())), IsOk());
  EXPECT_THAT(SyncWait(Sleep(executor.get(), -absl::Seconds(1), CancellationToken())), IsOk());
  EXPECT_THAT(SyncWait(SleepUntil(executor.get(), absl::Now() - absl::Hours(1))), IsOk());
  EXPECT_EQ(executor->Stats().timer_lag.count, 0u);  // No timer was armed.
}

TEST(SleepTest, CancelledSleepReturnsTheReasonAndRemovesItsTimer) {
  auto executor = MakeExecutor(2);
  CancellationSource source;
  std::thread canceller([&] {
    WaitUntil([&] { return executor->Stats().pending_timers == 1; });
    source.Cancel(spindle::Cancelled("stop"));
  });
  absl::Status status = SyncWait(Sleep(executor.get(), absl::Hours(1), source.token()));
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(status.message(), "waiting for a timer: stop");
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(SleepTest, AlreadyCancelledTokenEndsTheSleepAtOnce) {
  auto executor = MakeExecutor(1);
  CancellationSource source;
  source.Cancel();
  EXPECT_THAT(SyncWait(Sleep(executor.get(), absl::Hours(1), source.token())),
              StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(SleepTest, ManyPendingTimersAreArmedAndCancelledCleanly) {
  auto executor = MakeExecutor(2);
  CancellationSource source;
  std::atomic<int> ok{0};
  std::atomic<int> cancelled{0};
  Latch done(kManyTimers);
  for (int i = 0; i < kManyTimers; ++i) {
    // Distinct deadlines a few seconds apart, so that they land all over the heap.
    executor->Spawn(SleepIntoLatch(executor.get(), absl::Hours(1) + absl::Milliseconds(i % 3600),
                                   source.token(), &ok, &cancelled, &done));
  }
  WaitUntil([&] { return executor->Stats().pending_timers == kManyTimers; });
  source.Cancel();
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(cancelled.load(), kManyTimers);
  EXPECT_EQ(ok.load(), 0);
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

TEST(SleepTest, TimersFiringWhileBeingCancelledEndExactlyOnce) {
  auto executor = MakeExecutor(2);
  constexpr int kSleeps = 2000;
  std::atomic<int> ok{0};
  std::atomic<int> cancelled{0};
  Latch done(kSleeps);
  std::vector<std::unique_ptr<CancellationSource>> sources;
  for (int i = 0; i < kSleeps; ++i) {
    sources.push_back(std::make_unique<CancellationSource>());
    executor->Spawn(SleepIntoLatch(executor.get(), absl::Microseconds(i % 500),
                                   sources.back()->token(), &ok, &cancelled, &done));
  }
  for (auto& source : sources) {
    source->Cancel();
  }
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(ok.load() + cancelled.load(), kSleeps);
  EXPECT_EQ(executor->Stats().pending_timers, 0);
}

// Fds

class Pipe {
 public:
  explicit Pipe(int flags = O_NONBLOCK | O_CLOEXEC) {
    int fds[2];
    EXPECT_EQ(pipe2(fds, flags), 0);
    read_fd_ = fds[0];
    write_fd_ = fds[1];
  }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  int read_fd() const { return read_fd_; }
  int write_fd() const { return write_fd_; }
  void CloseRead() {
    if (read_fd_ >= 0) {
      close(read_fd_);
      read_fd_ = -1;
    }
  }
  void CloseWrite() {
    if (write_fd_ >= 0) {
      close(write_fd_);
      write_fd_ = -1;
    }
  }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

Task<absl::Status> Readable(Executor* executor, int fd, CancellationToken token) {
  co_return co_await executor->WaitReadable(fd, std::move(token));
}

Task<absl::Status> Writable(Executor* executor, int fd, CancellationToken token) {
  co_return co_await executor->WaitWritable(fd, std::move(token));
}

Task<absl::Status> ProcessExit(Executor* executor, int pidfd, CancellationToken token) {
  co_return co_await executor->WaitProcessExit(pidfd, std::move(token));
}

Task<void> ReadableIntoLatch(Executor* executor, int fd, std::atomic<int>* ok, Latch* done) {
  absl::Status status = co_await executor->WaitReadable(fd, CancellationToken());
  if (status.ok()) {
    ok->fetch_add(1, std::memory_order_relaxed);
  }
  done->CountDown();
}

TEST(FdWaitTest, WaitReadableResumesWhenDataArrives) {
  auto executor = MakeExecutor(2);
  Pipe pipe;
  std::thread writer([&] {
    WaitUntil([&] { return executor->Stats().registered_fds == 1; });
    ASSERT_EQ(write(pipe.write_fd(), "x", 1), 1);
  });
  EXPECT_THAT(SyncWait(Readable(executor.get(), pipe.read_fd(), CancellationToken())), IsOk());
  writer.join();
  char byte = 0;
  EXPECT_EQ(read(pipe.read_fd(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(executor->Stats().registered_fds, 0);
}

TEST(FdWaitTest, WaitWritableResumesWhenAFullPipeDrains) {
  auto executor = MakeExecutor(2);
  Pipe pipe;
  char buffer[4096] = {};
  while (write(pipe.write_fd(), buffer, sizeof(buffer)) > 0) {
  }
  std::thread reader([&] {
    WaitUntil([&] { return executor->Stats().registered_fds == 1; });
    while (read(pipe.read_fd(), buffer, sizeof(buffer)) > 0) {
    }
  });
  EXPECT_THAT(SyncWait(Writable(executor.get(), pipe.write_fd(), CancellationToken())), IsOk());
  reader.join();
}

TEST(FdWaitTest, EveryReaderOfAnFdWakes) {
  auto executor = MakeExecutor(2);
  Pipe pipe;
  std::atomic<int> ok{0};
  Latch done(3);
  for (int i = 0; i < 3; ++i) {
    executor->Spawn(ReadableIntoLatch(executor.get(), pipe.read_fd(), &ok, &done));
  }
  WaitUntil([&] { return executor->Stats().registered_fds == 1; });
  ASSERT_EQ(write(pipe.write_fd(), "x", 1), 1);
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(ok.load(), 3);
}

TEST(FdWaitTest, ReaderAndWriterShareOneRegistration) {
  auto executor = MakeExecutor(2);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  std::atomic<int> ok{0};
  Latch done(1);
  executor->Spawn(ReadableIntoLatch(executor.get(), fds[0], &ok, &done));
  WaitUntil([&] { return executor->Stats().registered_fds == 1; });
  // A writer on the same fd joins the registration and is ready at once; the reader keeps waiting.
  EXPECT_THAT(SyncWait(Writable(executor.get(), fds[0], CancellationToken())), IsOk());
  EXPECT_EQ(ok.load(), 0);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(ok.load(), 1);
  EXPECT_EQ(executor->Stats().registered_fds, 0);
  close(fds[0]);
  close(fds[1]);
}

TEST(FdWaitTest, CancelledWaitRemovesTheRegistration) {
  auto executor = MakeExecutor(2);
  Pipe pipe;
  CancellationSource source;
  std::thread canceller([&] {
    WaitUntil([&] { return executor->Stats().registered_fds == 1; });
    source.Cancel(spindle::Cancelled("client left"));
  });
  absl::Status status = SyncWait(Readable(executor.get(), pipe.read_fd(), source.token()));
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("fd ", pipe.read_fd(), " to become readable")));
  EXPECT_EQ(executor->Stats().registered_fds, 0);
  // The fd can be waited for again afterwards.
  ASSERT_EQ(write(pipe.write_fd(), "x", 1), 1);
  EXPECT_THAT(SyncWait(Readable(executor.get(), pipe.read_fd(), CancellationToken())), IsOk());
}

TEST(FdWaitTest, DeadlineEndsAnFdWaitWithDeadlineExceeded) {
  auto executor = MakeExecutor(1);
  Pipe pipe;
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(10));
  EXPECT_THAT(SyncWait(Readable(executor.get(), pipe.read_fd(), deadline.token())),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(executor->Stats().registered_fds, 0);
}

TEST(FdWaitTest, RegularFilesAreAlwaysReady) {
  auto executor = MakeExecutor(1);
  char path[] = "/tmp/spindle_coro_reactor_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  EXPECT_THAT(SyncWait(Readable(executor.get(), fd, CancellationToken())), IsOk());
  EXPECT_EQ(executor->Stats().registered_fds, 0);
  close(fd);
}

TEST(FdWaitTest, BadFdIsAnError) {
  auto executor = MakeExecutor(1);
  absl::Status status = SyncWait(Readable(executor.get(), -1, CancellationToken()));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("fd -1"));
  EXPECT_EQ(executor->Stats().registered_fds, 0);
}

TEST(FdWaitTest, WaitProcessExitResumesWhenTheChildExits) {
  auto executor = MakeExecutor(2);
  Pipe stdin_pipe(O_CLOEXEC);  // Blocking: cat must wait on it, not fail with EAGAIN.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdin_pipe.read_fd(), STDIN_FILENO);
  const char* argv[] = {"cat", nullptr};
  pid_t pid = 0;
  // cat blocks on its stdin until the write end is closed, then exits.
  ASSERT_EQ(posix_spawn(&pid, "/bin/cat", &actions, nullptr, const_cast<char**>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  stdin_pipe.CloseRead();
  const int pidfd = PidfdOpen(pid);
  ASSERT_GE(pidfd, 0);
  std::thread closer([&] {
    WaitUntil([&] { return executor->Stats().registered_fds == 1; });
    stdin_pipe.CloseWrite();  // EOF: cat exits.
  });
  EXPECT_THAT(SyncWait(ProcessExit(executor.get(), pidfd, CancellationToken())), IsOk());
  closer.join();
  siginfo_t info = {};
  EXPECT_EQ(waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG), 0);
  EXPECT_EQ(info.si_pid, pid);
  close(pidfd);
}

TEST(FdWaitTest, CancelledProcessWaitNamesThePidfd) {
  auto executor = MakeExecutor(1);
  const int pidfd = PidfdOpen(getpid());
  ASSERT_GE(pidfd, 0);
  DeadlineSource deadline(*executor, absl::Now() + absl::Milliseconds(5));
  absl::Status status = SyncWait(ProcessExit(executor.get(), pidfd, deadline.token()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat("pidfd ", pidfd)));
  close(pidfd);
}

}  // namespace
}  // namespace spindle::coro
