// spindlectl session create|refresh|close|get|list|keepalive
// spindlectl lock acquire|release|refresh|create|delete|revoke|describe|list,
//   lock event set|clear|wait, lock barrier wait|reset|abort, lock condition wait|notify
//
// `lock acquire NAME` without a command holds the lock until SIGINT/SIGTERM, keeping its lease
// alive, then releases it. With `-- COMMAND ARGS...` it runs the command under the lock (like
// flock(1)) and exits with the command's exit code (128 + signal when it was killed). Without
// --session it opens its own session (TTL --ttl-ms, default 10000) kept alive by a KeepAlive
// stream with close_on_disconnect, so a crashed spindlectl frees the lock at once and a hung one
// within the TTL. When the lock is lost (expired, revoked) the command gets SIGTERM and
// spindlectl exits 6.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/lock.grpc.pb.h"
#include "spindle/v1/session.grpc.pb.h"

extern char** environ;

namespace spindle::cli {
namespace {

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) {
    return "-";
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()),
                          absl::UTCTimeZone());
}

const char* KindName(v1::LockKind kind) {
  switch (kind) {
    case v1::LOCK_KIND_MUTEX:
      return "mutex";
    case v1::LOCK_KIND_REENTRANT:
      return "reentrant";
    case v1::LOCK_KIND_SEMAPHORE:
      return "semaphore";
    case v1::LOCK_KIND_RW_LOCK:
      return "rw_lock";
    case v1::LOCK_KIND_EVENT:
      return "event";
    case v1::LOCK_KIND_BARRIER:
      return "barrier";
    case v1::LOCK_KIND_CONDITION:
      return "condition";
    default:
      return "unspecified";
  }
}

void PrintSession(const v1::Session& s) {
  std::printf("session:     %s\n", s.session_id().c_str());
  std::printf("client:      %s\n", s.client_name().c_str());
  std::printf("state:       %s\n", v1::SessionState_Name(s.state()).c_str());
  std::printf("ttl_ms:      %ld\n", static_cast<long>(s.ttl_ms()));
  std::printf("expires:     %s\n", Time(s.expire_time()).c_str());
  std::printf("held locks:  %d (permits %d)\n", s.held_locks(), s.held_permits());
  std::printf("streams:     %d\n", s.keepalive_streams());
}

// ---- sessions ----

struct SessionOptions {
  std::string id;
  int64_t ttl_ms = 0;
  std::string name;
  std::vector<std::string> labels;
  std::string prefix;
  bool locks = false;
  int64_t interval_ms = 0;
};

int CreateSession(Cli& cli, const SessionOptions& o) {
  auto stub = v1::SessionService::NewStub(cli.channel());
  v1::CreateSessionRequest request;
  request.set_ttl_ms(o.ttl_ms);
  request.set_client_name(o.name);
  for (const std::string& label : o.labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    (*request.mutable_labels())[kv.first] = kv.second;
  }
  v1::CreateSessionResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CreateSession(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response.session(), [&](const google::protobuf::Message&) {
    std::printf("%s\n", response.session().session_id().c_str());
  });
}

int RefreshSession(Cli& cli, const SessionOptions& o) {
  auto stub = v1::SessionService::NewStub(cli.channel());
  v1::RefreshSessionRequest request;
  request.set_session_id(o.id);
  request.set_ttl_ms(o.ttl_ms);
  v1::RefreshSessionResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->RefreshSession(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("expires %s (ttl %ld ms)\n", Time(response.expire_time()).c_str(),
                static_cast<long>(response.ttl_ms()));
  });
}

int CloseSession(Cli& cli, const SessionOptions& o) {
  auto stub = v1::SessionService::NewStub(cli.channel());
  v1::CloseSessionRequest request;
  request.set_session_id(o.id);
  v1::CloseSessionResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CloseSession(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("closed; released %d locks (%d permits)\n", response.released_locks(),
                response.released_permits());
  });
}

int GetSession(Cli& cli, const SessionOptions& o) {
  auto stub = v1::SessionService::NewStub(cli.channel());
  v1::GetSessionRequest request;
  request.set_session_id(o.id);
  request.set_include_locks(o.locks);
  v1::GetSessionResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetSession(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    PrintSession(response.session());
    for (const auto& lock : response.locks()) {
      std::printf("lock:        %s %s token=%ld held=%d permits=%d owner=%s\n", lock.name().c_str(),
                  KindName(lock.kind()), static_cast<long>(lock.fencing_token()), lock.held_count(),
                  lock.permits(), lock.owner().c_str());
    }
  });
}

