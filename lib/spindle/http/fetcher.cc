#include "spindle/http/fetcher.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "spindle/common/status.h"
#include "spindle/coro/channel.h"
#include "spindle/coro/deadline.h"
#include "spindle/coro/task_scope.h"

namespace spindle::http {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// ---- validation ----

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

absl::Status CheckHeaders(absl::string_view field, const std::vector<Header>& headers) {
  if (headers.size() > static_cast<size_t>(kMaxHeaders)) {
    return InvalidArgument("INVALID_HEADER", absl::StrCat(field, ": ", headers.size(),
                                                          " headers, at most ", kMaxHeaders));
  }
  for (size_t i = 0; i < headers.size(); ++i) {
    const Header& header = headers[i];
    if (header.name.empty() || header.name.size() > static_cast<size_t>(kMaxHeaderNameBytes)) {
      return InvalidArgument("INVALID_HEADER",
                             absl::StrCat(field, "[", i, "].name: length ", header.name.size(),
                                          " is out of range 1..", kMaxHeaderNameBytes));
    }
    for (char c : header.name) {
      if (!IsTokenChar(c)) {
        return InvalidArgument("INVALID_HEADER",
                               absl::StrCat(field, "[", i, "].name: '", absl::CEscape(header.name),
                                            "' is not an HTTP token (character '",
                                            absl::CEscape(std::string(1, c)), "')"));
      }
    }
    if (header.value.size() > static_cast<size_t>(kMaxHeaderValueBytes)) {
      return InvalidArgument("INVALID_HEADER",
                             absl::StrCat(field, "[", i, "].value: ", header.value.size(),
                                          " bytes, at most ", kMaxHeaderValueBytes));
    }
    if (header.value.find_first_of("\r\n\0", 0, 3) != std::string::npos) {
      return InvalidArgument(
          "INVALID_HEADER",
          absl::StrCat(field, "[", i, "].value of '", header.name, "' contains CR, LF or NUL"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckUrl(absl::string_view field, const std::string& url) {
  if (url.empty() || url.size() > static_cast<size_t>(kMaxUrlBytes)) {
    return InvalidArgument("INVALID_URL", absl::StrCat(field, ": length ", url.size(),
                                                       " is out of range 1..", kMaxUrlBytes));
  }
  const auto bad = [&](absl::string_view why) {
    return InvalidArgument(
        "INVALID_URL", absl::StrCat(field, ": '", absl::CEscape(url.substr(0, 256)), "' ", why));
  };
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("contains a space or control character");
    }
  }
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), &curl_url_cleanup);
  if (parsed == nullptr) {
    return absl::ResourceExhaustedError("curl_url() failed");
  }
  // No default scheme guessing: the URL must be absolute.
  if (curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return bad("is not an absolute URL");
  }
  char* scheme = nullptr;
  if (curl_url_get(parsed.get(), CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
    return bad("has no scheme");
  }
  const std::string lower = absl::AsciiStrToLower(scheme);
  curl_free(scheme);
  if (lower != "http" && lower != "https") {
    return bad(absl::StrCat("has scheme '", lower, "'; only http and https are allowed"));
  }
  char* host = nullptr;
  if (curl_url_get(parsed.get(), CURLUPART_HOST, &host, 0) != CURLUE_OK || host == nullptr ||
      host[0] == '\0') {
    if (host != nullptr) curl_free(host);
    return bad("has no host");
  }
  curl_free(host);
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return InvalidArgument("INVALID_ARGUMENT",
                           absl::StrCat(field, " ", value, " is out of range ", low, "..", high));
  }
  return absl::OkStatus();
}

// ---- the driver ----

// A watcher's report: fd `fd` became ready for `writable`, or the wait ended otherwise.
struct SocketEvent {
  int fd = -1;
  bool writable = false;
  bool ready = false;      // The fd is ready (or hung up / in error).
  bool cancelled = false;  // The watch was cancelled (socket removed or closing, or call ended).
};

// One socket curl asked us to watch. Touched only by the driving coroutine (curl's callbacks run
// inside its curl calls).
struct Socket {
  int want = 0;  // CURL_POLL_IN | CURL_POLL_OUT bits.
  bool read_armed = false;
  bool write_armed = false;
  bool closing = false;  // curl closed it while a watcher was armed: close when both report.
  coro::CancellationSource cancel;
};

struct Transfer {
  int index = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  int64_t max_body_bytes = 0;
  std::string body;
  bool truncated = false;
  std::vector<Header> response_headers;
  absl::Time started_at;
  char error[CURL_ERROR_SIZE] = {};
};

// Waits once for `fd` and reports to the driver. The channel always takes the report (its
// capacity exceeds the watchers a call can have; the send token cannot be cancelled).
coro::Task<void> WatchSocket(coro::Executor* executor, coro::Channel<SocketEvent>* events, int fd,
                             bool writable, coro::CancellationToken token) {
  // Not a conditional expression around co_await: GCC 12 destroys its temporary twice.
  absl::Status status;
  if (writable) {
    status = co_await executor->WaitWritable(fd, token);
  } else {
    status = co_await executor->WaitReadable(fd, token);
  }
  SocketEvent event{fd, writable, status.ok(), token.IsCancelled()};
  (void)co_await events->Send(event, coro::CancellationToken());
}

const char* ReasonFor(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "DNS_FAILED";
    case CURLE_COULDNT_CONNECT:
      return "CONNECT_FAILED";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
      return "TLS_FAILED";
    case CURLE_OPERATION_TIMEDOUT:
      return "TIMED_OUT";
    case CURLE_TOO_MANY_REDIRECTS:
      return "TOO_MANY_REDIRECTS";
    case CURLE_UNSUPPORTED_PROTOCOL:
      // A redirect to a scheme other than http/https.
      return "URL_NOT_ALLOWED";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_CONTENT_ENCODING:
      return "PROTOCOL_ERROR";
    default:
      return "RECEIVE_FAILED";
  }
}

int64_t InfoMs(CURL* easy, CURLINFO info) {
  curl_off_t micros = 0;
  if (curl_easy_getinfo(easy, info, &micros) != CURLE_OK) {
    return 0;
  }
  return static_cast<int64_t>(micros / 1000);
}

class Driver {
 public:
  Driver(coro::Executor* executor, std::vector<FetchTarget> targets, FetchOptions options,
         ResultSink* sink, coro::CancellationToken token)
      : executor_(executor),
        targets_(std::move(targets)),
        options_(std::move(options)),
        sink_(sink),
        token_(std::move(token)),
        scope_(*executor, token_),
        events_(kChannelCapacity) {}

