// Load generator of the lock benchmarks (bench/locks/run.py): N concurrent clients doing
// acquire+release pairs against Spindle or etcd (gRPC callback API, no thread per client) or Redis
// (a minimal RESP client, one blocking socket and thread per client), with a warm-up, a fixed
// measured window, a bounded op count and an acquire-latency histogram; and the blocked-waiters
// scenario (many Acquire calls waiting on one held lock while spindled's memory and threads are
// read).
//
//   bench_locks --target spindle|redis|etcd --address HOST:PORT --mode MODE --clients N
//               [--contended] [--request-ids] [--warmup-s 1] [--duration-s 5]
//               [--max-ops 10000000]
//   bench_locks --target spindle --address HOST:PORT --mode waiters --waiters 100000
//               --server-pid PID [--via unary|stream] [--channels 64] [--queue-s 60] [--grant-s 3]
//   bench_locks --features        prints {"etcd": true|false} (built with etcd's protos or not)
//
// Spindle modes: unary (Acquire + Release rpcs), stream (acquire + release messages on one
// LockStream per client), echo (two ServerService.GetLimits calls: the bare gRPC cost of the same
// shape). Redis mode: setnx (SET key val NX PX 30000, then DEL). etcd mode: lock (v3lockpb.Lock
// with the client's own lease, granted once by Lease.LeaseGrant with a 300 s TTL, then
// v3lockpb.Unlock of the returned key: the server-side form of the recipe `etcdctl lock` runs).
// --request-ids (Spindle unary): every Acquire and Release carries a fresh request_id, so the
// server remembers each answer (what a retrying client pays). Without --contended every client has
// its own name; with it all share one name (Spindle and etcd wait in FIFO order; Redis clients
// retry SET NX until it succeeds, as Redis has no blocking lock).
//
// Prints one JSON object: {"mode","clients","contended","ops","seconds","rate","p50_us","p90_us",
// "p99_us"}; an op is one acquire+release pair, latencies are of the acquire (its wait included).
// The waiters mode prints its own object (see RunWaiters). Only loopback addresses are accepted.
#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"

#ifdef SPINDLE_BENCH_ETCD
#include "etcd/etcdserver/api/v3lock/v3lockpb/v3lock.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "spindle";
  std::string address = "127.0.0.1:50051";
  std::string mode = "unary";
  int clients = 1;
  bool contended = false;
  bool request_ids = false;
  double warmup_s = 1;
  double duration_s = 5;
  int64_t max_ops = 10'000'000;
  // waiters mode
  int waiters = 100'000;
  std::string via = "unary";  // unary Acquire calls, or acquire messages on LockStreams
  int channels = 64;
  int server_pid = 0;
  double queue_s = 60;
  double grant_s = 3;
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

  // One pair done now; `acquire` is how long its acquire took. A pair counts when it completes
  // inside the measured window, whenever it began.
  void Record(Clock::duration acquire) {
    const auto now = Clock::now();
    if (now < start_ || now > end_) {
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

// `text` with quotes, backslashes and control characters replaced, for a JSON string.
std::string JsonSafe(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 300)) {
    out.push_back(c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 ? '\'' : c);
  }
  return out;
}

// ---- Chained unary pairs: the next call starts in the previous call's callback ----

// One client of a unary benchmark: Next() starts a pair, Finished() records it and starts the
// next until the window closes. Confined: one call of a client is in flight at a time, so its
// callbacks never overlap.
class PairClient {
 public:
  PairClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : options_(options),
        index_(index),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)) {}
  virtual ~PairClient() = default;

  virtual void Start() { Next(); }

 protected:
  // Starts one pair: sets began_, and acquired_ when the acquire is answered; ends in Finished().
  virtual void Pair() = 0;

  void Next() {
    if (!recorder_.Running()) {
      latch_.Done();
      return;
    }
    began_ = Clock::now();
    Pair();
  }

  std::unique_ptr<grpc::ClientContext> Fresh() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return context;
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
    recorder_.Record(acquired_ - began_);
    Next();
  }

  const Options& options_;
  const int index_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::ClientContext> context_;
  Clock::time_point began_, acquired_;
};

