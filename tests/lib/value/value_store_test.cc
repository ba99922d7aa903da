// The value store: types, versions, conditional writes, add, CAS, elements, TTL, sessions, list,
// watches with history and compaction, and concurrent writers.
#include "spindle/value/value_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"
#include "tests/fakes/manual_timer_service.h"
#include "tests/lib/queue/fake_session_hooks.h"

namespace spindle::value {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

class ValueStoreTest : public ::testing::Test {
 protected:
  ValueStoreTest() : store_(timers_, &sessions_) {}

  absl::StatusOr<SetResult> Set(const std::string& name, Data data) {
    SetRequest request;
    request.name = name;
    request.data = std::move(data);
    return store_.Set(std::move(request));
  }
  Data Read(const std::string& name) {
    auto got = store_.Get(name, std::nullopt, false);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got->entry.data : Data{};
  }

  testing::ManualTimerService timers_;
  testing::FakeSessionHooks sessions_;
  ValueStore store_;
};

TEST_F(ValueStoreTest, SetThenGetKeepsTypeAndData) {
  ASSERT_TRUE(Set("pi", 3.5).ok());
  ASSERT_TRUE(Set("name", std::string("spindle")).ok());
  ASSERT_TRUE(Set("arr", std::vector<int64_t>{1, 2, 3}).ok());
  EXPECT_EQ(std::get<double>(Read("pi")), 3.5);
  EXPECT_EQ(std::get<std::string>(Read("name")), "spindle");
  auto arr = store_.Get("arr", std::nullopt, false);
  EXPECT_EQ(arr->entry.type, ValueType::kInt64Array);
  EXPECT_EQ(arr->entry.length, 3);
  EXPECT_EQ(arr->entry.size_bytes, 24);
  EXPECT_EQ(Reason(store_.Get("nope", std::nullopt, false).status()), "VALUE_NOT_FOUND");
}

TEST_F(ValueStoreTest, VersionsAreStoreWideAndGrowOnEveryChange) {
  auto a = Set("a", int64_t{1});
  auto b = Set("b", int64_t{1});
  auto a2 = Set("a", int64_t{2});
  EXPECT_EQ(a->entry.version, 1);
  EXPECT_EQ(b->entry.version, 2);
  EXPECT_EQ(a2->entry.version, 3);
  EXPECT_EQ(a2->entry.create_version, 1);
  EXPECT_EQ(a2->prev_version, 1);
  EXPECT_EQ(store_.revision(), 3);
}

TEST_F(ValueStoreTest, ConditionalSetsCheckVersionAndAbsence) {
  ASSERT_TRUE(Set("a", int64_t{1}).ok());
  SetRequest request;
  request.name = "a";
  request.data = int64_t{2};
  request.only_if_version = 7;
  EXPECT_EQ(Reason(store_.Set(request).status()), "VERSION_MISMATCH");
  request.only_if_version = 1;
  EXPECT_TRUE(store_.Set(request).ok());
  request.only_if_version = 0;
  request.only_if_absent = true;
  auto exists = store_.Set(request);
  EXPECT_EQ(exists.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Reason(exists.status()), "VALUE_EXISTS");
}

TEST_F(ValueStoreTest, AGuardThatRefusesStopsEveryKindOfWrite) {
  ASSERT_TRUE(Set("n", int64_t{1}).ok());
  bool allow = false;
  int calls = 0;
  const WriteGuard guard = [&] {
    ++calls;
    return allow ? absl::OkStatus() : absl::AbortedError("fence: stale");
  };
  SetRequest set;
  set.name = "n";
  set.data = int64_t{2};
  set.guard = guard;
  EXPECT_TRUE(absl::IsAborted(store_.Set(set).status()));
  EXPECT_TRUE(absl::IsAborted(
      store_.Add("n", std::nullopt, int64_t{5}, absl::ZeroDuration(), "", guard).status()));
  EXPECT_TRUE(absl::IsAborted(
      store_.CompareAndSwap("n", std::nullopt, Data{int64_t{1}}, Data{int64_t{3}}, guard)
          .status()));
  EXPECT_TRUE(absl::IsAborted(store_.Delete("n", std::nullopt, 0, guard).status()));
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(std::get<int64_t>(Read("n")), 1);  // Nothing applied.

  allow = true;
  EXPECT_TRUE(store_.Set(set).ok());
  EXPECT_EQ(std::get<int64_t>(Read("n")), 2);
  EXPECT_TRUE(store_.Delete("n", std::nullopt, 0, guard).ok());
}

TEST_F(ValueStoreTest, AddCreatesAndSums) {
  auto first = store_.Add("n", std::nullopt, int64_t{5}, absl::ZeroDuration(), "");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->created);
  auto second = store_.Add("n", std::nullopt, int64_t{-2}, absl::ZeroDuration(), "");
  EXPECT_EQ(std::get<int64_t>(second->result), 3);
  EXPECT_FALSE(second->created);
  // int64 delta on a double is fine; double delta on an int64 is not.
  ASSERT_TRUE(Set("d", 1.5).ok());
  EXPECT_EQ(std::get<double>(store_.Add("d", std::nullopt, int64_t{1}, {}, "")->result), 2.5);
  EXPECT_EQ(Reason(store_.Add("n", std::nullopt, 1.0, {}, "").status()), "TYPE_MISMATCH");
}

