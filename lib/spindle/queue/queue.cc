#include "spindle/queue/queue.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spindle/common/status.h"

namespace spindle::queue {
namespace {

constexpr absl::Duration kDedupWindow = absl::Minutes(5);
constexpr size_t kMaxAckedReceipts = 100000;

}  // namespace

int64_t ItemBytes(const std::string& payload, const Headers& headers) {
  int64_t bytes = static_cast<int64_t>(payload.size());
  for (const auto& [key, value] : headers) {
    bytes += static_cast<int64_t>(key.size() + value.size());
  }
  return bytes;
}

// ---- StreamConsumer ----

void StreamConsumer::Push(std::vector<Delivery> items) {
  absl::MutexLock lock(&outbox_mu_);
  if (!ended_) {
    outbox_.push_back(std::move(items));
  }
}

void StreamConsumer::PushEnd(absl::Status status) {
  absl::MutexLock lock(&outbox_mu_);
  if (!ended_ && !end_.has_value()) {
    end_ = std::move(status);
  }
}

void StreamConsumer::Flush() {
  outbox_mu_.Lock();
  if (flushing_) {
    outbox_mu_.Unlock();
    return;
  }
  flushing_ = true;
  while (!ended_) {
    if (!outbox_.empty()) {
      std::vector<Delivery> items = std::move(outbox_.front());
      outbox_.pop_front();
      outbox_mu_.Unlock();
      OnItems(std::move(items));
      outbox_mu_.Lock();
      continue;
    }
    if (end_.has_value()) {
      absl::Status status = std::move(*end_);
      end_.reset();
      ended_ = true;
      outbox_mu_.Unlock();
      OnEnd(std::move(status));
      outbox_mu_.Lock();
    }
    break;
  }
  flushing_ = false;
  outbox_mu_.Unlock();
}

// ---- Queue ----

void Queue::Pending::Run(Queue& queue) {
  for (TimerService::TimerId id : cancel_timers) {
    if (id != 0) {
      queue.env_->timers->Cancel(id);
    }
  }
  if (released_waiters != 0 && queue.env_->waiters != nullptr) {
    queue.env_->waiters->fetch_sub(released_waiters, std::memory_order_relaxed);
  }
  for (auto& consumer : flush) {
    consumer->Flush();
  }
  for (auto& call : calls) {
    std::move(call)();
  }
  if (!dead.empty() && !queue.config_.dead_letter_queue.empty() && queue.env_->dead_letter) {
    queue.env_->dead_letter(queue.config_.dead_letter_queue, queue.name_, std::move(dead));
  }
}

Queue::Queue(std::string name, QueueConfig config, std::map<std::string, std::string> labels,
             bool auto_created, uint64_t incarnation, QueueEnv* env)
    : name_(std::move(name)),
      config_(std::move(config)),
      labels_(std::move(labels)),
      auto_created_(auto_created),
      incarnation_(incarnation),
      env_(env),
      create_time_(env->timers->Now()) {}

Queue::~Queue() {
  absl::MutexLock lock(&mu_);
  if (timer_ != 0) {
    env_->timers->Cancel(timer_);
  }
}

std::string Queue::Receipt(uint64_t seq, int32_t count) const {
  return absl::StrCat(incarnation_, "-", seq, "-", count);
}

bool Queue::ParseReceipt(const std::string& receipt, uint64_t* seq, int32_t* count) const {
  std::vector<absl::string_view> parts = absl::StrSplit(receipt, '-');
  uint64_t incarnation = 0;
  return parts.size() == 3 && absl::SimpleAtoi(parts[0], &incarnation) &&
         incarnation == incarnation_ && absl::SimpleAtoi(parts[1], seq) &&
         absl::SimpleAtoi(parts[2], count);
}

bool Queue::TryReserveWaiter() {
  if (env_->waiters == nullptr) {
    return true;
  }
  if (env_->waiters->fetch_add(1, std::memory_order_relaxed) >= env_->max_waiters) {
    env_->waiters->fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

absl::Status Queue::CheckUsable() const {
  if (deleted_) {
    return NotFound("QUEUE_DELETED", absl::StrCat("queue '", name_, "' was deleted"));
  }
  return absl::OkStatus();
}

bool Queue::Fits(int64_t count, int64_t bytes) const {
  int64_t items = static_cast<int64_t>(ready_.size() + leased_.size() + delayed_.size());
  int64_t used = ready_bytes_ + leased_bytes_ + delayed_bytes_;
  return items + count <= config_.max_items && used + bytes <= config_.max_bytes;
}

void Queue::PruneDedup(absl::Time now) {
  while (!dedup_order_.empty() && dedup_order_.front().first + kDedupWindow <= now) {
    dedup_.erase(dedup_order_.front().second);
    dedup_order_.pop_front();
  }
}

void Queue::RecordDedup(const std::string& dedup_id, const std::string& item_id, absl::Time now) {
  dedup_.emplace(dedup_id, item_id);
  dedup_order_.emplace_back(now, dedup_id);
}

PutResult Queue::Insert(std::vector<PutItem> items, const std::string& request_id,
                        int64_t /*bytes*/) {
  const absl::Time now = env_->timers->Now();
  PutResult result;
  result.enqueued = true;
  result.item_ids.reserve(items.size());
  if (!dedup_.empty()) {
    PruneDedup(now);
  }
  bool arm = false;
  for (size_t i = 0; i < items.size(); ++i) {
    PutItem& put = items[i];
    if (!put.dedup_id.empty()) {
      PruneDedup(now);
      if (auto it = dedup_.find(put.dedup_id); it != dedup_.end()) {
        result.item_ids.push_back(it->second);
        result.duplicate_indexes.push_back(static_cast<int32_t>(i));
        ++totals_.deduplicated;
        continue;
      }
    }
    auto item = std::make_shared<StoredItem>();
    item->seq = next_seq_++;
    item->id = absl::StrCat(incarnation_, "-", item->seq);
    item->bytes = ItemBytes(put.payload, put.headers);
    item->payload = std::move(put.payload);
    item->headers = std::move(put.headers);
    item->dedup_id = std::move(put.dedup_id);
    item->enqueue_time = now;
    result.item_ids.push_back(item->id);
    if (!item->dedup_id.empty()) {
      RecordDedup(item->dedup_id, item->id, now);
    }
    ++totals_.put;
    if (put.delay > absl::ZeroDuration()) {
      absl::Time due = now + put.delay;
      delay_due_.emplace(due, item->seq);
      delayed_bytes_ += item->bytes;
      uint64_t seq = item->seq;
      delayed_.emplace(seq, Delayed{std::move(item), 0, false});
      arm = true;
    } else {
      ready_bytes_ += item->bytes;
      ready_.push_back(Ready{std::move(item), 0});
    }
  }
  if (arm) {
    ArmTimer();
  }
  if (!request_id.empty()) {
    put_requests_.Record(request_id, result, now);
  }
  return result;
}

Delivery Queue::Hand(Ready ready, const GetOptions& options, const std::string& owner,
                     absl::Time now) {
  Delivery delivery;
  delivery.delivery_count = ready.delivery_count + 1;
  ++totals_.delivered;
  if (options.mode == GetMode::kTake) {
    delivery.item = std::move(ready.item);
    return delivery;
  }
  absl::Duration timeout = options.visibility_timeout > absl::ZeroDuration()
                               ? options.visibility_timeout
                               : absl::Milliseconds(config_.visibility_timeout_ms);
  const uint64_t seq = ready.item->seq;
  delivery.item = ready.item;
  delivery.lease_expire = now + timeout;
  delivery.receipt = Receipt(seq, delivery.delivery_count);
  leased_bytes_ += ready.item->bytes;
  lease_expiry_.emplace(delivery.lease_expire, seq);
  if (!owner.empty()) {
    by_owner_[owner].insert(seq);
  }
  leased_.emplace(
      seq, Leased{std::move(ready.item), delivery.delivery_count, owner, delivery.lease_expire});
  return delivery;
}

std::vector<Delivery> Queue::TakeReady(const GetOptions& options, const std::string& owner,
                                       int64_t max_items, int64_t max_bytes) {
  std::vector<Delivery> out;
  const absl::Time now = env_->timers->Now();
  int64_t bytes = 0;
  while (!ready_.empty() && static_cast<int64_t>(out.size()) < max_items) {
    const int64_t next = ready_.front().item->bytes;
    if (!out.empty() && bytes + next > max_bytes) {
      break;
    }
    bytes += next;
    ready_bytes_ -= next;
    Ready ready = std::move(ready_.front());
    ready_.pop_front();
    out.push_back(Hand(std::move(ready), options, owner, now));
  }
  if (options.mode == GetMode::kLease && !out.empty()) {
    ArmTimer();
  }
  return out;
}

bool Queue::Drained() const { return ready_.empty() && leased_.empty() && delayed_.empty(); }

void Queue::Dispatch(Pending& pending) {
  const absl::Time now = env_->timers->Now();
  bool leased_any = false;
  std::vector<std::shared_ptr<GetWaiter>> served;
  bool progress = true;
  while (progress) {
    progress = false;
    // Putters first: a put that fits now goes in before getters look at the queue.
    while (!putters_.empty() && !closed_ && !deleted_) {
      PutWaiter& waiter = *putters_.front();
      if (!Fits(static_cast<int64_t>(waiter.items.size()), waiter.bytes)) {
        break;
      }
      PutResult result = Insert(std::move(waiter.items), waiter.request_id, waiter.bytes);
      pending.cancel_timers.push_back(waiter.timer);
      pending.calls.push_back(
          [done = std::move(waiter.done), result = std::move(result)]() mutable {
            std::move(done)(std::move(result));
          });
      ++pending.released_waiters;
      putter_index_.erase(waiter.id);
      putters_.pop_front();
      progress = true;
    }
    // Getters, one item per waiter per turn, longest waiter first.
    while (!ready_.empty() && !getters_.empty()) {
      for (auto it = getters_.begin(); it != getters_.end() && !ready_.empty();) {
        GetWaiter& waiter = **it;
        if (waiter.batch.empty()) {
          served.push_back(*it);
          if (env_->observe_wait) {
            absl::Duration waited = now - waiter.since;
            pending.calls.push_back([observe = env_->observe_wait, waited] { observe(waited); });
          }
        }
        const int64_t bytes = ready_.front().item->bytes;
        ready_bytes_ -= bytes;
        Ready ready = std::move(ready_.front());
        ready_.pop_front();
        waiter.batch.push_back(Hand(std::move(ready), waiter.options, waiter.owner, now));
        waiter.batch_bytes += bytes;
        leased_any = leased_any || waiter.options.mode == GetMode::kLease;
        progress = true;
        bool full;
        if (waiter.consumer != nullptr) {
          --waiter.credit;
          full = waiter.credit <= 0;
        } else {
          full = static_cast<int64_t>(waiter.batch.size()) >= waiter.options.max_items ||
                 waiter.batch_bytes >= waiter.options.max_bytes;
        }
        if (full) {
          waiter.queued = false;
          getter_index_.erase(waiter.id);
          it = getters_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  if (leased_any) {
    ArmTimer();
  }
  for (auto& waiter : served) {
    if (waiter->consumer != nullptr) {
      waiter->consumer->Push(std::move(waiter->batch));
      waiter->batch.clear();
      waiter->batch_bytes = 0;
      waiter->since = now;
      pending.flush.push_back(waiter->consumer);
      continue;
    }
    if (waiter->queued) {
      waiter->queued = false;
      getters_.erase(getter_index_[waiter->id]);
      getter_index_.erase(waiter->id);
    }
    pending.cancel_timers.push_back(waiter->timer);
    ++pending.released_waiters;
    RecordGet(waiter->options, waiter->batch);
    pending.calls.push_back(
        [done = std::move(waiter->done), batch = std::move(waiter->batch)]() mutable {
          std::move(done)(std::move(batch));
        });
  }
  if (closed_ && Drained()) {
    EndAllGetters(
        OutOfRange("QUEUE_DRAINED", absl::StrCat("queue '", name_, "' is closed and drained")),
        pending);
  }
}

void Queue::EndAllGetters(const absl::Status& status, Pending& pending) {
  for (auto& waiter : getters_) {
    if (waiter->consumer != nullptr) {
      continue;  // ended below with every consumer
    }
    ForgetWaitingGet(*waiter);
    pending.cancel_timers.push_back(waiter->timer);
    ++pending.released_waiters;
    pending.calls.push_back(
        [done = std::move(waiter->done), status]() mutable { std::move(done)(status); });
  }
  getters_.clear();
  getter_index_.clear();
  for (auto& [id, waiter] : consumers_) {
    waiter->queued = false;
    waiter->consumer->PushEnd(status);
    pending.flush.push_back(waiter->consumer);
    ++pending.released_waiters;
  }
  consumers_.clear();
}

void Queue::FailAllPutters(const absl::Status& status, Pending& pending) {
  for (auto& waiter : putters_) {
    pending.cancel_timers.push_back(waiter->timer);
    ++pending.released_waiters;
    pending.calls.push_back(
        [done = std::move(waiter->done), status]() mutable { std::move(done)(status); });
  }
  putters_.clear();
  putter_index_.clear();
}

void Queue::ArmTimer() {
  absl::Time earliest = absl::InfiniteFuture();
  if (!lease_expiry_.empty()) {
    earliest = lease_expiry_.begin()->first;
  }
  if (!delay_due_.empty()) {
    earliest = std::min(earliest, delay_due_.begin()->first);
  }
  if (earliest == absl::InfiniteFuture() || (timer_ != 0 && earliest >= timer_at_)) {
    return;  // nothing to wait for, or the armed timer fires early enough and re-arms
  }
  if (timer_ != 0) {
    env_->timers->Cancel(timer_);
  }
  timer_at_ = earliest;
  std::weak_ptr<Queue> weak = weak_from_this();
  // The id is only known after Schedule() returns; the callback checks it under mu_.
  timer_ = env_->timers->Schedule(earliest, [weak, this]() mutable {
    if (auto self = weak.lock()) {
      TimerService::TimerId id;
      {
        absl::MutexLock lock(&mu_);
        id = timer_;
      }
      OnTimer(id);
    }
  });
}

void Queue::OnTimer(TimerService::TimerId id) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    if (deleted_) {
      return;
    }
    const absl::Time now = env_->timers->Now();
    if (id != timer_) {
      return;  // a replaced timer: the current one is armed
    }
    // Whatever is due now is handled; a timer that fired early (clocks differ by microseconds)
    // handles nothing and is armed again below.
    timer_ = 0;
    timer_at_ = absl::InfiniteFuture();
    // Delayed items that are due join the queue (nacked ones at the head).
    std::vector<Ready> to_head;
    while (!delay_due_.empty() && delay_due_.begin()->first <= now) {
      uint64_t seq = delay_due_.begin()->second;
      delay_due_.erase(delay_due_.begin());
      auto it = delayed_.find(seq);
      if (it == delayed_.end()) {
        continue;
      }
      Delayed delayed = std::move(it->second);
      delayed_.erase(it);
      delayed_bytes_ -= delayed.item->bytes;
      ready_bytes_ += delayed.item->bytes;
      if (delayed.at_head) {
        to_head.push_back(Ready{std::move(delayed.item), delayed.delivery_count});
      } else {
        ready_.push_back(Ready{std::move(delayed.item), delayed.delivery_count});
      }
    }
    std::sort(to_head.begin(), to_head.end(),
              [](const Ready& a, const Ready& b) { return a.item->seq > b.item->seq; });
    for (auto& ready : to_head) {
      ready_.push_front(std::move(ready));
    }
    // Expired leases go back.
    std::vector<Leased> expired;
    while (!lease_expiry_.empty() && lease_expiry_.begin()->first <= now) {
      uint64_t seq = lease_expiry_.begin()->second;
      if (auto lease = RemoveLease(seq)) {
        expired.push_back(std::move(*lease));
      } else {
        lease_expiry_.erase(lease_expiry_.begin());
      }
    }
    PutBack(std::move(expired), /*redelivery=*/true, absl::ZeroDuration(), false, pending);
    ArmTimer();
    Dispatch(pending);
  }
  pending.Run(*this);
}

std::optional<Queue::Leased> Queue::RemoveLease(uint64_t seq) {
  auto it = leased_.find(seq);
  if (it == leased_.end()) {
    return std::nullopt;
  }
  Leased lease = std::move(it->second);
  leased_.erase(it);
  lease_expiry_.erase({lease.expire, seq});
  leased_bytes_ -= lease.item->bytes;
  if (!lease.owner.empty()) {
    auto owner = by_owner_.find(lease.owner);
    if (owner != by_owner_.end()) {
      owner->second.erase(seq);
      if (owner->second.empty()) {
        by_owner_.erase(owner);
      }
    }
  }
  return lease;
}

void Queue::PutBack(std::vector<Leased> items, bool redelivery, absl::Duration delay,
                    bool force_dead, Pending& pending) {
  if (items.empty()) {
    return;
  }
  std::sort(items.begin(), items.end(),
            [](const Leased& a, const Leased& b) { return a.item->seq > b.item->seq; });
  const absl::Time now = env_->timers->Now();
  bool arm = false;
  for (Leased& lease : items) {
    if (redelivery) {
      ++totals_.redelivered;
    } else {
      ++totals_.nacked;
    }
    if (force_dead ||
        (config_.max_deliveries > 0 && lease.delivery_count >= config_.max_deliveries)) {
      ++totals_.dead_lettered;
      pending.dead.push_back(std::move(lease.item));
      continue;
    }
    if (delay > absl::ZeroDuration()) {
      delay_due_.emplace(now + delay, lease.item->seq);
      delayed_bytes_ += lease.item->bytes;
      uint64_t seq = lease.item->seq;
      delayed_.emplace(seq, Delayed{std::move(lease.item), lease.delivery_count, true});
      arm = true;
      continue;
    }
    ready_bytes_ += lease.item->bytes;
    ready_.push_front(Ready{std::move(lease.item), lease.delivery_count});
  }
  if (arm) {
    ArmTimer();
  }
}

template <typename Waiter, typename Done>
Queue::WaiterId Queue::TakeOver(
    typename std::list<std::shared_ptr<Waiter>>::iterator it,
    absl::flat_hash_map<WaiterId, typename std::list<std::shared_ptr<Waiter>>::iterator>& index,
    bool getter, const WaitBound& bound, Done done, const std::string& request_id,
    Pending& pending) {
  Waiter& waiter = **it;
  absl::Status superseded =
      Aborted("REQUEST_SUPERSEDED", absl::StrCat("a retry with request_id '", request_id,
                                                 "' took over this wait on queue '", name_, "'"));
  pending.calls.push_back(
      [first = std::move(waiter.done), superseded]() mutable { std::move(first)(superseded); });
  waiter.done = std::move(done);
  index.erase(waiter.id);
  const WaiterId id = next_waiter_++;
  waiter.id = id;
  index[id] = it;
  waiter.timeout_status = bound.status;
  if (waiter.timer != 0) {
    pending.cancel_timers.push_back(std::exchange(waiter.timer, 0));
  }
  if (bound.until != absl::InfiniteFuture()) {
    std::weak_ptr<Queue> weak = weak_from_this();
    waiter.timer = env_->timers->Schedule(bound.until, [weak, id, getter] {
      if (auto self = weak.lock()) {
        self->OnWaiterTimeout(id, getter);
      }
    });
  }
  return id;
}

Queue::WaiterId Queue::Put(std::vector<PutItem> items, const std::string& request_id,
                           const WaitBound& bound, PutCallback done) {
  int64_t bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    int64_t size = ItemBytes(items[i].payload, items[i].headers);
    if (size > config_.max_item_bytes) {
      std::move(done)(ResourceExhausted(
          "ITEM_TOO_LARGE", absl::StrCat("items[", i, "] is ", size, " bytes, over max_item_bytes ",
                                         config_.max_item_bytes, " of queue '", name_, "'")));
      return 0;
    }
    bytes += size;
  }
  if (static_cast<int64_t>(items.size()) > config_.max_items || bytes > config_.max_bytes) {
    std::move(done)(
        ResourceExhausted("BATCH_TOO_LARGE",
                          absl::StrCat("a batch of ", items.size(), " items and ", bytes,
                                       " bytes can never fit queue '", name_, "' (max_items ",
                                       config_.max_items, ", max_bytes ", config_.max_bytes, ")")));
    return 0;
  }
  Pending pending;
  absl::StatusOr<PutResult> answer;
  WaiterId id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status usable = CheckUsable(); !usable.ok()) {
      answer = usable;
    } else if (closed_) {
      answer = FailedPrecondition("QUEUE_CLOSED", absl::StrCat("queue '", name_, "' is closed"));
    } else if (const PutResult* original =
                   request_id.empty() ? nullptr
                                      : put_requests_.Find(request_id, env_->timers->Now());
               original != nullptr) {
      answer = *original;
    } else if (auto first = request_id.empty()
                                ? putters_.end()
                                : std::find_if(putters_.begin(), putters_.end(),
                                               [&](const auto& waiter) {
                                                 return waiter->request_id == request_id;
                                               });
               first != putters_.end()) {
      // The first call still waits for room: its retry takes that wait over (a second waiter
      // would put the batch twice).
      id = TakeOver<PutWaiter>(first, putter_index_, /*getter=*/false, bound, std::move(done),
                               request_id, pending);
    } else if (putters_.empty() && Fits(static_cast<int64_t>(items.size()), bytes)) {
      answer = Insert(std::move(items), request_id, bytes);
      Dispatch(pending);
    } else if (!bound.wait) {
      answer = ResourceExhausted(
          "QUEUE_FULL", absl::StrCat("queue '", name_, "' is full (max_items ", config_.max_items,
                                     ", max_bytes ", config_.max_bytes, ")"));
    } else if (!TryReserveWaiter()) {
      answer = ResourceExhausted("TOO_MANY_WAITERS", "too many waiting calls on the server");
    } else {
      id = next_waiter_++;
      auto waiter = std::make_shared<PutWaiter>();
      waiter->id = id;
      waiter->items = std::move(items);
      waiter->request_id = request_id;
      waiter->bytes = bytes;
      waiter->timeout_status = bound.status;
      waiter->done = std::move(done);
      if (bound.until != absl::InfiniteFuture()) {
        std::weak_ptr<Queue> weak = weak_from_this();
        waiter->timer = env_->timers->Schedule(bound.until, [weak, id] {
          if (auto self = weak.lock()) {
            self->OnWaiterTimeout(id, /*getter=*/false);
          }
        });
      }
      putters_.push_back(std::move(waiter));
      putter_index_[id] = std::prev(putters_.end());
    }
  }
  pending.Run(*this);
  if (id == 0) {
    std::move(done)(std::move(answer));
  }
  return id;
}

bool Queue::CancelPut(WaiterId id) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    auto it = putter_index_.find(id);
    if (it == putter_index_.end()) {
      return false;
    }
    pending.cancel_timers.push_back((*it->second)->timer);
    ++pending.released_waiters;
    putters_.erase(it->second);
    putter_index_.erase(it);
    // The head putter leaving may let the next one in.
    Dispatch(pending);
  }
  pending.Run(*this);
  return true;
}