// ---- Spindle unary: Acquire then Release (or two GetLimits for echo) ----

class UnaryClient final : public PairClient {
 public:
  UnaryClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : PairClient(options, index, recorder, latch),
        locks_(spindle::v1::LockService::NewStub(channel_)),
        server_(spindle::v1::ServerService::NewStub(channel_)) {
    acquire_.set_name(LockName(options, index));
    acquire_.set_wait(true);
    acquire_.set_lease_ttl_ms(30000);
  }

 private:
  void Pair() override {
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
    if (options_.request_ids) {
      // Unique across runs against one server: a reused id would (rightly) replay.
      acquire_.set_request_id("p" + std::to_string(::getpid()) + "-c" + std::to_string(index_) +
                              "-" + std::to_string(++serial_));
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
      if (options_.request_ids) {
        release_.set_request_id(acquire_.request_id() + "r");
      }
      context_ = Fresh();
      locks_->async()->Release(context_.get(), &release_, &release_response_,
                               [this](grpc::Status s) { Finished(s); });
    });
  }

  std::unique_ptr<spindle::v1::LockService::Stub> locks_;
  std::unique_ptr<spindle::v1::ServerService::Stub> server_;
  spindle::v1::AcquireRequest acquire_;
  spindle::v1::AcquireResponse acquire_response_;
  spindle::v1::ReleaseRequest release_;
  spindle::v1::ReleaseResponse release_response_;
  spindle::v1::GetLimitsRequest limits_;
  spindle::v1::GetLimitsResponse limits_response_;
  uint64_t serial_ = 0;
};

#ifdef SPINDLE_BENCH_ETCD
// ---- etcd: Lease.LeaseGrant once, then v3lockpb.Lock + Unlock ----

// The lease (300 s, far longer than a run) stands for the session `etcdctl lock` opens; every Lock
// of this client attaches its ownership key to it, and Unlock deletes that key.
class EtcdClient final : public PairClient {
 public:
  EtcdClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : PairClient(options, index, recorder, latch),
        leases_(etcdserverpb::Lease::NewStub(channel_)),
        locks_(v3lockpb::Lock::NewStub(channel_)) {
    lock_.set_name(LockName(options, index));
  }

  void Start() override {
    grant_.set_ttl(300);
    context_ = Fresh();
    leases_->async()->LeaseGrant(context_.get(), &grant_, &grant_response_, [this](grpc::Status s) {
      if (!Check(s)) return;
      if (!grant_response_.error().empty()) {
        Check(grpc::Status(grpc::StatusCode::UNKNOWN, grant_response_.error()));
        return;
      }
      lock_.set_lease(grant_response_.id());
      Next();
    });
  }

 private:
  void Pair() override {
    context_ = Fresh();
    locks_->async()->Lock(context_.get(), &lock_, &lock_response_, [this](grpc::Status s) {
      if (!Check(s)) return;
      acquired_ = Clock::now();
      unlock_.set_key(lock_response_.key());
      context_ = Fresh();
      locks_->async()->Unlock(context_.get(), &unlock_, &unlock_response_,
                              [this](grpc::Status s) { Finished(s); });
    });
  }

  std::unique_ptr<etcdserverpb::Lease::Stub> leases_;
  std::unique_ptr<v3lockpb::Lock::Stub> locks_;
  etcdserverpb::LeaseGrantRequest grant_;
  etcdserverpb::LeaseGrantResponse grant_response_;
  v3lockpb::LockRequest lock_;
  v3lockpb::LockResponse lock_response_;
  v3lockpb::UnlockRequest unlock_;
  v3lockpb::UnlockResponse unlock_response_;
};
#endif

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
    recorder_.Record(acquired_ - began_);
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
    // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on "literal" + string.
    std::string out = "*";
    out += std::to_string(args.size());
    out += "\r\n";
    for (const auto& a : args) {
      out += "$";
      out += std::to_string(a.size());
      out += "\r\n";
      out += a;
      out += "\r\n";
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
    recorder.Record(acquired - began);
  }
}

// ---- Blocked waiters: N Acquire(wait=true) calls parked on one held lock ----

