// spindlectl queue create|put|get|ack|nack|consume|describe|list|close|purge|delete
//
// Human output: `get` and `consume` print one item per line (the payload; in LEASE mode the
// receipt, a tab, then the payload); the other commands print a short summary. --json prints each
// response message as one JSON line.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/queue.grpc.pb.h"

namespace spindle::cli {
namespace {

constexpr size_t kMaxBatch = 1000;  // items in one PutItems call

struct QueueArgs {
  std::string name;
  std::vector<std::string> values;  // payloads or receipts
  // create
  int64_t max_items = 0, max_bytes = 0, max_item_bytes = 0, visibility_timeout_ms = 0;
  int32_t max_deliveries = 0;
  std::string dead_letter_queue;
  std::vector<std::string> labels;
  // put
  std::vector<std::string> headers;
  bool wait = false;
  int64_t max_wait_ms = 0;
  std::string request_id;
  // get / consume
  int32_t max = 1;
  bool lease = false;
  bool ack = false;
  int64_t count = 0;
  int32_t credit = 100;
  // nack
  int64_t delay_ms = 0;
  bool dead_letter = false;
  // list
  std::string prefix;
  int32_t page_size = 0;
  std::string page_token;
  // purge / delete
  bool include_in_flight = false;
  bool if_empty = false;
};

// "k=v" pairs given with `flag` into a map; false (and a message naming the flag) on a malformed
// one.
bool ParsePairs(const char* flag, const std::vector<std::string>& pairs,
                google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& pair : pairs) {
    auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "spindlectl: %s '%s' is not key=value\n", flag, pair.c_str());
      return false;
    }
    (*out)[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
  return true;
}

void PrintInfo(const v1::QueueInfo& q) {
  std::printf("queue:            %s%s%s\n", q.name().c_str(), q.closed() ? " (closed)" : "",
              q.auto_created() ? " (auto-created)" : "");
  std::printf("depth:            %ld items, %ld bytes\n", static_cast<long>(q.depth()),
              static_cast<long>(q.depth_bytes()));
  std::printf("in flight:        %ld items\n", static_cast<long>(q.in_flight()));
  std::printf("delayed:          %ld items\n", static_cast<long>(q.delayed()));
  std::printf("waiting:          %d consumers, %d producers\n", q.consumers_waiting(),
              q.producers_waiting());
  std::printf("oldest item age:  %ld ms\n", static_cast<long>(q.oldest_item_age_ms()));
  std::printf("max:              %ld items, %ld bytes, %ld bytes per item\n",
              static_cast<long>(q.config().max_items()), static_cast<long>(q.config().max_bytes()),
              static_cast<long>(q.config().max_item_bytes()));
  std::printf("lease:            %ld ms, max deliveries %d%s%s\n",
              static_cast<long>(q.config().visibility_timeout_ms()), q.config().max_deliveries(),
              q.config().dead_letter_queue().empty() ? "" : ", dead letters to ",
              q.config().dead_letter_queue().c_str());
  const auto& t = q.totals();
  std::printf(
      "totals:           put %ld, delivered %ld, acked %ld, nacked %ld, redelivered %ld, "
      "dead-lettered %ld, purged %ld\n",
      static_cast<long>(t.put()), static_cast<long>(t.delivered()), static_cast<long>(t.acked()),
      static_cast<long>(t.nacked()), static_cast<long>(t.redelivered()),
      static_cast<long>(t.dead_lettered()), static_cast<long>(t.purged()));
}

void PrintItem(const v1::QueueItem& item) {
  if (item.receipt().empty()) {
    std::printf("%s\n", item.payload().c_str());
  } else {
    std::printf("%s\t%s\n", item.receipt().c_str(), item.payload().c_str());
  }
}

int Create(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::CreateQueueRequest request;
  request.set_name(a.name);
  auto* config = request.mutable_config();
  config->set_max_items(a.max_items);
  config->set_max_bytes(a.max_bytes);
  config->set_max_item_bytes(a.max_item_bytes);
  config->set_visibility_timeout_ms(a.visibility_timeout_ms);
  config->set_max_deliveries(a.max_deliveries);
  config->set_dead_letter_queue(a.dead_letter_queue);
  if (!ParsePairs("--label", a.labels, request.mutable_labels())) {
    return kUsage;
  }
  request.set_request_id(a.request_id);
  v1::CreateQueueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CreateQueue(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s queue '%s'\n",
                response.created() ? "created" : "exists:", response.queue().name().c_str());
  });
}