void Queue::OnWaiterTimeout(WaiterId id, bool getter) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    if (getter) {
      auto it = getter_index_.find(id);
      if (it == getter_index_.end()) {
        return;
      }
      std::shared_ptr<GetWaiter> waiter = *it->second;
      ForgetWaitingGet(*waiter);
      getters_.erase(it->second);
      getter_index_.erase(it);
      ++pending.released_waiters;
      absl::StatusOr<std::vector<Delivery>> answer = std::vector<Delivery>{};
      if (!waiter->timeout_status.ok()) {
        answer = waiter->timeout_status;
      }
      pending.calls.push_back([done = std::move(waiter->done), answer]() mutable {
        std::move(done)(std::move(answer));
      });
    } else {
      auto it = putter_index_.find(id);
      if (it == putter_index_.end()) {
        return;
      }
      std::shared_ptr<PutWaiter> waiter = *it->second;
      putters_.erase(it->second);
      putter_index_.erase(it);
      ++pending.released_waiters;
      absl::StatusOr<PutResult> answer = PutResult{};
      if (!waiter->timeout_status.ok()) {
        answer = waiter->timeout_status;
      }
      pending.calls.push_back([done = std::move(waiter->done), answer]() mutable {
        std::move(done)(std::move(answer));
      });
      Dispatch(pending);
    }
  }
  pending.Run(*this);
}

