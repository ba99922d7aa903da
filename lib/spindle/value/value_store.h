// The store of named shared values: typed, versioned by one store-wide revision, with
// conditional writes, atomic add, compare-and-swap, element operations, TTLs, session-bound
// (ephemeral) values, paged listing and watches with a bounded history.
//
// Revisions: one counter for the whole store; every change (set, add, CAS, delete, expiry, the
// end of a session) raises it by one and is appended to the history as one event, so events are
// totally ordered and a watch can resume from any revision still in the history.
//
// Watches are cursors into that history, not buffers: a write appends one event and wakes the
// watches that wait for a matching one (a callback run after the store's locks are released), so
// a slow watcher never blocks a writer. A watcher that falls behind the kept history, or more
// than max_watch_lag revisions behind, gets a `compacted` answer and must re-read.
//
// Thread-safety: thread-safe. Values are sharded by name (one mutex per shard); the history has
// its own mutex, taken after a shard's (lock order: shards in index order, then the history).
// REQUIRES: `timers` and `sessions` outlive the store.
#ifndef SPINDLE_VALUE_VALUE_STORE_H_
#define SPINDLE_VALUE_VALUE_STORE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "spindle/common/request_log.h"
#include "spindle/common/session_hooks.h"
#include "spindle/common/timer.h"
#include "spindle/value/value_data.h"

namespace spindle::value {

struct StoreOptions {
  int64_t max_values = 100000;
  int64_t max_value_bytes = 1 << 20;
  // History: keep at least this many events, and every event younger than history_retention.
  int64_t history_events = 100000;
  absl::Duration history_retention = absl::Minutes(10);
  // Hard cap of the history whatever its age.
  int64_t max_history_events = 1000000;
  // A watch more than this many revisions behind is TOO_SLOW.
  int64_t max_watch_lag = 100000;
  int64_t max_watches = 10000;
};

// A value with its metadata; `data` is null when left out (names_only, element reads, deletes).
struct Entry {
  std::string name;
  ValueType type = ValueType::kInt64;
  std::shared_ptr<const Data> data;
  int64_t version = 0;
  int64_t create_version = 0;
  absl::Time create_time;
  absl::Time update_time;
  absl::Time expire_time = absl::InfiniteFuture();  // InfiniteFuture: no TTL
  std::string session_id;
  int64_t length = 0;
  int64_t size_bytes = 0;
};

enum class EventKind { kPut = 1, kDelete = 2, kExpire = 3 };

struct Event {
  EventKind kind = EventKind::kPut;
  int64_t version = 0;
  Entry entry;
  std::optional<Element> element;
  int64_t prev_version = 0;
  absl::Time time;
};

struct GetResult {
  Entry entry;
  std::optional<Scalar> element;
  std::vector<std::string> keys;
};

// Checked with the value's shard lock held, right before a write applies: a non-OK status
// refuses the write (a fenced write's lock grant, say). It must not call into the store.
using WriteGuard = std::function<absl::Status()>;

struct SetRequest {
  std::string name;
  Data data;
  std::optional<Element> element;
  int64_t only_if_version = 0;
  bool only_if_absent = false;
  absl::Duration ttl = absl::ZeroDuration();
  bool keep_ttl = false;
  std::string session_id;
  bool return_previous = false;
  WriteGuard guard;  // Optional.
};

struct SetResult {
  Entry entry;  // without data
  int64_t prev_version = 0;
  std::optional<Data> previous;
};

using Delta = std::variant<int64_t, double>;

struct AddResult {
  Scalar result;
  int64_t version = 0;
  bool created = false;
};

// The condition of a compare-and-swap.
struct ExpectAbsent {};
using Expected = std::variant<Data, int64_t, ExpectAbsent>;

struct CasResult {
  bool swapped = false;
  std::optional<Entry> current;  // with data; nullopt when absent
};

struct DeleteResult {
  int64_t version = 0;
  int64_t prev_version = 0;
};

struct ListPage {
  std::vector<Entry> entries;
  std::string next_page_token;
  int64_t current_version = 0;
};

// A watch: a cursor into the history. Made by ValueStore::Watch; poll it with ValueStore::Poll.
class Watch;

struct WatchPoll {
  std::vector<Event> events;
  // Every matching change with a version <= this has been returned (by this poll or before).
  int64_t progress_version = 0;
  struct Compacted {
    bool too_slow = false;
    int64_t oldest_version = 0;
    int64_t current_version = 0;
    int64_t lost_from_version = 0;
  };
  std::optional<Compacted> compacted;
};

class ValueStore {
 public:
  ValueStore(TimerService& timers, SessionHooks* sessions, StoreOptions options = {});
  ~ValueStore();
  ValueStore(const ValueStore&) = delete;
  ValueStore& operator=(const ValueStore&) = delete;

  // Random id of this store instance (changes when the store is recreated).
  const std::string& epoch() const { return epoch_; }
  int64_t revision() const;

