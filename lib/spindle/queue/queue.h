// One named bounded FIFO queue: puts (single or batch, all-or-nothing, blocking when full), gets
// in TAKE or LEASE mode (blocking when empty), leases with ack / nack / extend and redelivery at
// the head, dead-lettering past max_deliveries, delayed items, close-and-drain, purge.
//
// Waiting never parks a thread: a put that does not fit and a get that finds nothing register a
// waiter (a continuation) and return; the waiter's callback runs when it is served, when its
// deadline passes, when the queue closes or is deleted. Callbacks run without any queue lock
// held, on the thread that served them (a putter's, a getter's, a timer's). A waiter removed by
// Cancel*() never runs its callback and never takes or puts anything.
//
// Order: items are FIFO; a batch stays contiguous; redelivered items go back to the head. Waiting
// getters (unary gets and streaming consumers alike) are served FIFO, one item per waiter per
// turn; waiting putters FIFO too (a large batch at the head blocks smaller ones behind it).
//
// Capacity counts ready, delayed and in-flight items. Items put back by Requeue() (a TAKE stream
// that could not write them) are never dropped, even if that briefly exceeds the capacity.
//
// Thread-safety: thread-safe. Queues are made and owned by QueueRegistry (shared_ptr): an object
// outlives its deletion while streams still hold it; operations on a deleted queue answer
// NOT_FOUND reason QUEUE_DELETED.
#ifndef SPINDLE_QUEUE_QUEUE_H_
#define SPINDLE_QUEUE_QUEUE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
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
#include "spindle/queue/types.h"

namespace spindle::queue {

class Queue;

// What a queue needs from its registry. Outlives every queue.
struct QueueEnv {
  TimerService* timers = nullptr;
  SessionHooks* sessions = nullptr;  // null: session_id is FAILED_PRECONDITION
  // Moves dead items to the queue named `dlq` (created on first use). Called without locks.
  std::function<void(const std::string& dlq, const std::string& source,
                     std::vector<std::shared_ptr<const StoredItem>> items)>
      dead_letter;
  // Waiters (getters + putters) at once across the registry, and their bound.
  std::atomic<int64_t>* waiters = nullptr;
  int64_t max_waiters = 1000000;
  // How long a served getter waited (for a histogram); may be empty. Called without locks.
  std::function<void(absl::Duration)> observe_wait;
};

// A streaming consumer (Consume): receives deliveries while it has credit. The queue calls
// OnItems / OnEnd one at a time and in order for one consumer, without queue locks held. OnEnd is
// the last call (closed and drained, deleted); after RemoveConsumer() no call starts.
class StreamConsumer {
 public:
  virtual ~StreamConsumer() = default;

 protected:
  virtual void OnItems(std::vector<Delivery> items) = 0;
  virtual void OnEnd(absl::Status status) = 0;

 private:
  friend class Queue;
  // Queues deliveries / the end under the queue's lock; Flush() hands them over without it.
  void Push(std::vector<Delivery> items);
  void PushEnd(absl::Status status);
  void Flush();

  absl::Mutex outbox_mu_;
  std::deque<std::vector<Delivery>> outbox_ ABSL_GUARDED_BY(outbox_mu_);
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(outbox_mu_);
  bool flushing_ ABSL_GUARDED_BY(outbox_mu_) = false;
  bool ended_ ABSL_GUARDED_BY(outbox_mu_) = false;
};

class Queue : public std::enable_shared_from_this<Queue> {
 public:
  using WaiterId = uint64_t;
  // Unary get: the items (possibly none: no wait, or the wait bound ran out) or an error.
  using GetCallback = absl::AnyInvocable<void(absl::StatusOr<std::vector<Delivery>>) &&>;
  using PutCallback = absl::AnyInvocable<void(absl::StatusOr<PutResult>) &&>;

  // How a waiting call ends when `until` passes: `status` (DEADLINE_EXCEEDED for a call deadline)
  // or, when it is OK, a normal empty answer (max_wait_ms ran out).
  struct WaitBound {
    bool wait = false;
    absl::Time until = absl::InfiniteFuture();
    absl::Status status;  // OK: empty answer
  };