absl::Status Queue::EnsureSessionHook(const std::string& session_id) {
  if (env_->sessions == nullptr) {
    return FailedPrecondition(
        "SESSIONS_UNAVAILABLE",
        absl::StrCat("session_id '", session_id,
                     "' given but sessions are not available on this server"));
  }
  SPINDLE_RETURN_IF_ERROR(env_->sessions->CheckAlive(session_id));
  {
    absl::MutexLock lock(&mu_);
    if (session_hooks_.contains(session_id)) {
      return absl::OkStatus();
    }
  }
  std::weak_ptr<Queue> weak = weak_from_this();
  SPINDLE_ASSIGN_OR_RETURN(SessionHooks::HookId hook,
                           env_->sessions->OnEnd(session_id, [weak, session_id]() {
                             if (auto self = weak.lock()) {
                               {
                                 absl::MutexLock lock(&self->mu_);
                                 self->session_hooks_.erase(session_id);
                               }
                               self->ReleaseOwner("session:" + session_id);
                             }
                           }));
  bool duplicate = false;
  {
    absl::MutexLock lock(&mu_);
    duplicate = !session_hooks_.emplace(session_id, hook).second;
  }
  if (duplicate) {
    env_->sessions->RemoveHook(session_id, hook);
  }
  return absl::OkStatus();
}