// VmRSS (KiB) and Threads of a process, from /proc/PID/status; {-1, -1} when it is gone.
struct ProcStatus {
  int64_t rss_kib = -1;
  int64_t threads = -1;
};

ProcStatus ReadProcStatus(int pid) {
  ProcStatus status;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  for (int i = 0; i < 200 && std::getline(in, line); ++i) {
    if (line.rfind("VmRSS:", 0) == 0) {
      status.rss_kib = std::stoll(line.substr(6));
    } else if (line.rfind("Threads:", 0) == 0) {
      status.threads = std::stoll(line.substr(8));
    }
  }
  return status;
}

// How the parked waiters ended. Thread-safe: callbacks on gRPC's threads call Finish, the main
// thread Started and WaitAll.
class Tally {
 public:
  enum class Outcome { kGranted, kCancelled, kFailed };

  void Started(int64_t n) {
    std::lock_guard lock(mu_);
    started_ += n;
  }

  // One waiter ended: granted (and released again), cancelled, or anything else.
  void Finish(Outcome outcome, const std::string& error) {
    (outcome == Outcome::kGranted     ? granted_
     : outcome == Outcome::kCancelled ? cancelled_
                                      : failed_)
        .fetch_add(1);
    std::lock_guard lock(mu_);
    if (outcome == Outcome::kFailed && first_error_.empty()) {
      first_error_ = error;
    }
    if (++done_ == started_) {
      cv_.notify_all();
    }
  }

  // True when every started waiter ended before `deadline`.
  bool WaitAll(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return done_ == started_; });
  }

  int64_t started() {
    std::lock_guard lock(mu_);
    return started_;
  }
  int64_t granted() const { return granted_.load(); }
  int64_t cancelled() const { return cancelled_.load(); }
  int64_t failed() const { return failed_.load(); }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  std::atomic<int64_t> granted_{0}, cancelled_{0}, failed_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t started_ = 0;      // guarded by mu_
  int64_t done_ = 0;         // guarded by mu_
  std::string first_error_;  // guarded by mu_
};

// Waiters parked on the lock, however they are carried.
class Swarm {
 public:
  virtual ~Swarm() = default;
  // Starts `n` more waiters of `request`. Main thread only.
  virtual void Add(int64_t n) = 0;
  // Withdraws every waiter still parked; granted ones finish their Release. Main thread only.
  virtual void CancelParked() = 0;
  // After every waiter ended: ends the calls; true when they all ended cleanly within 30 s.
  virtual bool Close() { return true; }
  Tally& tally() { return tally_; }

 protected:
  Tally tally_;
};

// One parked unary Acquire. Its callback runs on a gRPC thread; `state` orders it against the
// main thread's cancel pass.
struct UnaryWaiter {
  enum State : int { kWaiting, kReleasing, kDone };
  grpc::ClientContext acquire_context;
  grpc::ClientContext release_context;
  spindle::v1::AcquireResponse response;
  spindle::v1::ReleaseRequest release;
  spindle::v1::ReleaseResponse release_response;
  std::atomic<int> state{kWaiting};
};

// Waiters as unary Acquire calls, round-robin over `channels` connections; a granted waiter
// releases at once with a unary Release.
class UnarySwarm final : public Swarm {
 public:
  UnarySwarm(const Options& options, const spindle::v1::AcquireRequest& request,
             std::chrono::system_clock::time_point deadline)
      : request_(request), deadline_(deadline) {
    for (int i = 0; i < options.channels; ++i) {
      stubs_.push_back(spindle::v1::LockService::NewStub(Channel(options.address, 1000 + i)));
    }
    waiters_.reserve(options.waiters);
  }

  void Add(int64_t n) override {
    tally_.Started(n);
    for (int64_t i = 0; i < n; ++i) {
      auto& stub = *stubs_[waiters_.size() % stubs_.size()];
      waiters_.push_back(std::make_unique<UnaryWaiter>());
      UnaryWaiter* w = waiters_.back().get();
      w->acquire_context.set_deadline(deadline_);
      stub.async()->Acquire(&w->acquire_context, &request_, &w->response,
                            [this, w, &stub](grpc::Status s) { Acquired(w, stub, s); });
    }
  }