  coro::Task<absl::StatusOr<FetchSummary>> Run();

 private:
  static constexpr size_t kChannelCapacity = 1 << 16;

  static int OnSocket(CURL* easy, curl_socket_t fd, int what, void* self, void* socketp);
  static int OnTimer(CURLM* multi, long timeout_ms, void* self);
  static int OnCloseSocket(void* self, curl_socket_t fd);
  static size_t OnBody(char* data, size_t size, size_t count, void* transfer);
  static size_t OnHeader(char* data, size_t size, size_t count, void* transfer);

  absl::Status StartTransfer(int index);
  void HandleEvent(const SocketEvent& event);
  // Arms the watchers `fd` needs, or closes it once nothing watches it any more.
  void Sync(int fd);
  void Action(curl_socket_t fd, int mask);
  // Collects finished transfers into done_.
  void Harvest();
  FetchResult Finish(Transfer* transfer, CURLcode code);
  void Cleanup(Transfer* transfer);

  coro::Executor* const executor_;
  const std::vector<FetchTarget> targets_;
  const FetchOptions options_;
  ResultSink* const sink_;
  const coro::CancellationToken token_;
  coro::TaskScope scope_;
  coro::Channel<SocketEvent> events_;

  CURLM* multi_ = nullptr;
  absl::flat_hash_map<int, Socket> sockets_;
  absl::flat_hash_map<CURL*, std::unique_ptr<Transfer>> transfers_;
  std::optional<absl::Time> timer_at_;
  std::deque<FetchResult> done_;
  int watchers_ = 0;
};

int Driver::OnSocket(CURL* easy, curl_socket_t fd, int what, void* self_ptr, void* socketp) {
  auto* self = static_cast<Driver*>(self_ptr);
  Socket& socket = self->sockets_[fd];
  if (what == CURL_POLL_REMOVE) {
    socket.want = 0;
    if (socket.read_armed || socket.write_armed) {
      socket.cancel.Cancel();
      socket.cancel = coro::CancellationSource();
    }
  } else {
    socket.want = what & (CURL_POLL_IN | CURL_POLL_OUT);
  }
  self->Sync(fd);
  return 0;
}

int Driver::OnTimer(CURLM* multi, long timeout_ms, void* self_ptr) {
  auto* self = static_cast<Driver*>(self_ptr);
  if (timeout_ms < 0) {
    self->timer_at_.reset();
  } else {
    self->timer_at_ = absl::Now() + absl::Milliseconds(timeout_ms);
  }
  return 0;
}

int Driver::OnCloseSocket(void* self_ptr, curl_socket_t fd) {
  auto* self = static_cast<Driver*>(self_ptr);
  auto it = self->sockets_.find(fd);
  if (it == self->sockets_.end()) {
    return ::close(fd);
  }
  Socket& socket = it->second;
  socket.want = 0;
  socket.closing = true;
  if (socket.read_armed || socket.write_armed) {
    // The reactor must not see the fd closed (or its number reused) while a wait is registered:
    // end the waits first and close when they have reported.
    socket.cancel.Cancel();
    return 0;
  }
  self->sockets_.erase(it);
  return ::close(fd);
}

size_t Driver::OnBody(char* data, size_t size, size_t count, void* transfer_ptr) {
  auto* transfer = static_cast<Transfer*>(transfer_ptr);
  const size_t bytes = size * count;
  const size_t room = static_cast<size_t>(transfer->max_body_bytes) - transfer->body.size();
  if (bytes > room) {
    transfer->body.append(data, room);
    transfer->truncated = true;
    return 0;  // Stops the transfer (CURLE_WRITE_ERROR), which is not an error here.
  }
  transfer->body.append(data, bytes);
  return bytes;
}

size_t Driver::OnHeader(char* data, size_t size, size_t count, void* transfer_ptr) {
  auto* transfer = static_cast<Transfer*>(transfer_ptr);
  const size_t bytes = size * count;
  absl::string_view line(data, bytes);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  if (absl::StartsWith(line, "HTTP/")) {
    transfer->response_headers.clear();  // A new response (after a redirect or a 100).
  } else if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
    if (!transfer->response_headers.empty()) {
      absl::StrAppend(&transfer->response_headers.back().value, " ",
                      absl::StripAsciiWhitespace(line));
    }
  } else if (const size_t colon = line.find(':'); colon != absl::string_view::npos) {
    transfer->response_headers.push_back(
        {std::string(line.substr(0, colon)),
         std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)))});
  }
  return bytes;
}