int ListSessions(Cli& cli, const SessionOptions& o) {
  auto stub = v1::SessionService::NewStub(cli.channel());
  v1::ListSessionsRequest request;
  request.set_client_name_prefix(o.prefix);
  request.set_page_size(1000);
  if (!cli.options().json) {
    std::printf("%-34s %-20s %-8s %-6s %s\n", "SESSION", "CLIENT", "TTL_MS", "LOCKS", "EXPIRES");
  }
  while (true) {
    v1::ListSessionsResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->ListSessions(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    for (const auto& s : response.sessions()) {
      cli.Print(s, [&](const google::protobuf::Message&) {
        std::printf("%-34s %-20s %-8ld %-6d %s\n", s.session_id().c_str(), s.client_name().c_str(),
                    static_cast<long>(s.ttl_ms()), s.held_locks(), Time(s.expire_time()).c_str());
      });
    }
    if (response.next_page_token().empty()) {
      return kOk;
    }
    request.set_page_token(response.next_page_token());
  }
}

// ---- keeping a session alive ----

// Pings a session on a KeepAlive stream from a thread and reports its events. Stop() half-closes.
class KeepAlive {
 public:
  KeepAlive(Cli& cli, std::string session_id, int64_t interval_ms, bool close_on_disconnect,
            bool print_events)
      : cli_(cli),
        session_id_(std::move(session_id)),
        interval_(absl::Milliseconds(interval_ms)),
        close_on_disconnect_(close_on_disconnect),
        print_events_(print_events) {}

  // Opens the stream and waits for the first answer. Returns an exit code (kOk when alive).
  int Start() {
    stub_ = v1::SessionService::NewStub(cli_.channel());
    // The stream lives as long as the session is kept: never a deadline, even with --timeout-ms.
    context_ = cli_.Context();
    context_->set_deadline(std::chrono::system_clock::time_point::max());
    stream_ = stub_->KeepAlive(context_.get());
    v1::KeepAliveRequest ping;
    ping.set_session_id(session_id_);
    ping.set_close_on_disconnect(close_on_disconnect_);
    v1::KeepAliveResponse first;
    if (!stream_->Write(ping) || !stream_->Read(&first)) {
      return cli_.Fail(stream_->Finish());
    }
    Report(first);
    reader_ = std::thread([this] { ReadLoop(); });
    pinger_ = std::thread([this] { PingLoop(); });
    return kOk;
  }

  // Set when the session ended or a grant under it was lost.
  bool lost() const { return lost_.load(); }

  void Stop() {
    if (!stop_.HasBeenNotified()) {
      stop_.Notify();
    }
    if (pinger_.joinable()) {
      pinger_.join();
    }
    if (reader_.joinable()) {
      reader_.join();
    }
  }

  // Sets what to do (on the reader thread) when the lock is lost or the session ended; nullptr
  // for nothing. Runs `on_lost` at once when that already happened.
  void SetOnLost(std::function<void()> on_lost) {
    absl::MutexLock lock(&mu_);
    on_lost_ = std::move(on_lost);
    if (lost_.load() && on_lost_) {
      on_lost_();
    }
  }

 private:
  void PingLoop() {
    uint64_t ping_id = 1;
    while (!stop_.WaitForNotificationWithTimeout(interval_)) {
      v1::KeepAliveRequest ping;
      ping.set_ping_id(ping_id++);
      if (!stream_->Write(ping)) {
        return;
      }
    }
    stream_->WritesDone();
  }

  void ReadLoop() {
    v1::KeepAliveResponse message;
    while (stream_->Read(&message)) {
      Report(message);
    }
    grpc::Status status = stream_->Finish();
    if (!status.ok() && !stop_.HasBeenNotified()) {
      std::fprintf(stderr, "spindlectl: keepalive stream ended: %s\n",
                   status.error_message().c_str());
      Lost();
    }
  }

  void Report(const v1::KeepAliveResponse& message) {
    if (print_events_) {
      cli_.Print(message, [&](const google::protobuf::Message&) {
        if (message.has_refreshed()) {
          std::printf("refreshed ping=%lu expires=%s\n",
                      static_cast<unsigned long>(message.refreshed().ping_id()),
                      Time(message.refreshed().expire_time()).c_str());
        } else if (message.has_lock_lost()) {
          std::printf(
              "lock_lost name=%s token=%ld cause=%s %s\n", message.lock_lost().name().c_str(),
              static_cast<long>(message.lock_lost().fencing_token()),
              v1::KeepAliveResponse::LockLostCause_Name(message.lock_lost().cause()).c_str(),
              message.lock_lost().message().c_str());
        } else if (message.has_expiring()) {
          std::printf("expiring in %ld ms\n", static_cast<long>(message.expiring().remaining_ms()));
        } else if (message.has_ended()) {
          std::printf("ended state=%s released_locks=%d\n",
                      v1::SessionState_Name(message.ended().state()).c_str(),
                      message.ended().released_locks());
        }
      });
    }
    if (message.has_lock_lost() || message.has_ended()) {
      if (!print_events_ && message.has_lock_lost()) {
        std::fprintf(
            stderr, "spindlectl: lock '%s' lost (%s)\n", message.lock_lost().name().c_str(),
            v1::KeepAliveResponse::LockLostCause_Name(message.lock_lost().cause()).c_str());
      }
      if (!stop_.HasBeenNotified()) {
        Lost();
      }
    }
  }

  void Lost() {
    if (!lost_.exchange(true)) {
      absl::MutexLock lock(&mu_);
      if (on_lost_) {
        on_lost_();
      }
    }
  }

  Cli& cli_;
  const std::string session_id_;
  const absl::Duration interval_;
  const bool close_on_disconnect_;
  const bool print_events_;
  std::unique_ptr<v1::SessionService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::KeepAliveRequest, v1::KeepAliveResponse>> stream_;
  std::thread reader_;
  std::thread pinger_;
  absl::Notification stop_;
  std::atomic<bool> lost_{false};
  absl::Mutex mu_;
  std::function<void()> on_lost_ ABSL_GUARDED_BY(mu_);
};

// Blocks SIGINT, SIGTERM and SIGUSR1 in this thread (and the threads it starts) so that
// WaitForSignal() can take them synchronously.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int WaitForSignal(const sigset_t& set) {
  int signal = 0;
  sigwait(&set, &signal);
  return signal;
}

