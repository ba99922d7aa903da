// spindlectl value get|set|add|cas|delete|list|watch|pipe
//
// Values on the command line: --type int64|double|string|bytes|int64-array|double-array (arrays
// comma-separated, e.g. 1,2,3); without --type a number that parses as int64 is an int64, else as
// a double a double, else a string. Human output prints the data ("42", "[1, 2]", "{k: v}");
// --json prints each response as one JSON line.
//
// `value pipe` reads operations from stdin, one per line ("get NAME", "set NAME DATA",
// "add NAME DELTA", "delete NAME"; blank lines and # comments skipped), sends them all on one
// ValueStream and prints one line per operation in input order: what the single command prints,
// or "error CODE[ REASON]: message". A malformed line is reported with its number before anything
// is sent. Exit status: 0 when every operation succeeded, else the code of the first failure.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/common/status_convert.h"
#include "services/spindlectl/cli.h"
#include "spindle/v1/value.grpc.pb.h"

namespace spindle::cli {
namespace {

struct ValueArgs {
  std::string name;
  std::string value;
  std::string type;
  std::vector<std::string> extra;
  int64_t index = 0;
  bool has_index = false;
  std::string key;
  bool keys = false;
  int64_t ttl_ms = 0;
  int64_t if_version = 0;
  bool if_absent = false;
  std::string expect;
  int64_t expect_version = 0;
  bool expect_absent = false;
  std::string prefix;
  int32_t page_size = 0;
  std::string page_token;
  int64_t from_version = 0;
  int64_t count = 0;
  bool initial_state = false;
  std::string request_id;
};

// Parses `text`, given as `field` (named in the error: "value", "--expect", ...), into `out`.
bool ParseData(const char* field, const std::string& text, const std::string& type,
               v1::ValueData* out) {
  auto bad = [&] {
    std::fprintf(stderr, "spindlectl: %s '%s' is not a valid %s (--type)\n", field, text.c_str(),
                 type.c_str());
    return false;
  };
  int64_t i;
  double d;
  if (type.empty()) {
    if (absl::SimpleAtoi(text, &i)) {
      out->set_int64_value(i);
    } else if (absl::SimpleAtod(text, &d)) {
      out->set_double_value(d);
    } else {
      out->set_string_value(text);
    }
  } else if (type == "int64") {
    if (!absl::SimpleAtoi(text, &i)) return bad();
    out->set_int64_value(i);
  } else if (type == "double") {
    if (!absl::SimpleAtod(text, &d)) return bad();
    out->set_double_value(d);
  } else if (type == "string") {
    out->set_string_value(text);
  } else if (type == "bytes") {
    out->set_bytes_value(text);
  } else if (type == "int64-array") {
    auto* items = out->mutable_int64_array()->mutable_items();
    for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
      if (!absl::SimpleAtoi(part, &i)) return bad();
      items->Add(i);
    }
  } else if (type == "double-array") {
    auto* items = out->mutable_double_array()->mutable_items();
    for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
      if (!absl::SimpleAtod(part, &d)) return bad();
      items->Add(d);
    }
  } else {
    std::fprintf(stderr,
                 "spindlectl: --type '%s' is not one of int64, double, string, bytes, "
                 "int64-array, double-array\n",
                 type.c_str());
    return false;
  }
  return true;
}

std::string ScalarText(const v1::ValueScalar& s) {
  switch (s.kind_case()) {
    case v1::ValueScalar::kInt64Value:
      return std::to_string(s.int64_value());
    case v1::ValueScalar::kDoubleValue: {
      char buffer[64];
      std::snprintf(buffer, sizeof(buffer), "%.17g", s.double_value());
      return buffer;
    }
    case v1::ValueScalar::kBytesValue:
      return s.bytes_value();
    case v1::ValueScalar::kStringValue:
      return s.string_value();
    default:
      return "";
  }
}