  void CancelParked() override {
    for (auto& w : waiters_) {
      if (w->state.load() == UnaryWaiter::kWaiting) {
        w->acquire_context.TryCancel();
      }
    }
  }

 private:
  void Acquired(UnaryWaiter* w, spindle::v1::LockService::Stub& stub, const grpc::Status& s) {
    if (!s.ok() || !w->response.acquired()) {
      w->state.store(UnaryWaiter::kDone);
      tally_.Finish(s.error_code() == grpc::StatusCode::CANCELLED ? Tally::Outcome::kCancelled
                                                                  : Tally::Outcome::kFailed,
                    s.ok() ? "not acquired" : s.error_message());
      return;
    }
    w->state.store(UnaryWaiter::kReleasing);
    w->release.set_lease_id(w->response.grant().lease_id());
    w->release_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stub.async()->Release(
        &w->release_context, &w->release, &w->release_response, [this, w](grpc::Status s) {
          w->state.store(UnaryWaiter::kDone);
          tally_.Finish(s.ok() ? Tally::Outcome::kGranted : Tally::Outcome::kFailed,
                        s.error_message());
        });
  }

  const spindle::v1::AcquireRequest request_;
  const std::chrono::system_clock::time_point deadline_;
  std::vector<std::unique_ptr<spindle::v1::LockService::Stub>> stubs_;
  // Touched by the main thread only; callbacks hold their own UnaryWaiter*, which stays put.
  std::vector<std::unique_ptr<UnaryWaiter>> waiters_;
};