  // NOT_FOUND VALUE_NOT_FOUND / KEY_NOT_FOUND; OUT_OF_RANGE INDEX_OUT_OF_RANGE;
  // FAILED_PRECONDITION TYPE_MISMATCH.
  absl::StatusOr<GetResult> Get(const std::string& name, const std::optional<Element>& element,
                                bool keys_only) const;
  // See SetValue in value.proto for the codes.
  absl::StatusOr<SetResult> Set(SetRequest request);
  // A non-empty `request_id` seen in the last 10 minutes returns the original result; two copies
  // of one request arriving together add once.
  absl::StatusOr<AddResult> Add(const std::string& name, const std::optional<Element>& element,
                                Delta delta, absl::Duration ttl, const std::string& request_id,
                                const WriteGuard& guard = {});
  absl::StatusOr<CasResult> CompareAndSwap(const std::string& name,
                                           const std::optional<Element>& element,
                                           const Expected& expected, const Data& new_value,
                                           const WriteGuard& guard = {});
  absl::StatusOr<DeleteResult> Delete(const std::string& name,
                                      const std::optional<Element>& element,
                                      int64_t only_if_version, const WriteGuard& guard = {});
  // Values in name order after `page_token`; `type` 0 = any.
  absl::StatusOr<ListPage> List(const std::string& prefix, int type, int32_t page_size,
                                const std::string& page_token, bool names_only) const;

  // Starts a watch on one name (`prefix` false) or every name starting with `key`, from
  // `from_version` (0 = the next revision). With `initial_state` (from_version 0 only), the
  // current matching values are returned in `initial` (name order) and the watch starts right
  // after the revision they were read at. RESOURCE_EXHAUSTED TOO_MANY_WATCHES.
  struct WatchStart {
    std::shared_ptr<Watch> watch;
    std::vector<Entry> initial;
    int64_t initial_version = 0;
  };
  absl::StatusOr<WatchStart> StartWatch(const std::string& key, bool prefix, int64_t from_version,
                                        bool initial_state);
  // Up to `max_events` matching events. When none is ready, `notify` is kept and run once (without
  // store locks) when a matching event arrives; a later Poll or StopWatch replaces / drops it.
  WatchPoll Poll(Watch& watch, size_t max_events, absl::AnyInvocable<void() &&> notify);
  // Ends a watch (its notify is dropped without running).
  void StopWatch(Watch& watch);

  struct Stats {
    int64_t values = 0;
    int64_t watchers = 0;
    int64_t revision = 0;
    int64_t history_events = 0;
  };
  Stats GetStats() const;

 private:
  struct Record {
    std::shared_ptr<const Data> data;
    int64_t version = 0;
    int64_t create_version = 0;
    absl::Time create_time;
    absl::Time update_time;
    absl::Time expire = absl::InfiniteFuture();
    TimerService::TimerId ttl_timer = 0;
    std::string session_id;
    SessionHooks::HookId hook = 0;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Record> values ABSL_GUARDED_BY(mu);
  };
  // Callbacks to run once every lock is released, and hooks / timers to drop.
  struct After {
    std::vector<absl::AnyInvocable<void() &&>> notify;
    std::vector<TimerService::TimerId> cancel_timers;
    std::vector<std::pair<std::string, SessionHooks::HookId>> remove_hooks;
  };

  Shard& ShardFor(const std::string& name) const;
  Entry MakeEntry(const std::string& name, const Record& record, bool with_data) const;
  // Appends one event and returns its revision. REQUIRES: the shard of `name` is locked.
  int64_t Append(EventKind kind, const std::string& name, const Record& record,
                 const std::optional<Element>& element, int64_t prev_version, After& after);
  // Commits a new state of `name` (creating it if absent). REQUIRES: shard locked.
  int64_t Commit(Shard& shard, const std::string& name, std::shared_ptr<const Data> data,
                 const std::optional<Element>& element, After& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Removes `name`, appending a DELETE or EXPIRE event. REQUIRES: shard locked, name present.
  int64_t Remove(Shard& shard, const std::string& name, EventKind kind, After& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void SetTtl(const std::string& name, Record& record, absl::Time expire, After& after);
  void OnExpire(const std::string& name, int64_t create_version);
  void OnSessionEnd(const std::string& name, const std::string& session_id, int64_t create_version);
  void RunAfter(After& after);
  absl::Status CheckSize(const std::string& name, const Data& data) const;
  absl::Status CheckCanCreate(const std::string& name);
  void TrimHistory(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(log_mu_);

  TimerService& timers_;
  SessionHooks* const sessions_;
  const StoreOptions options_;
  const std::string epoch_;
  std::atomic<int64_t> count_{0};
  mutable std::array<Shard, kShards> shards_;

  mutable absl::Mutex log_mu_;
  int64_t revision_ ABSL_GUARDED_BY(log_mu_) = 0;
  // history_[i] has version first_version_ + i.
  std::deque<Event> history_ ABSL_GUARDED_BY(log_mu_);
  int64_t first_version_ ABSL_GUARDED_BY(log_mu_) = 1;
  absl::flat_hash_set<Watch*> watches_ ABSL_GUARDED_BY(log_mu_);

  // Add without request-id bookkeeping.
  absl::StatusOr<AddResult> AddOnce(const std::string& name, const std::optional<Element>& element,
                                    Delta delta, absl::Duration ttl, const WriteGuard& guard);
  absl::Mutex add_mu_;
  RequestLog<AddResult> add_requests_ ABSL_GUARDED_BY(add_mu_){kRequestIdRetention, 100000};
};

class Watch {
 public:
  bool prefix() const { return prefix_; }
  const std::string& key() const { return key_; }

 private:
  friend class ValueStore;
  bool prefix_ = false;
  std::string key_;
  // Guarded by the store's log_mu_.
  int64_t next_version_ = 1;
  bool started_ = false;  // false until the first poll: a gap then is HISTORY_COMPACTED
  bool stopped_ = false;
  absl::AnyInvocable<void() &&> notify_;
};

}  // namespace spindle::value

#endif  // SPINDLE_VALUE_VALUE_STORE_H_
