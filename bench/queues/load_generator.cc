// Load generator for the queue and value benchmarks: N concurrent clients against Spindle (on
// gRPC's callback API) or against Redis (a minimal RESP client, one blocking socket per client),
// a warm-up, a fixed measured window, a bounded op count, and a latency histogram.
//
//   bench_queues_load --target spindle|redis --address HOST:PORT --mode MODE --clients N
//                     [--warmup-s 1] [--duration-s 5] [--max-ops 10000000]
//
// Spindle modes: pair-unary (PutItems then GetItems of one item on the client's own queue),
// pair-stream (a Produce and a Consume stream per client; an item put, then received), add
// (AddToValue +1 on one shared counter), add-stream (the same add as messages on one ValueStream
// per client, one in flight, as a client that waits for each result), echo
// (ServerService.GetLimits, the bare gRPC cost).
// Redis modes: lpush-rpop, lpush-brpop (LPUSH then RPOP / BRPOP on the client's own list), incr
// (INCR on one shared key).
//
// Prints one JSON object: {"mode","clients","ops","seconds","rate","p50_us","p90_us","p99_us"};
// ops are pairs for the pair modes, calls otherwise. Only loopback addresses are accepted.
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
#include <vector>

#include "spindle/v1/queue.grpc.pb.h"
#include "spindle/v1/server.grpc.pb.h"
#include "spindle/v1/value.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string target = "spindle";
  std::string address = "127.0.0.1:50051";
  std::string mode = "pair-unary";
  int clients = 1;
  double warmup_s = 1;
  double duration_s = 5;
  int64_t max_ops = 10'000'000;
};

// The measured window and the per-client latency samples.
class Recorder {
 public:
  Recorder(const Options& options)
      : start_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(options.warmup_s))),
        end_(start_ + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(options.duration_s))),
        max_ops_(options.max_ops) {}

  // True while new operations may start.
  bool Running() const { return Clock::now() < end_ && ops_.load() < max_ops_; }

  // An operation counts when it completes inside the measured window, whenever it began.
  void Record(Clock::time_point began, Clock::time_point ended) {
    if (ended < start_ || ended > end_) {
      return;
    }
    ops_.fetch_add(1, std::memory_order_relaxed);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(ended - began).count();
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
        "{\"mode\": \"%s\", \"clients\": %d, \"ops\": %ld, \"seconds\": %.3f, \"rate\": %.1f, "
        "\"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f}\n",
        options.mode.c_str(), options.clients, static_cast<long>(ops_.load()), seconds,
        seconds > 0 ? ops_.load() / seconds : 0.0, pct(0.5), pct(0.9), pct(0.99));
  }

  Clock::time_point end() const { return end_; }

 private:
  const Clock::time_point start_, end_;
  const int64_t max_ops_;
  std::atomic<int64_t> ops_{0};
  std::mutex mu_;
  std::vector<uint32_t> samples_;
};

// Counts finished clients.
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
  args.SetInt("bench.client", index);  // a distinct channel per client
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// ---- Spindle unary clients: a chain of callback calls ----

class UnaryClient {
 public:
  UnaryClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : options_(options),
        index_(index),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)),
        queues_(spindle::v1::QueueService::NewStub(channel_)),
        values_(spindle::v1::ValueService::NewStub(channel_)),
        server_(spindle::v1::ServerService::NewStub(channel_)) {
    put_.set_queue("bench/pair/" + std::to_string(index));
    put_.add_items()->set_payload(std::string(16, 'x'));
    get_.set_queue(put_.queue());
    get_.set_wait(true);
    add_.set_name("bench/counter");
    add_.set_int64_delta(1);
  }

  void Start() { Next(); }

 private:
  std::unique_ptr<grpc::ClientContext> Fresh() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return context;
  }

  void Next() {
    if (!recorder_.Running()) {
      latch_.Done();
      return;
    }
    began_ = Clock::now();
    context_ = Fresh();
    if (options_.mode == "pair-unary") {
      queues_->async()->PutItems(context_.get(), &put_, &put_response_, [this](grpc::Status s) {
        if (!Check(s)) return;
        context_ = Fresh();
        queues_->async()->GetItems(context_.get(), &get_, &get_response_,
                                   [this](grpc::Status s) { Finished(s); });
      });
    } else if (options_.mode == "add") {
      values_->async()->AddToValue(context_.get(), &add_, &add_response_,
                                   [this](grpc::Status s) { Finished(s); });
    } else {
      server_->async()->GetLimits(context_.get(), &limits_, &limits_response_,
                                  [this](grpc::Status s) { Finished(s); });
    }
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
    recorder_.Record(began_, Clock::now());
    Next();
  }

  const Options& options_;
  const int index_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::QueueService::Stub> queues_;
  std::unique_ptr<spindle::v1::ValueService::Stub> values_;
  std::unique_ptr<spindle::v1::ServerService::Stub> server_;
  std::unique_ptr<grpc::ClientContext> context_;
  Clock::time_point began_;
  spindle::v1::PutItemsRequest put_;
  spindle::v1::PutItemsResponse put_response_;
  spindle::v1::GetItemsRequest get_;
  spindle::v1::GetItemsResponse get_response_;
  spindle::v1::AddToValueRequest add_;
  spindle::v1::AddToValueResponse add_response_;
  spindle::v1::GetLimitsRequest limits_;
  spindle::v1::GetLimitsResponse limits_response_;
};

