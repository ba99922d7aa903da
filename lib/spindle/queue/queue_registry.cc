#include "spindle/queue/queue_registry.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::queue {
namespace {

absl::Status Bound(absl::string_view field, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return InvalidArgument("OUT_OF_BOUNDS",
                           absl::StrCat(field, " ", value, " is outside ", low, "..", high));
  }
  return absl::OkStatus();
}

}  // namespace

QueueRegistry::QueueRegistry(TimerService& timers, SessionHooks* sessions, RegistryOptions options)
    : options_(std::move(options)) {
  env_.timers = &timers;
  env_.sessions = sessions;
  env_.waiters = &waiters_;
  env_.max_waiters = options_.max_waiters;
  env_.observe_wait = options_.observe_wait;
  env_.dead_letter = [this](const std::string& dlq, const std::string& source,
                            std::vector<std::shared_ptr<const StoredItem>> items) {
    DeadLetter(dlq, source, std::move(items));
  };
}

QueueRegistry::~QueueRegistry() {
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    shard.queues.clear();
  }
}

QueueRegistry::Shard& QueueRegistry::ShardFor(const std::string& name) const {
  return shards_[absl::Hash<std::string>{}(name) % kShards];
}

absl::StatusOr<QueueConfig> QueueRegistry::Resolve(const std::string& name,
                                                   QueueConfig config) const {
  const QueueConfig& d = options_.defaults;
  SPINDLE_RETURN_IF_ERROR(Bound("config.max_items", config.max_items, 0, 10'000'000));
  SPINDLE_RETURN_IF_ERROR(Bound("config.max_bytes", config.max_bytes, 0, options_.max_queue_bytes));
  SPINDLE_RETURN_IF_ERROR(
      Bound("config.max_item_bytes", config.max_item_bytes, 0, options_.max_message_bytes));
  if (config.visibility_timeout_ms != 0) {
    SPINDLE_RETURN_IF_ERROR(
        Bound("config.visibility_timeout_ms", config.visibility_timeout_ms, 100, 43'200'000));
  }
  SPINDLE_RETURN_IF_ERROR(Bound("config.max_deliveries", config.max_deliveries, 0, 1000));
  if (config.max_items == 0) config.max_items = d.max_items;
  if (config.max_bytes == 0) config.max_bytes = std::min(d.max_bytes, options_.max_queue_bytes);
  if (config.max_item_bytes == 0) {
    config.max_item_bytes = std::min(d.max_item_bytes, options_.max_message_bytes);
  }
  if (config.visibility_timeout_ms == 0) config.visibility_timeout_ms = d.visibility_timeout_ms;
  if (!config.dead_letter_queue.empty()) {
    SPINDLE_RETURN_IF_ERROR(ValidateName("config.dead_letter_queue", config.dead_letter_queue));
    if (config.dead_letter_queue == name) {
      return InvalidArgument("DEAD_LETTER_IS_SELF",
                             absl::StrCat("config.dead_letter_queue '", config.dead_letter_queue,
                                          "' must differ from the queue's own name"));
    }
  }
  return config;
}

absl::StatusOr<QueueRegistry::CreateResult> QueueRegistry::Insert(
    const std::string& name, QueueConfig config, std::map<std::string, std::string> labels,
    bool auto_created) {
  Shard& shard = ShardFor(name);
  absl::MutexLock lock(&shard.mu);
  if (auto it = shard.queues.find(name); it != shard.queues.end()) {
    return CreateResult{it->second, false};
  }
  if (count_.fetch_add(1, std::memory_order_relaxed) >= options_.max_queues) {
    count_.fetch_sub(1, std::memory_order_relaxed);
    return ResourceExhausted("TOO_MANY_QUEUES",
                             absl::StrCat("cannot create queue '", name, "': the server holds ",
                                          options_.max_queues, " queues, its limit"));
  }
  auto queue = std::make_shared<Queue>(name, std::move(config), std::move(labels), auto_created,
                                       incarnation_.fetch_add(1) + 1, &env_);
  shard.queues.emplace(name, queue);
  return CreateResult{std::move(queue), true};
}

