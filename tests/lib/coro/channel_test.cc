// Channel<T>: FIFO delivery, back-pressure, close semantics and cancellation.
#include "spindle/coro/channel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "spindle/common/status.h"
#include "spindle/coro/executor.h"
#include "spindle/coro/latch.h"
#include "spindle/coro/sync_wait.h"
#include "spindle/coro/task_scope.h"
#include "tests/lib/coro/test_util.h"

namespace spindle::coro {
namespace {

using ::spindle::coro::testing::IsOk;
using ::spindle::coro::testing::MakeExecutor;
using ::spindle::coro::testing::StatusIs;
using ::spindle::coro::testing::WaitUntil;
using ::testing::ElementsAre;

Task<absl::Status> Send(Channel<int>* channel, int value, CancellationToken token) {
  co_return co_await channel->Send(value, std::move(token));
}

Task<absl::StatusOr<int>> Receive(Channel<int>* channel, CancellationToken token) {
  co_return co_await channel->Receive(std::move(token));
}

Task<absl::Status> AwaitLatch(Latch* latch) { co_return co_await latch->Wait(CancellationToken()); }

Task<void> SendIntoLatch(Channel<int>* channel, int value, CancellationToken token,
                         std::atomic<int>* sent, Latch* done) {
  absl::Status status = co_await channel->Send(value, std::move(token));
  if (status.ok()) {
    sent->fetch_add(1);
  }
  done->CountDown();
}

// Receives until the channel is closed and drained; records what it got.
Task<void> Drain(Channel<int>* channel, std::mutex* mu, std::vector<int>* received,
                 absl::Status* end) {
  for (;;) {
    absl::StatusOr<int> value = co_await channel->Receive(CancellationToken());
    if (!value.ok()) {
      *end = value.status();
      co_return;
    }
    std::lock_guard<std::mutex> lock(*mu);
    received->push_back(*value);
  }
}

Task<void> Produce(Channel<int>* channel, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    absl::Status status = co_await channel->Send(i, CancellationToken());
    if (!status.ok()) {
      co_return;
    }
  }
}

Task<void> ProduceAndConsume(Executor* executor, Channel<int>* channel, int producers,
                             int per_producer, int consumers, std::mutex* mu,
                             std::vector<int>* received) {
  co_await executor->Schedule();
  TaskScope producing(*executor);
  TaskScope consuming(*executor);
  std::vector<absl::Status> ends(static_cast<size_t>(consumers));
  for (int c = 0; c < consumers; ++c) {
    consuming.Spawn(Drain(channel, mu, received, &ends[static_cast<size_t>(c)]));
  }
  for (int p = 0; p < producers; ++p) {
    producing.Spawn(Produce(channel, p * per_producer, per_producer));
  }
  co_await producing.Join();
  channel->Close();
  co_await consuming.Join();
}

TEST(ChannelTest, DeliversInFifoOrder) {
  Channel<int> channel(8);
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(SyncWait(Send(&channel, i, CancellationToken())), IsOk());
  }
  EXPECT_EQ(channel.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<int> value = SyncWait(Receive(&channel, CancellationToken()));
    ASSERT_THAT(value, IsOk());
    EXPECT_EQ(*value, i);
  }
}

TEST(ChannelTest, SenderWaitsWhileFullAndItsValueKeepsItsPlace) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(1);
  ASSERT_THAT(SyncWait(Send(&channel, 1, CancellationToken())), IsOk());
  std::atomic<int> sent{0};
  Latch done(1);
  executor->Spawn(SendIntoLatch(&channel, 2, CancellationToken(), &sent, &done));
  WaitUntil([&] { return channel.senders_waiting() == 1; });
  EXPECT_EQ(channel.size(), 1u);
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 1);  // Frees a slot for 2.
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(sent.load(), 1);
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 2);
}

TEST(ChannelTest, ReceiverWaitsWhileEmpty) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(4);
  std::thread sender([&] {
    WaitUntil([&] { return channel.receivers_waiting() == 1; });
    EXPECT_THAT(SyncWait(Send(&channel, 7, CancellationToken())), IsOk());
  });
  absl::StatusOr<int> value = SyncWait(Receive(&channel, CancellationToken()));
  sender.join();
  ASSERT_THAT(value, IsOk());
  EXPECT_EQ(*value, 7);
}