int SessionKeepAlive(Cli& cli, const SessionOptions& o) {
  sigset_t set = BlockStopSignals();
  int64_t interval = o.interval_ms;
  if (interval <= 0) {
    auto stub = v1::SessionService::NewStub(cli.channel());
    v1::GetSessionRequest request;
    request.set_session_id(o.id);
    v1::GetSessionResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->GetSession(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    interval = std::max<int64_t>(100, response.session().ttl_ms() / 3);
  }
  KeepAlive keepalive(cli, o.id, interval, /*close_on_disconnect=*/false, /*print_events=*/true);
  keepalive.SetOnLost([] { kill(getpid(), SIGUSR1); });
  if (int code = keepalive.Start(); code != kOk) {
    return code;
  }
  int signal = WaitForSignal(set);
  keepalive.Stop();
  return signal == SIGUSR1 ? kConflict : kOk;
}

// ---- locks ----

struct AcquireOptions {
  std::string name;
  std::string kind = "mutex";
  int32_t permits = 0;
  int32_t total = 0;
  std::string session;
  int64_t ttl_ms = 0;
  bool no_wait = false;
  int64_t max_wait_ms = 0;
  std::string owner;
  bool shared = false;
  std::string request_id;
  std::vector<std::string> command;
};

bool ParseKind(const std::string& text, v1::LockKind* kind) {
  for (int k = v1::LOCK_KIND_MUTEX; k <= v1::LOCK_KIND_CONDITION; ++k) {
    if (text == KindName(static_cast<v1::LockKind>(k))) {
      *kind = static_cast<v1::LockKind>(k);
      return true;
    }
  }
  return text == "rw" ? (*kind = v1::LOCK_KIND_RW_LOCK, true) : false;
}

void PrintGrant(const std::string& name, const v1::LockGrant& grant) {
  std::printf("acquired %s lease=%s fencing_token=%ld held=%d permits=%d expires=%s\n",
              name.c_str(), grant.lease_id().c_str(), static_cast<long>(grant.fencing_token()),
              grant.held_count(), grant.permits(), Time(grant.expire_time()).c_str());
  std::fflush(stdout);
}

int RunCommand(const std::vector<std::string>& command, const v1::LockGrant& grant,
               KeepAlive* keepalive, const sigset_t& blocked) {
  std::vector<std::string> env_storage = {
      absl::StrCat("SPINDLE_LEASE_ID=", grant.lease_id()),
      absl::StrCat("SPINDLE_FENCING_TOKEN=", grant.fencing_token())};
  std::vector<char*> env;
  for (auto& e : env_storage) {
    env.push_back(e.data());
  }
  for (char** e = environ; *e != nullptr; ++e) {
    env.push_back(*e);
  }
  env.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& arg : command) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  int err = posix_spawnp(&pid, argv[0], nullptr, &attr, argv.data(), env.data());
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    std::fprintf(stderr, "spindlectl: cannot run '%s': %s\n", argv[0], std::strerror(err));
    return 127;
  }
  if (keepalive != nullptr) {
    keepalive->SetOnLost([pid] { kill(pid, SIGTERM); });
  }
  // Forward SIGINT/SIGTERM to the command while it runs.
  std::atomic<bool> exited{false};
  std::thread forwarder([&] {
    while (!exited.load()) {
      timespec timeout{0, 100 * 1000 * 1000};
      int signal = sigtimedwait(&blocked, nullptr, &timeout);
      if (signal == SIGINT || signal == SIGTERM) {
        kill(pid, signal);
      }
    }
  });
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  exited = true;
  forwarder.join();
  if (keepalive != nullptr) {
    // `pid` is reaped and may be reused: the session's end (we close it next) must not kill it.
    keepalive->SetOnLost(nullptr);
  }
  if (WIFEXITED(wstatus)) {
    return WEXITSTATUS(wstatus);
  }
  return 128 + WTERMSIG(wstatus);
}

