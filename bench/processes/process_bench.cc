// Load generator of the process benchmarks (bench/processes/run.py).
//
//   process_bench --mode spindle --address HOST:PORT --clients N [--argv /bin/true ...]
//   process_bench --mode posix_spawn|fork_exec --threads T
//   common: --warmup-s W --duration-s D
//
// spindle: N concurrent clients on gRPC's callback API, each issuing ProcessService.Run of argv
// back to back (spawn + exit + reap, one round trip per process). posix_spawn / fork_exec: T local
// threads spawning argv and waiting for it, the same lifecycle without the network. Prints one JSON
// object: {"rate": per second, "count", "p50_us", "p90_us", "p99_us"}. Every loop is bounded by the
// duration and by a count cap.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spindle/v1/process.grpc.pb.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxSamples = 5'000'000;

struct Options {
  std::string mode = "spindle";
  std::string address = "127.0.0.1:50051";
  int clients = 16;
  int threads = 2;
  double warmup_s = 1;
  double duration_s = 5;
  std::vector<std::string> argv;
};

struct Recorder {
  std::mutex mu;
  std::vector<int64_t> samples_us;
  Clock::time_point measure_from;
  Clock::time_point end;
  void Record(Clock::time_point start, Clock::time_point done) {
    if (start < measure_from || done > end) return;
    std::lock_guard<std::mutex> lock(mu);
    if (samples_us.size() < kMaxSamples) {
      samples_us.push_back(
          std::chrono::duration_cast<std::chrono::microseconds>(done - start).count());
    }
  }
  void Print(double duration_s) {
    std::sort(samples_us.begin(), samples_us.end());
    auto pct = [&](double p) -> int64_t {
      if (samples_us.empty()) return 0;
      return samples_us[std::min(samples_us.size() - 1,
                                 static_cast<size_t>(p * static_cast<double>(samples_us.size())))];
    };
    std::printf(
        "{\"rate\": %.1f, \"count\": %zu, \"p50_us\": %ld, \"p90_us\": %ld, \"p99_us\": %ld}\n",
        static_cast<double>(samples_us.size()) / duration_s, samples_us.size(),
        static_cast<long>(pct(0.5)), static_cast<long>(pct(0.9)), static_cast<long>(pct(0.99)));
  }
};

void LocalLoop(const Options& o, Recorder& rec, bool use_fork) {
  std::vector<char*> argv;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  while (Clock::now() < rec.end) {
    auto start = Clock::now();
    pid_t pid = -1;
    if (use_fork) {
      pid = ::fork();
      if (pid == 0) {
        ::execve(argv[0], argv.data(), environ);
        ::_exit(127);
      }
    } else if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      pid = -1;
    }
    if (pid < 0) {
      std::fprintf(stderr, "spawn failed: %s\n", std::strerror(errno));
      return;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    rec.Record(start, Clock::now());
  }
}

class RunClient {
 public:
  RunClient(spindle::v1::ProcessService::Stub* stub, const Options& o, Recorder& rec,
            std::atomic<int>& live, std::condition_variable& done_cv)
      : stub_(stub), rec_(rec), live_(live), done_cv_(done_cv) {
    for (const auto& a : o.argv) request_.mutable_spec()->mutable_command()->add_argv(a);
    request_.mutable_spec()->set_stdout_mode(spindle::v1::PROCESS_OUTPUT_MODE_CAPTURE);
    request_.mutable_spec()->set_output_buffer_bytes(4096);
  }
  void Next() {
    if (Clock::now() >= rec_.end) {
      if (--live_ == 0) done_cv_.notify_all();
      return;
    }
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    response_.Clear();
    start_ = Clock::now();
    stub_->async()->Run(context_.get(), &request_, &response_, [this](grpc::Status status) {
      if (status.ok()) {
        rec_.Record(start_, Clock::now());
      } else {
        errors_++;
        if (errors_ < 5) std::fprintf(stderr, "Run: %s\n", status.error_message().c_str());
      }
      Next();
    });
  }

 private:
  spindle::v1::ProcessService::Stub* stub_;
  Recorder& rec_;
  std::atomic<int>& live_;
  std::condition_variable& done_cv_;
  spindle::v1::RunRequest request_;
  spindle::v1::RunResponse response_;
  std::unique_ptr<grpc::ClientContext> context_;
  Clock::time_point start_;
  int errors_ = 0;
};

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--mode")
      o.mode = value();
    else if (a == "--address")
      o.address = value();
    else if (a == "--clients")
      o.clients = std::stoi(value());
    else if (a == "--threads")
      o.threads = std::stoi(value());
    else if (a == "--warmup-s")
      o.warmup_s = std::stod(value());
    else if (a == "--duration-s")
      o.duration_s = std::stod(value());
    else if (a == "--argv") {
      while (i + 1 < argc) o.argv.push_back(argv[++i]);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (o.argv.empty()) o.argv = {"/bin/true"};
  Recorder rec;
  auto now = Clock::now();
  rec.measure_from = now + std::chrono::milliseconds(static_cast<int64_t>(o.warmup_s * 1000));
  rec.end = rec.measure_from + std::chrono::milliseconds(static_cast<int64_t>(o.duration_s * 1000));
  if (o.mode == "posix_spawn" || o.mode == "fork_exec") {
    std::vector<std::thread> threads;
    for (int t = 0; t < o.threads; ++t) {
      threads.emplace_back([&]() { LocalLoop(o, rec, o.mode == "fork_exec"); });
    }
    for (auto& t : threads) t.join();
  } else if (o.mode == "spindle") {
    auto channel = grpc::CreateChannel(o.address, grpc::InsecureChannelCredentials());
    auto stub = spindle::v1::ProcessService::NewStub(channel);
    std::atomic<int> live{o.clients};
    std::condition_variable done_cv;
    std::vector<std::unique_ptr<RunClient>> clients;
    for (int c = 0; c < o.clients; ++c) {
      clients.push_back(std::make_unique<RunClient>(stub.get(), o, rec, live, done_cv));
    }
    for (auto& c : clients) c->Next();
    // Bounded: clients stop issuing at rec.end; in-flight calls have a 30 s deadline.
    auto give_up = rec.end + std::chrono::seconds(60);
    while (live.load() > 0 && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } else {
    std::fprintf(stderr, "unknown --mode %s\n", o.mode.c_str());
    return 2;
  }
  rec.Print(o.duration_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