void Driver::Sync(int fd) {
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) {
    return;
  }
  Socket& socket = it->second;
  if (socket.closing) {
    if (!socket.read_armed && !socket.write_armed) {
      sockets_.erase(it);
      ::close(fd);
    }
    return;
  }
  const auto arm = [&](bool writable) {
    if (scope_.Spawn(WatchSocket(executor_, &events_, fd, writable, socket.cancel.token()))) {
      (writable ? socket.write_armed : socket.read_armed) = true;
      ++watchers_;
    }
  };
  if ((socket.want & CURL_POLL_IN) != 0 && !socket.read_armed) {
    arm(false);
  }
  if ((socket.want & CURL_POLL_OUT) != 0 && !socket.write_armed) {
    arm(true);
  }
}

void Driver::Action(curl_socket_t fd, int mask) {
  int running = 0;
  curl_multi_socket_action(multi_, fd, mask, &running);
}

void Driver::HandleEvent(const SocketEvent& event) {
  --watchers_;
  auto it = sockets_.find(event.fd);
  if (it == sockets_.end()) {
    return;
  }
  Socket& socket = it->second;
  (event.writable ? socket.write_armed : socket.read_armed) = false;
  const int direction = event.writable ? CURL_POLL_OUT : CURL_POLL_IN;
  if (!socket.closing && !event.cancelled && (socket.want & direction) != 0) {
    const int mask =
        event.ready ? (event.writable ? CURL_CSELECT_OUT : CURL_CSELECT_IN) : CURL_CSELECT_ERR;
    Action(event.fd, mask);
  }
  Sync(event.fd);  // Re-arm what is still wanted, or close.
}

