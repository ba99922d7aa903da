// Load generator of the pool benchmarks (bench/pools/run.py): tasks per second through a
// PoolService pool of a running spindled, on gRPC's callback API.
//
//   bench_pools_load --address HOST:PORT --kind worker|command [--size 2]
//                    [--python /usr/bin/python3 --worker-script python/spindle_worker.py
//                     --handler echo|sleep_ms] [--payload BYTES]       (WORKER pools)
//                    [--argv /bin/true ...]                           (COMMAND pools; last flag)
//                    --mode map|submit [--clients 1] [--window 256] [--batch 64]
//                    [--order ordered|unordered] [--warmup-s 1] [--duration-s 5]
//                    [--max-tasks 5000000]
//
// It creates its own pool (a unique name), waits until the workers are ready (bounded), runs
// the load, then deletes the pool (force). Modes:
//   map:    `clients` Map streams; each keeps at most `window` inputs outstanding (sent, result
//           not received), sending up to `batch` inputs per message, and half-closes when the
//           measured window is over. Latency = input sent -> its result received (with ORDERED
//           results this includes waiting behind earlier inputs, and it grows with the window).
//   submit: `clients` concurrent chains of SubmitTask (wait for room) then WaitTask of that task.
//           Latency = SubmitTask sent -> WaitTask answered.
// Only tasks that end SUCCEEDED (and, for Map over the "echo" handler, return the payload) and
// finish inside the measured window (after the warm-up) count; other results and RPC errors are
// counted apart. Every loop is bounded by the
// duration and by --max-tasks; every call and stream has a deadline.
//
// Prints one JSON object: {"mode","kind","clients","window","tasks","seconds","rate","p50_us",
// "p90_us","p99_us","failed","rpc_errors"}. Only loopback addresses are accepted.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "spindle/v1/pool.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = spindle::v1;

struct Options {
  std::string address = "127.0.0.1:50051";
  std::string kind = "worker";
  int size = 2;
  std::string python = "/usr/bin/python3";
  std::string worker_script = "python/spindle_worker.py";
  std::string handler = "echo";
  std::string payload = "x";
  std::vector<std::string> argv;
  std::string mode = "map";
  int clients = 1;
  int window = 256;
  int batch = 64;
  bool ordered = true;
  double warmup_s = 1;
  double duration_s = 5;
  int64_t max_tasks = 5'000'000;
};

// The measured window, the task cap and the latency samples.
class Recorder {
 public:
  explicit Recorder(const Options& o)
      : start_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(o.warmup_s))),
        end_(start_ + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(o.duration_s))),
        max_tasks_(o.max_tasks) {}

  // True while new tasks may be issued; takes one from the cap.
  bool Issue() { return Clock::now() < end_ && issued_.fetch_add(1) < max_tasks_; }

  // A task counts when it completes inside the measured window, whenever it was issued: with
  // a window of outstanding tasks, those issued during the warm-up complete in the first part
  // of the window, and leaving them out would undercount by the latency / duration.
  void Record(Clock::time_point began, Clock::time_point ended) {
    if (ended < start_ || ended > end_) {
      return;
    }
    tasks_.fetch_add(1, std::memory_order_relaxed);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(ended - began).count();
    std::lock_guard lock(mu_);
    if (samples_.size() < 2'000'000) {
      samples_.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
    }
  }
  void Failed() { failed_.fetch_add(1, std::memory_order_relaxed); }
  void RpcError(const std::string& what, const grpc::Status& s) {
    if (rpc_errors_.fetch_add(1) < 5) {
      std::fprintf(stderr, "%s: %d %s\n", what.c_str(), static_cast<int>(s.error_code()),
                   s.error_message().c_str());
    }
  }

  void Print(const Options& o) {
    std::lock_guard lock(mu_);
    std::sort(samples_.begin(), samples_.end());
    auto pct = [&](double p) -> double {
      if (samples_.empty()) {
        return 0;
      }
      return samples_[std::min(samples_.size() - 1, static_cast<size_t>(p * samples_.size()))];
    };
    // A run cut short by the task cap is measured over the time it really took.
    const auto measured_end = std::min(Clock::now(), end_);
    const double seconds = std::chrono::duration<double>(measured_end - start_).count();
    const int64_t tasks = tasks_.load();
    std::printf(
        "{\"mode\": \"%s\", \"kind\": \"%s\", \"clients\": %d, \"window\": %d, \"tasks\": %ld, "
        "\"seconds\": %.3f, \"rate\": %.1f, \"p50_us\": %.0f, \"p90_us\": %.0f, "
        "\"p99_us\": %.0f, \"failed\": %ld, \"rpc_errors\": %ld}\n",
        o.mode.c_str(), o.kind.c_str(), o.clients, o.mode == "map" ? o.window : 0,
        static_cast<long>(tasks), seconds, seconds > 0 ? tasks / seconds : 0.0, pct(0.5), pct(0.9),
        pct(0.99), static_cast<long>(failed_.load()), static_cast<long>(rpc_errors_.load()));
  }

  Clock::time_point end() const { return end_; }

 private:
  const Clock::time_point start_, end_;
  const int64_t max_tasks_;
  std::atomic<int64_t> issued_{0};
  std::atomic<int64_t> tasks_{0};
  std::atomic<int64_t> failed_{0};
  std::atomic<int64_t> rpc_errors_{0};
  std::mutex mu_;
  std::vector<uint32_t> samples_;
};

