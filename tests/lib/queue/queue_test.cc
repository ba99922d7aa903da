// The queue engine: FIFO, capacity and backpressure, waiters, leases, dead-lettering, close,
// sessions, streaming consumers, and a many-threads stress test.
#include "spindle/queue/queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "spindle/common/status.h"
#include "spindle/queue/queue_registry.h"
#include "tests/fakes/manual_timer_service.h"
#include "tests/lib/queue/fake_session_hooks.h"

namespace spindle::queue {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

std::vector<PutItem> Items(std::initializer_list<std::string> payloads) {
  std::vector<PutItem> items;
  for (const auto& p : payloads) {
    items.push_back(PutItem{p, {}, "", absl::ZeroDuration()});
  }
  return items;
}

std::vector<std::string> Payloads(const std::vector<Delivery>& deliveries) {
  std::vector<std::string> out;
  for (const auto& d : deliveries) {
    out.push_back(d.item->payload);
  }
  return out;
}

// Captures the answer of a Put or Get.
template <typename T>
struct Answer {
  std::optional<absl::StatusOr<T>> value;
  auto Callback() {
    return [this](absl::StatusOr<T> v) { value = std::move(v); };
  }
};

class QueueTest : public ::testing::Test {
 protected:
  QueueTest() : registry_(timers_, &sessions_, Options()) {}

  static RegistryOptions Options() {
    RegistryOptions options;
    options.defaults.max_items = 4;
    return options;
  }

  std::shared_ptr<Queue> Make(const std::string& name, QueueConfig config = {}) {
    auto created = registry_.Create(name, config, {});
    EXPECT_TRUE(created.ok()) << created.status();
    return created->queue;
  }

  absl::StatusOr<PutResult> PutNow(Queue& q, std::vector<PutItem> items) {
    Answer<PutResult> answer;
    q.Put(std::move(items), "", {}, answer.Callback());
    return *answer.value;
  }

  absl::StatusOr<std::vector<Delivery>> GetNow(Queue& q, int max_items = 1,
                                               GetMode mode = GetMode::kTake) {
    Answer<std::vector<Delivery>> answer;
    GetOptions options;
    options.max_items = max_items;
    options.mode = mode;
    q.Get(options, {}, answer.Callback());
    return *answer.value;
  }

  Queue::WaitBound Wait(absl::Duration d = absl::InfiniteDuration(),
                        absl::Status status = DeadlineExceeded("deadline")) {
    return Queue::WaitBound{true, timers_.Now() + d, std::move(status)};
  }

  testing::ManualTimerService timers_;
  testing::FakeSessionHooks sessions_;
  QueueRegistry registry_;
};

TEST_F(QueueTest, ItemsComeOutInPutOrder) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  ASSERT_TRUE(PutNow(*q, Items({"c"})).ok());
  auto got = GetNow(*q, 10);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(Payloads(*got), ElementsAre("a", "b", "c"));
  EXPECT_EQ((*got)[0].delivery_count, 1);
}

TEST_F(QueueTest, BatchThatDoesNotFitIsRejectedWhole) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b", "c"})).ok());
  auto put = PutNow(*q, Items({"d", "e"}));
  EXPECT_EQ(put.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(put.status()), "QUEUE_FULL");
  EXPECT_EQ(q->Describe().depth, 3);
}

TEST_F(QueueTest, BatchOverCapacityCanNeverFit) {
  auto q = Make("jobs");
  auto put = PutNow(*q, Items({"1", "2", "3", "4", "5"}));
  EXPECT_EQ(Reason(put.status()), "BATCH_TOO_LARGE");
  auto big = Make("big", QueueConfig{.max_item_bytes = 3});
  EXPECT_EQ(Reason(PutNow(*big, Items({"abcd"})).status()), "ITEM_TOO_LARGE");
}

TEST_F(QueueTest, EmptyGetWithoutWaitAnswersNoItems) {
  auto q = Make("jobs");
  auto got = GetNow(*q);
  ASSERT_TRUE(got.ok());
  EXPECT_THAT(*got, SizeIs(0));
}