int AcquireLock(Cli& cli, const AcquireOptions& o) {
  sigset_t blocked = BlockStopSignals();
  auto locks = v1::LockService::NewStub(cli.channel());
  auto sessions = v1::SessionService::NewStub(cli.channel());
  v1::AcquireRequest request;
  request.set_name(o.name);
  v1::LockKind kind;
  if (!ParseKind(o.kind, &kind)) {
    std::fprintf(stderr, "spindlectl: --kind '%s' is not one of mutex, reentrant, semaphore, rw\n",
                 o.kind.c_str());
    return kUsage;
  }
  request.set_kind(kind);
  request.set_permits(o.permits);
  request.mutable_config()->set_permits(o.total);
  request.set_owner(o.owner);
  if (o.shared) {
    request.set_mode(v1::LOCK_MODE_SHARED);
  }
  request.set_wait(!o.no_wait);
  request.set_max_wait_ms(o.max_wait_ms);
  request.set_request_id(o.request_id);

  // The session the grant lives under: the given one, or our own kept alive by a stream.
  std::string session = o.session;
  std::unique_ptr<KeepAlive> keepalive;
  if (session.empty()) {
    v1::CreateSessionRequest create;
    create.set_ttl_ms(o.ttl_ms == 0 ? 10000 : o.ttl_ms);
    create.set_client_name(absl::StrCat("spindlectl lock ", o.name));
    v1::CreateSessionResponse created;
    auto context = cli.Context();
    grpc::Status status = sessions->CreateSession(context.get(), create, &created);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    session = created.session().session_id();
    keepalive = std::make_unique<KeepAlive>(cli, session,
                                            std::max<int64_t>(100, created.session().ttl_ms() / 3),
                                            /*close_on_disconnect=*/true, /*print_events=*/false);
    if (int code = keepalive->Start(); code != kOk) {
      return code;
    }
  } else {
    request.set_lease_ttl_ms(o.ttl_ms);
  }
  request.set_session_id(session);
  auto close_own_session = [&] {
    if (keepalive == nullptr) {
      return;
    }
    v1::CloseSessionRequest close;
    close.set_session_id(session);
    v1::CloseSessionResponse closed;
    auto context = cli.Context();
    (void)sessions->CloseSession(context.get(), close, &closed);
    keepalive->Stop();
  };

  v1::AcquireResponse response;
  auto context = cli.WaitContext(o.no_wait ? 1 : o.max_wait_ms);
  grpc::Status status = locks->Acquire(context.get(), request, &response);
  if (!status.ok()) {
    close_own_session();
    return cli.Fail(status);
  }
  if (!response.acquired()) {
    close_own_session();
    cli.Print(response, [&](const google::protobuf::Message&) {
      std::fprintf(stderr, "spindlectl: lock '%s' not acquired (%s)\n", o.name.c_str(),
                   o.no_wait ? "held by another" : "--max-wait-ms ran out");
    });
    return o.no_wait ? kConflict : kTimeout;
  }
  const v1::LockGrant grant = response.grant();
  int code = kOk;
  if (o.command.empty()) {
    cli.Print(response, [&](const google::protobuf::Message&) { PrintGrant(o.name, grant); });
    if (keepalive != nullptr) {
      keepalive->SetOnLost([] { kill(getpid(), SIGUSR1); });
    }
    // A grant with its own TTL under a given session: refresh it from a thread.
    std::thread refresher;
    absl::Notification stop;
    if (keepalive == nullptr && o.ttl_ms > 0) {
      refresher = std::thread([&] {
        while (!stop.WaitForNotificationWithTimeout(absl::Milliseconds(o.ttl_ms / 3))) {
          v1::RefreshLeaseRequest refresh;
          refresh.set_lease_id(grant.lease_id());
          v1::RefreshLeaseResponse refreshed;
          auto ctx = cli.Context();
          if (!locks->RefreshLease(ctx.get(), refresh, &refreshed).ok()) {
            kill(getpid(), SIGUSR1);
            return;
          }
        }
      });
    }
    int signal = WaitForSignal(blocked);
    stop.Notify();
    if (refresher.joinable()) {
      refresher.join();
    }
    code = signal == SIGUSR1 ? kConflict : kOk;
  } else {
    code = RunCommand(o.command, grant, keepalive.get(), blocked);
    if (keepalive != nullptr && keepalive->lost()) {
      std::fprintf(stderr, "spindlectl: the lock was lost while the command ran\n");
      code = code == 0 ? kConflict : code;
    }
  }
  if (keepalive != nullptr) {
    keepalive->SetOnLost(nullptr);  // releasing and closing the session below end it on purpose
  }
  v1::ReleaseRequest release;
  release.set_lease_id(grant.lease_id());
  release.set_all(true);
  v1::ReleaseResponse released;
  auto release_context = cli.Context();
  grpc::Status released_status = locks->Release(release_context.get(), release, &released);
  close_own_session();
  if (!released_status.ok() && code == kOk) {
    return cli.Fail(released_status);
  }
  return code;
}

int ReleaseLock(Cli& cli, const std::string& lease, int32_t count, bool all,
                const std::string& request_id) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::ReleaseRequest request;
  request.set_lease_id(lease);
  request.set_count(count);
  request.set_all(all);
  request.set_request_id(request_id);
  v1::ReleaseResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->Release(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("released; remaining=%d granted_waiters=%d\n", response.remaining(),
                response.granted_waiters());
  });
}