TEST_F(ValueStoreTest, CopiesOfOneRequestArrivingTogetherAddOnce) {
  // Every thread sends the same 50 requests at once; each adds 1 exactly once.
  constexpr int kThreads = 4;
  constexpr int kRequests = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this] {
      for (int r = 0; r < kRequests; ++r) {
        auto added = store_.Add("n", std::nullopt, int64_t{1}, {}, absl::StrCat("req-", r));
        EXPECT_TRUE(added.ok()) << added.status();
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  auto last = store_.Add("n", std::nullopt, int64_t{0}, {}, "");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(std::get<int64_t>(last->result), kRequests);
  // A retry answers the original result, not the current value.
  EXPECT_EQ(std::get<int64_t>(store_.Add("n", std::nullopt, int64_t{1}, {}, "req-0")->result), 1);
}

TEST_F(ValueStoreTest, AddOnAStringIsATypeMismatch) {
  ASSERT_TRUE(Set("s", std::string("x")).ok());
  auto added = store_.Add("s", std::nullopt, int64_t{1}, {}, "");
  EXPECT_EQ(added.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Reason(added.status()), "TYPE_MISMATCH");
  EXPECT_THAT(std::string(added.status().message()), ::testing::HasSubstr("'s'"));
}

TEST_F(ValueStoreTest, AddThatOverflowsChangesNothing) {
  ASSERT_TRUE(Set("n", std::numeric_limits<int64_t>::max()).ok());
  const int64_t version = store_.revision();
  auto added = store_.Add("n", std::nullopt, int64_t{1}, {}, "");
  EXPECT_EQ(added.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Reason(added.status()), "INT64_OVERFLOW");
  EXPECT_EQ(store_.revision(), version);
}

TEST_F(ValueStoreTest, AddWithARequestIdIsAppliedOnce) {
  ASSERT_TRUE(store_.Add("n", std::nullopt, int64_t{1}, {}, "r1").ok());
  auto retry = store_.Add("n", std::nullopt, int64_t{1}, {}, "r1");
  EXPECT_EQ(std::get<int64_t>(retry->result), 1);
  EXPECT_EQ(std::get<int64_t>(Read("n")), 1);
}

TEST_F(ValueStoreTest, CompareAndSwapByValueVersionAndAbsence) {
  auto swapped = store_.CompareAndSwap("c", std::nullopt, ExpectAbsent{}, int64_t{1});
  EXPECT_TRUE(swapped->swapped);
  auto conflict = store_.CompareAndSwap("c", std::nullopt, Data(int64_t{7}), int64_t{2});
  EXPECT_FALSE(conflict->swapped);
  ASSERT_TRUE(conflict->current.has_value());
  EXPECT_EQ(std::get<int64_t>(*conflict->current->data), 1);
  // int64 1 is not double 1.0.
  EXPECT_FALSE(store_.CompareAndSwap("c", std::nullopt, Data(1.0), int64_t{2})->swapped);
  EXPECT_TRUE(store_.CompareAndSwap("c", std::nullopt, Data(int64_t{1}), int64_t{2})->swapped);
  const int64_t version = store_.Get("c", std::nullopt, false)->entry.version;
  EXPECT_TRUE(store_.CompareAndSwap("c", std::nullopt, version, int64_t{3})->swapped);
  EXPECT_FALSE(store_.CompareAndSwap("c", std::nullopt, version, int64_t{4})->swapped);
}

TEST_F(ValueStoreTest, ArrayElementsByIndex) {
  ASSERT_TRUE(Set("arr", std::vector<double>{1, 2, 3}).ok());
  auto last = store_.Get("arr", Element(int64_t{-1}), false);
  EXPECT_EQ(std::get<double>(*last->element), 3);
  SetRequest request;
  request.name = "arr";
  request.element = Element(int64_t{0});
  request.data = int64_t{9};  // converted into the double array
  ASSERT_TRUE(store_.Set(request).ok());
  EXPECT_EQ(std::get<std::vector<double>>(Read("arr"))[0], 9.0);
  EXPECT_EQ(Reason(store_.Get("arr", Element(int64_t{3}), false).status()), "INDEX_OUT_OF_RANGE");
  EXPECT_EQ(Reason(store_.Get("arr", Element(std::string("k")), false).status()), "TYPE_MISMATCH");
  auto added = store_.Add("arr", Element(int64_t{1}), 0.5, {}, "");
  EXPECT_EQ(std::get<double>(added->result), 2.5);
  EXPECT_EQ(store_.Delete("arr", Element(int64_t{0}), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ValueStoreTest, MapEntriesByKey) {
  SetRequest request;
  request.name = "m";
  request.element = Element(std::string("a"));
  request.data = std::string("x");
  ASSERT_TRUE(store_.Set(request).ok());  // creates the map
  ASSERT_TRUE(store_.Add("m", Element(std::string("hits")), int64_t{2}, {}, "")->created);
  auto keys = store_.Get("m", std::nullopt, true);
  EXPECT_THAT(keys->keys, ElementsAre("a", "hits"));
  EXPECT_EQ(Reason(store_.Get("m", Element(std::string("b")), false).status()), "KEY_NOT_FOUND");
  EXPECT_EQ(Reason(store_.Add("m", Element(std::string("a")), int64_t{1}, {}, "").status()),
            "TYPE_MISMATCH");
  ASSERT_TRUE(store_.Delete("m", Element(std::string("a")), 0).ok());
  EXPECT_THAT(store_.Get("m", std::nullopt, true)->keys, ElementsAre("hits"));
  EXPECT_TRUE(
      store_
          .CompareAndSwap("m", Element(std::string("new")), ExpectAbsent{}, Data(std::string("v")))
          ->swapped);
}

TEST_F(ValueStoreTest, TtlExpiresTheValue) {
  SetRequest request;
  request.name = "t";
  request.data = int64_t{1};
  request.ttl = absl::Seconds(2);
  ASSERT_TRUE(store_.Set(request).ok());
  timers_.Advance(absl::Seconds(1));
  EXPECT_TRUE(store_.Get("t", std::nullopt, false).ok());
  timers_.Advance(absl::Seconds(1));
  EXPECT_EQ(Reason(store_.Get("t", std::nullopt, false).status()), "VALUE_NOT_FOUND");
  auto watch = store_.StartWatch("t", false, 1, false);
  auto poll = store_.Poll(*watch->watch, 10, [] {});
  ASSERT_THAT(poll.events, SizeIs(2));
  EXPECT_EQ(poll.events[1].kind, EventKind::kExpire);
  store_.StopWatch(*watch->watch);
}

TEST_F(ValueStoreTest, OverwriteWithoutTtlRemovesIt) {
  SetRequest request;
  request.name = "t";
  request.data = int64_t{1};
  request.ttl = absl::Seconds(1);
  ASSERT_TRUE(store_.Set(request).ok());
  ASSERT_TRUE(Set("t", int64_t{2}).ok());
  timers_.Advance(absl::Seconds(5));
  EXPECT_TRUE(store_.Get("t", std::nullopt, false).ok());
}

TEST_F(ValueStoreTest, SessionBoundValueGoesWithTheSession) {
  sessions_.Open("s");
  SetRequest request;
  request.name = "eph";
  request.data = int64_t{1};
  request.session_id = "s";
  ASSERT_TRUE(store_.Set(request).ok());
  sessions_.End("s");
  EXPECT_EQ(Reason(store_.Get("eph", std::nullopt, false).status()), "VALUE_NOT_FOUND");
}

TEST_F(ValueStoreTest, DeleteChecksVersion) {
  ASSERT_TRUE(Set("a", int64_t{1}).ok());
  EXPECT_EQ(Reason(store_.Delete("a", std::nullopt, 9).status()), "VERSION_MISMATCH");
  auto deleted = store_.Delete("a", std::nullopt, 1);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->prev_version, 1);
  EXPECT_EQ(deleted->version, 2);
  EXPECT_EQ(Reason(store_.Delete("a", std::nullopt, 0).status()), "VALUE_NOT_FOUND");
}

TEST_F(ValueStoreTest, ListPagesByPrefixAndType) {
  ASSERT_TRUE(Set("cfg/b", int64_t{1}).ok());
  ASSERT_TRUE(Set("cfg/a", std::string("x")).ok());
  ASSERT_TRUE(Set("cfg/c", int64_t{3}).ok());
  ASSERT_TRUE(Set("other", int64_t{3}).ok());
  auto page = store_.List("cfg/", 0, 2, "", false);
  ASSERT_THAT(page->entries, SizeIs(2));
  EXPECT_EQ(page->entries[0].name, "cfg/a");
  EXPECT_EQ(page->current_version, 4);
  auto next = store_.List("cfg/", 0, 2, page->next_page_token, false);
  ASSERT_THAT(next->entries, SizeIs(1));
  EXPECT_EQ(next->entries[0].name, "cfg/c");
  auto ints = store_.List("cfg/", static_cast<int>(ValueType::kInt64), 10, "", true);
  EXPECT_THAT(ints->entries, SizeIs(2));
  EXPECT_EQ(ints->entries[0].data, nullptr);
}

TEST_F(ValueStoreTest, WatchSeesEveryChangeInOrder) {
  auto start = store_.StartWatch("w/", true, 0, false);
  ASSERT_TRUE(start.ok());
  std::atomic<int> notified{0};
  auto poll = store_.Poll(*start->watch, 100, [&] { ++notified; });
  EXPECT_THAT(poll.events, SizeIs(0));
  ASSERT_TRUE(Set("w/a", int64_t{1}).ok());
  ASSERT_TRUE(Set("other", int64_t{1}).ok());
  ASSERT_TRUE(store_.Add("w/a", std::nullopt, int64_t{1}, {}, "").ok());
  ASSERT_TRUE(store_.Delete("w/a", std::nullopt, 0).ok());
  EXPECT_EQ(notified.load(), 1);
  poll = store_.Poll(*start->watch, 100, [&] { ++notified; });
  ASSERT_THAT(poll.events, SizeIs(3));
  EXPECT_EQ(poll.events[0].kind, EventKind::kPut);
  EXPECT_EQ(poll.events[0].version, 1);
  EXPECT_EQ(std::get<int64_t>(*poll.events[1].entry.data), 2);
  EXPECT_EQ(poll.events[1].prev_version, 1);
  EXPECT_EQ(poll.events[2].kind, EventKind::kDelete);
  EXPECT_EQ(poll.progress_version, 4);
  store_.StopWatch(*start->watch);
}

TEST_F(ValueStoreTest, WatchFromAnOldVersionReplaysHistory) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Set("k", int64_t{i}).ok());
  }
  auto start = store_.StartWatch("k", false, 3, false);
  auto poll = store_.Poll(*start->watch, 100, [] {});
  ASSERT_THAT(poll.events, SizeIs(3));
  EXPECT_EQ(poll.events[0].version, 3);
  store_.StopWatch(*start->watch);
}