// Counts finished clients.
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void Done() {
    std::lock_guard lock(mu_);
    if (--n_ == 0) {
      cv_.notify_all();
    }
  }
  bool Wait(Clock::duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return n_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

std::shared_ptr<grpc::Channel> Channel(const std::string& address, int index) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("bench.client", index);  // a distinct channel (connection) per client
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::chrono::system_clock::time_point DeadlineIn(std::chrono::seconds s) {
  return std::chrono::system_clock::now() + s;
}

// Fills the work of one task for the pool's kind.
void SetWork(const Options& o, v1::PoolMapInput* input) {
  if (o.kind == "worker") {
    input->set_payload(o.payload);
  } else {
    for (const auto& a : o.argv) {
      input->mutable_command()->mutable_command()->add_argv(a);
    }
  }
}
void SetWork(const Options& o, v1::TaskSpec* spec) {
  if (o.kind == "worker") {
    spec->set_payload(o.payload);
  } else {
    for (const auto& a : o.argv) {
      spec->mutable_command()->mutable_command()->add_argv(a);
    }
  }
}

// ---- map: one Map stream per client ----

class MapClient final : public grpc::ClientBidiReactor<v1::MapRequest, v1::MapResponse> {
 public:
  MapClient(const Options& o, const std::string& pool, int index, Recorder& rec, Latch& latch)
      : o_(o),
        pool_(pool),
        rec_(rec),
        latch_(latch),
        channel_(Channel(o.address, index)),
        stub_(v1::PoolService::NewStub(channel_)) {}

  void Begin() {
    context_.set_deadline(
        DeadlineIn(std::chrono::seconds(static_cast<int64_t>(o_.warmup_s + o_.duration_s) + 60)));
    stub_->async()->Map(&context_, this);
    {
      std::lock_guard lock(mu_);
      request_.Clear();
      auto* start = request_.mutable_start();
      start->set_pool(pool_);
      start->set_window(o_.window);
      start->set_order(o_.ordered ? v1::POOL_MAP_ORDER_ORDERED : v1::POOL_MAP_ORDER_UNORDERED);
      FillLocked();
      writing_ = true;
    }
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // The stream is over; OnDone follows.
    {
      std::lock_guard lock(mu_);
      writing_ = false;
    }
    Next();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    const auto now = Clock::now();
    int n = 0;
    {
      std::lock_guard lock(mu_);
      for (const auto& r : response_.results()) {
        ++n;
        auto it = sent_at_.find(r.index());
        if (it == sent_at_.end()) {
          continue;
        }
        const bool echoed =
            o_.kind != "worker" || o_.handler != "echo" || r.result().output() == o_.payload;
        if (r.result().outcome() == v1::TASK_STATE_SUCCEEDED && echoed) {
          rec_.Record(it->second, now);
        } else {
          rec_.Failed();
          if (failures_printed_++ < 3) {
            std::fprintf(stderr, "map: task %s ended %d: %s\n", r.task_id().c_str(),
                         static_cast<int>(r.result().outcome()), r.result().error().c_str());
          }
        }
        sent_at_.erase(it);
      }
      received_ += n;
    }
    StartRead(&response_);
    if (n > 0) {
      Next();
    }
  }

  void OnDone(const grpc::Status& s) override {
    if (!s.ok()) {
      rec_.RpcError("Map", s);
    }
    latch_.Done();
  }

 private:
  // Writes the next message (inputs while the window has room, then the half-close).
  void Next() {
    enum { kNone, kWrite, kHalfClose } action = kNone;
    {
      std::lock_guard lock(mu_);
      if (writing_ || half_closed_) {
        return;
      }
      request_.Clear();
      if (FillLocked()) {
        action = kWrite;
        writing_ = true;
      } else if (stop_issuing_) {
        action = kHalfClose;
        half_closed_ = true;
      }
    }
    // writing_ is cleared by OnWriteDone: only one write at a time.
    if (action == kWrite) {
      StartWrite(&request_);
    } else if (action == kHalfClose) {
      StartWritesDone();
    }
  }
  // REQUIRES: mu_ held, no write in flight. Adds inputs within the window; true if any.
  bool FillLocked() {
    const auto now = Clock::now();
    int added = 0;
    while (!stop_issuing_ && added < o_.batch &&
           next_index_ - received_ < static_cast<uint64_t>(o_.window)) {
      if (!rec_.Issue()) {
        stop_issuing_ = true;
        break;
      }
      auto* input = request_.add_inputs();
      input->set_index(next_index_);
      SetWork(o_, input);
      sent_at_.emplace(next_index_, now);
      ++next_index_;
      ++added;
    }
    return added > 0 || request_.has_start();
  }

  const Options& o_;
  const std::string pool_;
  Recorder& rec_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PoolService::Stub> stub_;
  grpc::ClientContext context_;
  std::mutex mu_;
  v1::MapRequest request_;
  v1::MapResponse response_;
  std::unordered_map<uint64_t, Clock::time_point> sent_at_;
  uint64_t next_index_ = 0;
  uint64_t received_ = 0;
  bool writing_ = false;
  bool stop_issuing_ = false;
  bool half_closed_ = false;
  int failures_printed_ = 0;
};

// ---- submit: chains of SubmitTask + WaitTask ----

class SubmitClient {
 public:
  SubmitClient(const Options& o, const std::string& pool, int index, Recorder& rec, Latch& latch)
      : rec_(rec),
        latch_(latch),
        channel_(Channel(o.address, index)),
        stub_(v1::PoolService::NewStub(channel_)) {
    submit_.set_pool(pool);
    submit_.set_wait(true);
    SetWork(o, submit_.mutable_task());
  }

  void Next() {
    if (!rec_.Issue()) {
      latch_.Done();
      return;
    }
    began_ = Clock::now();
    context_ = Fresh();
    submit_response_.Clear();
    stub_->async()->SubmitTask(context_.get(), &submit_, &submit_response_,
                               [this](grpc::Status s) { OnSubmitted(std::move(s)); });
  }

 private:
  static std::unique_ptr<grpc::ClientContext> Fresh() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(DeadlineIn(std::chrono::seconds(30)));
    return context;
  }

  void OnSubmitted(grpc::Status s) {
    if (!s.ok() || !submit_response_.submitted()) {
      rec_.RpcError("SubmitTask", s);
      latch_.Done();
      return;
    }
    wait_.set_task_id(submit_response_.task().id());
    context_ = Fresh();
    wait_response_.Clear();
    stub_->async()->WaitTask(context_.get(), &wait_, &wait_response_,
                             [this](grpc::Status s) { OnWaited(std::move(s)); });
  }

  void OnWaited(grpc::Status s) {
    if (!s.ok() || !wait_response_.done()) {
      rec_.RpcError("WaitTask", s);
      latch_.Done();
      return;
    }
    if (wait_response_.task().result().outcome() == v1::TASK_STATE_SUCCEEDED) {
      rec_.Record(began_, Clock::now());
    } else {
      rec_.Failed();
    }
    Next();
  }

  Recorder& rec_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PoolService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  Clock::time_point began_;
  v1::SubmitTaskRequest submit_;
  v1::SubmitTaskResponse submit_response_;
  v1::WaitTaskRequest wait_;
  v1::WaitTaskResponse wait_response_;
};