int Put(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::PutItemsRequest request;
  request.set_queue(a.name);
  request.set_wait(a.wait);
  request.set_max_wait_ms(a.max_wait_ms);
  request.set_request_id(a.request_id);
  std::vector<std::string> payloads = a.values;
  if (payloads.size() == 1 && payloads[0] == "-") {
    payloads.clear();
    std::string line;
    while (std::getline(std::cin, line)) {
      payloads.push_back(line);
    }
  }
  // One put is one all-or-nothing batch: refuse what the server would, rather than cut it.
  if (payloads.empty() || payloads.size() > kMaxBatch) {
    std::fprintf(stderr, "spindlectl: payloads: %zu items; one put takes 1..%zu\n", payloads.size(),
                 kMaxBatch);
    return kUsage;
  }
  for (const auto& payload : payloads) {
    auto* item = request.add_items();
    item->set_payload(payload);
    if (!ParsePairs("--header", a.headers, item->mutable_headers())) {
      return kUsage;
    }
  }
  v1::PutItemsResponse response;
  auto context = a.wait ? cli.WaitContext(a.max_wait_ms) : cli.Context();
  grpc::Status status = stub->PutItems(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  int code = cli.Print(response, [&](const google::protobuf::Message&) {
    if (!response.enqueued()) {
      std::printf("not enqueued: max wait ran out\n");
    }
    for (const auto& id : response.item_ids()) {
      std::printf("%s\n", id.c_str());
    }
  });
  return response.enqueued() ? code : kTimeout;
}

int Get(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::GetItemsRequest request;
  request.set_queue(a.name);
  request.set_max_items(a.max);
  request.set_mode(a.lease ? v1::QUEUE_GET_MODE_LEASE : v1::QUEUE_GET_MODE_TAKE);
  request.set_visibility_timeout_ms(a.visibility_timeout_ms);
  request.set_wait(a.wait);
  request.set_max_wait_ms(a.max_wait_ms);
  request.set_request_id(a.request_id);
  v1::GetItemsResponse response;
  auto context = a.wait ? cli.WaitContext(a.max_wait_ms) : cli.Context();
  grpc::Status status = stub->GetItems(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  cli.Print(response, [&](const google::protobuf::Message&) {
    for (const auto& item : response.items()) {
      PrintItem(item);
    }
    if (response.items().empty()) {
      std::fprintf(stderr, "spindlectl: no item in queue '%s' %s\n", a.name.c_str(),
                   a.wait ? "before --max-wait-ms ran out" : "(empty; --wait waits for one)");
    }
  });
  // Nothing within the wait (none without --wait) is a timeout, so `while spindlectl queue get`
  // loops end on an empty queue.
  return response.items().empty() ? kTimeout : kOk;
}

enum class SettleAction { kAck, kNack, kExtend };

int Settle(Cli& cli, const QueueArgs& a, SettleAction action) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  grpc::Status status;
  google::protobuf::RepeatedPtrField<v1::QueueReceiptResult> results;
  auto context = cli.Context();
  std::unique_ptr<google::protobuf::Message> response;
  if (action == SettleAction::kExtend) {
    v1::ExtendItemLeasesRequest request;
    request.set_queue(a.name);
    for (const auto& r : a.values) request.add_receipts(r);
    request.set_visibility_timeout_ms(a.visibility_timeout_ms);
    auto extended = std::make_unique<v1::ExtendItemLeasesResponse>();
    status = stub->ExtendItemLeases(context.get(), request, extended.get());
    results = extended->results();
    response = std::move(extended);
  } else if (action == SettleAction::kAck) {
    v1::AckItemsRequest request;
    request.set_queue(a.name);
    for (const auto& r : a.values) request.add_receipts(r);
    auto acked = std::make_unique<v1::AckItemsResponse>();
    status = stub->AckItems(context.get(), request, acked.get());
    results = acked->results();
    response = std::move(acked);
  } else {
    v1::NackItemsRequest request;
    request.set_queue(a.name);
    for (const auto& r : a.values) request.add_receipts(r);
    request.set_delay_ms(a.delay_ms);
    request.set_dead_letter(a.dead_letter);
    request.set_request_id(a.request_id);
    auto nacked = std::make_unique<v1::NackItemsResponse>();
    status = stub->NackItems(context.get(), request, nacked.get());
    results = nacked->results();
    response = std::move(nacked);
  }
  if (!status.ok()) {
    return cli.Fail(status);
  }
  int code = cli.Print(*response, [&](const google::protobuf::Message&) {
    for (const auto& result : results) {
      if (result.status().code() == 0 && action == SettleAction::kExtend) {
        const auto& t = result.lease_expire_time();
        std::printf(
            "%s\tuntil %s\n", result.receipt().c_str(),
            absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                             absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()),
                             absl::UTCTimeZone())
                .c_str());
      } else if (result.status().code() == 0) {
        std::printf("%s\tok\n", result.receipt().c_str());
      } else {
        std::printf("%s\t%s\n", result.receipt().c_str(), result.status().message().c_str());
      }
    }
  });
  // The exit code of the first receipt that failed: 3 unknown receipt, 6 its lease expired.
  for (const auto& result : results) {
    if (result.status().code() != 0) {
      return ExitCodeFor(static_cast<grpc::StatusCode>(result.status().code()));
    }
  }
  return code;
}