TEST_F(ValueStoreTest, WatchBehindTheHistoryIsCompacted) {
  StoreOptions options;
  options.history_events = 3;
  options.history_retention = absl::ZeroDuration();
  ValueStore store(timers_, nullptr, options);
  auto start = store.StartWatch("k", false, 0, false);
  for (int i = 0; i < 10; ++i) {
    SetRequest request;
    request.name = "k";
    request.data = int64_t{i};
    timers_.Advance(absl::Milliseconds(1));
    ASSERT_TRUE(store.Set(request).ok());
  }
  auto poll = store.Poll(*start->watch, 100, [] {});
  ASSERT_TRUE(poll.compacted.has_value());
  EXPECT_FALSE(poll.compacted->too_slow);  // never polled before: asked for a trimmed version
  EXPECT_EQ(poll.compacted->lost_from_version, 1);
  EXPECT_EQ(poll.compacted->current_version, 10);
  store.StopWatch(*start->watch);
  auto old = store.StartWatch("k", false, 2, false);
  EXPECT_TRUE(store.Poll(*old->watch, 100, [] {}).compacted.has_value());
  store.StopWatch(*old->watch);
}

TEST_F(ValueStoreTest, InitialStateIsAConsistentCut) {
  ASSERT_TRUE(Set("p/b", int64_t{2}).ok());
  ASSERT_TRUE(Set("p/a", int64_t{1}).ok());
  auto start = store_.StartWatch("p/", true, 0, true);
  ASSERT_THAT(start->initial, SizeIs(2));
  EXPECT_EQ(start->initial[0].name, "p/a");
  EXPECT_EQ(start->initial_version, 2);
  ASSERT_TRUE(Set("p/c", int64_t{3}).ok());
  auto poll = store_.Poll(*start->watch, 10, [] {});
  ASSERT_THAT(poll.events, SizeIs(1));
  EXPECT_EQ(poll.events[0].version, 3);
  store_.StopWatch(*start->watch);
}