std::string DataText(const v1::ValueData& data) {
  v1::ValueScalar scalar;
  switch (data.kind_case()) {
    case v1::ValueData::kInt64Value:
      scalar.set_int64_value(data.int64_value());
      return ScalarText(scalar);
    case v1::ValueData::kDoubleValue:
      scalar.set_double_value(data.double_value());
      return ScalarText(scalar);
    case v1::ValueData::kBytesValue:
      return data.bytes_value();
    case v1::ValueData::kStringValue:
      return data.string_value();
    case v1::ValueData::kInt64Array:
      return "[" + absl::StrJoin(data.int64_array().items(), ", ") + "]";
    case v1::ValueData::kDoubleArray:
      return "[" + absl::StrJoin(data.double_array().items(), ", ") + "]";
    case v1::ValueData::kMapValue: {
      std::vector<std::string> keys;
      for (const auto& [key, value] : data.map_value().entries()) keys.push_back(key);
      std::sort(keys.begin(), keys.end());
      std::vector<std::string> parts;
      for (const auto& key : keys) {
        parts.push_back(key + ": " + ScalarText(data.map_value().entries().at(key)));
      }
      return "{" + absl::StrJoin(parts, ", ") + "}";
    }
    default:
      return "";
  }
}

void SetElement(const ValueArgs& a, v1::ValueElement* element) {
  if (a.has_index) {
    element->set_index(a.index);
  } else {
    element->set_key(a.key);
  }
}
bool HasElement(const ValueArgs& a) { return a.has_index || !a.key.empty(); }

int Get(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::GetValueRequest request;
  request.set_name(a.name);
  if (HasElement(a)) SetElement(a, request.mutable_element());
  request.set_keys_only(a.keys);
  v1::GetValueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->GetValue(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    if (a.keys) {
      for (const auto& key : response.keys()) std::printf("%s\n", key.c_str());
    } else if (HasElement(a)) {
      std::printf("%s\n", ScalarText(response.element_data()).c_str());
    } else {
      std::printf("%s\n", DataText(response.entry().data()).c_str());
    }
  });
}

int Set(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::SetValueRequest request;
  request.set_name(a.name);
  if (!ParseData("value", a.value, a.type, request.mutable_data())) return kUsage;
  if (HasElement(a)) SetElement(a, request.mutable_element());
  request.set_ttl_ms(a.ttl_ms);
  request.set_only_if_version(a.if_version);
  request.set_only_if_absent(a.if_absent);
  request.set_request_id(a.request_id);
  v1::SetValueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->SetValue(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("version %ld\n", static_cast<long>(response.entry().version()));
  });
}

int Add(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::AddToValueRequest request;
  request.set_name(a.name);
  int64_t i;
  double d;
  if (a.type != "double" && absl::SimpleAtoi(a.value, &i)) {
    request.set_int64_delta(i);
  } else if (absl::SimpleAtod(a.value, &d)) {
    request.set_double_delta(d);
  } else {
    std::fprintf(stderr, "spindlectl: delta '%s' is not a number\n", a.value.c_str());
    return kUsage;
  }
  if (HasElement(a)) SetElement(a, request.mutable_element());
  request.set_ttl_ms(a.ttl_ms);
  request.set_request_id(a.request_id);
  v1::AddToValueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->AddToValue(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s\n", ScalarText(response.result()).c_str());
  });
}

int Cas(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::CompareAndSwapValueRequest request;
  request.set_name(a.name);
  if (HasElement(a)) SetElement(a, request.mutable_element());
  int conditions = (!a.expect.empty()) + (a.expect_version != 0) + a.expect_absent;
  if (conditions != 1) {
    std::fprintf(stderr,
                 "spindlectl: give exactly one of --expect, --expect-version, "
                 "--expect-absent\n");
    return kUsage;
  }
  if (!a.expect.empty() &&
      !ParseData("--expect", a.expect, a.type, request.mutable_expected_value())) {
    return kUsage;
  }
  if (a.expect_version != 0) request.set_expected_version(a.expect_version);
  if (a.expect_absent) request.set_expect_absent(true);
  if (!ParseData("new", a.value, a.type, request.mutable_new_value())) return kUsage;
  request.set_request_id(a.request_id);
  v1::CompareAndSwapValueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->CompareAndSwapValue(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  int code = cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("%s (now %s, version %ld)\n", response.swapped() ? "swapped" : "not swapped",
                response.has_current() ? DataText(response.current().data()).c_str() : "absent",
                static_cast<long>(response.current().version()));
  });
  return response.swapped() ? code : kConflict;
}

