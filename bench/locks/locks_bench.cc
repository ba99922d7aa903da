// Load generator of the lock benchmarks (bench/locks/run.py): N concurrent clients doing
// acquire+release pairs against Spindle (gRPC callback API, no thread per client) or Redis (a
// minimal RESP client, one blocking socket and thread per client), with a warm-up, a fixed
// measured window, a bounded op count and an acquire-latency histogram.
//
//   bench_locks --target spindle|redis --address HOST:PORT --mode MODE --clients N
//               [--contended] [--warmup-s 1] [--duration-s 5] [--max-ops 10000000]
//
// Spindle modes: unary (Acquire + Release rpcs), stream (acquire + release messages on one
// LockStream per client), echo (two ServerService.GetLimits calls: the bare gRPC cost of the same
// shape). Redis mode: setnx (SET key val NX PX 30000, then DEL). Without --contended every client
// has its own name; with it all share one name (Spindle waits in FIFO order; Redis clients retry
// SET NX until it succeeds, as Redis has no blocking lock).
//
// Prints one JSON object: {"mode","clients","contended","ops","seconds","rate","p50_us","p90_us",
// "p99_us"}; an op is one acquire+release pair, latencies are of the acquire (its wait included).
// Only loopback addresses are accepted.
#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
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
#include <utility>
#include <vector>

#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "spindle";
  std::string address = "127.0.0.1:50051";
  std::string mode = "unary";
  int clients = 1;
  bool contended = false;
  double warmup_s = 1;
  double duration_s = 5;
  int64_t max_ops = 10'000'000;
};

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

class Recorder {
 public:
  explicit Recorder(const Options& options)
      : start_(Clock::now() + Seconds(options.warmup_s)),
        end_(start_ + Seconds(options.duration_s)),
        max_ops_(options.max_ops) {}

  bool Running() const { return Clock::now() < end_ && ops_.load() < max_ops_; }

  // One pair done; `acquire` is how long its acquire took.
  void Record(Clock::time_point began, Clock::duration acquire) {
    if (began < start_ || Clock::now() > end_) {
      return;
    }
    ops_.fetch_add(1, std::memory_order_relaxed);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(acquire).count();
    std::lock_guard lock(mu_);
    if (samples_.size() < 2'000'000) {
      samples_.push_back(static_cast<uint32_t>(std::min<int64_t>(us, UINT32_MAX)));
    }
  }

  void Print(const Options& options) {
    std::lock_guard lock(mu_);
    std::sort(samples_.begin(), samples_.end());
    auto pct = [&](double p) -> double {
      if (samples_.empty()) return 0;
      return samples_[std::min(samples_.size() - 1, static_cast<size_t>(p * samples_.size()))];
    };
    const double seconds =
        std::chrono::duration<double>(std::min(Clock::now(), end_) - start_).count();
    std::printf(
        "{\"mode\": \"%s\", \"clients\": %d, \"contended\": %s, \"ops\": %ld, \"seconds\": %.3f, "
        "\"rate\": %.1f, \"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f}\n",
        options.mode.c_str(), options.clients, options.contended ? "true" : "false",
        static_cast<long>(ops_.load()), seconds, seconds > 0 ? ops_.load() / seconds : 0.0,
        pct(0.5), pct(0.9), pct(0.99));
  }

  Clock::time_point end() const { return end_; }

 private:
  const Clock::time_point start_, end_;
  const int64_t max_ops_;
  std::atomic<int64_t> ops_{0};
  std::mutex mu_;
  std::vector<uint32_t> samples_;
};

class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void Done() {
    std::lock_guard lock(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  bool Wait(std::chrono::seconds timeout) {
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
  args.SetInt("bench.client", index);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

std::string LockName(const Options& options, int index) {
  return options.contended ? "bench/lock" : "bench/lock/" + std::to_string(index);
}

// ---- Spindle unary: Acquire then Release (or two GetLimits for echo), chained callbacks ----

class UnaryClient {
 public:
  UnaryClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : options_(options),
        index_(index),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)),
        locks_(spindle::v1::LockService::NewStub(channel_)),
        server_(spindle::v1::ServerService::NewStub(channel_)) {
    acquire_.set_name(LockName(options, index));
    acquire_.set_wait(true);
    acquire_.set_lease_ttl_ms(30000);
  }

  void Start() { Next(); }

 private:
  std::unique_ptr<grpc::ClientContext> Fresh() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return context;
  }