int Consume(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  // Runs until the queue is drained or --count items came: no deadline unless --timeout-ms.
  auto context = cli.WaitContext(0);
  auto stream = stub->Consume(context.get());
  v1::ConsumeRequest start;
  start.mutable_start()->set_queue(a.name);
  start.mutable_start()->set_mode(a.lease ? v1::QUEUE_GET_MODE_LEASE : v1::QUEUE_GET_MODE_TAKE);
  start.mutable_start()->set_visibility_timeout_ms(a.visibility_timeout_ms);
  int32_t credit = a.credit;
  if (a.count > 0 && a.count < credit) {
    credit = static_cast<int32_t>(a.count);
  }
  start.mutable_start()->set_credit(credit);
  start.mutable_start()->set_auto_credit(a.lease && a.ack);
  stream->Write(start);
  int64_t seen = 0;
  uint64_t correlation = 0;
  v1::ConsumeResponse message;
  while ((a.count == 0 || seen < a.count) && stream->Read(&message)) {
    if (!message.has_deliveries()) {
      continue;
    }
    cli.Print(message, [&](const google::protobuf::Message&) {
      for (const auto& item : message.deliveries().items()) {
        PrintItem(item);
      }
    });
    std::fflush(stdout);
    seen += message.deliveries().items_size();
    v1::ConsumeRequest more;
    if (a.lease && a.ack) {
      more.mutable_ack()->set_correlation_id(++correlation);
      for (const auto& item : message.deliveries().items()) {
        more.mutable_ack()->add_receipts(item.receipt());
      }
      stream->Write(more);
    } else if (!a.lease) {
      int32_t next = message.deliveries().items_size();
      if (a.count > 0) {
        next = static_cast<int32_t>(std::min<int64_t>(next, a.count - seen));
      }
      if (next > 0) {
        more.mutable_credit()->set_items(next);
        stream->Write(more);
      }
    }
  }
  stream->WritesDone();
  if (a.count > 0 && seen >= a.count) {
    // Let the server answer the last acks, then leave.
    while (stream->Read(&message)) {
      if (message.has_settled() && message.settled().correlation_id() == correlation) {
        break;
      }
      if (!message.has_settled()) {
        break;
      }
    }
    context->TryCancel();
    stream->Finish();
    return kOk;
  }
  grpc::Status status = stream->Finish();
  if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
    return kOk;  // closed and drained: the normal end of a consumer
  }
  return status.ok() ? kOk : cli.Fail(status);
}