// ---- Spindle add-stream: AddToValue +1 on the shared counter over one ValueStream per client,
// one add in flight (each answer read before the next add is sent, as INCR does) ----

class AddStreamClient final : public grpc::ClientBidiReactor<spindle::v1::ValueStreamRequest,
                                                             spindle::v1::ValueStreamResponse> {
 public:
  AddStreamClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : index_(index),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)),
        stub_(spindle::v1::ValueService::NewStub(channel_)) {
    request_.mutable_add_to_value()->set_name("bench/counter");
    request_.mutable_add_to_value()->set_int64_delta(1);
    context_.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::seconds(static_cast<int>(options.warmup_s + options.duration_s) + 30));
  }

  void Start() {
    stub_->async()->ValueStream(&context_, this);
    Next();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (ok) StartRead(&response_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended
    if (response_.status().code() != 0) {
      std::fprintf(stderr, "client %d: %s\n", index_, response_.status().message().c_str());
      End();
      return;
    }
    recorder_.Record(began_, Clock::now());
    Next();
  }

  void OnDone(const grpc::Status& s) override {
    if (!s.ok()) std::fprintf(stderr, "client %d: %s\n", index_, s.error_message().c_str());
    latch_.Done();
  }

 private:
  // Sends the next add, or half-closes once the window is over. No read is outstanding here.
  void Next() {
    if (!recorder_.Running()) {
      End();
      return;
    }
    began_ = Clock::now();
    request_.set_call_id(++sent_);
    StartWrite(&request_);
  }

  void End() {
    StartWritesDone();
    StartRead(&response_);  // completes (not ok) when the server ends the stream
  }

  const int index_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::ValueService::Stub> stub_;
  grpc::ClientContext context_;
  spindle::v1::ValueStreamRequest request_;
  spindle::v1::ValueStreamResponse response_;
  Clock::time_point began_;
  uint64_t sent_ = 0;
};

// ---- Spindle streaming clients: Produce + Consume on the client's own queue ----

constexpr int kProduceWindow = 64;  // unanswered batches in flight
constexpr int kConsumeCredit = 256;

class StreamClient {
 public:
  StreamClient(const Options& options, int index, Recorder& recorder, Latch& latch)
      : queue_("bench/stream/" + std::to_string(index)),
        recorder_(recorder),
        latch_(latch),
        channel_(Channel(options.address, index)),
        stub_(spindle::v1::QueueService::NewStub(channel_)),
        producer_(this),
        consumer_(this) {}

  void Start() {
    consumer_.Begin();
    producer_.Begin();
  }

  // Ends both streams once the window is over.
  void Stop() {
    producer_.context.TryCancel();
    consumer_.context.TryCancel();
  }

 private:
  class Producer final
      : public grpc::ClientBidiReactor<spindle::v1::ProduceRequest, spindle::v1::ProduceResponse> {
   public:
    explicit Producer(StreamClient* client) : client_(client) {}
    void Begin() {
      client_->stub_->async()->Produce(&context, this);
      start_.mutable_start()->set_queue(client_->queue_);
      start_.mutable_start()->set_wait(true);
      std::lock_guard lock(mu_);
      queue_.push_back(start_);
      StartRead(&response_);
      Pump();
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) return;
      queue_.erase(queue_.begin());
      Pump();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      {
        std::lock_guard lock(mu_);
        --outstanding_;
        Pump();
      }
      StartRead(&response_);
    }
    void OnDone(const grpc::Status&) override { client_->latch_.Done(); }
    grpc::ClientContext context;