Queue::WaiterId Queue::Get(const GetOptions& options, const WaitBound& bound, GetCallback done) {
  std::string owner;
  if (!options.session_id.empty()) {
    if (absl::Status hooked = EnsureSessionHook(options.session_id); !hooked.ok()) {
      std::move(done)(hooked);
      return 0;
    }
    owner = "session:" + options.session_id;
  }
  Pending pending;
  absl::StatusOr<std::vector<Delivery>> answer;
  WaiterId id = 0;
  {
    absl::MutexLock lock(&mu_);
    const std::string key = GetKey(options);
    const GetAnswer* original =
        key.empty() ? nullptr : get_requests_.Find(key, env_->timers->Now());
    if (absl::Status usable = CheckUsable(); !usable.ok()) {
      answer = usable;
    } else if (original != nullptr && original->waiter != 0) {
      id =
          TakeOver<GetWaiter>(getter_index_.at(original->waiter), getter_index_,
                              /*getter=*/true, bound, std::move(done), options.request_id, pending);
      get_requests_.Record(key, GetAnswer{id, {}}, env_->timers->Now());
    } else if (original != nullptr) {
      answer = ReplayGet(original->deliveries);
    } else if (!ready_.empty()) {
      answer = TakeReady(options, owner, options.max_items, options.max_bytes);
      RecordGet(options, *answer);
      Dispatch(pending);
    } else if (closed_ && Drained()) {
      answer =
          OutOfRange("QUEUE_DRAINED", absl::StrCat("queue '", name_, "' is closed and drained"));
    } else if (!bound.wait) {
      answer = std::vector<Delivery>{};
    } else if (!TryReserveWaiter()) {
      answer = ResourceExhausted("TOO_MANY_WAITERS", "too many waiting calls on the server");
    } else {
      id = next_waiter_++;
      auto waiter = std::make_shared<GetWaiter>();
      waiter->id = id;
      waiter->options = options;
      waiter->owner = std::move(owner);
      waiter->since = env_->timers->Now();
      waiter->timeout_status = bound.status;
      waiter->done = std::move(done);
      waiter->queued = true;
      if (bound.until != absl::InfiniteFuture()) {
        std::weak_ptr<Queue> weak = weak_from_this();
        waiter->timer = env_->timers->Schedule(bound.until, [weak, id] {
          if (auto self = weak.lock()) {
            self->OnWaiterTimeout(id, /*getter=*/true);
          }
        });
      }
      getters_.push_back(std::move(waiter));
      getter_index_[id] = std::prev(getters_.end());
      if (!key.empty()) {
        get_requests_.Record(key, GetAnswer{id, {}}, env_->timers->Now());
      }
    }
  }
  pending.Run(*this);
  if (id == 0) {
    std::move(done)(std::move(answer));
  }
  return id;
}