absl::StatusOr<QueueRegistry::CreateResult> QueueRegistry::Create(
    const std::string& name, const QueueConfig& config, std::map<std::string, std::string> labels) {
  SPINDLE_ASSIGN_OR_RETURN(QueueConfig resolved, Resolve(name, config));
  SPINDLE_ASSIGN_OR_RETURN(CreateResult result, Insert(name, resolved, labels, false));
  if (!result.created && (result.queue->auto_created() || !(result.queue->config() == resolved) ||
                          result.queue->labels() != labels)) {
    return AlreadyExists("QUEUE_EXISTS",
                         absl::StrCat("queue '", name, "' exists with other settings",
                                      result.queue->auto_created() ? " (auto-created)" : ""));
  }
  return result;
}

absl::StatusOr<std::shared_ptr<Queue>> QueueRegistry::Find(const std::string& name) const {
  Shard& shard = ShardFor(name);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.queues.find(name);
  if (it == shard.queues.end()) {
    return NotFound("QUEUE_NOT_FOUND", absl::StrCat("queue '", name, "' does not exist"));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<Queue>> QueueRegistry::FindOrCreate(const std::string& name) {
  auto found = Find(name);
  if (found.ok() || !options_.auto_create) {
    return found;
  }
  SPINDLE_ASSIGN_OR_RETURN(QueueConfig config, Resolve(name, QueueConfig{}));
  SPINDLE_ASSIGN_OR_RETURN(CreateResult result, Insert(name, config, {}, true));
  return std::move(result.queue);
}

absl::StatusOr<int64_t> QueueRegistry::Delete(const std::string& name, bool if_empty) {
  SPINDLE_ASSIGN_OR_RETURN(std::shared_ptr<Queue> queue, Find(name));
  SPINDLE_ASSIGN_OR_RETURN(int64_t dropped, queue->MarkDeleted(if_empty));
  Shard& shard = ShardFor(name);
  absl::MutexLock lock(&shard.mu);
  if (auto it = shard.queues.find(name); it != shard.queues.end() && it->second == queue) {
    shard.queues.erase(it);
    count_.fetch_sub(1, std::memory_order_relaxed);
  }
  return dropped;
}

absl::StatusOr<QueueRegistry::Page> QueueRegistry::List(
    const std::string& prefix, const std::map<std::string, std::string>& labels, int32_t page_size,
    const std::string& page_token) const {
  if (page_size < 0 || page_size > 1000) {
    return InvalidArgument("INVALID_PAGE_SIZE",
                           absl::StrCat("page_size ", page_size, " is outside 0..1000"));
  }
  if (page_size == 0) {
    page_size = 100;
  }
  if (!page_token.empty()) {
    if (absl::Status valid = ValidateName("page_token", page_token); !valid.ok()) {
      return InvalidArgument("INVALID_PAGE_TOKEN", absl::StrCat("page_token '", page_token,
                                                                "' is not a token of ListQueues"));
    }
  }
  std::vector<std::shared_ptr<Queue>> matching;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, queue] : shard.queues) {
      if (!absl::StartsWith(name, prefix) || (!page_token.empty() && name <= page_token)) {
        continue;
      }
      bool match = true;
      for (const auto& [key, value] : labels) {
        auto it = queue->labels().find(key);
        if (it == queue->labels().end() || it->second != value) {
          match = false;
          break;
        }
      }
      if (match) {
        matching.push_back(queue);
      }
    }
  }
  std::sort(matching.begin(), matching.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });
  Page page;
  if (matching.size() > static_cast<size_t>(page_size)) {
    matching.resize(page_size);
    page.next_page_token = matching.back()->name();
  }
  page.queues = std::move(matching);
  return page;
}

std::vector<std::shared_ptr<Queue>> QueueRegistry::All() const {
  std::vector<std::shared_ptr<Queue>> all;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, queue] : shard.queues) {
      all.push_back(queue);
    }
  }
  return all;
}

QueueRegistry::Stats QueueRegistry::GetStats() const {
  Stats stats;
  for (const auto& queue : All()) {
    ++stats.queues;
    QueueInfo info = queue->Describe();
    stats.queued_items += info.depth + info.in_flight + info.delayed;
  }
  stats.waiters = waiters_.load(std::memory_order_relaxed);
  return stats;
}

void QueueRegistry::DeadLetter(const std::string& dlq, const std::string& source,
                               std::vector<std::shared_ptr<const StoredItem>> items) {
  auto queue = FindOrCreate(dlq);
  if (!queue.ok()) {
    return;  // dropped, counted in the source's dead_lettered
  }
  (*queue)->AddDeadLetters(source, std::move(items));
}

}  // namespace spindle::queue