// One LockStream carrying many parked acquires (call ids 1, 2, ...), a release for each grant
// and, on CancelPending, a cancel_call_id for each acquire not yet answered. One write at a time
// from a queue; callbacks run on gRPC's threads, everything they share is guarded by mu_.
class StreamWaiters final : public grpc::ClientBidiReactor<spindle::v1::LockStreamRequest,
                                                           spindle::v1::LockStreamResponse> {
 public:
  StreamWaiters(const Options& options, int index, Tally& tally,
                std::chrono::system_clock::time_point deadline)
      : tally_(tally),
        channel_(Channel(options.address, 2000 + index)),
        stub_(spindle::v1::LockService::NewStub(channel_)) {
    context_.set_deadline(deadline);
  }

  void Start() {
    stub_->async()->LockStream(&context_, this);
    StartRead(&response_);
    StartCall();
  }

  void AddAcquire(const spindle::v1::AcquireRequest& acquire) {
    std::lock_guard lock(mu_);
    spindle::v1::LockStreamRequest request;
    request.set_call_id(next_id_++);
    *request.mutable_acquire() = acquire;
    pending_acquires_.push_back(request.call_id());
    Enqueue(std::move(request));
  }

  void CancelPending() {
    std::lock_guard lock(mu_);
    for (uint64_t id : pending_acquires_) {
      if (!answered_.count(id)) {
        spindle::v1::LockStreamRequest request;
        request.set_call_id(next_id_++);
        request.set_cancel_call_id(id);
        Enqueue(std::move(request));
      }
    }
  }

  // Half-closes; the stream then ends OK once every operation was answered.
  void HalfClose() {
    std::lock_guard lock(mu_);
    closing_ = true;
    if (!writing_) {
      StartWritesDone();
    }
  }

  bool WaitDone(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    return done_cv_.wait_until(lock, deadline, [&] { return done_; }) && status_.ok();
  }

  std::string status_message() {
    std::lock_guard lock(mu_);
    return status_.error_message();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {
      return;
    }
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (closing_) {
      StartWritesDone();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    const uint64_t id = response_.call_id();
    {
      std::lock_guard lock(mu_);
      const bool is_acquire =
          response_.has_acquire() || (response_.status().code() != 0 && !releases_.count(id));
      if (is_acquire) {
        answered_.insert(id);
      } else {
        releases_.erase(id);
      }
      if (is_acquire && response_.status().code() == 0 && response_.acquire().acquired()) {
        spindle::v1::LockStreamRequest release;
        release.set_call_id(next_id_++);
        release.mutable_release()->set_lease_id(response_.acquire().grant().lease_id());
        releases_.insert(release.call_id());
        Enqueue(std::move(release));
      } else if (is_acquire && response_.status().code() == 1) {  // CANCELLED
        tally_.Finish(Tally::Outcome::kCancelled, "");
      } else if (response_.status().code() != 0) {
        tally_.Finish(Tally::Outcome::kFailed, response_.status().message());
      } else if (is_acquire) {
        tally_.Finish(Tally::Outcome::kFailed, "not acquired");
      } else {
        tally_.Finish(Tally::Outcome::kGranted, "");
      }
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    std::lock_guard lock(mu_);
    status_ = status;
    done_ = true;
    done_cv_.notify_all();
  }

 private:
  void Enqueue(spindle::v1::LockStreamRequest request) {
    queue_.push_back(std::move(request));
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
  }

  Tally& tally_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::LockService::Stub> stub_;
  grpc::ClientContext context_;
  spindle::v1::LockStreamResponse response_;  // the one read in flight
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::deque<spindle::v1::LockStreamRequest> queue_;  // front() is being written when writing_
  bool writing_ = false;
  bool closing_ = false;
  uint64_t next_id_ = 1;
  std::vector<uint64_t> pending_acquires_;
  std::unordered_set<uint64_t> answered_;
  std::unordered_set<uint64_t> releases_;  // release call ids not answered yet
  bool done_ = false;
  grpc::Status status_;
};

// Waiters as acquire messages on `channels` LockStreams, one per connection (at most 65536
// pending per stream, the server's limit).
class StreamSwarm final : public Swarm {
 public:
  StreamSwarm(const Options& options, const spindle::v1::AcquireRequest& request,
              std::chrono::system_clock::time_point deadline)
      : request_(request) {
    for (int i = 0; i < options.channels; ++i) {
      streams_.push_back(std::make_unique<StreamWaiters>(options, i, tally_, deadline));
      streams_.back()->Start();
    }
  }

  void Add(int64_t n) override {
    tally_.Started(n);
    for (int64_t i = 0; i < n; ++i) {
      streams_[added_++ % streams_.size()]->AddAcquire(request_);
    }
  }

  void CancelParked() override {
    for (auto& s : streams_) {
      s->CancelPending();
    }
  }

  bool Close() override {
    for (auto& s : streams_) {
      s->HalfClose();
    }
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    bool clean = true;
    for (auto& s : streams_) {
      if (!s->WaitDone(deadline)) {
        std::fprintf(stderr, "stream did not end OK: %s\n", s->status_message().c_str());
        clean = false;
      }
    }
    return clean;
  }

 private:
  const spindle::v1::AcquireRequest request_;
  std::vector<std::unique_ptr<StreamWaiters>> streams_;
  size_t added_ = 0;
};

// Parks options.waiters Acquire(wait=true) waiters (options.via: unary calls, or acquire
// messages on LockStreams) behind one holder of "bench/waiters" on spindled (pid
// options.server_pid), spread over options.channels connections, and reads the server's VmRSS and
// Threads idle, at a tenth of the waiters and with every waiter parked (spindle_lock_waiters comes
// from GetStats: tables.lock_waiters). Then releases the holder, lets the queue hand the lock down
// for options.grant_s (each granted waiter releases at once), cancels the rest, and checks that
// every waiter ended granted or CANCELLED, that the server still answers and that no waiter is
// left. Every phase is bounded: queueing by options.queue_s, the cancel drain by 120 s, the
// server's settling by 20 s. Exits 0 once the JSON is printed, whatever it says.
int RunWaiters(const Options& options) {
  if (options.server_pid <= 0) {
    std::fprintf(stderr, "--mode waiters needs --server-pid\n");
    return 2;
  }
  auto control = Channel(options.address, 999);
  auto locks = spindle::v1::LockService::NewStub(control);
  auto server = spindle::v1::ServerService::NewStub(control);
  auto stats = [&]() -> int64_t {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    spindle::v1::GetStatsResponse response;
    if (!server->GetStats(&context, spindle::v1::GetStatsRequest(), &response).ok()) {
      return -1;
    }
    return response.tables().lock_waiters();
  };
  const ProcStatus idle = ReadProcStatus(options.server_pid);

  // The holder: a lease-only grant that outlives the run.
  spindle::v1::AcquireRequest hold;
  hold.set_name("bench/waiters");
  hold.set_lease_ttl_ms(600000);
  spindle::v1::AcquireResponse held;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto s = locks->Acquire(&context, hold, &held);
    if (!s.ok() || !held.acquired()) {
      std::fprintf(stderr, "holder: %s\n", s.ok() ? "not acquired" : s.error_message().c_str());
      return 1;
    }
  }

  spindle::v1::AcquireRequest request;
  request.set_name("bench/waiters");
  request.set_wait(true);
  request.set_lease_ttl_ms(30000);
  const auto call_deadline = std::chrono::system_clock::now() + Seconds(options.queue_s + 180);
  std::unique_ptr<Swarm> swarm;
  if (options.via == "stream") {
    swarm = std::make_unique<StreamSwarm>(options, request, call_deadline);
  } else {
    swarm = std::make_unique<UnarySwarm>(options, request, call_deadline);
  }
  Tally& tally = swarm->tally();

  const auto began = Clock::now();
  const auto queue_deadline = began + Seconds(options.queue_s);
  int64_t parked = 0;
  ProcStatus tenth;  // threads and RSS at a tenth of the waiters, to see whether threads grow
  int64_t tenth_parked = 0;
  // Start waiters in batches and let the server take each batch in before the next, so the
  // figure is the server's, not a client-side backlog.
  while (tally.started() < options.waiters && Clock::now() < queue_deadline) {
    swarm->Add(std::min<int64_t>(std::max(1, std::min(2000, options.waiters / 10)),
                                 options.waiters - tally.started()));
    for (int spin = 0; spin < 400 && Clock::now() < queue_deadline; ++spin) {
      parked = stats();
      if (parked < 0 || parked + tally.failed() >= tally.started() - 200) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (parked < 0 || tally.failed() > 0) {
      break;
    }
    if (tenth.threads < 0 && parked >= options.waiters / 10) {
      tenth = ReadProcStatus(options.server_pid);
      tenth_parked = parked;
    }
  }
  for (int spin = 0; spin < 2000 && parked >= 0 && parked + tally.failed() < tally.started() &&
                     Clock::now() < queue_deadline;
       ++spin) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    parked = stats();
  }
  const double queue_seconds = std::chrono::duration<double>(Clock::now() - began).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  parked = stats();
  const ProcStatus full = ReadProcStatus(options.server_pid);

  // Hand the lock down the queue for grant_s, then cancel whoever still waits.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    spindle::v1::ReleaseRequest release;
    release.set_lease_id(held.grant().lease_id());
    spindle::v1::ReleaseResponse released;
    auto s = locks->Release(&context, release, &released);
    if (!s.ok()) {
      std::fprintf(stderr, "holder release: %s\n", s.error_message().c_str());
    }
  }
  const auto grant_began = Clock::now();
  tally.WaitAll(grant_began + Seconds(options.grant_s));
  const int64_t handed = tally.granted();
  const double grant_seconds = std::chrono::duration<double>(Clock::now() - grant_began).count();
  const auto cancel_began = Clock::now();
  swarm->CancelParked();
  const bool drained = tally.WaitAll(cancel_began + std::chrono::seconds(120));
  const double cancel_seconds = std::chrono::duration<double>(Clock::now() - cancel_began).count();
  const bool closed = drained && swarm->Close();
  // The server may still be withdrawing cancelled waiters: give it up to 20 s to reach 0.
  const auto settle_began = Clock::now();
  int64_t left = stats();
  for (int spin = 0; spin < 200 && left > 0; ++spin) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = stats();
  }
  const double settle_seconds = std::chrono::duration<double>(Clock::now() - settle_began).count();
  const bool alive = kill(options.server_pid, 0) == 0 && left >= 0;
  const ProcStatus after = ReadProcStatus(options.server_pid);

  const int64_t grown_kib = full.rss_kib - idle.rss_kib;
  std::printf(
      "{\"mode\": \"waiters\", \"via\": \"%s\", \"requested\": %d, \"started\": %ld, "
      "\"parked\": %ld, \"queue_seconds\": %.2f, \"channels\": %d, \"idle_rss_kib\": %ld, "
      "\"idle_threads\": %ld, \"tenth_parked\": %ld, \"tenth_rss_kib\": %ld, "
      "\"tenth_threads\": %ld, \"rss_kib\": %ld, \"threads\": %ld, \"bytes_per_waiter\": %.0f, "
      "\"handoffs\": %ld, \"handoff_seconds\": %.2f, \"cancel_seconds\": %.2f, "
      "\"granted\": %ld, \"cancelled\": %ld, \"failed\": %ld, "
      "\"first_error\": \"%s\", \"drained\": %s, \"closed\": %s, \"waiters_after\": %ld, "
      "\"settle_seconds\": %.1f, \"server_alive\": %s, \"rss_after_kib\": %ld, "
      "\"threads_after\": %ld}\n",
      options.via.c_str(), options.waiters, static_cast<long>(tally.started()),
      static_cast<long>(parked), queue_seconds, options.channels, static_cast<long>(idle.rss_kib),
      static_cast<long>(idle.threads), static_cast<long>(tenth_parked),
      static_cast<long>(tenth.rss_kib), static_cast<long>(tenth.threads),
      static_cast<long>(full.rss_kib), static_cast<long>(full.threads),
      parked > 0 ? grown_kib * 1024.0 / parked : 0.0, static_cast<long>(handed), grant_seconds,
      cancel_seconds, static_cast<long>(tally.granted()), static_cast<long>(tally.cancelled()),
      static_cast<long>(tally.failed()), JsonSafe(tally.first_error()).c_str(),
      drained ? "true" : "false", closed ? "true" : "false", static_cast<long>(left),
      settle_seconds, alive ? "true" : "false", static_cast<long>(after.rss_kib),
      static_cast<long>(after.threads));
  std::fflush(stdout);
  // The JSON says how it went; exit 0 once it is printed. Calls still in flight own their
  // waiters: do not destroy them.
  if (!drained || !closed) {
    std::_Exit(0);
  }
  return 0;
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
    } else if (arg == "--request-ids") {
      options.request_ids = true;
    } else if (arg == "--warmup-s") {
      options.warmup_s = std::stod(value());
    } else if (arg == "--duration-s") {
      options.duration_s = std::min(600.0, std::stod(value()));
    } else if (arg == "--max-ops") {
      options.max_ops = std::stoll(value());
    } else if (arg == "--waiters") {
      options.waiters = std::max(1, std::min(1'000'000, std::stoi(value())));
    } else if (arg == "--via") {
      options.via = value();
      if (options.via != "unary" && options.via != "stream") {
        std::fprintf(stderr, "--via is unary or stream\n");
        return 2;
      }
    } else if (arg == "--channels") {
      options.channels = std::max(1, std::min(1024, std::stoi(value())));
    } else if (arg == "--server-pid") {
      options.server_pid = std::stoi(value());
    } else if (arg == "--queue-s") {
      options.queue_s = std::max(1.0, std::min(600.0, std::stod(value())));
    } else if (arg == "--grant-s") {
      options.grant_s = std::max(0.0, std::min(600.0, std::stod(value())));
    } else if (arg == "--features") {
#ifdef SPINDLE_BENCH_ETCD
      std::printf("{\"etcd\": true}\n");
#else
      std::printf("{\"etcd\": false}\n");
#endif
      return 0;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (options.address.rfind("127.0.0.1:", 0) != 0 && options.address.rfind("localhost:", 0) != 0) {
    std::fprintf(stderr, "only loopback addresses\n");
    return 2;
  }
  if (options.mode == "waiters") {
    return RunWaiters(options);
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
#ifndef SPINDLE_BENCH_ETCD
    if (options.target == "etcd") {
      std::fprintf(stderr, "built without etcd's protos (install golang-etcd-server-dev)\n");
      return 3;
    }
#endif
    Latch latch(options.clients);
    std::vector<std::unique_ptr<PairClient>> clients;
    for (int i = 0; i < options.clients; ++i) {
#ifdef SPINDLE_BENCH_ETCD
      if (options.target == "etcd") {
        clients.push_back(std::make_unique<EtcdClient>(options, i, recorder, latch));
        continue;
      }
#endif
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