std::string Queue::GetKey(const GetOptions& options) {
  if (options.request_id.empty()) {
    return "";
  }
  return absl::StrCat(options.request_id, absl::string_view("\0", 1), options.session_id);
}

void Queue::RecordGet(const GetOptions& options, const std::vector<Delivery>& deliveries) {
  const std::string key = GetKey(options);
  if (key.empty()) {
    return;
  }
  if (deliveries.empty()) {
    get_requests_.Forget(key);
    return;
  }
  size_t bytes = 0;
  for (const Delivery& delivery : deliveries) {
    bytes += static_cast<size_t>(delivery.item->bytes);
  }
  get_requests_.Record(key, GetAnswer{0, deliveries}, env_->timers->Now(), bytes);
}

void Queue::ForgetWaitingGet(const GetWaiter& waiter) {
  const std::string key = GetKey(waiter.options);
  if (key.empty()) {
    return;
  }
  const GetAnswer* answer = get_requests_.Find(key, env_->timers->Now());
  if (answer != nullptr && answer->waiter == waiter.id) {
    get_requests_.Forget(key);
  }
}

std::vector<Delivery> Queue::ReplayGet(const std::vector<Delivery>& deliveries) const {
  std::vector<Delivery> out;
  for (const Delivery& delivery : deliveries) {
    if (delivery.receipt.empty()) {
      out.push_back(delivery);
      continue;
    }
    uint64_t seq = 0;
    int32_t count = 0;
    if (!ParseReceipt(delivery.receipt, &seq, &count)) {
      continue;
    }
    auto it = leased_.find(seq);
    if (it != leased_.end() && it->second.delivery_count == count) {
      Delivery current = delivery;
      current.lease_expire = it->second.expire;
      out.push_back(std::move(current));
    }
  }
  return out;
}