  void Next() {
    if (!recorder_.Running()) {
      latch_.Done();
      return;
    }
    began_ = Clock::now();
    context_ = Fresh();
    if (options_.mode == "echo") {
      server_->async()->GetLimits(
          context_.get(), &limits_, &limits_response_, [this](grpc::Status s) {
            if (!Check(s)) return;
            acquired_ = Clock::now();
            context_ = Fresh();
            server_->async()->GetLimits(context_.get(), &limits_, &limits_response_,
                                        [this](grpc::Status s) { Finished(s); });
          });
      return;
    }
    locks_->async()->Acquire(context_.get(), &acquire_, &acquire_response_, [this](grpc::Status s) {
      if (!Check(s)) return;
      if (!acquire_response_.acquired()) {
        std::fprintf(stderr, "client %d: not acquired\n", index_);
        latch_.Done();
        return;
      }
      acquired_ = Clock::now();
      release_.set_lease_id(acquire_response_.grant().lease_id());
      context_ = Fresh();
      locks_->async()->Release(context_.get(), &release_, &release_response_,
                               [this](grpc::Status s) { Finished(s); });
    });
  }

  bool Check(const grpc::Status& s) {
    if (!s.ok()) {
      std::fprintf(stderr, "client %d: %s\n", index_, s.error_message().c_str());
      latch_.Done();
      return false;
    }
    return true;
  }

  void Finished(const grpc::Status& s) {
    if (!Check(s)) return;
    recorder_.Record(began_, acquired_ - began_);
    Next();
  }

  const Options& options_;
  const int index_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::LockService::Stub> locks_;
  std::unique_ptr<spindle::v1::ServerService::Stub> server_;
  std::unique_ptr<grpc::ClientContext> context_;
  Clock::time_point began_, acquired_;
  spindle::v1::AcquireRequest acquire_;
  spindle::v1::AcquireResponse acquire_response_;
  spindle::v1::ReleaseRequest release_;
  spindle::v1::ReleaseResponse release_response_;
  spindle::v1::GetLimitsRequest limits_;
  spindle::v1::GetLimitsResponse limits_response_;
};

// ---- Spindle stream: acquire and release as messages on one LockStream per client ----

class StreamClient final : public grpc::ClientBidiReactor<spindle::v1::LockStreamRequest,
                                                          spindle::v1::LockStreamResponse> {
 public:
  StreamClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : index_(index),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)),
        stub_(spindle::v1::LockService::NewStub(channel_)) {
    acquire_.mutable_acquire()->set_name(LockName(options, index));
    acquire_.mutable_acquire()->set_wait(true);
    acquire_.mutable_acquire()->set_lease_ttl_ms(30000);
  }

  void Start() {
    stub_->async()->LockStream(&context_, this);
    StartRead(&response_);
    SendAcquire();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (ok && next_ != nullptr) {
      Write(std::exchange(next_, nullptr));
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    if (response_.status().code() != 0) {
      std::fprintf(stderr, "client %d: %s\n", index_, response_.status().message().c_str());
      StartWritesDone();
      return;
    }
    if (response_.has_acquire()) {
      acquired_ = Clock::now();
      release_.set_call_id(++call_id_);
      release_.mutable_release()->set_lease_id(response_.acquire().grant().lease_id());
      StartRead(&response_);
      std::lock_guard lock(mu_);
      Write(&release_);
      return;
    }
    recorder_.Record(began_, acquired_ - began_);
    StartRead(&response_);
    if (recorder_.Running()) {
      SendAcquire();
    } else {
      StartWritesDone();
    }
  }

  void OnDone(const grpc::Status&) override { latch_.Done(); }

 private:
  void SendAcquire() {
    std::lock_guard lock(mu_);
    began_ = Clock::now();
    acquire_.set_call_id(++call_id_);
    Write(&acquire_);
  }

  // One write at a time: a reply can arrive before the previous write's OnWriteDone.
  void Write(const spindle::v1::LockStreamRequest* request) {
    if (writing_) {
      next_ = request;
      return;
    }
    writing_ = true;
    StartWrite(request);
  }

  const int index_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::LockService::Stub> stub_;
  grpc::ClientContext context_;
  spindle::v1::LockStreamRequest acquire_, release_;
  spindle::v1::LockStreamResponse response_;
  uint64_t call_id_ = 0;
  Clock::time_point began_, acquired_;
  std::mutex mu_;
  bool writing_ = false;
  const spindle::v1::LockStreamRequest* next_ = nullptr;
};