absl::Status Driver::StartTransfer(int index) {
  const FetchTarget& target = targets_[index];
  auto transfer = std::make_unique<Transfer>();
  transfer->index = index;
  transfer->max_body_bytes = options_.max_body_bytes;
  transfer->easy = curl_easy_init();
  if (transfer->easy == nullptr) {
    return absl::InternalError("curl_easy_init failed");
  }
  CURL* easy = transfer->easy;
  for (const std::vector<Header>* list : {&options_.headers, &target.headers}) {
    for (const Header& header : *list) {
      // "Name;" sends an empty header; "Name:" would remove curl's own.
      const std::string line = header.value.empty() ? absl::StrCat(header.name, ";")
                                                    : absl::StrCat(header.name, ": ", header.value);
      transfer->headers = curl_slist_append(transfer->headers, line.c_str());
    }
  }
  curl_easy_setopt(easy, CURLOPT_URL, target.url.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  // Direct connections only: the server's environment must not route client fetches.
  curl_easy_setopt(easy, CURLOPT_PROXY, "");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, options_.max_redirects > 0 ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, static_cast<long>(options_.max_redirects));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Driver::OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer.get());
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Driver::OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, transfer.get());
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer->error);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &Driver::OnCloseSocket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer.get());
  if (transfer->headers != nullptr) {
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer->headers);
  }
  if (options_.decompress) {
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  }
  transfer->started_at = absl::Now();
  if (CURLMcode code = curl_multi_add_handle(multi_, easy); code != CURLM_OK) {
    Cleanup(transfer.get());
    return absl::InternalError(
        absl::StrCat("curl_multi_add_handle failed: ", curl_multi_strerror(code)));
  }
  transfers_.emplace(easy, std::move(transfer));
  return absl::OkStatus();
}

void Driver::Cleanup(Transfer* transfer) {
  curl_easy_cleanup(transfer->easy);
  curl_slist_free_all(transfer->headers);
  transfer->easy = nullptr;
  transfer->headers = nullptr;
}