  Queue(std::string name, QueueConfig config, std::map<std::string, std::string> labels,
        bool auto_created, uint64_t incarnation, QueueEnv* env);
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  const std::string& name() const { return name_; }
  const QueueConfig& config() const { return config_; }
  const std::map<std::string, std::string>& labels() const { return labels_; }
  bool auto_created() const { return auto_created_; }

  // Puts a batch (1..n items), all-or-nothing. Runs `done` inline when it can answer at once, else
  // registers a waiter and returns its id (0 when answered inline). Errors: RESOURCE_EXHAUSTED
  // QUEUE_FULL (no wait), BATCH_TOO_LARGE, ITEM_TOO_LARGE, TOO_MANY_WAITERS; FAILED_PRECONDITION
  // QUEUE_CLOSED; NOT_FOUND QUEUE_DELETED; the bound's status when it passes.
  // REQUIRES: items not empty.
  WaiterId Put(std::vector<PutItem> items, const std::string& request_id, const WaitBound& bound,
               PutCallback done);
  // Removes a waiting putter. True: it is gone and `done` will never run; false: it already ran
  // (or runs now).
  bool CancelPut(WaiterId id);

  // Gets up to options.max_items ready items. Inline answer or waiter, as Put. Errors: OUT_OF_RANGE
  // QUEUE_DRAINED; NOT_FOUND QUEUE_DELETED; session errors; TOO_MANY_WAITERS.
  //
  // With options.request_id, a get that handed out items is remembered for 10 minutes (at most
  // 10,000 ids and 64 MiB of items they hold alive per queue, the oldest forgotten first): a retry
  // gets the same deliveries again instead of taking more. TAKE: the same items; LEASE: those of
  // its deliveries still leased under the same receipts (acked, nacked or expired ones are not
  // handed out again). A get that took nothing is not remembered; a retry while the first call
  // still waits takes that wait over (TakeOver). An id is scoped to options.session_id:
  // receipts are capabilities, never replayed to another session.
  WaiterId Get(const GetOptions& options, const WaitBound& bound, GetCallback done);
  bool CancelGet(WaiterId id);
  // Forgets a get's request id: its deliveries are being given back (the call was gone when they
  // were handed over), so a retry must take afresh. Call before giving them back.
  void ForgetGet(const GetOptions& options);

  // Registers a streaming consumer with `credit`. Errors as Get (then nothing is registered).
  // Consumers with no credit are not waiting; AddCredit makes them wait again (at the back).
  absl::StatusOr<WaiterId> AddConsumer(std::shared_ptr<StreamConsumer> consumer,
                                       const GetOptions& options, int64_t credit);
  // Adds credit (the total is capped at kMaxCredit). Returns the credit now.
  int64_t AddCredit(WaiterId id, int64_t items);
  // Unregisters a consumer; no OnItems/OnEnd call starts after this returns.
  void RemoveConsumer(WaiterId id);
  static constexpr int64_t kMaxCredit = 100000;

  // Puts back at the head, unchanged, TAKE deliveries a consumer could not hand over.
  void Requeue(std::vector<Delivery> deliveries);
  // Puts back (delivery count kept, as a redelivery) every lease held by `owner` (a consumer
  // stream's owner string or "session:<id>").
  void ReleaseOwner(const std::string& owner);
  // Owner string for leases made by a consumer stream without a session.
  static std::string StreamOwner(WaiterId consumer) { return "stream:" + std::to_string(consumer); }

  // Accepts items dead-lettered by queue `source` (new ids, source_queue set). Items that do not
  // fit, or arrive at a closed or deleted queue, are dropped. Returns how many were accepted.
  int64_t AddDeadLetters(const std::string& source,
                         std::vector<std::shared_ptr<const StoredItem>> items);

  // Per-receipt outcomes: OK, ABORTED DELIVERY_EXPIRED, NOT_FOUND RECEIPT_NOT_FOUND.
  absl::StatusOr<std::vector<ReceiptResult>> Ack(const std::vector<std::string>& receipts);
  // A non-empty `request_id` seen in the last 10 minutes returns the original outcomes.
  absl::StatusOr<std::vector<ReceiptResult>> Nack(const std::vector<std::string>& receipts,
                                                  absl::Duration delay, bool dead_letter,
                                                  const std::string& request_id = "");
  absl::StatusOr<std::vector<ReceiptResult>> Extend(const std::vector<std::string>& receipts,
                                                    absl::Duration visibility_timeout);