// ---- Redis: SET key val NX PX, then DEL ----

class Resp {
 public:
  bool Connect(const std::string& address) {
    auto colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    if (host != "127.0.0.1" && host != "localhost") {
      std::fprintf(stderr, "only loopback addresses\n");
      return false;
    }
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Resp() {
    if (fd_ >= 0) close(fd_);
  }
  // Sends a command; returns the first reply line ("" on a broken connection).
  std::string Call(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) {
      out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    }
    if (send(fd_, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
      return "";
    }
    // Replies here are one line: +OK, $-1 (nil), :1.
    std::string line;
    char c;
    while (recv(fd_, &c, 1, 0) == 1) {
      line.push_back(c);
      if (line.size() >= 2 && line.compare(line.size() - 2, 2, "\r\n") == 0) {
        return line;
      }
    }
    return "";
  }

 private:
  int fd_ = -1;
};

void RedisClient(const Options& options, int index, Recorder& recorder) {
  Resp redis;
  if (!redis.Connect(options.address)) {
    std::fprintf(stderr, "client %d: cannot connect to redis\n", index);
    return;
  }
  const std::string key = LockName(options, index);
  const std::string token = "holder-" + std::to_string(index);
  while (recorder.Running()) {
    auto began = Clock::now();
    std::string reply;
    do {
      reply = redis.Call({"SET", key, token, "NX", "PX", "30000"});
    } while (reply.rfind("$-1", 0) == 0 && recorder.Running());
    if (reply.rfind("+OK", 0) != 0) {
      if (!recorder.Running()) {
        return;
      }
      std::fprintf(stderr, "client %d: %s\n", index, reply.c_str());
      return;
    }
    auto acquired = Clock::now();
    if (redis.Call({"DEL", key}).empty()) {
      return;
    }
    recorder.Record(began, acquired - began);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--target") {
      options.target = value();
    } else if (arg == "--address") {
      options.address = value();
    } else if (arg == "--mode") {
      options.mode = value();
    } else if (arg == "--clients") {
      options.clients = std::max(1, std::min(4096, std::stoi(value())));
    } else if (arg == "--contended") {
      options.contended = true;
    } else if (arg == "--warmup-s") {
      options.warmup_s = std::stod(value());
    } else if (arg == "--duration-s") {
      options.duration_s = std::min(600.0, std::stod(value()));
    } else if (arg == "--max-ops") {
      options.max_ops = std::stoll(value());
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (options.address.rfind("127.0.0.1:", 0) != 0 && options.address.rfind("localhost:", 0) != 0) {
    std::fprintf(stderr, "only loopback addresses\n");
    return 2;
  }
  Recorder recorder(options);
  const auto bound =
      std::chrono::seconds(static_cast<int>(options.warmup_s + options.duration_s) + 60);
  if (options.target == "redis") {
    std::vector<std::thread> threads;
    for (int i = 0; i < options.clients; ++i) {
      threads.emplace_back([&, i] { RedisClient(options, i, recorder); });
    }
    for (auto& t : threads) t.join();
  } else if (options.mode == "stream") {
    Latch latch(options.clients);
    std::vector<std::unique_ptr<StreamClient>> clients;
    for (int i = 0; i < options.clients; ++i) {
      clients.push_back(std::make_unique<StreamClient>(options, i, recorder, latch));
    }
    for (auto& c : clients) c->Start();
    if (!latch.Wait(bound)) {
      std::fprintf(stderr, "clients did not finish in time\n");
      recorder.Print(options);
      std::_Exit(1);
    }
  } else {
    Latch latch(options.clients);
    std::vector<std::unique_ptr<UnaryClient>> clients;
    for (int i = 0; i < options.clients; ++i) {
      clients.push_back(std::make_unique<UnaryClient>(options, i, recorder, latch));
    }
    for (auto& c : clients) c->Start();
    if (!latch.Wait(bound)) {
      std::fprintf(stderr, "clients did not finish in time\n");
      recorder.Print(options);
      std::_Exit(1);
    }
  }
  recorder.Print(options);
  return 0;
}