int Delete(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::DeleteValueRequest request;
  request.set_name(a.name);
  if (!a.key.empty()) request.mutable_element()->set_key(a.key);
  request.set_only_if_version(a.if_version);
  request.set_request_id(a.request_id);
  v1::DeleteValueResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->DeleteValue(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    std::printf("deleted at version %ld\n", static_cast<long>(response.version()));
  });
}

int List(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::ListValuesRequest request;
  request.set_prefix(a.prefix);
  request.set_page_size(a.page_size);
  request.set_page_token(a.page_token);
  v1::ListValuesResponse response;
  auto context = cli.Context();
  grpc::Status status = stub->ListValues(context.get(), request, &response);
  if (!status.ok()) return cli.Fail(status);
  return cli.Print(response, [&](const google::protobuf::Message&) {
    for (const auto& entry : response.entries()) {
      std::printf("%s\t%s\tversion %ld\n", entry.name().c_str(), DataText(entry.data()).c_str(),
                  static_cast<long>(entry.version()));
    }
    if (!response.next_page_token().empty()) {
      std::printf("next page: --page-token %s\n", response.next_page_token().c_str());
    }
  });
}

int Watch(Cli& cli, const ValueArgs& a) {
  auto stub = v1::ValueService::NewStub(cli.channel());
  v1::WatchValuesRequest request;
  if (!a.prefix.empty() || a.name.empty()) {
    request.set_prefix(a.prefix);
  } else {
    request.set_name(a.name);
  }
  request.set_from_version(a.from_version);
  request.set_initial_state(a.initial_state);
  // Runs until cancelled or --count events came: no deadline unless --timeout-ms was given.
  auto context = cli.WaitContext(0);
  auto reader = stub->WatchValues(context.get(), request);
  v1::WatchValuesResponse message;
  int64_t seen = 0;
  while ((a.count == 0 || seen < a.count) && reader->Read(&message)) {
    if (message.has_progress()) {
      continue;
    }
    // One message may carry several events: print no more than --count in all.
    auto* events = message.has_events() ? message.mutable_events()->mutable_events() : nullptr;
    if (events != nullptr && a.count > 0 && events->size() > a.count - seen) {
      events->DeleteSubrange(static_cast<int>(a.count - seen),
                             events->size() - static_cast<int>(a.count - seen));
    }
    cli.Print(message, [&](const google::protobuf::Message&) {
      for (const auto& event : message.events().events()) {
        const char* kind = event.kind() == v1::VALUE_EVENT_KIND_PUT      ? "PUT"
                           : event.kind() == v1::VALUE_EVENT_KIND_DELETE ? "DELETE"
                                                                         : "EXPIRE";
        std::printf("%ld\t%s\t%s\t%s\n", static_cast<long>(event.version()), kind,
                    event.entry().name().c_str(), DataText(event.entry().data()).c_str());
      }
      if (message.has_compacted()) {
        std::printf("compacted: re-read and watch from %ld\n",
                    static_cast<long>(message.compacted().current_version() + 1));
      }
    });
    std::fflush(stdout);
    seen += message.events().events_size();
  }
  if (a.count > 0 && seen >= a.count) {
    context->TryCancel();
    reader->Finish();
    return kOk;
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? kOk : cli.Fail(status);
}

// One line of `value pipe` as a stream request; false (with the problem on stderr) if malformed.
bool ParsePipeLine(int line_number, absl::string_view line, uint64_t call_id,
                   v1::ValueStreamRequest* request) {
  std::vector<std::string> parts =
      absl::StrSplit(line, absl::MaxSplits(absl::ByAnyChar(" \t"), 2), absl::SkipEmpty());
  auto bad = [&](const char* what) {
    std::fprintf(stderr, "spindlectl: line %d: %s: '%s'\n", line_number, what,
                 std::string(line).c_str());
    return false;
  };
  if (parts.size() < 2) return bad("expected an operation and a name");
  const std::string& op = parts[0];
  const std::string& name = parts[1];
  const bool has_arg = parts.size() == 3;
  request->set_call_id(call_id);
  if (op == "get" || op == "delete") {
    if (has_arg) return bad("get and delete take only a name");
    if (op == "get") {
      request->mutable_get_value()->set_name(name);
    } else {
      request->mutable_delete_value()->set_name(name);
    }
    return true;
  }
  if (!has_arg) return bad("set and add take a name and a value");
  if (op == "set") {
    request->mutable_set_value()->set_name(name);
    return ParseData("value", parts[2], "", request->mutable_set_value()->mutable_data()) ||
           bad("bad value");
  }
  if (op == "add") {
    auto* add = request->mutable_add_to_value();
    add->set_name(name);
    int64_t i;
    double d;
    if (absl::SimpleAtoi(parts[2], &i)) {
      add->set_int64_delta(i);
    } else if (absl::SimpleAtod(parts[2], &d)) {
      add->set_double_delta(d);
    } else {
      return bad("the delta is not a number");
    }
    return true;
  }
  return bad("the operation is not one of get, set, add, delete");
}

// The line `value pipe` prints for one answer.
std::string PipeText(const v1::ValueStreamResponse& response) {
  if (response.status().code() != 0) {
    grpc::Status status(static_cast<grpc::StatusCode>(response.status().code()),
                        response.status().message(), response.status().SerializeAsString());
    std::string reason = services::ReasonOf(status);
    return absl::StrCat("error ", StatusCodeName(status.error_code()),
                        reason.empty() ? "" : " " + reason, ": ", status.error_message());
  }
  switch (response.result_case()) {
    case v1::ValueStreamResponse::kGetValue:
      return DataText(response.get_value().entry().data());
    case v1::ValueStreamResponse::kSetValue:
      return absl::StrCat("version ", response.set_value().entry().version());
    case v1::ValueStreamResponse::kAddToValue:
      return ScalarText(response.add_to_value().result());
    case v1::ValueStreamResponse::kDeleteValue:
      return absl::StrCat("deleted at version ", response.delete_value().version());
    default:
      return "ok";
  }
}

int Pipe(Cli& cli, const ValueArgs&) {
  std::vector<v1::ValueStreamRequest> requests;
  std::string line;
  for (int number = 1; std::getline(std::cin, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    v1::ValueStreamRequest request;
    if (!ParsePipeLine(number, text, requests.size() + 1, &request)) return kUsage;
    requests.push_back(std::move(request));
  }
  if (requests.empty()) return kOk;
  auto stub = v1::ValueService::NewStub(cli.channel());
  auto context = cli.WaitContext(0);
  auto stream = stub->ValueStream(context.get());
  // The server answers in order and holds back a writer that runs ahead of the reads, so one
  // thread writes everything while this one prints.
  std::thread writer([&] {
    for (const auto& request : requests) {
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  int code = kOk;
  size_t answered = 0;
  v1::ValueStreamResponse response;
  while (stream->Read(&response)) {
    ++answered;
    if (cli.options().json) {
      std::printf("%s\n", ToJson(response).c_str());
    } else {
      std::printf("%s\n", PipeText(response).c_str());
    }
    if (code == kOk && response.status().code() != 0) {
      code = ExitCodeFor(static_cast<grpc::StatusCode>(response.status().code()));
    }
  }
  writer.join();
  grpc::Status status = stream->Finish();
  if (!status.ok()) return cli.Fail(status);
  if (answered != requests.size()) {
    std::fprintf(stderr, "spindlectl: %zu of %zu operations answered\n", answered, requests.size());
    return kError;
  }
  return code;
}

}  // namespace

void AddValueCommands(CLI::App& app, Cli& cli, int* exit_code) {
  auto* value = app.add_subcommand("value", "shared values: get, set, add, cas, watch, ...");
  value->require_subcommand(1);
  auto a = std::make_shared<ValueArgs>();
  auto run = [&cli, exit_code, a](int (*f)(Cli&, const ValueArgs&)) {
    return [&cli, exit_code, a, f] { *exit_code = f(cli, *a); };
  };
  auto element = [a](CLI::App* c) {
    c->add_option("--index", a->index, "array element (negative counts from the end)")
        ->each([a](const std::string&) { a->has_index = true; });
    c->add_option("--key", a->key, "map entry");
  };

  auto* get = value->add_subcommand("get", "read a value (or one element, or a map's keys)");
  get->add_option("name", a->name, "value name")->required();
  element(get);
  get->add_flag("--keys", a->keys, "maps: print the keys");
  get->callback(run(&Get));

  auto* set = value->add_subcommand("set", "write a value (or one element)");
  set->add_option("name", a->name, "value name")->required();
  set->add_option("value", a->value, "the data")->required();
  set->add_option("--type", a->type, "int64, double, string, bytes, int64-array, double-array");
  element(set);
  set->add_option("--ttl-ms", a->ttl_ms, "expire after this, ms");
  set->add_option("--if-version", a->if_version, "only if the value is at this version");
  set->add_flag("--if-absent", a->if_absent, "only if the value does not exist");
  set->add_option("--request-id", a->request_id, "idempotency key");
  set->callback(run(&Set));

  auto* add = value->add_subcommand("add", "atomically add to a number; prints the result");
  add->add_option("name", a->name, "value name")->required();
  add->add_option("delta", a->value, "the delta (int64, or double with a dot)")->required();
  add->add_option("--type", a->type, "double: force a double delta");
  element(add);
  add->add_option("--ttl-ms", a->ttl_ms, "TTL if this creates the value, ms");
  add->add_option("--request-id", a->request_id, "idempotency key");
  add->callback(run(&Add));

  auto* cas = value->add_subcommand("cas", "compare and swap (exit 6 when not swapped)");
  cas->add_option("name", a->name, "value name")->required();
  cas->add_option("new", a->value, "the new data")->required();
  cas->add_option("--expect", a->expect, "swap if the data equals this");
  cas->add_option("--expect-version", a->expect_version, "swap if the version is this");
  cas->add_flag("--expect-absent", a->expect_absent, "swap if the value is absent");
  cas->add_option("--type", a->type, "type of --expect and new");
  element(cas);
  cas->add_option("--request-id", a->request_id, "idempotency key");
  cas->callback(run(&Cas));

  auto* del = value->add_subcommand("delete", "delete a value (or one map key)");
  del->add_option("name", a->name, "value name")->required();
  del->add_option("--key", a->key, "delete this map key only");
  del->add_option("--if-version", a->if_version, "only if the value is at this version");
  del->add_option("--request-id", a->request_id, "idempotency key");
  del->callback(run(&Delete));

  auto* list = value->add_subcommand("list", "list values by prefix");
  list->add_option("--prefix", a->prefix, "only names starting with this");
  list->add_option("--page-size", a->page_size, "page size (0: 100)");
  list->add_option("--page-token", a->page_token, "token from the previous page");
  list->callback(run(&List));

  auto* watch = value->add_subcommand("watch", "print changes as they happen");
  watch->add_option("name", a->name, "value name (or use --prefix)");
  watch->add_option("--prefix", a->prefix, "every name starting with this");
  watch->add_option("--from-version", a->from_version, "replay changes from this version");
  watch->add_flag("--initial-state", a->initial_state, "first print the current values");
  watch->add_option("--count", a->count, "stop after this many events (0: until cancelled)");
  watch->callback(run(&Watch));

  auto* pipe = value->add_subcommand(
      "pipe", "apply operations read from stdin (get|set|add|delete NAME [DATA]) on one stream");
  pipe->callback(run(&Pipe));
}

}  // namespace spindle::cli