int DescribeLock(Cli& cli, const std::string& name) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::DescribeLockRequest request;
  request.set_name(name);
  v1::DescribeLockResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DescribeLock(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    const auto& lock = response.lock();
    std::printf("name:        %s\n", lock.name().c_str());
    std::printf("kind:        %s\n", KindName(lock.kind()));
    std::printf("holders:     %d\n", lock.holders());
    std::printf("waiters:     %d\n", lock.waiters());
    std::printf("last token:  %ld\n", static_cast<long>(lock.last_fencing_token()));
    if (lock.kind() == v1::LOCK_KIND_SEMAPHORE) {
      std::printf("permits:     %d of %d free\n", lock.available_permits(),
                  lock.config().permits());
    }
    if (lock.kind() == v1::LOCK_KIND_EVENT) {
      std::printf("set:         %s\n", lock.event_set() ? "yes" : "no");
    }
    if (lock.kind() == v1::LOCK_KIND_BARRIER) {
      std::printf("barrier:     %d of %d waiting, generation %ld%s\n", lock.barrier_waiting(),
                  lock.config().parties(), static_cast<long>(lock.barrier_generation()),
                  lock.barrier_broken() ? ", BROKEN" : "");
    }
    for (const auto& h : response.holders()) {
      std::printf("holder:      token=%ld owner=%s session=%s held=%d permits=%d since=%s\n",
                  static_cast<long>(h.fencing_token()), h.owner().c_str(), h.session_id().c_str(),
                  h.held_count(), h.permits(), Time(h.acquire_time()).c_str());
    }
    for (const auto& w : response.waiters()) {
      std::printf("waiter %-4d  owner=%s session=%s permits=%d since=%s\n", w.position(),
                  w.owner().c_str(), w.session_id().c_str(), w.permits(),
                  Time(w.wait_start_time()).c_str());
    }
  });
}

int ListLocks(Cli& cli, const std::string& prefix) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::ListLocksRequest request;
  request.set_prefix(prefix);
  request.set_page_size(1000);
  if (!cli.options().json) {
    std::printf("%-40s %-10s %-8s %-8s %s\n", "NAME", "KIND", "HOLDERS", "WAITERS", "LAST_TOKEN");
  }
  while (true) {
    v1::ListLocksResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->ListLocks(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    for (const auto& lock : response.locks()) {
      cli.Print(lock, [&](const google::protobuf::Message&) {
        std::printf("%-40s %-10s %-8d %-8d %ld\n", lock.name().c_str(), KindName(lock.kind()),
                    lock.holders(), lock.waiters(), static_cast<long>(lock.last_fencing_token()));
      });
    }
    if (response.next_page_token().empty()) {
      return kOk;
    }
    request.set_page_token(response.next_page_token());
  }
}

int Event(Cli& cli, const std::string& action, const std::string& name, int64_t max_wait_ms,
          bool no_wait) {
  auto stub = v1::LockService::NewStub(cli.channel());
  if (action == "set") {
    v1::SetEventRequest request;
    request.set_name(name);
    v1::SetEventResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->SetEvent(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    return cli.Print(response, [&](const google::protobuf::Message&) {
      std::printf("set; woke %d waiters\n", response.woken());
    });
  }
  if (action == "clear") {
    v1::ClearEventRequest request;
    request.set_name(name);
    v1::ClearEventResponse response;
    auto context = cli.Context();
    grpc::Status status = stub->ClearEvent(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    return cli.Print(response, [&](const google::protobuf::Message&) { std::printf("cleared\n"); });
  }
  v1::WaitEventRequest request;
  request.set_name(name);
  request.set_wait(!no_wait);
  request.set_max_wait_ms(max_wait_ms);
  v1::WaitEventResponse response;
  auto context = cli.WaitContext(no_wait ? 1 : max_wait_ms);
  grpc::Status status = stub->WaitEvent(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s\n", response.set() ? "set" : "not set");
  });
  return response.set() ? kOk : kTimeout;
}

int BarrierWait(Cli& cli, const std::string& name, int32_t parties, int64_t max_wait_ms,
                const std::string& request_id) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::WaitBarrierRequest request;
  request.set_name(name);
  request.set_parties(parties);
  request.set_max_wait_ms(max_wait_ms);
  request.set_request_id(request_id);
  v1::WaitBarrierResponse response;
  auto context = cli.WaitContext(max_wait_ms);
  grpc::Status status = stub->WaitBarrier(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s generation=%ld arrival=%d\n", response.tripped() ? "tripped" : "broke it",
                static_cast<long>(response.generation()), response.arrival_index());
  });
  return response.tripped() ? kOk : kTimeout;
}

struct AdminOptions {
  std::string name;
  std::string kind;
  int32_t permits = 0;
  bool bounded = false;
  int32_t parties = 0;
  std::string condition_lock;
  std::vector<std::string> labels;
  int64_t fencing_token = 0;
  std::string message;
  std::string lease;
  int64_t ttl_ms = 0;
  int32_t count = 0;
  bool all = false;
  int64_t max_wait_ms = 0;
  std::string request_id;
};