  // Closes (idempotent): putters fail with QUEUE_CLOSED (their count is returned); getters drain.
  absl::StatusOr<int32_t> Close();
  // Drops ready and delayed items (and in-flight ones if asked). Returns how many.
  absl::StatusOr<int64_t> Purge(bool include_in_flight);
  // Marks the queue deleted: every waiter and consumer ends with QUEUE_DELETED. Returns the items
  // dropped. FAILED_PRECONDITION QUEUE_NOT_EMPTY when `if_empty` and items remain (nothing done).
  absl::StatusOr<int64_t> MarkDeleted(bool if_empty);

  QueueInfo Describe() const;
  // Whether Close() has been called (one lock, no copy: for every GetItems answer).
  bool IsClosed() const;
  // Cheap counts for metrics.
  struct Counts {
    int64_t depth = 0;
    int64_t in_flight = 0;
    QueueTotals totals;
  };
  Counts GetCounts() const;

 private:
  struct Leased {
    std::shared_ptr<StoredItem> item;
    int32_t delivery_count = 0;
    std::string owner;
    absl::Time expire;
  };
  struct Delayed {
    std::shared_ptr<StoredItem> item;
    int32_t delivery_count = 0;
    bool at_head = false;
  };
  struct Ready {
    std::shared_ptr<StoredItem> item;
    int32_t delivery_count = 0;  // deliveries so far
  };
  struct GetWaiter {
    WaiterId id = 0;
    GetOptions options;
    std::string owner;
    absl::Time since;
    TimerService::TimerId timer = 0;
    absl::Status timeout_status;
    // Unary get: `done` set, served once. Stream: `consumer` set, served while credit > 0.
    GetCallback done;
    std::shared_ptr<StreamConsumer> consumer;
    int64_t credit = 0;
    bool queued = false;  // in getters_
    // Taken in this dispatch round, not yet handed over.
    std::vector<Delivery> batch;
    int64_t batch_bytes = 0;
  };
  struct PutWaiter {
    WaiterId id = 0;
    std::vector<PutItem> items;
    std::string request_id;
    int64_t bytes = 0;
    TimerService::TimerId timer = 0;
    absl::Status timeout_status;
    PutCallback done;
  };
  // What a get with a request_id answered; `waiter` set while it still waits.
  struct GetAnswer {
    WaiterId waiter = 0;
    std::vector<Delivery> deliveries;
  };
  // Work to do once the lock is released.
  struct Pending {
    std::vector<absl::AnyInvocable<void() &&>> calls;
    std::vector<std::shared_ptr<StreamConsumer>> flush;
    std::vector<std::shared_ptr<const StoredItem>> dead;
    std::vector<TimerService::TimerId> cancel_timers;
    int64_t released_waiters = 0;
    void Run(Queue& queue);
  };

