// Concurrent HTTP GETs on the coroutine executor: libcurl's multi-socket API driven by the
// executor's reactor. No thread per transfer and no curl_multi_poll thread: curl's socket callback
// becomes Executor::WaitReadable/WaitWritable waits and its timer callback a deadline on the
// driving coroutine's wait, so a call with 1,000 transfers in flight costs a few coroutine frames
// and epoll registrations.
//
//   FetchOptions options;                   // defaults as FetchUrlsRequest (scheduler.proto)
//   SPINDLE_RETURN_IF_ERROR(ValidateFetch(targets, options));
//   absl::StatusOr<FetchSummary> summary =
//       co_await FetchAll(&executor, std::move(targets), options, &sink, token);
//
// Each finished transfer (with a response or with an error) is handed to the sink as soon as it
// completes, in completion order; the sink may wait (back-pressure: transfers already running
// continue in the kernel's buffers, new ones do not start). Cancelling `token` (client cancel,
// call deadline) aborts every transfer still running; results already delivered stand.
//
// Dependencies: this is the one engine library that links a non-Abseil library, libcurl (Debian's
// libcurl4-openssl-dev, CURL::libcurl); it includes no gRPC/protobuf/prometheus header.
//
// Thread-safety: FetchAll is safe to run concurrently (each call has its own multi handle);
// one call's curl handles are only touched by its driving coroutine. The sink is called from that
// coroutine, one result at a time, on an executor worker.
#ifndef SPINDLE_HTTP_FETCHER_H_
#define SPINDLE_HTTP_FETCHER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "spindle/coro/cancellation.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/task.h"

namespace spindle::http {

// Limits of a request (scheduler.proto FetchUrlsRequest).
inline constexpr int kMaxTargets = 10'000;
inline constexpr int kMaxHeaders = 64;
inline constexpr int kMaxUrlBytes = 8'192;
inline constexpr int kMaxHeaderNameBytes = 256;
inline constexpr int kMaxHeaderValueBytes = 8'192;
inline constexpr int kMaxTagBytes = 256;
inline constexpr int kMaxConcurrency = 1'024;
inline constexpr int64_t kMaxTimeoutMs = 3'600'000;
inline constexpr int64_t kMaxBodyBytes = 4'128'768;
inline constexpr int kMaxRedirects = 20;

struct Header {
  std::string name;
  std::string value;
};

struct FetchTarget {
  std::string url;
  std::vector<Header> headers;  // Sent after FetchOptions::headers.
  std::string tag;
};

struct FetchOptions {
  int max_concurrency = 16;
  absl::Duration timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(10);
  int64_t max_body_bytes = 1 << 20;
  int max_redirects = 5;  // 0: a 3xx is the result.
  std::vector<Header> headers;
  bool decompress = false;
};

// Milliseconds from the start of the transfer (libcurl's *_TIME values).
struct FetchTiming {
  int64_t name_lookup_ms = 0;
  int64_t connect_ms = 0;
  int64_t tls_ms = 0;
  int64_t first_byte_ms = 0;
  int64_t total_ms = 0;
  int64_t redirect_ms = 0;
};

struct FetchResult {
  int index = 0;
  std::string url;
  std::string tag;
  std::string effective_url;
  int status_code = 0;          // 0: no response.
  std::vector<Header> headers;  // Of the last response.
  std::string body;
  bool body_truncated = false;
  int64_t content_length = -1;
  FetchTiming timing;
  std::string error;         // Empty when a complete response arrived.
  std::string error_reason;  // DNS_FAILED, CONNECT_FAILED, TLS_FAILED, TIMED_OUT, ...
  absl::Time started_at = absl::InfinitePast();
  std::string http_version;  // "1.0", "1.1", "2", "3"; empty without a response.
  int redirects = 0;
  std::string remote_address;  // "127.0.0.1:8080", "[::1]:443".

  bool ok() const { return error.empty(); }
};

struct FetchSummary {
  int completed = 0;  // Got a response (any status).
  int failed = 0;     // Got none.
  absl::Duration elapsed;
};

// Where results go. Deliver is awaited for each result before the next is delivered; a non-OK
// status aborts the remaining transfers and becomes FetchAll's result.
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  virtual coro::Task<absl::Status> Deliver(FetchResult result) = 0;
};

// Checks a request: 1..kMaxTargets targets; each URL 1..8,192 bytes, absolute, http or https
// (INVALID_URL, "targets[3].url"); header names 1..256 token characters and values at most 8,192
// bytes without CR/LF/NUL, at most 64 per list (INVALID_HEADER, "targets[0].headers[1].name");
// tags at most 256 bytes; options in range (INVALID_ARGUMENT naming the option as in the proto).
absl::Status ValidateFetch(const std::vector<FetchTarget>& targets, const FetchOptions& options);

// Fetches every target (REQUIRES: ValidateFetch passed), at most options.max_concurrency at a
// time, delivering each result to `sink` as it completes. Returns the totals once every target has
// a result; the token's status (CANCELLED, DEADLINE_EXCEEDED) when it was cancelled first; the
// sink's error; or INTERNAL when libcurl cannot be set up.
// `executor` and `sink` must outlive the returned task.
coro::Task<absl::StatusOr<FetchSummary>> FetchAll(coro::Executor* executor,
                                                  std::vector<FetchTarget> targets,
                                                  FetchOptions options, ResultSink* sink,
                                                  coro::CancellationToken token);

// The bounded set of error_reason values ("" for success) for metrics labels.
const std::vector<std::string>& ErrorReasons();

}  // namespace spindle::http

#endif  // SPINDLE_HTTP_FETCHER_H_