// ---- pool setup ----

bool CreatePool(v1::PoolService::Stub& stub, const Options& o, const std::string& name) {
  v1::CreatePoolRequest request;
  request.set_name(name);
  auto* spec = request.mutable_spec();
  spec->set_size(o.size);
  spec->set_max_queued(100'000);
  if (o.kind == "worker") {
    spec->set_kind(v1::POOL_KIND_WORKER);
    auto* argv = spec->mutable_worker()->mutable_command()->mutable_argv();
    argv->Add(std::string(o.python));
    argv->Add(std::string(o.worker_script));
    argv->Add(std::string(o.handler));
  } else {
    spec->set_kind(v1::POOL_KIND_COMMAND);
  }
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(std::chrono::seconds(30)));
  v1::CreatePoolResponse response;
  grpc::Status s = stub.CreatePool(&context, request, &response);
  if (!s.ok()) {
    std::fprintf(stderr, "CreatePool %s: %s\n", name.c_str(), s.error_message().c_str());
    return false;
  }
  // Ready once every worker is idle (WORKER: after its ready frame). Bounded.
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < give_up) {
    grpc::ClientContext get_context;
    get_context.set_deadline(DeadlineIn(std::chrono::seconds(10)));
    v1::GetPoolRequest get;
    get.set_name(name);
    v1::GetPoolResponse pool;
    s = stub.GetPool(&get_context, get, &pool);
    if (!s.ok()) {
      std::fprintf(stderr, "GetPool %s: %s\n", name.c_str(), s.error_message().c_str());
      return false;
    }
    if (o.kind != "worker" || pool.pool().stats().workers_idle() >= o.size) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "pool %s: workers not ready after 30 s\n", name.c_str());
  return false;
}