FetchResult Driver::Finish(Transfer* transfer, CURLcode code) {
  CURL* easy = transfer->easy;
  const FetchTarget& target = targets_[transfer->index];
  FetchResult result;
  result.index = transfer->index;
  result.url = target.url;
  result.tag = target.tag;
  result.started_at = transfer->started_at;
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  result.status_code = static_cast<int>(status);
  char* effective = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK &&
      effective != nullptr) {
    result.effective_url = effective;
  }
  if (result.status_code != 0) {
    long version = 0;
    curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
    switch (version) {
      case CURL_HTTP_VERSION_1_0:
        result.http_version = "1.0";
        break;
      case CURL_HTTP_VERSION_1_1:
        result.http_version = "1.1";
        break;
      case CURL_HTTP_VERSION_2_0:
        result.http_version = "2";
        break;
      case CURL_HTTP_VERSION_3:
        result.http_version = "3";
        break;
      default:
        break;
    }
    result.headers = std::move(transfer->response_headers);
  }
  curl_off_t length = -1;
  if (curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK) {
    result.content_length = static_cast<int64_t>(length);
  }
  long redirects = 0;
  curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects);
  result.redirects = static_cast<int>(redirects);
  char* ip = nullptr;
  long port = 0;
  if (curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip != nullptr &&
      ip[0] != '\0') {
    curl_easy_getinfo(easy, CURLINFO_PRIMARY_PORT, &port);
    result.remote_address = std::strchr(ip, ':') != nullptr ? absl::StrCat("[", ip, "]:", port)
                                                            : absl::StrCat(ip, ":", port);
  }
  result.timing.name_lookup_ms = InfoMs(easy, CURLINFO_NAMELOOKUP_TIME_T);
  result.timing.connect_ms = InfoMs(easy, CURLINFO_CONNECT_TIME_T);
  result.timing.tls_ms = InfoMs(easy, CURLINFO_APPCONNECT_TIME_T);
  result.timing.first_byte_ms = InfoMs(easy, CURLINFO_STARTTRANSFER_TIME_T);
  result.timing.total_ms = InfoMs(easy, CURLINFO_TOTAL_TIME_T);
  result.timing.redirect_ms = InfoMs(easy, CURLINFO_REDIRECT_TIME_T);
  result.body_truncated = transfer->truncated;
  result.body = std::move(transfer->body);
  const bool cut = code == CURLE_WRITE_ERROR && transfer->truncated;
  if (code != CURLE_OK && !cut) {
    result.error = transfer->error[0] != '\0' ? std::string(transfer->error)
                                              : std::string(curl_easy_strerror(code));
    result.error_reason = ReasonFor(code);
  }
  return result;
}

void Driver::Harvest() {
  int queued = 0;
  while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
    if (message->msg != CURLMSG_DONE) {
      continue;
    }
    CURL* easy = message->easy_handle;
    const CURLcode code = message->data.result;
    auto it = transfers_.find(easy);
    if (it == transfers_.end()) {
      continue;
    }
    done_.push_back(Finish(it->second.get(), code));
    curl_multi_remove_handle(multi_, easy);
    Cleanup(it->second.get());
    transfers_.erase(it);
  }
}

coro::Task<absl::StatusOr<FetchSummary>> Driver::Run() {
  GlobalInit();
  const absl::Time start = absl::Now();
  FetchSummary summary;
  absl::Status failure;
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    failure = absl::InternalError("curl_multi_init failed");
  } else {
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Driver::OnSocket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Driver::OnTimer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  }
  size_t next = 0;
  while (failure.ok()) {
    while (transfers_.size() < static_cast<size_t>(options_.max_concurrency) &&
           next < targets_.size()) {
      failure = StartTransfer(static_cast<int>(next++));
      if (!failure.ok()) {
        break;
      }
    }
    if (!failure.ok() || (transfers_.empty() && done_.empty())) {
      break;
    }
    if (done_.empty()) {
      std::optional<SocketEvent> event;
      {
        coro::DeadlineSource timer(*executor_, timer_at_.value_or(absl::InfiniteFuture()), token_);
        absl::StatusOr<SocketEvent> received = co_await events_.Receive(timer.token());
        if (received.ok()) {
          event = *received;
        }
      }
      if (token_.IsCancelled()) {
        failure = token_.status();
        break;
      }
      if (event.has_value()) {
        HandleEvent(*event);
      }
      if (timer_at_.has_value() && absl::Now() >= *timer_at_) {
        timer_at_.reset();
        Action(CURL_SOCKET_TIMEOUT, 0);
      }
      Harvest();
    }
    while (!done_.empty() && failure.ok()) {
      FetchResult result = std::move(done_.front());
      done_.pop_front();
      if (result.ok()) {
        ++summary.completed;
      } else {
        ++summary.failed;
      }
      failure = co_await sink_->Deliver(std::move(result));
    }
  }
  // Abort what still runs, then wait for every watcher before closing the sockets they watched.
  for (auto& [easy, transfer] : transfers_) {
    curl_multi_remove_handle(multi_, easy);
    Cleanup(transfer.get());
  }
  transfers_.clear();
  if (multi_ != nullptr) {
    curl_multi_cleanup(multi_);  // Closes cached connections through OnCloseSocket.
    multi_ = nullptr;
  }
  scope_.Cancel();
  co_await scope_.Join();
  for (auto& [fd, socket] : sockets_) {
    if (socket.closing) {
      ::close(fd);
    }
  }
  sockets_.clear();
  if (!failure.ok()) {
    co_return failure;
  }
  summary.elapsed = absl::Now() - start;
  co_return summary;
}