   private:
    // Keeps kProduceWindow batches unanswered while the window runs.
    void Pump() {
      while (outstanding_ < kProduceWindow && client_->recorder_.Running()) {
        spindle::v1::ProduceRequest batch;
        batch.mutable_batch()->set_correlation_id(++sent_);
        const int64_t now = Clock::now().time_since_epoch().count();
        batch.mutable_batch()->add_items()->set_payload(
            std::string(reinterpret_cast<const char*>(&now), sizeof(now)));
        queue_.push_back(std::move(batch));
        ++outstanding_;
      }
      if (!writing_ && !queue_.empty()) {
        writing_ = true;
        current_ = queue_.front();
        StartWrite(&current_);
      }
    }
    StreamClient* client_;
    std::mutex mu_;
    std::vector<spindle::v1::ProduceRequest> queue_;
    spindle::v1::ProduceRequest start_, current_;
    spindle::v1::ProduceResponse response_;
    bool writing_ = false;
    int outstanding_ = 0;
    uint64_t sent_ = 0;
  };

  class Consumer final
      : public grpc::ClientBidiReactor<spindle::v1::ConsumeRequest, spindle::v1::ConsumeResponse> {
   public:
    explicit Consumer(StreamClient* client) : client_(client) {}
    void Begin() {
      client_->stub_->async()->Consume(&context, this);
      start_.mutable_start()->set_queue(client_->queue_);
      start_.mutable_start()->set_credit(kConsumeCredit);
      writing_ = true;
      StartWrite(&start_);
      StartRead(&response_);
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (ok) MaybeCredit();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      const auto now = Clock::now();
      int n = 0;
      for (const auto& item : response_.deliveries().items()) {
        int64_t sent = 0;
        std::memcpy(&sent, item.payload().data(), std::min(item.payload().size(), sizeof(sent)));
        client_->recorder_.Record(Clock::time_point(Clock::duration(sent)), now);
        ++n;
      }
      {
        std::lock_guard lock(mu_);
        owed_ += n;
        MaybeCredit();
      }
      StartRead(&response_);
    }
    void OnDone(const grpc::Status&) override { client_->latch_.Done(); }
    grpc::ClientContext context;

   private:
    void MaybeCredit() {
      if (writing_ || owed_ == 0) return;
      credit_.mutable_credit()->set_items(owed_);
      owed_ = 0;
      writing_ = true;
      StartWrite(&credit_);
    }
    StreamClient* client_;
    std::mutex mu_;
    spindle::v1::ConsumeRequest start_, credit_;
    spindle::v1::ConsumeResponse response_;
    bool writing_ = false;
    int owed_ = 0;
  };

  const std::string queue_;
  Recorder& recorder_;
  Latch& latch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<spindle::v1::QueueService::Stub> stub_;
  Producer producer_;
  Consumer consumer_;
};

// ---- Redis: a minimal RESP client ----

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
  // Sends a command and reads its reply; false on an error reply or a broken connection.
  bool Call(const std::vector<std::string>& args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const auto& a : args) {
      out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    }
    for (size_t sent = 0; sent < out.size();) {
      ssize_t n = write(fd_, out.data() + sent, out.size() - sent);
      if (n <= 0) return false;
      sent += n;
    }
    return ReadReply();
  }

 private:
  bool Fill() {
    char buffer[4096];
    ssize_t n = read(fd_, buffer, sizeof(buffer));
    if (n <= 0) return false;
    in_.append(buffer, n);
    return true;
  }
  bool Line(std::string* line) {
    size_t at;
    while ((at = in_.find("\r\n", pos_)) == std::string::npos) {
      if (!Fill()) return false;
    }
    *line = in_.substr(pos_, at - pos_);
    pos_ = at + 2;
    return true;
  }
  bool ReadValue() {
    std::string line;
    if (!Line(&line) || line.empty()) return false;
    switch (line[0]) {
      case '+':
      case ':':
        return true;
      case '-':
        std::fprintf(stderr, "redis: %s\n", line.c_str());
        return false;
      case '$': {
        long n = std::stol(line.substr(1));
        if (n < 0) return true;
        while (in_.size() < pos_ + n + 2) {
          if (!Fill()) return false;
        }
        pos_ += n + 2;
        return true;
      }
      case '*': {
        long n = std::stol(line.substr(1));
        for (long i = 0; i < n; ++i) {
          if (!ReadValue()) return false;
        }
        return true;
      }
      default:
        return false;
    }
  }
  bool ReadReply() {
    bool ok = ReadValue();
    in_.erase(0, pos_);
    pos_ = 0;
    return ok;
  }
  int fd_ = -1;
  std::string in_;
  size_t pos_ = 0;
};

