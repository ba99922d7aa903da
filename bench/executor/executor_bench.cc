// Benchmarks of the coroutine executor, each side by side with the std::thread +
// std::condition_variable equivalent measured in the same run.
//
// Every benchmark reports counters rather than relying on the Time column (per-operation figures
// are the median of several batches; latencies the median of every round, with p90 beside):
//   coro_*    the executor's figure       thread_*  the std::thread + condvar figure
//   ratio     thread / coro (how many times cheaper the executor is; > 1 is better)
// Latencies are wall-clock. Costs (spawn, timers) also come as *_cpu_ns: CPU time of the whole
// process per operation, which other tenants of a loaded machine do not inflate; their ratio is
// taken from it.
// Run in Release: bench_executor [--benchmark_filter=...]; bench/executor/run.py wraps it for
// bench/run.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "spindle/coro/async_event.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/internal/lag_tracker.h"
#include "spindle/coro/internal/reactor.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/task.h"
#include "spindle/coro/task_scope.h"

namespace spindle::coro {
namespace {

using Clock = std::chrono::steady_clock;

double NanosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// CPU time of every thread of the process, nanoseconds.
double ProcessCpuNanos() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

std::unique_ptr<Executor> MakeExecutor(int threads) {
  auto executor = Executor::Create({.threads = threads, .name = "bench"});
  if (!executor.ok()) {
    std::fprintf(stderr, "bench_executor: %s\n", executor.status().ToString().c_str());
    std::abort();
  }
  return std::move(*executor);
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0;
  int64_t resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * sysconf(_SC_PAGESIZE);
}

// The median and 90th percentile of `samples` (sorted in place). On a shared machine a few
// preempted rounds would dominate a mean.
double Percentile(std::vector<double>& samples, double fraction) {
  std::sort(samples.begin(), samples.end());
  return samples.empty() ? 0 : samples[static_cast<size_t>(fraction * (samples.size() - 1))];
}

void Report(benchmark::State& state, const char* unit, double coro, double thread) {
  state.counters[std::string("coro_") + unit] = coro;
  state.counters[std::string("thread_") + unit] = thread;
  state.counters["ratio"] = coro > 0 ? thread / coro : 0;
}

// The thread equivalent of a suspend/resume pair: two threads handing a turn back and forth
// through a mutex and condition variable. Returns nanoseconds per hand-off (one side blocks, the
// other wakes it).
double CondvarHandoffNanos(int round_trips) {
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;  // 0: ping's turn, 1: pong's turn.
  std::thread pong([&] {
    for (int i = 0; i < round_trips; ++i) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return turn == 1; });
      turn = 0;
      cv.notify_one();
    }
  });
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < round_trips; ++i) {
    std::unique_lock<std::mutex> lock(mu);
    turn = 1;
    cv.notify_one();
    cv.wait(lock, [&] { return turn == 0; });
  }
  const double elapsed = NanosSince(start);
  pong.join();
  return elapsed / (2.0 * round_trips);
}

// 1. Suspend + resume through the scheduler: a coroutine yields to the back of its worker's queue
// and is resumed from it.

Task<void> YieldLoop(Executor* executor, int count) {
  co_await executor->Schedule();
  for (int i = 0; i < count; ++i) {
    co_await Yield();
  }
}

void BM_SuspendResume(benchmark::State& state) {
  auto executor = MakeExecutor(static_cast<int>(state.range(0)));
  constexpr int kBatches = 7;
  constexpr int kYields = 200'000;
  constexpr int kRoundTrips = 5'000;
  std::vector<double> coro;
  std::vector<double> thread;
  for (auto _ : state) {
    for (int batch = 0; batch < kBatches; ++batch) {
      const Clock::time_point start = Clock::now();
      SyncWait(YieldLoop(executor.get(), kYields));
      coro.push_back(NanosSince(start) / kYields);
      thread.push_back(CondvarHandoffNanos(kRoundTrips));
    }
  }
  Report(state, "ns", Percentile(coro, 0.5), Percentile(thread, 0.5));
}
BENCHMARK(BM_SuspendResume)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);