TEST_F(QueueTest, WaitingGetterIsReleasedByPut) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> answer;
  EXPECT_NE(q->Get({}, Wait(), answer.Callback()), 0u);
  EXPECT_FALSE(answer.value.has_value());
  EXPECT_EQ(q->Describe().consumers_waiting, 1);
  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  ASSERT_TRUE(answer.value.has_value());
  EXPECT_THAT(Payloads(**answer.value), ElementsAre("x"));
  EXPECT_EQ(q->Describe().depth, 0);
}

TEST_F(QueueTest, LongestWaitingGetterIsServedFirst) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> first, second;
  q->Get({}, Wait(), first.Callback());
  q->Get({}, Wait(), second.Callback());
  ASSERT_TRUE(PutNow(*q, Items({"1"})).ok());
  ASSERT_TRUE(first.value.has_value());
  EXPECT_FALSE(second.value.has_value());
  ASSERT_TRUE(PutNow(*q, Items({"2"})).ok());
  EXPECT_THAT(Payloads(**second.value), ElementsAre("2"));
}

TEST_F(QueueTest, FullQueueBlocksPutUntilGet) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3", "4"})).ok());
  Answer<PutResult> put;
  EXPECT_NE(q->Put(Items({"5"}), "", Wait(), put.Callback()), 0u);
  EXPECT_FALSE(put.value.has_value());
  EXPECT_EQ(q->Describe().producers_waiting, 1);
  ASSERT_TRUE(GetNow(*q).ok());
  ASSERT_TRUE(put.value.has_value());
  EXPECT_TRUE((*put.value)->enqueued);
  auto rest = GetNow(*q, 10);
  EXPECT_THAT(Payloads(*rest), ElementsAre("2", "3", "4", "5"));
}

TEST_F(QueueTest, WaitBoundEndsAWaiterWithItsStatus) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> deadline, bound;
  q->Get({}, Wait(absl::Seconds(1)), deadline.Callback());
  q->Get({}, Wait(absl::Seconds(2), absl::OkStatus()), bound.Callback());
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(deadline.value.has_value());
  EXPECT_EQ(deadline.value->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(bound.value.has_value());
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(bound.value.has_value());
  ASSERT_TRUE(bound.value->ok());
  EXPECT_THAT(**bound.value, SizeIs(0));
  EXPECT_EQ(q->Describe().consumers_waiting, 0);
}

TEST_F(QueueTest, CancelledGetterIsNeverServed) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> cancelled, other;
  auto id = q->Get({}, Wait(), cancelled.Callback());
  q->Get({}, Wait(), other.Callback());
  EXPECT_TRUE(q->CancelGet(id));
  EXPECT_FALSE(q->CancelGet(id));
  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  EXPECT_FALSE(cancelled.value.has_value());
  ASSERT_TRUE(other.value.has_value());
  EXPECT_THAT(Payloads(**other.value), ElementsAre("x"));
}

TEST_F(QueueTest, CancelledPutterPutsNothing) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3", "4"})).ok());
  Answer<PutResult> put;
  auto id = q->Put(Items({"5"}), "", Wait(), put.Callback());
  EXPECT_TRUE(q->CancelPut(id));
  ASSERT_TRUE(GetNow(*q).ok());
  EXPECT_FALSE(put.value.has_value());
  EXPECT_EQ(q->Describe().depth, 3);
}

TEST_F(QueueTest, LeaseExpiryRedeliversAtTheHeadWithCountRaised) {
  auto q = Make("jobs", QueueConfig{.visibility_timeout_ms = 1000});
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  ASSERT_THAT(*leased, SizeIs(1));
  EXPECT_FALSE((*leased)[0].receipt.empty());
  EXPECT_EQ(q->Describe().in_flight, 1);
  timers_.Advance(absl::Milliseconds(999));
  EXPECT_EQ(q->Describe().in_flight, 1);
  timers_.Advance(absl::Milliseconds(1));
  EXPECT_EQ(q->Describe().in_flight, 0);
  auto again = GetNow(*q, 10, GetMode::kLease);
  EXPECT_THAT(Payloads(*again), ElementsAre("a", "b"));
  EXPECT_EQ((*again)[0].delivery_count, 2);
  EXPECT_EQ(q->Describe().totals.redelivered, 1);
  // The old receipt names a delivery that ended.
  auto ack = q->Ack({(*leased)[0].receipt});
  EXPECT_EQ(Reason((*ack)[0].status), "DELIVERY_EXPIRED");
}