void RedisClient(const Options& options, int index, Recorder& recorder) {
  Resp redis;
  if (!redis.Connect(options.address)) {
    std::fprintf(stderr, "cannot connect to redis at %s\n", options.address.c_str());
    return;
  }
  const std::string list = "bench:list:" + std::to_string(index);
  const std::string payload(16, 'x');
  while (recorder.Running()) {
    const auto began = Clock::now();
    bool ok;
    if (options.mode == "lpush-rpop") {
      ok = redis.Call({"LPUSH", list, payload}) && redis.Call({"RPOP", list});
    } else if (options.mode == "lpush-brpop") {
      ok = redis.Call({"LPUSH", list, payload}) && redis.Call({"BRPOP", list, "5"});
    } else {
      ok = redis.Call({"INCR", "bench:counter"});
    }
    if (!ok) return;
    recorder.Record(began, Clock::now());
  }
}

// Starts options.clients clients of type C (each ends itself when the window is over) and waits
// for them all; false, with a message, when they do not end within `bound`.
template <typename C>
bool RunClients(const Options& options, Recorder& recorder, std::chrono::seconds bound) {
  Latch latch(options.clients);
  std::vector<std::unique_ptr<C>> clients;
  for (int i = 0; i < options.clients; ++i) {
    clients.push_back(std::make_unique<C>(options, i, recorder, latch));
  }
  for (auto& c : clients) c->Start();
  if (!latch.Wait(bound)) {
    std::fprintf(stderr, "clients did not end in time\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--target")
      options.target = value;
    else if (flag == "--address")
      options.address = value;
    else if (flag == "--mode")
      options.mode = value;
    else if (flag == "--clients")
      options.clients = std::stoi(value);
    else if (flag == "--warmup-s")
      options.warmup_s = std::stod(value);
    else if (flag == "--duration-s")
      options.duration_s = std::stod(value);
    else if (flag == "--max-ops")
      options.max_ops = std::stoll(value);
    else {
      std::fprintf(stderr, "unknown flag %s (see the header of load_generator.cc)\n", flag.c_str());
      return 2;
    }
  }
  if (options.clients < 1 || options.clients > 1024 || options.duration_s <= 0 ||
      options.duration_s > 600 || options.warmup_s < 0 || options.warmup_s > 60) {
    std::fprintf(stderr, "clients 1..1024, duration 0..600 s, warm-up 0..60 s\n");
    return 2;
  }
  if (options.address.rfind("127.0.0.1:", 0) != 0 && options.address.rfind("localhost:", 0) != 0) {
    std::fprintf(stderr, "only loopback addresses (127.0.0.1:PORT)\n");
    return 2;
  }
  Recorder recorder(options);
  const auto bound =
      std::chrono::seconds(static_cast<int>(options.warmup_s + options.duration_s) + 30);
  if (options.target == "redis") {
    std::vector<std::thread> threads;
    for (int i = 0; i < options.clients; ++i) {
      threads.emplace_back([&, i] { RedisClient(options, i, recorder); });
    }
    for (auto& t : threads) t.join();
  } else if (options.mode == "pair-stream") {
    Latch latch(2 * options.clients);
    std::vector<std::unique_ptr<StreamClient>> clients;
    for (int i = 0; i < options.clients; ++i) {
      clients.push_back(std::make_unique<StreamClient>(options, i, recorder, latch));
      clients.back()->Start();
    }
    std::this_thread::sleep_until(recorder.end());
    for (auto& c : clients) c->Stop();
    if (!latch.Wait(bound)) {
      std::fprintf(stderr, "streams did not end in time\n");
      return 1;
    }
  } else if (options.mode == "add-stream") {
    if (!RunClients<AddStreamClient>(options, recorder, bound)) return 1;
  } else {
    if (!RunClients<UnaryClient>(options, recorder, bound)) return 1;
  }
  recorder.Print(options);
  return 0;
}
