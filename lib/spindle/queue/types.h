// Plain types of the queue engine: settings, items as put and as delivered, outcomes and counts.
// No wire types: services/queue converts protobuf messages to and from these.
//
// Thread-safety: plain values (thread-compatible). A StoredItem is immutable once put, except for
// what the owning Queue changes under its lock (never seen by readers of a Delivery).
#ifndef SPINDLE_QUEUE_TYPES_H_
#define SPINDLE_QUEUE_TYPES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spindle::queue {

// How a get hands out items: TAKE removes them (at most once), LEASE hides them until acked.
enum class GetMode { kTake, kLease };

// Settings of a queue. Zero means "not given" in a request; QueueRegistry fills in its defaults,
// so a Queue always holds complete settings.
struct QueueConfig {
  int64_t max_items = 0;
  int64_t max_bytes = 0;
  int64_t max_item_bytes = 0;
  int64_t visibility_timeout_ms = 0;
  int32_t max_deliveries = 0;  // 0 = unlimited
  std::string dead_letter_queue;

  bool operator==(const QueueConfig&) const = default;
};

using Headers = std::map<std::string, std::string>;

// An item as a producer gives it.
struct PutItem {
  std::string payload;
  Headers headers;
  std::string dedup_id;
  absl::Duration delay = absl::ZeroDuration();
};

// An accepted item. Held by shared_ptr: a Delivery may outlive its place in the queue.
struct StoredItem {
  uint64_t seq = 0;
  std::string id;
  std::string payload;
  Headers headers;
  std::string dedup_id;
  std::string source_queue;  // set in a dead-letter queue
  absl::Time enqueue_time;
  int64_t bytes = 0;  // payload + header bytes
};

// Payload plus header bytes: what counts against max_bytes and max_item_bytes.
int64_t ItemBytes(const std::string& payload, const Headers& headers);

// One item handed to a consumer.
struct Delivery {
  std::shared_ptr<const StoredItem> item;
  int32_t delivery_count = 1;
  std::string receipt;      // LEASE only
  absl::Time lease_expire;  // LEASE only
};

// Options of a get or of a streaming consumer.
struct GetOptions {
  GetMode mode = GetMode::kTake;
  // LEASE: lease length; zero = the queue's default.
  absl::Duration visibility_timeout = absl::ZeroDuration();
  // LEASE: the session that owns the leases (its end puts them back), or empty.
  std::string session_id;
  // Unary gets: most items and bytes (at least one item is always given).
  int32_t max_items = 1;
  int64_t max_bytes = 4 << 20;
  // Unary gets: idempotency key (see Queue::Get); empty = none.
  std::string request_id;
};

// Answer of a put.
struct PutResult {
  bool enqueued = false;
  std::vector<std::string> item_ids;
  std::vector<int32_t> duplicate_indexes;
};

// Per-receipt outcome of ack / nack / extend.
struct ReceiptResult {
  std::string receipt;
  absl::Status status;
  absl::Time lease_expire;  // extend, when OK
};

// Counters since creation.
struct QueueTotals {
  int64_t put = 0;
  int64_t delivered = 0;
  int64_t acked = 0;
  int64_t nacked = 0;
  int64_t redelivered = 0;
  int64_t dead_lettered = 0;
  int64_t purged = 0;
  int64_t deduplicated = 0;
};

// Settings and live counts of a queue.
struct QueueInfo {
  std::string name;
  QueueConfig config;
  std::map<std::string, std::string> labels;
  absl::Time create_time;
  bool auto_created = false;
  bool closed = false;
  int64_t depth = 0;
  int64_t depth_bytes = 0;
  int64_t in_flight = 0;
  int64_t in_flight_bytes = 0;
  int64_t delayed = 0;
  int32_t consumers_waiting = 0;
  int32_t producers_waiting = 0;
  int64_t oldest_item_age_ms = 0;
  QueueTotals totals;
};

}  // namespace spindle::queue

#endif  // SPINDLE_QUEUE_TYPES_H_