int CreateLock(Cli& cli, const AdminOptions& o) {
  v1::CreateLockRequest request;
  request.set_name(o.name);
  v1::LockKind kind;
  if (!ParseKind(o.kind, &kind)) {
    std::fprintf(stderr,
                 "spindlectl: --kind '%s' is not one of mutex, reentrant, semaphore, rw, event, "
                 "barrier, condition\n",
                 o.kind.c_str());
    return kUsage;
  }
  request.set_kind(kind);
  request.mutable_config()->set_permits(o.permits);
  request.mutable_config()->set_bounded(o.bounded);
  request.mutable_config()->set_parties(o.parties);
  request.mutable_config()->set_lock_name(o.condition_lock);
  for (const std::string& label : o.labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(label, absl::MaxSplits('=', 1));
    (*request.mutable_labels())[kv.first] = kv.second;
  }
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::CreateLockResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CreateLock(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s %s %s\n", response.created() ? "created" : "exists", KindName(kind),
                response.lock().name().c_str());
  });
}

int DeleteLock(Cli& cli, const std::string& name) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::DeleteLockRequest request;
  request.set_name(name);
  v1::DeleteLockResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DeleteLock(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) { std::printf("deleted\n"); });
}

int RevokeLock(Cli& cli, const AdminOptions& o) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::RevokeLockRequest request;
  request.set_name(o.name);
  request.set_fencing_token(o.fencing_token);
  request.set_message(o.message);
  v1::RevokeLockResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->RevokeLock(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("revoked %d grants; granted %d waiters\n", response.revoked(),
                response.granted_waiters());
  });
}

int RefreshLease(Cli& cli, const AdminOptions& o) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::RefreshLeaseRequest request;
  request.set_lease_id(o.lease);
  request.set_lease_ttl_ms(o.ttl_ms);
  v1::RefreshLeaseResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->RefreshLease(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("expires %s\n", Time(response.expire_time()).c_str());
  });
}

int BarrierReset(Cli& cli, const std::string& name, bool abort) {
  auto stub = v1::LockService::NewStub(cli.channel());
  auto context = cli.Context();
  if (abort) {
    v1::AbortBarrierRequest request;
    request.set_name(name);
    v1::AbortBarrierResponse response;
    grpc::Status status = stub->AbortBarrier(context.get(), request, &response);
    if (!status.ok()) {
      return cli.Fail(status);
    }
    return cli.Print(response, [&](const google::protobuf::Message&) {
      std::printf("aborted; broke %d waiters\n", response.broken_waiters());
    });
  }
  v1::ResetBarrierRequest request;
  request.set_name(name);
  v1::ResetBarrierResponse response;
  grpc::Status status = stub->ResetBarrier(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("reset; broke %d waiters; generation=%ld\n", response.broken_waiters(),
                static_cast<long>(response.generation()));
  });
}

// Waits on a condition under the grant `--lease` (which it gives up while waiting) and prints the
// new grant it holds afterwards: exit 0 when notified, 4 when --max-wait-ms ran out (the lock is
// held again either way).
int ConditionWait(Cli& cli, const AdminOptions& o) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::WaitConditionRequest request;
  request.set_name(o.name);
  request.set_lease_id(o.lease);
  request.set_max_wait_ms(o.max_wait_ms);
  request.set_request_id(o.request_id);
  v1::WaitConditionResponse response;
  auto context = cli.WaitContext(o.max_wait_ms);
  grpc::Status status = stub->WaitCondition(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s lease=%s fencing_token=%ld held=%d\n",
                response.notified() ? "notified" : "timed out", response.grant().lease_id().c_str(),
                static_cast<long>(response.grant().fencing_token()), response.grant().held_count());
  });
  return response.notified() ? kOk : kTimeout;
}

int ConditionNotify(Cli& cli, const AdminOptions& o) {
  auto stub = v1::LockService::NewStub(cli.channel());
  v1::NotifyConditionRequest request;
  request.set_name(o.name);
  request.set_count(o.count);
  request.set_all(o.all);
  request.set_lease_id(o.lease);
  v1::NotifyConditionResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->NotifyCondition(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("woke %d waiters\n", response.woken());
  });
}

}  // namespace

