// The table of named queues: create (explicitly or on first use with the defaults), find,
// delete, list (paged, by prefix and labels), dead-letter routing between queues, statistics.
//
// The table is sharded by name (one mutex per shard); each Queue has its own lock, so operations
// on different queues never contend. Lock order: a shard's lock is never held while a queue's
// is taken, and the other way round.
//
// Thread-safety: thread-safe. REQUIRES: `timers` and `sessions` outlive the registry, and timers
// stop running callbacks before it is destroyed.
#ifndef SPINDLE_QUEUE_QUEUE_REGISTRY_H_
#define SPINDLE_QUEUE_QUEUE_REGISTRY_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/queue/queue.h"
#include "spindle/queue/types.h"

namespace spindle::queue {

struct RegistryOptions {
  // Settings of queues created on first use, and the defaults for fields left 0 in CreateQueue.
  QueueConfig defaults{.max_items = 10000,
                       .max_bytes = 64 << 20,
                       .max_item_bytes = 1 << 20,
                       .visibility_timeout_ms = 30000,
                       .max_deliveries = 0,
                       .dead_letter_queue = ""};
  // Upper bounds of max_bytes and max_item_bytes.
  int64_t max_queue_bytes = int64_t{1} << 30;
  int64_t max_message_bytes = 4 << 20;
  // Create queues on first use (false: NOT_FOUND QUEUE_NOT_FOUND).
  bool auto_create = true;
  int64_t max_queues = 100000;
  int64_t max_waiters = 1000000;
  // How long served getters waited; may be empty.
  std::function<void(absl::Duration)> observe_wait;
};

class QueueRegistry {
 public:
  QueueRegistry(TimerService& timers, SessionHooks* sessions, RegistryOptions options);
  ~QueueRegistry();
  QueueRegistry(const QueueRegistry&) = delete;
  QueueRegistry& operator=(const QueueRegistry&) = delete;

  const RegistryOptions& options() const { return options_; }

  // `config` with zero fields replaced by the defaults, then checked against the bounds
  // (INVALID_ARGUMENT naming the field; `name` for the dead-letter check).
  absl::StatusOr<QueueConfig> Resolve(const std::string& name, QueueConfig config) const;

  struct CreateResult {
    std::shared_ptr<Queue> queue;
    bool created = false;
  };
  // Creates a queue. OK created=false when it exists with the same settings and labels;
  // ALREADY_EXISTS QUEUE_EXISTS with other ones (or when it was auto-created);
  // RESOURCE_EXHAUSTED TOO_MANY_QUEUES. REQUIRES: a valid name (ValidateName).
  absl::StatusOr<CreateResult> Create(const std::string& name, const QueueConfig& config,
                                      std::map<std::string, std::string> labels);
  // NOT_FOUND QUEUE_NOT_FOUND.
  absl::StatusOr<std::shared_ptr<Queue>> Find(const std::string& name) const;
  // Find, or create with the defaults when auto-creation is on.
  absl::StatusOr<std::shared_ptr<Queue>> FindOrCreate(const std::string& name);
  // Deletes a queue; returns the items dropped. NOT_FOUND QUEUE_NOT_FOUND; FAILED_PRECONDITION
  // QUEUE_NOT_EMPTY with `if_empty`.
  absl::StatusOr<int64_t> Delete(const std::string& name, bool if_empty);

  struct Page {
    std::vector<std::shared_ptr<Queue>> queues;
    std::string next_page_token;
  };
  // Queues in name order after `page_token` (the last name of the previous page).
  // INVALID_ARGUMENT for a page_size outside 0..1000 (0 = 100) or a bad token.
  absl::StatusOr<Page> List(const std::string& prefix,
                            const std::map<std::string, std::string>& labels, int32_t page_size,
                            const std::string& page_token) const;

  // Every queue (for metrics), in no particular order.
  std::vector<std::shared_ptr<Queue>> All() const;

  struct Stats {
    int64_t queues = 0;
    int64_t queued_items = 0;  // ready + in flight + delayed
    int64_t waiters = 0;
  };
  Stats GetStats() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, std::shared_ptr<Queue>> queues ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(const std::string& name) const;
  absl::StatusOr<CreateResult> Insert(const std::string& name, QueueConfig config,
                                      std::map<std::string, std::string> labels, bool auto_created);
  void DeadLetter(const std::string& dlq, const std::string& source,
                  std::vector<std::shared_ptr<const StoredItem>> items);

  const RegistryOptions options_;
  std::atomic<int64_t> waiters_{0};
  std::atomic<int64_t> count_{0};
  std::atomic<uint64_t> incarnation_{0};
  QueueEnv env_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace spindle::queue

#endif  // SPINDLE_QUEUE_QUEUE_REGISTRY_H_