// Owns the driver for the lifetime of the call.
coro::Task<absl::StatusOr<FetchSummary>> RunFetch(std::unique_ptr<Driver> driver) {
  co_return co_await driver->Run();
}

}  // namespace

absl::Status ValidateFetch(const std::vector<FetchTarget>& targets, const FetchOptions& options) {
  GlobalInit();
  if (targets.empty() || targets.size() > static_cast<size_t>(kMaxTargets)) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("targets: ", targets.size(),
                                                            " URLs, must be 1..", kMaxTargets));
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string field = absl::StrCat("targets[", i, "]");
    SPINDLE_RETURN_IF_ERROR(CheckUrl(absl::StrCat(field, ".url"), targets[i].url));
    SPINDLE_RETURN_IF_ERROR(CheckHeaders(absl::StrCat(field, ".headers"), targets[i].headers));
    if (targets[i].tag.size() > static_cast<size_t>(kMaxTagBytes)) {
      return InvalidArgument(
          "INVALID_ARGUMENT",
          absl::StrCat(field, ".tag: ", targets[i].tag.size(), " bytes, at most ", kMaxTagBytes));
    }
  }
  SPINDLE_RETURN_IF_ERROR(CheckHeaders("headers", options.headers));
  SPINDLE_RETURN_IF_ERROR(
      CheckRange("max_concurrency", options.max_concurrency, 1, kMaxConcurrency));
  const int64_t timeout_ms = absl::ToInt64Milliseconds(options.timeout);
  SPINDLE_RETURN_IF_ERROR(CheckRange("timeout_ms", timeout_ms, 1, kMaxTimeoutMs));
  SPINDLE_RETURN_IF_ERROR(CheckRange(
      "connect_timeout_ms", absl::ToInt64Milliseconds(options.connect_timeout), 1, timeout_ms));
  SPINDLE_RETURN_IF_ERROR(CheckRange("max_body_bytes", options.max_body_bytes, 1, kMaxBodyBytes));
  SPINDLE_RETURN_IF_ERROR(CheckRange("max_redirects", options.max_redirects, 0, kMaxRedirects));
  return absl::OkStatus();
}

coro::Task<absl::StatusOr<FetchSummary>> FetchAll(coro::Executor* executor,
                                                  std::vector<FetchTarget> targets,
                                                  FetchOptions options, ResultSink* sink,
                                                  coro::CancellationToken token) {
  return RunFetch(std::make_unique<Driver>(executor, std::move(targets), std::move(options), sink,
                                           std::move(token)));
}

const std::vector<std::string>& ErrorReasons() {
  static const auto* reasons = new std::vector<std::string>{
      "DNS_FAILED",         "CONNECT_FAILED", "TLS_FAILED",     "TIMED_OUT",
      "TOO_MANY_REDIRECTS", "PROTOCOL_ERROR", "RECEIVE_FAILED", "URL_NOT_ALLOWED"};
  return *reasons;
}

}  // namespace spindle::http