void AddSyncCommands(CLI::App& app, Cli& cli, int* exit_code) {
  // sessions
  auto* session = app.add_subcommand("session", "sessions: create, refresh, close, inspect");
  session->require_subcommand(1);
  auto so = std::make_shared<SessionOptions>();
  auto* create = session->add_subcommand("create", "create a session; prints its id");
  create->add_option("--ttl-ms", so->ttl_ms, "TTL in milliseconds (1000..3600000; 0 = 30000)");
  create->add_option("--name", so->name, "client name for humans and logs");
  create->add_option("--label", so->labels, "label key=value (repeatable)");
  create->callback([&cli, exit_code, so] { *exit_code = CreateSession(cli, *so); });
  auto* refresh = session->add_subcommand("refresh", "refresh a session once");
  refresh->add_option("id", so->id, "session id")->required();
  refresh->add_option("--ttl-ms", so->ttl_ms, "new TTL in milliseconds; 0 keeps it");
  refresh->callback([&cli, exit_code, so] { *exit_code = RefreshSession(cli, *so); });
  auto* close = session->add_subcommand("close", "close a session, releasing what it holds");
  close->add_option("id", so->id, "session id")->required();
  close->callback([&cli, exit_code, so] { *exit_code = CloseSession(cli, *so); });
  auto* get = session->add_subcommand("get", "a session's state");
  get->add_option("id", so->id, "session id")->required();
  get->add_flag("--locks", so->locks, "also list the grants it holds");
  get->callback([&cli, exit_code, so] { *exit_code = GetSession(cli, *so); });
  auto* list = session->add_subcommand("list", "live sessions");
  list->add_option("--prefix", so->prefix, "client name prefix");
  list->callback([&cli, exit_code, so] { *exit_code = ListSessions(cli, *so); });
  auto* keepalive = session->add_subcommand(
      "keepalive", "keep a session alive and print its events until Ctrl-C or its end");
  keepalive->add_option("id", so->id, "session id")->required();
  keepalive->add_option("--interval-ms", so->interval_ms, "ping interval; 0 = TTL / 3");
  keepalive->callback([&cli, exit_code, so] { *exit_code = SessionKeepAlive(cli, *so); });

  // locks
  auto* lock =
      app.add_subcommand("lock", "named locks, semaphores, rw locks, events, barriers, conditions");
  lock->require_subcommand(1);
  auto ao = std::make_shared<AcquireOptions>();
  auto* acquire = lock->add_subcommand(
      "acquire",
      "acquire NAME and hold it until Ctrl-C/SIGTERM, or run `-- COMMAND ARGS...` under it");
  acquire->add_option("name", ao->name, "lock name")->required();
  acquire->add_option("command", ao->command, "command to run under the lock (after --)");
  acquire->add_option("--kind", ao->kind, "mutex, reentrant, semaphore or rw")
      ->capture_default_str();
  acquire->add_option("--permits", ao->permits, "semaphore permits to take (default 1)");
  acquire->add_option("--total", ao->total, "semaphore total permits when it is created");
  acquire->add_option("--session", ao->session, "hold the grant under this session");
  acquire->add_option("--ttl-ms", ao->ttl_ms,
                      "own session's TTL (default 10000); with --session: the grant's lease TTL");
  acquire->add_flag("--no-wait", ao->no_wait, "try once; exit 6 when the lock is held");
  acquire->add_option("--max-wait-ms", ao->max_wait_ms, "give up waiting after this; exit 4");
  acquire->add_option("--owner", ao->owner, "owner id (required for reentrant)");
  acquire->add_flag("--shared", ao->shared, "rw lock: take it shared (a reader)");
  acquire->add_option("--request-id", ao->request_id,
                      "idempotency key: a retry gets the original grant");
  acquire->callback([&cli, exit_code, ao] { *exit_code = AcquireLock(cli, *ao); });

  auto lease = std::make_shared<std::string>();
  auto count = std::make_shared<int32_t>(0);
  auto all = std::make_shared<bool>(false);
  auto* release = lock->add_subcommand("release", "release a grant by lease id");
  release->add_option("lease", *lease, "lease id")->required();
  release->add_option("--count", *count, "reentrant holds or semaphore permits to give back");
  release->add_flag("--all", *all, "end the grant whatever its count");
  auto release_request_id = std::make_shared<std::string>();
  release->add_option("--request-id", *release_request_id,
                      "idempotency key: a retry gives back nothing more");
  release->callback([&cli, exit_code, lease, count, all, release_request_id] {
    *exit_code = ReleaseLock(cli, *lease, *count, *all, *release_request_id);
  });

  auto admin = std::make_shared<AdminOptions>();
  auto* refresh_lease = lock->add_subcommand("refresh", "extend a grant's own lease");
  refresh_lease->add_option("lease", admin->lease, "lease id")->required();
  refresh_lease->add_option("--ttl-ms", admin->ttl_ms, "new lease TTL in milliseconds")->required();
  refresh_lease->callback([&cli, exit_code, admin] { *exit_code = RefreshLease(cli, *admin); });

  auto* create_lock =
      lock->add_subcommand("create", "create a lock with explicit settings (kind, permits, ...)");
  create_lock->add_option("name", admin->name, "lock name")->required();
  create_lock
      ->add_option("--kind", admin->kind,
                   "mutex, reentrant, semaphore, rw, event, barrier or condition")
      ->required();
  create_lock->add_option("--permits", admin->permits, "semaphore: total permits (default 1)");
  create_lock->add_flag("--bounded", admin->bounded,
                        "semaphore: BoundedSemaphore (permits come back only by release)");
  create_lock->add_option("--parties", admin->parties, "barrier: number of parties");
  create_lock->add_option("--lock", admin->condition_lock,
                          "condition: the MUTEX or REENTRANT lock it is bound to");
  create_lock->add_option("--label", admin->labels, "label key=value (repeatable)");
  create_lock->callback([&cli, exit_code, admin] { *exit_code = CreateLock(cli, *admin); });

  auto* delete_lock = lock->add_subcommand("delete", "delete an idle lock (no holder, no waiter)");
  delete_lock->add_option("name", admin->name, "lock name")->required();
  delete_lock->callback([&cli, exit_code, admin] { *exit_code = DeleteLock(cli, admin->name); });

  auto* revoke = lock->add_subcommand(
      "revoke", "admin: end a lock's grants (all, or one by --token); its holders are told");
  revoke->add_option("name", admin->name, "lock name")->required();
  revoke->add_option("--token", admin->fencing_token, "only the grant with this fencing token");
  revoke->add_option("--message", admin->message, "why (sent to the holder's session)");
  revoke->callback([&cli, exit_code, admin] { *exit_code = RevokeLock(cli, *admin); });

  auto* condition = lock->add_subcommand("condition", "conditions: wait, notify");
  condition->require_subcommand(1);
  auto* condition_wait = condition->add_subcommand(
      "wait", "give up the grant --lease, wait for a notify, hold the lock again (new lease)");
  condition_wait->add_option("name", admin->name, "condition name")->required();
  condition_wait->add_option("--lease", admin->lease, "lease of the held lock")->required();
  condition_wait->add_option("--max-wait-ms", admin->max_wait_ms,
                             "stop waiting after this (the lock is re-acquired); exit 4");
  condition_wait->add_option("--request-id", admin->request_id,
                             "idempotency key: a retry gets the grant the first wait re-acquired");
  condition_wait->callback([&cli, exit_code, admin] { *exit_code = ConditionWait(cli, *admin); });
  auto* notify = condition->add_subcommand("notify", "wake the longest-waiting waiters");
  notify->add_option("name", admin->name, "condition name")->required();
  notify->add_option("--count", admin->count, "how many to wake (default 1)");
  notify->add_flag("--all", admin->all, "wake every waiter");
  notify->add_option("--lease", admin->lease, "check that this grant holds the condition's lock");
  notify->callback([&cli, exit_code, admin] { *exit_code = ConditionNotify(cli, *admin); });

  auto name = std::make_shared<std::string>();
  auto* describe = lock->add_subcommand("describe", "holders and waiters of a lock");
  describe->add_option("name", *name, "lock name")->required();
  describe->callback([&cli, exit_code, name] { *exit_code = DescribeLock(cli, *name); });

  auto prefix = std::make_shared<std::string>();
  auto* list_locks = lock->add_subcommand("list", "locks by name prefix");
  list_locks->add_option("--prefix", *prefix, "name prefix");
  list_locks->callback([&cli, exit_code, prefix] { *exit_code = ListLocks(cli, *prefix); });

  auto max_wait = std::make_shared<int64_t>(0);
  auto no_wait = std::make_shared<bool>(false);
  auto* event = lock->add_subcommand("event", "events: set, clear, wait");
  event->require_subcommand(1);
  for (const char* action : {"set", "clear", "wait"}) {
    auto* sub = event->add_subcommand(action, std::string(action) + " an event");
    sub->add_option("name", *name, "event name")->required();
    if (std::string(action) == "wait") {
      sub->add_option("--max-wait-ms", *max_wait, "give up after this; exit 4");
      sub->add_flag("--no-wait", *no_wait, "only read the flag (exit 0 set, 4 not set)");
    }
    sub->callback([&cli, exit_code, name, max_wait, no_wait, a = std::string(action)] {
      *exit_code = Event(cli, a, *name, *max_wait, *no_wait);
    });
  }

  auto parties = std::make_shared<int32_t>(0);
  auto* barrier = lock->add_subcommand("barrier", "barriers: wait, reset, abort");
  barrier->require_subcommand(1);
  auto* barrier_wait = barrier->add_subcommand("wait", "arrive and wait for the other parties");
  barrier_wait->add_option("name", *name, "barrier name")->required();
  barrier_wait->add_option("--parties", *parties, "parties (required when new)");
  barrier_wait->add_option("--max-wait-ms", *max_wait, "give up after this, breaking it; exit 4");
  auto barrier_request_id = std::make_shared<std::string>();
  barrier_wait->add_option("--request-id", *barrier_request_id,
                           "idempotency key: a retry is not counted as a second arrival");
  barrier_wait->callback([&cli, exit_code, name, parties, max_wait, barrier_request_id] {
    *exit_code = BarrierWait(cli, *name, *parties, *max_wait, *barrier_request_id);
  });
  for (const char* action : {"reset", "abort"}) {
    auto* sub = barrier->add_subcommand(
        action, std::string(action) == "reset"
                    ? "break the current generation and start an empty, unbroken one"
                    : "break the barrier for its waiters and later callers until a reset");
    sub->add_option("name", *name, "barrier name")->required();
    sub->callback([&cli, exit_code, name, abort = std::string(action) == "abort"] {
      *exit_code = BarrierReset(cli, *name, abort);
    });
  }
}

}  // namespace spindle::cli