void DeletePool(v1::PoolService::Stub& stub, const std::string& name) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(std::chrono::seconds(30)));
  v1::DeletePoolRequest request;
  request.set_name(name);
  request.set_force(true);
  v1::DeletePoolResponse response;
  grpc::Status s = stub.DeletePool(&context, request, &response);
  if (!s.ok()) {
    std::fprintf(stderr, "DeletePool %s: %s\n", name.c_str(), s.error_message().c_str());
  }
}

bool IsLoopback(const std::string& address) {
  const std::string host = address.substr(0, address.rfind(':'));
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]";
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--address") {
      o.address = value();
    } else if (a == "--kind") {
      o.kind = value();
    } else if (a == "--size") {
      o.size = std::stoi(value());
    } else if (a == "--python") {
      o.python = value();
    } else if (a == "--worker-script") {
      o.worker_script = value();
    } else if (a == "--handler") {
      o.handler = value();
    } else if (a == "--payload") {
      o.payload = value();
    } else if (a == "--mode") {
      o.mode = value();
    } else if (a == "--clients") {
      o.clients = std::stoi(value());
    } else if (a == "--window") {
      o.window = std::stoi(value());
    } else if (a == "--batch") {
      o.batch = std::stoi(value());
    } else if (a == "--order") {
      o.ordered = value() != "unordered";
    } else if (a == "--warmup-s") {
      o.warmup_s = std::stod(value());
    } else if (a == "--duration-s") {
      o.duration_s = std::stod(value());
    } else if (a == "--max-tasks") {
      o.max_tasks = std::stoll(value());
    } else if (a == "--argv") {
      while (i + 1 < argc) {
        o.argv.push_back(argv[++i]);
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (o.argv.empty()) {
    o.argv = {"/bin/true"};
  }
  if (!IsLoopback(o.address)) {
    std::fprintf(stderr, "only loopback addresses (got %s)\n", o.address.c_str());
    return 2;
  }
  if ((o.kind != "worker" && o.kind != "command") || (o.mode != "map" && o.mode != "submit") ||
      o.clients < 1 || o.window < 1 || o.batch < 1 || o.size < 1) {
    std::fprintf(stderr, "bad --kind/--mode/--clients/--window/--batch/--size\n");
    return 2;
  }

  auto admin = v1::PoolService::NewStub(Channel(o.address, -1));
  const std::string pool = "bench-pools-" + o.kind + "-" + std::to_string(::getpid());
  if (!CreatePool(*admin, o, pool)) {
    DeletePool(*admin, pool);
    return 1;
  }

  Recorder rec(o);  // The warm-up starts now, with the workers ready.
  Latch latch(o.clients);
  std::vector<std::unique_ptr<MapClient>> maps;
  std::vector<std::unique_ptr<SubmitClient>> submits;
  for (int c = 0; c < o.clients; ++c) {
    if (o.mode == "map") {
      maps.push_back(std::make_unique<MapClient>(o, pool, c, rec, latch));
    } else {
      submits.push_back(std::make_unique<SubmitClient>(o, pool, c, rec, latch));
    }
  }
  for (auto& m : maps) {
    m->Begin();
  }
  for (auto& s : submits) {
    s->Next();
  }
  // Bounded: issuing stops at the end of the window; streams and calls carry deadlines.
  const auto remaining = rec.end() - Clock::now() + std::chrono::seconds(90);
  const bool all_done = latch.Wait(remaining);
  rec.Print(o);
  std::fflush(stdout);
  DeletePool(*admin, pool);
  if (!all_done) {
    std::fprintf(stderr, "clients still running after the bound; exiting\n");
    std::_Exit(1);  // Reactors still reference this frame.
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