void Queue::ForgetGet(const GetOptions& options) {
  const std::string key = GetKey(options);
  if (key.empty()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  get_requests_.Forget(key);
}

bool Queue::CancelGet(WaiterId id) {
  TimerService::TimerId timer = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = getter_index_.find(id);
    if (it == getter_index_.end() || (*it->second)->consumer != nullptr) {
      return false;
    }
    timer = (*it->second)->timer;
    ForgetWaitingGet(**it->second);
    getters_.erase(it->second);
    getter_index_.erase(it);
  }
  if (timer != 0) {
    env_->timers->Cancel(timer);
  }
  if (env_->waiters != nullptr) {
    env_->waiters->fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

absl::StatusOr<Queue::WaiterId> Queue::AddConsumer(std::shared_ptr<StreamConsumer> consumer,
                                                   const GetOptions& options, int64_t credit) {
  if (!options.session_id.empty()) {
    SPINDLE_RETURN_IF_ERROR(EnsureSessionHook(options.session_id));
  }
  Pending pending;
  WaiterId id = 0;
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    if (closed_ && Drained()) {
      return OutOfRange("QUEUE_DRAINED", absl::StrCat("queue '", name_, "' is closed and drained"));
    }
    if (!TryReserveWaiter()) {
      return ResourceExhausted("TOO_MANY_WAITERS", "too many waiting calls on the server");
    }
    id = next_waiter_++;
    auto waiter = std::make_shared<GetWaiter>();
    waiter->id = id;
    waiter->options = options;
    waiter->owner = options.session_id.empty() ? StreamOwner(id) : "session:" + options.session_id;
    waiter->since = env_->timers->Now();
    waiter->consumer = std::move(consumer);
    waiter->credit = std::min(credit, kMaxCredit);
    consumers_[id] = waiter;
    if (waiter->credit > 0) {
      waiter->queued = true;
      getters_.push_back(waiter);
      getter_index_[id] = std::prev(getters_.end());
    }
    Dispatch(pending);
  }
  pending.Run(*this);
  return id;
}

int64_t Queue::AddCredit(WaiterId id, int64_t items) {
  Pending pending;
  int64_t credit = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = consumers_.find(id);
    if (it == consumers_.end()) {
      return 0;
    }
    std::shared_ptr<GetWaiter> waiter = it->second;  // Dispatch may end (and erase) it
    waiter->credit = std::min(waiter->credit + items, kMaxCredit);
    if (!waiter->queued && waiter->credit > 0) {
      waiter->queued = true;
      waiter->since = env_->timers->Now();
      getters_.push_back(waiter);
      getter_index_[id] = std::prev(getters_.end());
    }
    Dispatch(pending);
    credit = waiter->credit;
  }
  pending.Run(*this);
  return credit;
}