int Describe(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::DescribeQueueRequest request;
  request.set_name(a.name);
  v1::DescribeQueueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DescribeQueue(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response,
                   [&](const google::protobuf::Message&) { PrintInfo(response.queue()); });
}

int List(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::ListQueuesRequest request;
  request.set_prefix(a.prefix);
  request.set_page_size(a.page_size);
  request.set_page_token(a.page_token);
  if (!ParsePairs("--label", a.labels, request.mutable_labels())) {
    return kUsage;
  }
  v1::ListQueuesResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->ListQueues(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%-40s %10s %10s %8s\n", "NAME", "DEPTH", "IN_FLIGHT", "CLOSED");
    for (const auto& q : response.queues()) {
      std::printf("%-40s %10ld %10ld %8s\n", q.name().c_str(), static_cast<long>(q.depth()),
                  static_cast<long>(q.in_flight()), q.closed() ? "yes" : "no");
    }
    if (!response.next_page_token().empty()) {
      std::printf("next page: --page-token %s\n", response.next_page_token().c_str());
    }
  });
}

int Close(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::CloseQueueRequest request;
  request.set_name(a.name);
  v1::CloseQueueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CloseQueue(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("closed queue '%s' (%d waiting producers failed, %ld items left to drain)\n",
                a.name.c_str(), response.failed_producers(),
                static_cast<long>(response.queue().depth() + response.queue().in_flight()));
  });
}

int Purge(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::PurgeQueueRequest request;
  request.set_name(a.name);
  request.set_include_in_flight(a.include_in_flight);
  v1::PurgeQueueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->PurgeQueue(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("purged %ld items\n", static_cast<long>(response.purged()));
  });
}

int Delete(Cli& cli, const QueueArgs& a) {
  auto stub = v1::QueueService::NewStub(cli.channel());
  v1::DeleteQueueRequest request;
  request.set_name(a.name);
  request.set_if_empty(a.if_empty);
  v1::DeleteQueueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DeleteQueue(context.get(), request, &response);
  if (!status.ok()) {
    return cli.Fail(status);
  }
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("deleted queue '%s' (%ld items dropped)\n", a.name.c_str(),
                static_cast<long>(response.dropped_items()));
  });
}

}  // namespace