TEST_F(ValueStoreTest, ConcurrentAddsSumExactlyAndWatchSeesEach) {
  auto start = store_.StartWatch("counter", false, 0, false);
  constexpr int kThreads = 8, kAdds = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kAdds; ++i) {
        ASSERT_TRUE(store_.Add("counter", std::nullopt, int64_t{1}, {}, "").ok());
        if (i % 100 == 0) {
          ASSERT_TRUE(store_.Add(absl::StrCat("other/", i), std::nullopt, int64_t{1}, {}, "").ok());
        }
      }
    });
  }
  // A reader polling concurrently sees versions strictly increasing and values 1..N in order.
  int64_t last_value = 0, last_version = 0, events = 0;
  while (events < kThreads * kAdds) {
    auto poll = store_.Poll(*start->watch, 1000, [] {});
    for (const auto& event : poll.events) {
      ASSERT_GT(event.version, last_version);
      last_version = event.version;
      int64_t v = std::get<int64_t>(*event.entry.data);
      ASSERT_EQ(v, last_value + 1);
      last_value = v;
      ++events;
    }
    ASSERT_FALSE(poll.compacted.has_value());
    if (poll.events.empty()) std::this_thread::yield();
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::get<int64_t>(Read("counter")), kThreads * kAdds);
  store_.StopWatch(*start->watch);
  EXPECT_EQ(store_.GetStats().watchers, 0);
}

}  // namespace
}  // namespace spindle::value