TEST_F(QueueTest, AckRemovesForGoodAndIsIdempotent) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  const std::string receipt = (*leased)[0].receipt;
  auto ack = q->Ack({receipt, receipt, "nope", "1-999-1"});
  ASSERT_TRUE(ack.ok());
  EXPECT_TRUE((*ack)[0].status.ok());
  EXPECT_TRUE((*ack)[1].status.ok());
  EXPECT_EQ(Reason((*ack)[2].status), "RECEIPT_NOT_FOUND");
  EXPECT_EQ(Reason((*ack)[3].status), "RECEIPT_NOT_FOUND");
  timers_.Advance(absl::Minutes(5));
  EXPECT_EQ(q->Describe().depth, 0);
  EXPECT_EQ(q->Describe().totals.acked, 1);
}

TEST_F(QueueTest, ExtendKeepsTheLease) {
  auto q = Make("jobs", QueueConfig{.visibility_timeout_ms = 1000});
  ASSERT_TRUE(PutNow(*q, Items({"a"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  timers_.Advance(absl::Milliseconds(900));
  auto extended = q->Extend({(*leased)[0].receipt}, absl::Seconds(5));
  EXPECT_TRUE((*extended)[0].status.ok());
  timers_.Advance(absl::Seconds(4));
  EXPECT_EQ(q->Describe().in_flight, 1);
  timers_.Advance(absl::Seconds(1));
  EXPECT_EQ(q->Describe().in_flight, 0);
}

TEST_F(QueueTest, ItemPastMaxDeliveriesGoesToTheDeadLetterQueue) {
  auto q = Make("jobs", QueueConfig{.max_deliveries = 2, .dead_letter_queue = "jobs-dead"});
  ASSERT_TRUE(PutNow(*q, Items({"poison"})).ok());
  for (int i = 0; i < 2; ++i) {
    auto leased = GetNow(*q, 1, GetMode::kLease);
    ASSERT_THAT(*leased, SizeIs(1));
    EXPECT_EQ((*leased)[0].delivery_count, i + 1);
    auto nack = q->Nack({(*leased)[0].receipt}, absl::ZeroDuration(), false);
    EXPECT_TRUE((*nack)[0].status.ok());
  }
  EXPECT_EQ(q->Describe().depth, 0);
  EXPECT_EQ(q->Describe().totals.dead_lettered, 1);
  auto dlq = registry_.Find("jobs-dead");
  ASSERT_TRUE(dlq.ok());
  auto dead = GetNow(**dlq);
  ASSERT_THAT(*dead, SizeIs(1));
  EXPECT_EQ((*dead)[0].item->payload, "poison");
  EXPECT_EQ((*dead)[0].item->source_queue, "jobs");
}

TEST_F(QueueTest, NackWithDelayComesBackAtTheHeadLater) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  ASSERT_TRUE(q->Nack({(*leased)[0].receipt}, absl::Seconds(1), false).ok());
  EXPECT_EQ(q->Describe().delayed, 1);
  timers_.Advance(absl::Seconds(1));
  EXPECT_THAT(Payloads(*GetNow(*q, 10)), ElementsAre("a", "b"));
}

TEST_F(QueueTest, DelayedPutBecomesVisibleAfterItsDelay) {
  auto q = Make("jobs");
  std::vector<PutItem> items = Items({"later"});
  items[0].delay = absl::Seconds(3);
  ASSERT_TRUE(PutNow(*q, std::move(items)).ok());
  EXPECT_THAT(*GetNow(*q), SizeIs(0));
  timers_.Advance(absl::Seconds(3));
  EXPECT_THAT(Payloads(*GetNow(*q)), ElementsAre("later"));
}

TEST_F(QueueTest, CloseFailsPuttersAndDrainsGetters) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3", "4"})).ok());
  Answer<PutResult> put;
  q->Put(Items({"5"}), "", Wait(), put.Callback());
  ASSERT_EQ(*q->Close(), 1);
  EXPECT_EQ(Reason(put.value->status()), "QUEUE_CLOSED");
  EXPECT_EQ(Reason(PutNow(*q, Items({"6"})).status()), "QUEUE_CLOSED");
  EXPECT_THAT(*GetNow(*q, 10), SizeIs(4));
  auto drained = GetNow(*q);
  EXPECT_EQ(drained.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Reason(drained.status()), "QUEUE_DRAINED");
}

TEST_F(QueueTest, CloseWakesWaitingGettersOnceDrained) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  Answer<std::vector<Delivery>> waiting;
  q->Get({}, Wait(), waiting.Callback());
  ASSERT_TRUE(q->Close().ok());
  EXPECT_FALSE(waiting.value.has_value());  // an item is still in flight
  ASSERT_TRUE(q->Ack({(*leased)[0].receipt}).ok());
  ASSERT_TRUE(waiting.value.has_value());
  EXPECT_EQ(Reason(waiting.value->status()), "QUEUE_DRAINED");
}

TEST_F(QueueTest, SessionEndPutsItsLeasesBack) {
  auto q = Make("jobs");
  sessions_.Open("s1");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  Answer<std::vector<Delivery>> got;
  GetOptions options;
  options.mode = GetMode::kLease;
  options.session_id = "s1";
  options.max_items = 2;
  q->Get(options, {}, got.Callback());
  ASSERT_THAT(**got.value, SizeIs(2));
  EXPECT_EQ(q->Describe().in_flight, 2);
  sessions_.End("s1");
  EXPECT_EQ(q->Describe().in_flight, 0);
  EXPECT_THAT(Payloads(*GetNow(*q, 10)), ElementsAre("a", "b"));
  // A session that ended cannot lease.
  Answer<std::vector<Delivery>> late;
  q->Get(options, {}, late.Callback());
  EXPECT_EQ(Reason(late.value->status()), "SESSION_EXPIRED");
}

TEST_F(QueueTest, SessionIdWithoutSessionsIsAPreconditionFailure) {
  QueueRegistry registry(timers_, nullptr, Options());
  auto q = registry.FindOrCreate("jobs");
  Answer<std::vector<Delivery>> got;
  GetOptions options;
  options.mode = GetMode::kLease;
  options.session_id = "s1";
  (*q)->Get(options, {}, got.Callback());
  EXPECT_EQ(got.value->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(got.value->status()), "SESSIONS_UNAVAILABLE");
}

class RecordingConsumer : public StreamConsumer {
 public:
  std::vector<std::string> payloads;
  std::optional<absl::Status> end;

 protected:
  void OnItems(std::vector<Delivery> items) override {
    for (auto& d : items) payloads.push_back(d.item->payload);
  }
  void OnEnd(absl::Status status) override { end = status; }
};

TEST_F(QueueTest, StreamConsumerGetsNoMoreThanItsCredit) {
  auto q = Make("jobs");
  auto consumer = std::make_shared<RecordingConsumer>();
  auto id = q->AddConsumer(consumer, {}, 2);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3"})).ok());
  EXPECT_THAT(consumer->payloads, ElementsAre("1", "2"));
  EXPECT_EQ(q->Describe().depth, 1);
  q->AddCredit(*id, 5);
  EXPECT_THAT(consumer->payloads, ElementsAre("1", "2", "3"));
  ASSERT_TRUE(q->Close().ok());
  ASSERT_TRUE(consumer->end.has_value());
  EXPECT_EQ(Reason(*consumer->end), "QUEUE_DRAINED");
  q->RemoveConsumer(*id);
}

TEST_F(QueueTest, StreamAndUnaryGettersShareItemsOneAtATime) {
  auto q = Make("jobs");
  auto consumer = std::make_shared<RecordingConsumer>();
  auto id = q->AddConsumer(consumer, {}, 10);
  Answer<std::vector<Delivery>> unary;
  GetOptions options;
  options.max_items = 10;
  q->Get(options, Wait(), unary.Callback());
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3", "4"})).ok());
  EXPECT_THAT(consumer->payloads, ElementsAre("1", "3"));
  EXPECT_THAT(Payloads(**unary.value), ElementsAre("2", "4"));
  q->RemoveConsumer(*id);
}

TEST_F(QueueTest, StreamEndReturnsItsLeases) {
  auto q = Make("jobs");
  auto consumer = std::make_shared<RecordingConsumer>();
  GetOptions options;
  options.mode = GetMode::kLease;
  auto id = q->AddConsumer(consumer, options, 10);
  ASSERT_TRUE(PutNow(*q, Items({"1", "2"})).ok());
  EXPECT_EQ(q->Describe().in_flight, 2);
  q->RemoveConsumer(*id);
  q->ReleaseOwner(Queue::StreamOwner(*id));
  EXPECT_EQ(q->Describe().in_flight, 0);
  auto again = GetNow(*q, 10);
  EXPECT_THAT(Payloads(*again), ElementsAre("1", "2"));
  EXPECT_EQ((*again)[0].delivery_count, 2);
}

TEST_F(QueueTest, DeleteEndsEveryWaiter) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> getter;
  q->Get({}, Wait(), getter.Callback());
  auto consumer = std::make_shared<RecordingConsumer>();
  ASSERT_TRUE(q->AddConsumer(consumer, {}, 1).ok());
  ASSERT_TRUE(registry_.Delete("jobs", false).ok());
  EXPECT_EQ(Reason(getter.value->status()), "QUEUE_DELETED");
  EXPECT_EQ(Reason(*consumer->end), "QUEUE_DELETED");
  EXPECT_EQ(Reason(registry_.Find("jobs").status()), "QUEUE_NOT_FOUND");
  EXPECT_EQ(Reason(PutNow(*q, Items({"x"})).status()), "QUEUE_DELETED");
}