TEST(ChannelTest, ReceiversDrainThenGetOutOfRangeAfterClose) {
  Channel<int> channel(4);
  ASSERT_THAT(SyncWait(Send(&channel, 1, CancellationToken())), IsOk());
  ASSERT_THAT(SyncWait(Send(&channel, 2, CancellationToken())), IsOk());
  channel.Close();
  channel.Close();  // Idempotent.
  EXPECT_TRUE(channel.closed());
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 1);
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 2);
  absl::StatusOr<int> end = SyncWait(Receive(&channel, CancellationToken()));
  EXPECT_THAT(end, StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(spindle::Reason(end.status()), "CHANNEL_CLOSED");
}

TEST(ChannelTest, SendOnAClosedChannelFailsWithFailedPrecondition) {
  Channel<int> channel(4);
  channel.Close();
  absl::Status status = SyncWait(Send(&channel, 1, CancellationToken()));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(spindle::Reason(status), "CHANNEL_CLOSED");
  int value = 1;
  EXPECT_THAT(channel.TrySend(std::move(value)), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(channel.size(), 0u);
}

TEST(ChannelTest, CloseWakesWaitingSendersAndReceivers) {
  auto executor = MakeExecutor(2);
  Channel<int> full(1);
  ASSERT_THAT(SyncWait(Send(&full, 1, CancellationToken())), IsOk());
  Channel<int> empty(1);
  std::thread closer([&] {
    WaitUntil([&] { return full.senders_waiting() == 1 && empty.receivers_waiting() == 1; });
    full.Close();
    empty.Close();
  });
  std::atomic<int> sent{0};
  Latch done(1);
  executor->Spawn(SendIntoLatch(&full, 2, CancellationToken(), &sent, &done));
  absl::StatusOr<int> received = SyncWait(Receive(&empty, CancellationToken()));
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  closer.join();
  EXPECT_THAT(received, StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_EQ(sent.load(), 0);  // The blocked sender's value was not accepted...
  EXPECT_EQ(*SyncWait(Receive(&full, CancellationToken())), 1);  // ...what was accepted stays.
  EXPECT_THAT(SyncWait(Receive(&full, CancellationToken())),
              StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(ChannelTest, RendezvousChannelHandsValuesOverDirectly) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(0);
  int value = 1;
  EXPECT_THAT(channel.TrySend(std::move(value)), StatusIs(absl::StatusCode::kResourceExhausted));
  std::atomic<int> sent{0};
  Latch done(1);
  executor->Spawn(SendIntoLatch(&channel, 42, CancellationToken(), &sent, &done));
  absl::StatusOr<int> received = SyncWait(Receive(&channel, CancellationToken()));
  ASSERT_THAT(received, IsOk());
  EXPECT_EQ(*received, 42);
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  EXPECT_EQ(sent.load(), 1);
  EXPECT_EQ(channel.size(), 0u);
}

TEST(ChannelTest, TrySendAndTryReceiveNeverWait) {
  Channel<std::string> channel(1);
  absl::StatusOr<std::optional<std::string>> nothing = channel.TryReceive();
  ASSERT_THAT(nothing, IsOk());
  EXPECT_FALSE(nothing->has_value());
  std::string first = "first";
  EXPECT_THAT(channel.TrySend(std::move(first)), IsOk());
  std::string second = "second";
  EXPECT_THAT(channel.TrySend(std::move(second)), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(second, "second");  // Untouched when refused.
  absl::StatusOr<std::optional<std::string>> got = channel.TryReceive();
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->value(), "first");
  channel.Close();
  EXPECT_THAT(channel.TryReceive(), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(ChannelTest, CancelledReceiverNeverConsumesAnItem) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(1);
  CancellationSource leaving;
  std::thread canceller([&] {
    WaitUntil([&] { return channel.receivers_waiting() == 1; });
    leaving.Cancel(spindle::Cancelled("client left"));
  });
  absl::StatusOr<int> cancelled = SyncWait(Receive(&channel, leaving.token()));
  canceller.join();
  EXPECT_THAT(cancelled, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(cancelled.status().message(),
            "waiting for Channel receive (channel empty): client left");
  ASSERT_THAT(SyncWait(Send(&channel, 5, CancellationToken())), IsOk());
  EXPECT_EQ(channel.size(), 1u);  // Buffered for the next receiver, not lost.
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 5);
}

TEST(ChannelTest, CancelledSenderDoesNotEnqueue) {
  auto executor = MakeExecutor(1);
  Channel<int> channel(1);
  ASSERT_THAT(SyncWait(Send(&channel, 1, CancellationToken())), IsOk());
  CancellationSource source;
  source.Cancel();
  EXPECT_THAT(SyncWait(Send(&channel, 2, source.token())), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(channel.size(), 1u);
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 1);
  EXPECT_FALSE(channel.TryReceive()->has_value());
}

TEST(ChannelTest, CancellingASuspendedSenderRemovesItAndItsValue) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(1);
  ASSERT_THAT(SyncWait(Send(&channel, 1, CancellationToken())), IsOk());
  CancellationSource source;
  std::thread canceller([&] {
    WaitUntil([&] { return channel.senders_waiting() == 1; });
    source.Cancel(spindle::Cancelled("producer gone"));
  });
  absl::Status status = SyncWait(Send(&channel, 2, source.token()));
  canceller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(status.message(), "waiting for Channel send (channel full): producer gone");
  EXPECT_EQ(channel.senders_waiting(), 0u);
  EXPECT_EQ(*SyncWait(Receive(&channel, CancellationToken())), 1);
  EXPECT_FALSE(channel.TryReceive()->has_value());  // 2 was never accepted.
}

Task<void> ReceiveOrCancel(Channel<int>* channel, CancellationToken token, std::mutex* mu,
                           std::vector<int>* received, Latch* done) {
  absl::StatusOr<int> value = co_await channel->Receive(std::move(token));
  if (value.ok()) {
    std::lock_guard<std::mutex> lock(*mu);
    received->push_back(*value);
  }
  done->CountDown();
}

TEST(ChannelTest, ItemsAreNeverLostWhenReceiversAreCancelledConcurrently) {
  auto executor = MakeExecutor(2);
  constexpr int kReceivers = 400;
  Channel<int> channel(16);
  std::mutex mu;
  std::vector<int> received;
  std::vector<std::unique_ptr<CancellationSource>> sources;
  Latch done(kReceivers);
  for (int i = 0; i < kReceivers; ++i) {
    sources.push_back(std::make_unique<CancellationSource>());
    executor->Spawn(ReceiveOrCancel(&channel, sources.back()->token(), &mu, &received, &done));
  }
  std::thread canceller([&] {
    for (int i = 0; i < kReceivers; i += 2) {
      sources[static_cast<size_t>(i)]->Cancel();
    }
  });
  int sent = 0;
  for (int i = 0; i < kReceivers / 2; ++i) {
    int value = i;
    if (channel.TrySend(std::move(value)).ok()) {
      ++sent;
    }
  }
  canceller.join();
  channel.Close();  // Ends the receivers that neither got an item nor were cancelled.
  EXPECT_THAT(SyncWait(AwaitLatch(&done)), IsOk());
  // Every accepted item went to exactly one receiver or is still buffered.
  std::vector<int> all = received;
  for (;;) {
    absl::StatusOr<std::optional<int>> left = channel.TryReceive();
    if (!left.ok() || !left->has_value()) {
      break;
    }
    all.push_back(**left);
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(sent));
  for (int i = 0; i + 1 < static_cast<int>(all.size()); ++i) {
    EXPECT_LT(all[static_cast<size_t>(i)], all[static_cast<size_t>(i) + 1]);
  }
}

TEST(ChannelTest, ProducersAndConsumersDeliverEveryItemExactlyOnce) {
  auto executor = MakeExecutor(2);
  Channel<int> channel(8);
  std::mutex mu;
  std::vector<int> received;
  SyncWait(ProduceAndConsume(executor.get(), &channel, 4, 500, 3, &mu, &received));
  std::sort(received.begin(), received.end());
  ASSERT_EQ(received.size(), 2000u);
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(received[static_cast<size_t>(i)], i);
  }
}

}  // namespace
}  // namespace spindle::coro