void Queue::RemoveConsumer(WaiterId id) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    auto it = consumers_.find(id);
    if (it == consumers_.end()) {
      return;
    }
    std::shared_ptr<GetWaiter> waiter = it->second;
    consumers_.erase(it);
    ++pending.released_waiters;
    if (waiter->queued) {
      getters_.erase(getter_index_[id]);
      getter_index_.erase(id);
    }
    // Deliveries queued for the consumer but not handed over: TAKE items go back to the head;
    // LEASE items are the owner's leases (ReleaseOwner puts them back).
    std::deque<std::vector<Delivery>> undelivered;
    {
      StreamConsumer& consumer = *waiter->consumer;
      absl::MutexLock outbox(&consumer.outbox_mu_);
      undelivered.swap(consumer.outbox_);
      consumer.ended_ = true;
    }
    if (waiter->options.mode == GetMode::kTake) {
      for (auto batch = undelivered.rbegin(); batch != undelivered.rend(); ++batch) {
        for (auto d = batch->rbegin(); d != batch->rend(); ++d) {
          auto item = std::const_pointer_cast<StoredItem>(d->item);
          ready_bytes_ += item->bytes;
          ready_.push_front(Ready{std::move(item), d->delivery_count - 1});
        }
      }
    }
    Dispatch(pending);
  }
  pending.Run(*this);
}

void Queue::Requeue(std::vector<Delivery> deliveries) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    if (deleted_) {
      return;
    }
    for (auto d = deliveries.rbegin(); d != deliveries.rend(); ++d) {
      auto item = std::const_pointer_cast<StoredItem>(d->item);
      ready_bytes_ += item->bytes;
      ready_.push_front(Ready{std::move(item), d->delivery_count - 1});
    }
    Dispatch(pending);
  }
  pending.Run(*this);
}

void Queue::ReleaseOwner(const std::string& owner) {
  Pending pending;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) {
      return;
    }
    std::vector<uint64_t> seqs(it->second.begin(), it->second.end());
    std::vector<Leased> leases;
    for (uint64_t seq : seqs) {
      if (auto lease = RemoveLease(seq)) {
        leases.push_back(std::move(*lease));
      }
    }
    PutBack(std::move(leases), /*redelivery=*/true, absl::ZeroDuration(), false, pending);
    Dispatch(pending);
  }
  pending.Run(*this);
}

int64_t Queue::AddDeadLetters(const std::string& source,
                              std::vector<std::shared_ptr<const StoredItem>> items) {
  Pending pending;
  int64_t accepted = 0;
  {
    absl::MutexLock lock(&mu_);
    if (deleted_ || closed_) {
      return 0;
    }
    const absl::Time now = env_->timers->Now();
    for (auto& dead : items) {
      if (!Fits(1, dead->bytes)) {
        continue;
      }
      auto item = std::make_shared<StoredItem>(*dead);
      item->seq = next_seq_++;
      item->id = absl::StrCat(incarnation_, "-", item->seq);
      item->source_queue = source;
      item->enqueue_time = now;
      ready_bytes_ += item->bytes;
      ready_.push_back(Ready{std::move(item), 0});
      ++totals_.put;
      ++accepted;
    }
    Dispatch(pending);
  }
  pending.Run(*this);
  return accepted;
}

absl::StatusOr<std::vector<ReceiptResult>> Queue::Ack(const std::vector<std::string>& receipts) {
  Pending pending;
  std::vector<ReceiptResult> results;
  results.reserve(receipts.size());
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    for (const std::string& receipt : receipts) {
      ReceiptResult result;
      result.receipt = receipt;
      uint64_t seq = 0;
      int32_t count = 0;
      if (acked_.contains(receipt)) {
        // Acking an acked receipt again is OK.
      } else if (!ParseReceipt(receipt, &seq, &count) || seq >= next_seq_) {
        result.status = NotFound(
            "RECEIPT_NOT_FOUND",
            absl::StrCat("no delivery of queue '", name_, "' has receipt '", receipt, "'"));
      } else if (auto it = leased_.find(seq);
                 it == leased_.end() || it->second.delivery_count != count) {
        result.status = Aborted("DELIVERY_EXPIRED",
                                absl::StrCat("the lease of receipt '", receipt, "' on queue '",
                                             name_, "' ended before the ack"));
      } else {
        RemoveLease(seq);
        ++totals_.acked;
        acked_.insert(receipt);
        acked_order_.push_back(receipt);
        if (acked_order_.size() > kMaxAckedReceipts) {
          acked_.erase(acked_order_.front());
          acked_order_.pop_front();
        }
      }
      results.push_back(std::move(result));
    }
    Dispatch(pending);
  }
  pending.Run(*this);
  return results;
}

absl::StatusOr<std::vector<ReceiptResult>> Queue::Nack(const std::vector<std::string>& receipts,
                                                       absl::Duration delay, bool dead_letter,
                                                       const std::string& request_id) {
  Pending pending;
  std::vector<ReceiptResult> results;
  results.reserve(receipts.size());
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    if (!request_id.empty()) {
      if (const auto* original = nack_requests_.Find(request_id, env_->timers->Now())) {
        return *original;
      }
    }
    std::vector<Leased> back;
    for (const std::string& receipt : receipts) {
      ReceiptResult result;
      result.receipt = receipt;
      uint64_t seq = 0;
      int32_t count = 0;
      if (!ParseReceipt(receipt, &seq, &count) || seq >= next_seq_) {
        result.status = NotFound(
            "RECEIPT_NOT_FOUND",
            absl::StrCat("no delivery of queue '", name_, "' has receipt '", receipt, "'"));
      } else if (auto it = leased_.find(seq);
                 it == leased_.end() || it->second.delivery_count != count) {
        result.status = Aborted("DELIVERY_EXPIRED",
                                absl::StrCat("the lease of receipt '", receipt, "' on queue '",
                                             name_, "' ended before the nack"));
      } else {
        back.push_back(std::move(*RemoveLease(seq)));
      }
      results.push_back(std::move(result));
    }
    PutBack(std::move(back), /*redelivery=*/false, delay, dead_letter, pending);
    if (!request_id.empty()) {
      nack_requests_.Record(request_id, results, env_->timers->Now());
    }
    Dispatch(pending);
  }
  pending.Run(*this);
  return results;
}