TEST_F(QueueTest, DeleteIfEmptyRefusesAQueueWithItems) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  EXPECT_EQ(Reason(registry_.Delete("jobs", true).status()), "QUEUE_NOT_EMPTY");
  EXPECT_EQ(*registry_.Delete("jobs", false), 1);
}

TEST_F(QueueTest, CreateIsIdempotentForTheSameSettingsOnly) {
  ASSERT_TRUE(registry_.Create("q", {}, {}).ok());
  auto again = registry_.Create("q", {}, {});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(Reason(registry_.Create("q", QueueConfig{.max_items = 9}, {}).status()),
            "QUEUE_EXISTS");
  EXPECT_EQ(registry_.Create("r", QueueConfig{.max_items = -1}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.Create("r", QueueConfig{.dead_letter_queue = "r"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(QueueTest, ListPagesInNameOrder) {
  for (const char* name : {"b/2", "a/1", "b/1", "c"}) {
    ASSERT_TRUE(registry_.Create(name, {}, {}).ok());
  }
  auto page = registry_.List("b/", {}, 1, "");
  ASSERT_TRUE(page.ok());
  ASSERT_THAT(page->queues, SizeIs(1));
  EXPECT_EQ(page->queues[0]->name(), "b/1");
  auto next = registry_.List("b/", {}, 1, page->next_page_token);
  EXPECT_EQ(next->queues[0]->name(), "b/2");
  EXPECT_TRUE(next->next_page_token.empty());
  EXPECT_EQ(registry_.List("", {}, 1001, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(QueueTest, DuplicateDedupIdAddsNothing) {
  auto q = Make("jobs");
  auto items = Items({"a"});
  items[0].dedup_id = "d1";
  auto first = PutNow(*q, items);
  auto second = PutNow(*q, items);
  EXPECT_EQ(first->item_ids, second->item_ids);
  EXPECT_THAT(second->duplicate_indexes, ElementsAre(0));
  EXPECT_EQ(q->Describe().depth, 1);
}

// --- request ids on gets and nacks ---

GetOptions WithRequestId(std::string request_id, GetMode mode = GetMode::kTake, int max_items = 2) {
  GetOptions options;
  options.mode = mode;
  options.max_items = max_items;
  options.request_id = std::move(request_id);
  return options;
}

TEST_F(QueueTest, TakeRetryWithTheSameRequestIdGetsTheSameItemsAndTakesNoMore) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b", "c"})).ok());
  Answer<std::vector<Delivery>> first, retry, fresh;
  q->Get(WithRequestId("get-1"), {}, first.Callback());
  EXPECT_THAT(Payloads(**first.value), ElementsAre("a", "b"));
  q->Get(WithRequestId("get-1"), {}, retry.Callback());
  EXPECT_THAT(Payloads(**retry.value), ElementsAre("a", "b"));
  EXPECT_EQ((**retry.value)[0].item->id, (**first.value)[0].item->id);
  EXPECT_EQ(q->Describe().depth, 1);  // "c" is still there
  q->Get(WithRequestId("get-2"), {}, fresh.Callback());
  EXPECT_THAT(Payloads(**fresh.value), ElementsAre("c"));
}

TEST_F(QueueTest, LeaseRetryReturnsOnlyDeliveriesStillLeased) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b", "c"})).ok());
  Answer<std::vector<Delivery>> first, retry;
  q->Get(WithRequestId("lease-1", GetMode::kLease), {}, first.Callback());
  ASSERT_THAT(**first.value, SizeIs(2));
  ASSERT_TRUE(q->Ack({(**first.value)[0].receipt}).ok());
  q->Get(WithRequestId("lease-1", GetMode::kLease), {}, retry.Callback());
  ASSERT_THAT(**retry.value, SizeIs(1));
  EXPECT_EQ((**retry.value)[0].receipt, (**first.value)[1].receipt);
  EXPECT_EQ(q->Describe().in_flight, 1);
  EXPECT_EQ(q->Describe().depth, 1);
}

TEST_F(QueueTest, AGetsRequestIdIsNeverReplayedToAnotherSession) {
  auto q = Make("jobs");
  sessions_.Open("s1");
  sessions_.Open("s2");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  GetOptions mine = WithRequestId("same", GetMode::kLease, 1);
  mine.session_id = "s1";
  GetOptions theirs = mine;
  theirs.session_id = "s2";
  Answer<std::vector<Delivery>> first, other;
  q->Get(mine, {}, first.Callback());
  q->Get(theirs, {}, other.Callback());
  EXPECT_THAT(Payloads(**first.value), ElementsAre("a"));
  EXPECT_THAT(Payloads(**other.value), ElementsAre("b"));  // its own get, not s1's receipt
  EXPECT_NE((**other.value)[0].receipt, (**first.value)[0].receipt);
}

TEST_F(QueueTest, AGetThatTookNothingIsNotRemembered) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> empty, later;
  q->Get(WithRequestId("early"), {}, empty.Callback());
  EXPECT_THAT(**empty.value, SizeIs(0));
  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  q->Get(WithRequestId("early"), {}, later.Callback());
  EXPECT_THAT(Payloads(**later.value), ElementsAre("x"));
}

TEST_F(QueueTest, RetryOfAWaitingGetTakesOverItsPlaceInLine) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> waiting, behind, retry, late;
  auto first_id = q->Get(WithRequestId("w", GetMode::kTake, 1), Wait(), waiting.Callback());
  q->Get(WithRequestId("other", GetMode::kTake, 1), Wait(), behind.Callback());
  q->Get(WithRequestId("w", GetMode::kTake, 1), Wait(), retry.Callback());
  ASSERT_TRUE(waiting.value.has_value());
  EXPECT_EQ(waiting.value->status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(Reason(waiting.value->status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(retry.value.has_value());
  EXPECT_EQ(q->Describe().consumers_waiting, 2);
  EXPECT_FALSE(q->CancelGet(first_id));  // the first call's id no longer withdraws the wait
  EXPECT_EQ(q->Describe().consumers_waiting, 2);

  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  ASSERT_TRUE(retry.value.has_value());  // first in line, ahead of the get that came later
  EXPECT_THAT(Payloads(**retry.value), ElementsAre("x"));
  EXPECT_FALSE(behind.value.has_value());
  q->Get(WithRequestId("w", GetMode::kTake, 1), {}, late.Callback());
  EXPECT_THAT(Payloads(**late.value), ElementsAre("x"));  // replayed, not taken again
  EXPECT_EQ(q->Describe().depth, 0);
}

TEST_F(QueueTest, ARetryThatTakesOverAGetBringsItsOwnBound) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> waiting, retry;
  q->Get(WithRequestId("w"), Wait(absl::Seconds(10), absl::OkStatus()), waiting.Callback());
  timers_.Advance(absl::Milliseconds(500));
  q->Get(WithRequestId("w"), Wait(absl::Seconds(1), absl::OkStatus()), retry.Callback());
  ASSERT_TRUE(waiting.value.has_value());
  timers_.Advance(absl::Milliseconds(999));
  EXPECT_FALSE(retry.value.has_value());
  timers_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(retry.value.has_value());
  ASSERT_TRUE(retry.value->ok()) << retry.value->status();
  EXPECT_THAT(**retry.value, SizeIs(0));
  EXPECT_EQ(q->Describe().consumers_waiting, 0);
}

TEST_F(QueueTest, RetryAfterACancelledOrTimedOutGetActsAfresh) {
  auto q = Make("jobs");
  Answer<std::vector<Delivery>> cancelled, timed_out, retry;
  auto id = q->Get(WithRequestId("c"), Wait(), cancelled.Callback());
  ASSERT_TRUE(q->CancelGet(id));
  q->Get(WithRequestId("t"), Wait(absl::Seconds(1), absl::OkStatus()), timed_out.Callback());
  timers_.Advance(absl::Seconds(1));
  ASSERT_TRUE(timed_out.value.has_value());
  ASSERT_TRUE(PutNow(*q, Items({"x"})).ok());
  q->Get(WithRequestId("c"), {}, retry.Callback());
  EXPECT_THAT(Payloads(**retry.value), ElementsAre("x"));  // the cancelled wait left nothing
  Answer<std::vector<Delivery>> t_retry;
  q->Get(WithRequestId("t"), {}, t_retry.Callback());
  EXPECT_TRUE(t_retry.value->ok()) << t_retry.value->status();
}

TEST_F(QueueTest, ForgetGetLetsARetryTakeAfreshAfterTheItemsWentBack) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a"})).ok());
  Answer<std::vector<Delivery>> first, retry;
  q->Get(WithRequestId("lost"), {}, first.Callback());
  q->ForgetGet(WithRequestId("lost"));
  q->Requeue(std::move(**first.value));
  q->Get(WithRequestId("lost"), {}, retry.Callback());
  EXPECT_THAT(Payloads(**retry.value), ElementsAre("a"));
  EXPECT_EQ(q->Describe().depth, 0);  // taken once, not twice
}

TEST_F(QueueTest, NackRetryAnswersTheOriginalOutcomes) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a"})).ok());
  auto leased = GetNow(*q, 1, GetMode::kLease);
  const std::string receipt = (*leased)[0].receipt;
  auto first = q->Nack({receipt}, absl::ZeroDuration(), false, "nack-1");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE((*first)[0].status.ok());
  auto retry = q->Nack({receipt}, absl::ZeroDuration(), false, "nack-1");
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE((*retry)[0].status.ok());
  EXPECT_EQ(q->Describe().depth, 1);
  auto other = q->Nack({receipt}, absl::ZeroDuration(), false);
  EXPECT_EQ(Reason((*other)[0].status), "DELIVERY_EXPIRED");
}

TEST_F(QueueTest, RememberedGetsAreForgottenAfterTenMinutes) {
  auto q = Make("jobs");
  ASSERT_TRUE(PutNow(*q, Items({"a", "b"})).ok());
  Answer<std::vector<Delivery>> first, later;
  q->Get(WithRequestId("old", GetMode::kTake, 1), {}, first.Callback());
  timers_.Advance(absl::Minutes(10));
  q->Get(WithRequestId("old", GetMode::kTake, 1), {}, later.Callback());
  EXPECT_THAT(Payloads(**later.value), ElementsAre("b"));
}

TEST_F(QueueTest, RetryOfAWaitingPutTakesOverItsWaitAndPutsOnce) {
  auto q = Make("jobs");  // max_items 4
  ASSERT_TRUE(PutNow(*q, Items({"1", "2", "3", "4"})).ok());
  Answer<PutResult> waiting, retry, late;
  auto first_id = q->Put(Items({"5"}), "put-5", Wait(), waiting.Callback());
  q->Put(Items({"5"}), "put-5", Wait(), retry.Callback());
  ASSERT_TRUE(waiting.value.has_value());
  EXPECT_EQ(Reason(waiting.value->status()), "REQUEST_SUPERSEDED");
  EXPECT_FALSE(q->CancelPut(first_id));
  EXPECT_EQ(q->Describe().producers_waiting, 1);
  ASSERT_TRUE(GetNow(*q).ok());  // room for one
  ASSERT_TRUE(retry.value.has_value());
  ASSERT_TRUE(retry.value->ok()) << retry.value->status();
  q->Put(Items({"5"}), "put-5", Wait(), late.Callback());
  ASSERT_TRUE(late.value.has_value() && late.value->ok());
  EXPECT_EQ((*late.value)->item_ids, (*retry.value)->item_ids);
  EXPECT_EQ(q->Describe().depth, 4);
}

TEST_F(QueueTest, ManyProducersAndConsumersLoseAndDuplicateNothing) {
  RegistryOptions options;
  options.defaults.max_items = 64;
  options.defaults.visibility_timeout_ms = 43200000;  // no redelivery in this test
  testing::ManualTimerService timers;
  QueueRegistry registry(timers, nullptr, options);
  auto q = *registry.FindOrCreate("stress");
  constexpr int kProducers = 4, kConsumers = 4, kPerProducer = 5000;
  std::atomic<int> received{0};
  absl::Mutex mu;
  std::set<std::string> seen;
  int duplicates = 0;
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        absl::Notification done;
        bool ok = false;
        q->Put(Items({absl::StrCat(p, ":", i)}), "",
               Queue::WaitBound{true, absl::InfiniteFuture(), absl::OkStatus()},
               [&](absl::StatusOr<PutResult> r) {
                 ok = r.ok() && r->enqueued;
                 done.Notify();
               });
        ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
        ASSERT_TRUE(ok);
      }
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      GetOptions get;
      get.max_items = 1 + c;
      get.mode = c % 2 == 0 ? GetMode::kTake : GetMode::kLease;
      while (received.load() < kProducers * kPerProducer) {
        absl::Notification done;
        std::vector<Delivery> got;
        q->Get(get, Queue::WaitBound{true, timers.Now() + absl::Milliseconds(50), absl::OkStatus()},
               [&](absl::StatusOr<std::vector<Delivery>> r) {
                 if (r.ok()) got = std::move(*r);
                 done.Notify();
               });
        if (!done.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
          timers.Advance(absl::Milliseconds(50));  // only the wait bound depends on time
          ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
        }
        std::vector<std::string> receipts;
        absl::MutexLock lock(&mu);
        for (auto& d : got) {
          if (!seen.insert(d.item->payload).second) ++duplicates;
          if (!d.receipt.empty()) receipts.push_back(d.receipt);
        }
        received += static_cast<int>(got.size());
        if (!receipts.empty()) {
          auto acked = q->Ack(receipts);
          for (auto& r : *acked) EXPECT_TRUE(r.status.ok()) << r.status;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kProducers * kPerProducer));
  EXPECT_EQ(q->Describe().depth, 0);
  EXPECT_EQ(q->Describe().in_flight, 0);
  EXPECT_EQ(registry.GetStats().waiters, 0);
}

}  // namespace
}  // namespace spindle::queue