// 2. Spawn + complete: a task spawned into a scope, run and finished, vs a std::thread created
// and joined.

Task<void> Empty(std::atomic<int64_t>* count) {
  count->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

Task<void> SpawnAndJoin(Executor* executor, int tasks, std::atomic<int64_t>* count) {
  co_await executor->Schedule();
  TaskScope scope(*executor);
  for (int i = 0; i < tasks; ++i) {
    scope.Spawn(Empty(count));
  }
  co_await scope.Join();
}

void BM_SpawnComplete(benchmark::State& state) {
  auto executor = MakeExecutor(2);
  constexpr int kTasks = 200'000;
  constexpr int kThreads = 2'000;
  std::atomic<int64_t> count{0};
  double coro = 0;
  double thread = 0;
  double coro_cpu = 0;
  double thread_cpu = 0;
  for (auto _ : state) {
    Clock::time_point start = Clock::now();
    double cpu = ProcessCpuNanos();
    SyncWait(SpawnAndJoin(executor.get(), kTasks, &count));
    coro += NanosSince(start) / kTasks;
    coro_cpu += (ProcessCpuNanos() - cpu) / kTasks;
    start = Clock::now();
    cpu = ProcessCpuNanos();
    for (int i = 0; i < kThreads; ++i) {
      std::thread([&] { count.fetch_add(1, std::memory_order_relaxed); }).join();
    }
    thread += NanosSince(start) / kThreads;
    thread_cpu += (ProcessCpuNanos() - cpu) / kThreads;
  }
  const double n = static_cast<double>(state.iterations());
  Report(state, "cpu_ns", coro_cpu / n, thread_cpu / n);
  state.counters["coro_ns"] = coro / n;
  state.counters["thread_ns"] = thread / n;
}
BENCHMARK(BM_SpawnComplete)->Iterations(3)->Unit(benchmark::kMillisecond);

// 3. Memory of suspended waiters: 1,000,000 coroutines waiting on an event with a cancellable
// token (as every engine wait has), vs threads blocked on a condition variable. Bytes each from
// the resident set size delta (/proc/self/statm).

Task<void> Park(AsyncEvent* event, CancellationToken token) {
  absl::Status status = co_await event->Wait(std::move(token));
  benchmark::DoNotOptimize(status);
}

void BM_SuspendedMemory(benchmark::State& state) {
  const int coroutines = static_cast<int>(state.range(0));
  constexpr int kThreads = 1'000;
  double coro_bytes = 0;
  double thread_bytes = 0;
  double coro_total_mib = 0;
  for (auto _ : state) {
    {
      auto executor = MakeExecutor(2);
      AsyncEvent event;
      CancellationSource source;
      const int64_t before = ResidentBytes();
      for (int i = 0; i < coroutines; ++i) {
        executor->Spawn(Park(&event, source.token()));
      }
      while (event.waiters() < static_cast<size_t>(coroutines)) {
        std::this_thread::yield();
      }
      const int64_t delta = ResidentBytes() - before;
      coro_bytes = static_cast<double>(delta) / coroutines;
      coro_total_mib = static_cast<double>(delta) / (1 << 20);
      state.counters["live_frames"] = static_cast<double>(executor->Stats().live_coroutines);
      event.Set();
    }
    {
      std::mutex mu;
      std::condition_variable cv;
      bool go = false;
      int parked = 0;
      std::vector<std::thread> threads;
      const int64_t before = ResidentBytes();
      for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&] {
          std::unique_lock<std::mutex> lock(mu);
          ++parked;
          cv.notify_all();
          cv.wait(lock, [&] { return go; });
        });
      }
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return parked == kThreads; });
      }
      thread_bytes = static_cast<double>(ResidentBytes() - before) / kThreads;
      {
        std::lock_guard<std::mutex> lock(mu);
        go = true;
      }
      cv.notify_all();
      for (auto& t : threads) {
        t.join();
      }
    }
  }
  Report(state, "bytes", coro_bytes, thread_bytes);
  state.counters["coro_total_MiB"] = coro_total_mib;
}
BENCHMARK(BM_SuspendedMemory)->Arg(1'000'000)->Iterations(1)->Unit(benchmark::kMillisecond);