absl::StatusOr<std::vector<ReceiptResult>> Queue::Extend(const std::vector<std::string>& receipts,
                                                         absl::Duration visibility_timeout) {
  std::vector<ReceiptResult> results;
  results.reserve(receipts.size());
  absl::MutexLock lock(&mu_);
  SPINDLE_RETURN_IF_ERROR(CheckUsable());
  const absl::Time now = env_->timers->Now();
  const absl::Duration timeout = visibility_timeout > absl::ZeroDuration()
                                     ? visibility_timeout
                                     : absl::Milliseconds(config_.visibility_timeout_ms);
  for (const std::string& receipt : receipts) {
    ReceiptResult result;
    result.receipt = receipt;
    uint64_t seq = 0;
    int32_t count = 0;
    if (!ParseReceipt(receipt, &seq, &count) || seq >= next_seq_) {
      result.status = NotFound("RECEIPT_NOT_FOUND", absl::StrCat("no delivery of queue '", name_,
                                                                 "' has receipt '", receipt, "'"));
    } else if (auto it = leased_.find(seq);
               it == leased_.end() || it->second.delivery_count != count) {
      result.status = Aborted("DELIVERY_EXPIRED",
                              absl::StrCat("the lease of receipt '", receipt, "' on queue '", name_,
                                           "' ended before the extend"));
    } else {
      lease_expiry_.erase({it->second.expire, seq});
      it->second.expire = now + timeout;
      lease_expiry_.emplace(it->second.expire, seq);
      result.lease_expire = it->second.expire;
    }
    results.push_back(std::move(result));
  }
  ArmTimer();
  return results;
}

absl::StatusOr<int32_t> Queue::Close() {
  Pending pending;
  int32_t failed = 0;
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    closed_ = true;
    failed = static_cast<int32_t>(putters_.size());
    FailAllPutters(
        FailedPrecondition("QUEUE_CLOSED", absl::StrCat("queue '", name_, "' was closed")),
        pending);
    Dispatch(pending);
  }
  pending.Run(*this);
  return failed;
}

absl::StatusOr<int64_t> Queue::Purge(bool include_in_flight) {
  Pending pending;
  int64_t purged = 0;
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    purged = static_cast<int64_t>(ready_.size() + delayed_.size());
    ready_.clear();
    ready_bytes_ = 0;
    delayed_.clear();
    delay_due_.clear();
    delayed_bytes_ = 0;
    if (include_in_flight) {
      purged += static_cast<int64_t>(leased_.size());
      leased_.clear();
      lease_expiry_.clear();
      by_owner_.clear();
      leased_bytes_ = 0;
    }
    totals_.purged += purged;
    Dispatch(pending);
  }
  pending.Run(*this);
  return purged;
}

absl::StatusOr<int64_t> Queue::MarkDeleted(bool if_empty) {
  Pending pending;
  int64_t dropped = 0;
  absl::flat_hash_map<std::string, SessionHooks::HookId> hooks;
  {
    absl::MutexLock lock(&mu_);
    SPINDLE_RETURN_IF_ERROR(CheckUsable());
    dropped = static_cast<int64_t>(ready_.size() + leased_.size() + delayed_.size());
    if (if_empty && dropped > 0) {
      return FailedPrecondition("QUEUE_NOT_EMPTY",
                                absl::StrCat("queue '", name_, "' still holds ", dropped,
                                             " items (ready, delayed or in flight)"));
    }
    deleted_ = true;
    ready_.clear();
    leased_.clear();
    lease_expiry_.clear();
    by_owner_.clear();
    delayed_.clear();
    delay_due_.clear();
    ready_bytes_ = leased_bytes_ = delayed_bytes_ = 0;
    absl::Status gone = NotFound("QUEUE_DELETED", absl::StrCat("queue '", name_, "' was deleted"));
    EndAllGetters(gone, pending);
    FailAllPutters(gone, pending);
    pending.cancel_timers.push_back(timer_);
    timer_ = 0;
    hooks.swap(session_hooks_);
  }
  pending.Run(*this);
  if (env_->sessions != nullptr) {
    for (const auto& [session, hook] : hooks) {
      env_->sessions->RemoveHook(session, hook);
    }
  }
  return dropped;
}

QueueInfo Queue::Describe() const {
  QueueInfo info;
  info.name = name_;
  info.config = config_;
  info.labels = labels_;
  info.create_time = create_time_;
  info.auto_created = auto_created_;
  absl::MutexLock lock(&mu_);
  info.closed = closed_;
  info.depth = static_cast<int64_t>(ready_.size());
  info.depth_bytes = ready_bytes_;
  info.in_flight = static_cast<int64_t>(leased_.size());
  info.in_flight_bytes = leased_bytes_;
  info.delayed = static_cast<int64_t>(delayed_.size());
  info.consumers_waiting = static_cast<int32_t>(getters_.size());
  info.producers_waiting = static_cast<int32_t>(putters_.size());
  if (!ready_.empty()) {
    info.oldest_item_age_ms = std::max<int64_t>(
        0, absl::ToInt64Milliseconds(env_->timers->Now() - ready_.front().item->enqueue_time));
  }
  info.totals = totals_;
  return info;
}

bool Queue::IsClosed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

Queue::Counts Queue::GetCounts() const {
  absl::MutexLock lock(&mu_);
  return Counts{static_cast<int64_t>(ready_.size()), static_cast<int64_t>(leased_.size()), totals_};
}

}  // namespace spindle::queue