  absl::Status CheckUsable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckFits(const std::vector<PutItem>& items, int64_t bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Fits(int64_t count, int64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers what a get with a request id handed out (nothing without an id).
  void RecordGet(const GetOptions& options, const std::vector<Delivery>& deliveries)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The request-log key of a get: its request id and session; empty without an id.
  static std::string GetKey(const GetOptions& options);
  // A retry (the same request id) of the call the waiter at `it` answers takes the wait over:
  // the first call is answered ABORTED REQUEST_SUPERSEDED, and the wait keeps its place in line
  // under a new id (the first call's id no longer cancels it) with the retry's bound and
  // callback. Returns the new id.
  template <typename Waiter, typename Done>
  WaiterId TakeOver(
      typename std::list<std::shared_ptr<Waiter>>::iterator it,
      absl::flat_hash_map<WaiterId, typename std::list<std::shared_ptr<Waiter>>::iterator>& index,
      bool getter, const WaitBound& bound, Done done, const std::string& request_id,
      Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a waiting get's request id when it ends without items.
  void ForgetWaitingGet(const GetWaiter& waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A retried get's answer: TAKE deliveries as they were, LEASE ones still leased.
  std::vector<Delivery> ReplayGet(const std::vector<Delivery>& deliveries) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  PutResult Insert(std::vector<PutItem> items, const std::string& request_id, int64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Delivery Hand(Ready ready, const GetOptions& options, const std::string& owner, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Delivery> TakeReady(const GetOptions& options, const std::string& owner,
                                  int64_t max_items, int64_t max_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves waiting getters and putters until nothing more can move; ends getters when drained.
  void Dispatch(Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts leased items back at the head (or dead-letters them).
  void PutBack(std::vector<Leased> items, bool redelivery, absl::Duration delay, bool force_dead,
               Pending& pending) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<Leased> RemoveLease(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Drained() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndAllGetters(const absl::Status& status, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAllPutters(const absl::Status& status, Pending& pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmTimer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimer(TimerService::TimerId id);
  void OnWaiterTimeout(WaiterId id, bool getter);
  absl::Status EnsureSessionHook(const std::string& session_id);
  void RecordDedup(const std::string& dedup_id, const std::string& item_id, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PruneDedup(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Receipt(uint64_t seq, int32_t count) const;
  bool ParseReceipt(const std::string& receipt, uint64_t* seq, int32_t* count) const;
  bool TryReserveWaiter();

  // Constant after construction.
  const std::string name_;
  const QueueConfig config_;
  const std::map<std::string, std::string> labels_;
  const bool auto_created_;
  const uint64_t incarnation_;
  QueueEnv* const env_;
  const absl::Time create_time_;

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  WaiterId next_waiter_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<Ready> ready_ ABSL_GUARDED_BY(mu_);
  int64_t ready_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Leased> leased_ ABSL_GUARDED_BY(mu_);
  int64_t leased_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::pair<absl::Time, uint64_t>> lease_expiry_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_set<uint64_t>> by_owner_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Delayed> delayed_ ABSL_GUARDED_BY(mu_);
  int64_t delayed_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::pair<absl::Time, uint64_t>> delay_due_ ABSL_GUARDED_BY(mu_);
  TimerService::TimerId timer_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time timer_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Waiting getters in arrival order (list: O(1) removal by id through the map).
  std::list<std::shared_ptr<GetWaiter>> getters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<WaiterId, std::list<std::shared_ptr<GetWaiter>>::iterator> getter_index_
      ABSL_GUARDED_BY(mu_);
  // Every registered consumer (waiting or out of credit).
  absl::flat_hash_map<WaiterId, std::shared_ptr<GetWaiter>> consumers_ ABSL_GUARDED_BY(mu_);
  std::list<std::shared_ptr<PutWaiter>> putters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<WaiterId, std::list<std::shared_ptr<PutWaiter>>::iterator> putter_index_
      ABSL_GUARDED_BY(mu_);
  // Deduplication ids of the last 5 minutes, and request ids of recent puts.
  absl::flat_hash_map<std::string, std::string> dedup_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<absl::Time, std::string>> dedup_order_ ABSL_GUARDED_BY(mu_);
  static constexpr size_t kMaxRequestIds = 10000;
  static constexpr size_t kMaxRememberedGetBytes = size_t{64} << 20;
  RequestLog<PutResult> put_requests_ ABSL_GUARDED_BY(mu_){kRequestIdRetention, kMaxRequestIds};
  RequestLog<GetAnswer> get_requests_ ABSL_GUARDED_BY(mu_){kRequestIdRetention, kMaxRequestIds,
                                                           kMaxRememberedGetBytes};
  RequestLog<std::vector<ReceiptResult>> nack_requests_ ABSL_GUARDED_BY(mu_){kRequestIdRetention,
                                                                             kMaxRequestIds};
  // Receipts acked recently (acking again is OK), bounded.
  absl::flat_hash_set<std::string> acked_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> acked_order_ ABSL_GUARDED_BY(mu_);
  // Session hooks registered for leases of this queue.
  absl::flat_hash_map<std::string, SessionHooks::HookId> session_hooks_ ABSL_GUARDED_BY(mu_);
  QueueTotals totals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::queue

#endif  // SPINDLE_QUEUE_QUEUE_H_