void AddQueueCommands(CLI::App& app, Cli& cli, int* exit_code) {
  auto* queue = app.add_subcommand("queue", "named queues: put, get, ack, consume, ...");
  queue->require_subcommand(1);
  auto a = std::make_shared<QueueArgs>();
  auto name = [&](CLI::App* c) { c->add_option("name", a->name, "queue name")->required(); };
  auto run = [&cli, exit_code, a](int (*f)(Cli&, const QueueArgs&)) {
    return [&cli, exit_code, a, f] { *exit_code = f(cli, *a); };
  };

  auto* create = queue->add_subcommand("create", "create a queue with explicit settings");
  name(create);
  create->add_option("--max-items", a->max_items, "capacity in items (0: server default)");
  create->add_option("--max-bytes", a->max_bytes, "capacity in bytes (0: server default)");
  create->add_option("--max-item-bytes", a->max_item_bytes, "largest item (0: server default)");
  create->add_option("--visibility-timeout-ms", a->visibility_timeout_ms, "default lease, ms");
  create->add_option("--max-deliveries", a->max_deliveries, "deliveries before dead-lettering");
  create->add_option("--dead-letter-queue", a->dead_letter_queue, "queue for dead items");
  create->add_option("--label", a->labels, "label key=value (repeatable)");
  create->add_option("--request-id", a->request_id, "idempotency key");
  create->callback(run(&Create));

  auto* put = queue->add_subcommand("put", "put items (one batch, all or nothing)");
  name(put);
  put->add_option("payloads", a->values, "payloads; '-' reads one per line from stdin")->required();
  put->add_option("--header", a->headers, "header key=value for every item (repeatable)");
  put->add_flag("--wait", a->wait, "wait for room when the queue is full");
  put->add_option("--max-wait-ms", a->max_wait_ms, "with --wait: give up after this, ms");
  put->add_option("--request-id", a->request_id, "idempotency key");
  put->callback(run(&Put));

  auto* get = queue->add_subcommand("get", "get items (take, or lease with --lease)");
  name(get);
  get->add_option("-n,--max", a->max, "most items to get")->capture_default_str();
  get->add_flag("--lease", a->lease, "lease the items (ack them with 'queue ack')");
  get->add_option("--visibility-timeout-ms", a->visibility_timeout_ms, "lease length, ms");
  get->add_flag("--wait,!--no-wait", a->wait,
                "wait for an item when the queue is empty (default --no-wait: answer at once; "
                "no item exits 4)");
  get->add_option("--max-wait-ms", a->max_wait_ms, "with --wait: give up after this, ms");
  get->add_option("--request-id", a->request_id, "idempotency key");
  get->callback(run(&Get));

  auto* ack = queue->add_subcommand("ack", "acknowledge leased items by receipt");
  name(ack);
  ack->add_option("receipts", a->values, "receipts")->required();
  ack->callback([&cli, exit_code, a] { *exit_code = Settle(cli, *a, SettleAction::kAck); });

  auto* nack = queue->add_subcommand("nack", "give leased items back by receipt");
  name(nack);
  nack->add_option("receipts", a->values, "receipts")->required();
  nack->add_option("--delay-ms", a->delay_ms, "visible again after this, ms");
  nack->add_flag("--dead-letter", a->dead_letter, "send to the dead-letter queue");
  nack->add_option("--request-id", a->request_id, "idempotency key");
  nack->callback([&cli, exit_code, a] { *exit_code = Settle(cli, *a, SettleAction::kNack); });

  auto* extend = queue->add_subcommand("extend", "keep leased items invisible for longer");
  name(extend);
  extend->add_option("receipts", a->values, "receipts")->required();
  extend->add_option("--visibility-ms", a->visibility_timeout_ms, "invisible until now + this, ms")
      ->required();
  extend->callback([&cli, exit_code, a] { *exit_code = Settle(cli, *a, SettleAction::kExtend); });

  auto* consume = queue->add_subcommand("consume", "stream items as they come");
  name(consume);
  consume->add_flag("--lease", a->lease, "lease the items");
  consume->add_flag("--ack", a->ack, "with --lease: ack each item once printed");
  consume->add_option("--credit", a->credit, "prefetch window, items")->capture_default_str();
  consume->add_option("--count", a->count, "stop after this many items (0: until drained)");
  consume->add_option("--visibility-timeout-ms", a->visibility_timeout_ms, "lease length, ms");
  consume->callback(run(&Consume));

  auto* describe = queue->add_subcommand("describe", "settings and live counts of a queue");
  name(describe);
  describe->callback(run(&Describe));

  auto* list = queue->add_subcommand("list", "list queues by prefix");
  list->add_option("--prefix", a->prefix, "only names starting with this");
  list->add_option("--label", a->labels, "only queues with label key=value (repeatable)");
  list->add_option("--page-size", a->page_size, "page size (0: 100)");
  list->add_option("--page-token", a->page_token, "token from the previous page");
  list->callback(run(&List));

  auto* close = queue->add_subcommand("close", "close a queue: no more puts; getters drain it");
  name(close);
  close->callback(run(&Close));

  auto* purge = queue->add_subcommand("purge", "drop the ready and delayed items");
  name(purge);
  purge->add_flag("--include-in-flight", a->include_in_flight, "also drop leased items");
  purge->callback(run(&Purge));

  auto* del = queue->add_subcommand("delete", "delete a queue and its items");
  name(del);
  del->add_flag("--if-empty", a->if_empty, "only when no item is left");
  del->callback(run(&Delete));
}

}  // namespace spindle::cli