// 4. Pending timers: 100,000 coroutines each sleeping on its own timer (all pending at once),
// then all cancelled. The thread-world equivalent is the classic timer thread: a std::multimap of
// deadlines under a mutex, a condition variable to re-arm its wait, erase-by-iterator to cancel.

Task<void> SleepUntilCancelled(Executor* executor, absl::Duration duration, CancellationToken token,
                               Latch* done) {
  absl::Status status = co_await executor->SleepFor(duration, std::move(token));
  benchmark::DoNotOptimize(status);
  done->CountDown();
}

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

class ThreadTimerService {
 public:
  using Entry = std::multimap<Clock::time_point, std::function<void()>>::iterator;
  ThreadTimerService() : thread_([this] { Run(); }) {}
  ~ThreadTimerService() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Entry Add(Clock::time_point when, std::function<void()> callback) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry entry = timers_.emplace(when, std::move(callback));
    if (entry == timers_.begin()) {
      cv_.notify_one();
    }
    return entry;
  }
  void Cancel(Entry entry) {
    std::lock_guard<std::mutex> lock(mu_);
    timers_.erase(entry);
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (timers_.empty()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, timers_.begin()->first);
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> timers_;
  bool stop_ = false;
  std::thread thread_;
};

void BM_PendingTimers(benchmark::State& state) {
  const int timers = static_cast<int>(state.range(0));
  auto executor = MakeExecutor(2);
  double coro = 0;
  double coro_cpu = 0;
  double reactor_cpu = 0;
  double heap_cpu = 0;
  double thread = 0;
  double thread_cpu = 0;
  for (auto _ : state) {
    {
      // The reactor's timer table alone (its thread is not started): arm `timers` timers so they
      // are all pending together, then cancel them all. This is what the timer thread below does.
      auto reactor = internal::Reactor::Create(executor.get());
      if (!reactor.ok()) {
        std::abort();
      }
      std::vector<internal::Timer> nodes(static_cast<size_t>(timers));
      const int64_t base = internal::MonotonicNowNs() + int64_t{3600} * 1'000'000'000;
      const double cpu = ProcessCpuNanos();
      for (int i = 0; i < timers; ++i) {
        (*reactor)->AddTimer(&nodes[static_cast<size_t>(i)], base + (i * 37 % 100'000) * 1000);
      }
      for (auto& node : nodes) {
        (*reactor)->CancelTimer(&node);
      }
      reactor_cpu += (ProcessCpuNanos() - cpu) / timers;
    }
    {
      // Coroutines: spawn, arm, cancel, resume with CANCELLED, finish.
      CancellationSource source;
      Latch done(timers);
      const Clock::time_point start = Clock::now();
      const double cpu = ProcessCpuNanos();
      for (int i = 0; i < timers; ++i) {
        executor->Spawn(SleepUntilCancelled(executor.get(),
                                            absl::Hours(1) + absl::Microseconds(i * 37 % 100'000),
                                            source.token(), &done));
      }
      while (executor->Stats().pending_timers < timers) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      source.Cancel();
      benchmark::DoNotOptimize(SyncWait(AwaitLatch(&done)));
      coro += NanosSince(start) / timers;
      coro_cpu += (ProcessCpuNanos() - cpu) / timers;
    }
    {
      // The timer heap alone: arm `timers` deadlines (all pending together), then disarm them.
      std::vector<std::unique_ptr<DeadlineSource>> sources;
      sources.reserve(static_cast<size_t>(timers));
      const absl::Time base = absl::Now() + absl::Hours(1);
      const double cpu = ProcessCpuNanos();
      for (int i = 0; i < timers; ++i) {
        sources.push_back(std::make_unique<DeadlineSource>(
            *executor, base + absl::Microseconds(i * 37 % 100'000)));
      }
      sources.clear();
      heap_cpu += (ProcessCpuNanos() - cpu) / timers;
    }
    {
      ThreadTimerService service;
      std::vector<ThreadTimerService::Entry> entries;
      entries.reserve(static_cast<size_t>(timers));
      const Clock::time_point base = Clock::now() + std::chrono::hours(1);
      const Clock::time_point start = Clock::now();
      const double cpu = ProcessCpuNanos();
      for (int i = 0; i < timers; ++i) {
        entries.push_back(service.Add(base + std::chrono::microseconds(i * 37 % 100'000), [] {}));
      }
      for (auto entry : entries) {
        service.Cancel(entry);
      }
      thread += NanosSince(start) / timers;
      thread_cpu += (ProcessCpuNanos() - cpu) / timers;
    }
  }
  const double n = static_cast<double>(state.iterations());
  Report(state, "cpu_ns", reactor_cpu / n, thread_cpu / n);
  state.counters["deadline_source_cpu_ns"] = heap_cpu / n;  // Public API: arm + disarm.
  state.counters["coroutine_cpu_ns"] = coro_cpu / n;        // Spawn, sleep, cancel, resume, finish.
  state.counters["coroutine_ns"] = coro / n;
  state.counters["thread_ns"] = thread / n;
}
BENCHMARK(BM_PendingTimers)->Arg(100'000)->Iterations(3)->Unit(benchmark::kMillisecond);

// 5. Cross-thread wake-up latency, one way: the time from a thread signalling to the waiter
// running. (a) A plain thread (think: a gRPC callback thread) sets an AsyncEvent that a coroutine
// on an idle executor waits for, vs one thread notifying a condition variable another waits on.
// (b) Two coroutines on a two-worker executor waking each other (AsyncEvent ping-pong) vs two
// threads doing the same with condition variables. Acknowledgements go back through an atomic the
// signaller spins on, identical in both variants and outside the measured interval.

// Before each signal the signaller pauses so that the waiting side is asleep in the kernel in both
// variants (the executor's workers poll for a few microseconds before parking): this is the cold
// path, a wake-up that costs a futex wake and a context switch.
constexpr auto kParkPause = std::chrono::microseconds(200);

struct WakeProbe {
  std::atomic<int64_t> signalled_ns{0};
  std::atomic<int> acked{0};
  std::vector<double> samples;  // Written by the waiter only, read after it finished.
};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

Task<void> WakeWaiter(Executor* executor, AsyncEvent* event, WakeProbe* probe, int rounds) {
  co_await executor->Schedule();
  for (int i = 0; i < rounds; ++i) {
    absl::Status status = co_await event->Wait(CancellationToken());
    benchmark::DoNotOptimize(status);
    probe->samples.push_back(static_cast<double>(NowNs() - probe->signalled_ns.load()));
    event->Clear();
    probe->acked.store(i + 1, std::memory_order_release);
  }
}

Task<void> JoinScope(TaskScope* scope) { co_await scope->Join(); }

std::vector<double> ForeignToCoroutineNanos(Executor* executor, int rounds) {
  AsyncEvent event;
  WakeProbe probe;
  TaskScope scope(*executor);
  scope.Spawn(WakeWaiter(executor, &event, &probe, rounds));
  for (int i = 0; i < rounds; ++i) {
    while (event.waiters() == 0) {
      std::this_thread::yield();
    }
    std::this_thread::sleep_for(kParkPause);  // Let the worker park.
    probe.signalled_ns.store(NowNs());
    event.Set();
    while (probe.acked.load(std::memory_order_acquire) != i + 1) {
      std::this_thread::yield();
    }
  }
  SyncWait(JoinScope(&scope));
  return std::move(probe.samples);
}

std::vector<double> ThreadToThreadNanos(int rounds) {
  std::mutex mu;
  std::condition_variable cv;
  bool set = false;
  bool waiting = false;
  WakeProbe probe;
  std::thread waiter([&] {
    for (int i = 0; i < rounds; ++i) {
      std::unique_lock<std::mutex> lock(mu);
      waiting = true;
      cv.wait(lock, [&] { return set; });
      probe.samples.push_back(static_cast<double>(NowNs() - probe.signalled_ns.load()));
      set = false;
      waiting = false;
      probe.acked.store(i + 1, std::memory_order_release);
    }
  });
  for (int i = 0; i < rounds; ++i) {
    for (;;) {
      std::lock_guard<std::mutex> lock(mu);
      if (waiting) {
        break;
      }
    }
    std::this_thread::sleep_for(kParkPause);  // The waiter is asleep in cv.wait by now.
    {
      std::lock_guard<std::mutex> lock(mu);
      probe.signalled_ns.store(NowNs());
      set = true;
    }
    cv.notify_one();
    while (probe.acked.load(std::memory_order_acquire) != i + 1) {
      std::this_thread::yield();
    }
  }
  waiter.join();
  return std::move(probe.samples);
}

void BM_CrossThreadWake(benchmark::State& state) {
  auto executor = MakeExecutor(static_cast<int>(state.range(0)));
  constexpr int kRounds = 2'000;
  std::vector<double> coro;
  std::vector<double> thread;
  for (auto _ : state) {
    std::vector<double> c = ForeignToCoroutineNanos(executor.get(), kRounds);
    std::vector<double> t = ThreadToThreadNanos(kRounds);
    coro.insert(coro.end(), c.begin(), c.end());
    thread.insert(thread.end(), t.begin(), t.end());
  }
  Report(state, "ns", Percentile(coro, 0.5), Percentile(thread, 0.5));
  state.counters["coro_p90_ns"] = Percentile(coro, 0.9);
  state.counters["thread_p90_ns"] = Percentile(thread, 0.9);
}
BENCHMARK(BM_CrossThreadWake)->Arg(1)->Arg(2)->Iterations(3)->Unit(benchmark::kMillisecond);

Task<void> PingPong(AsyncEvent* mine, AsyncEvent* theirs, int rounds, bool starts) {
  for (int i = 0; i < rounds; ++i) {
    if (starts) {
      theirs->Set();
    }
    absl::Status status = co_await mine->Wait(CancellationToken());
    benchmark::DoNotOptimize(status);
    mine->Clear();
    if (!starts) {
      theirs->Set();
    }
  }
}

Task<void> RunPingPong(Executor* executor, int rounds) {
  co_await executor->Schedule();
  AsyncEvent a;
  AsyncEvent b;
  TaskScope scope(*executor);
  scope.Spawn(PingPong(&a, &b, rounds, /*starts=*/false));
  scope.Spawn(PingPong(&b, &a, rounds, /*starts=*/true));
  co_await scope.Join();
}

void BM_CoroutineWakeHandoff(benchmark::State& state) {
  auto executor = MakeExecutor(2);
  constexpr int kBatches = 7;
  constexpr int kRounds = 50'000;
  constexpr int kThreadRounds = 5'000;
  std::vector<double> coro;
  std::vector<double> thread;
  for (auto _ : state) {
    for (int batch = 0; batch < kBatches; ++batch) {
      const Clock::time_point start = Clock::now();
      SyncWait(RunPingPong(executor.get(), kRounds));
      coro.push_back(NanosSince(start) / (2.0 * kRounds));
      thread.push_back(CondvarHandoffNanos(kThreadRounds));
    }
  }
  Report(state, "ns", Percentile(coro, 0.5), Percentile(thread, 0.5));
}
BENCHMARK(BM_CoroutineWakeHandoff)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace spindle::coro

BENCHMARK_MAIN();
