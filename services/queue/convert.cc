#include "services/queue/convert.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {

// ---- shared ----

void ToTimestamp(absl::Time time, google::protobuf::Timestamp* out) {
  if (time == absl::InfiniteFuture() || time == absl::InfinitePast()) {
    return;
  }
  const int64_t nanos = absl::ToUnixNanos(time);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

void ToProtoStatus(const absl::Status& status, v1::Status* out) {
  if (status.ok()) {
    out->set_code(0);
    return;
  }
  grpc::Status converted = ToGrpcStatus(status);
  if (converted.error_details().empty() || !out->ParseFromString(converted.error_details())) {
    out->set_code(static_cast<int32_t>(status.code()));
    out->set_message(std::string(status.message()));
  }
}

absl::Status ValidateRequestId(const std::string& request_id) {
  if (request_id.size() > 64) {
    return InvalidArgument("INVALID_REQUEST_ID",
                           absl::StrCat("request_id is ", request_id.size(), " bytes, over 64"));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return InvalidArgument("OUT_OF_BOUNDS",
                           absl::StrCat(field, " ", value, " is outside ", low, "..", high));
  }
  return absl::OkStatus();
}

absl::Time WaitDeadline(const grpc::ServerContextBase& context) {
  auto deadline = context.deadline();
  if (deadline >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

queue::Queue::WaitBound MakeWaitBound(bool wait, int64_t max_wait_ms, absl::Time deadline,
                                      absl::Time now) {
  queue::Queue::WaitBound bound;
  bound.wait = wait;
  bound.until = deadline;
  bound.status = DeadlineExceeded("the call's deadline passed while waiting");
  if (wait && max_wait_ms > 0 && now + absl::Milliseconds(max_wait_ms) < deadline) {
    bound.until = now + absl::Milliseconds(max_wait_ms);
    bound.status = absl::OkStatus();
  }
  return bound;
}

// ---- queues ----

absl::StatusOr<queue::QueueConfig> FromProto(const v1::QueueConfig& config) {
  queue::QueueConfig out;
  out.max_items = config.max_items();
  out.max_bytes = config.max_bytes();
  out.max_item_bytes = config.max_item_bytes();
  out.visibility_timeout_ms = config.visibility_timeout_ms();
  out.max_deliveries = config.max_deliveries();
  out.dead_letter_queue = config.dead_letter_queue();
  return out;
}

void ToProto(const queue::QueueConfig& config, v1::QueueConfig* out) {
  out->set_max_items(config.max_items);
  out->set_max_bytes(config.max_bytes);
  out->set_max_item_bytes(config.max_item_bytes);
  out->set_visibility_timeout_ms(config.visibility_timeout_ms);
  out->set_max_deliveries(config.max_deliveries);
  out->set_dead_letter_queue(config.dead_letter_queue);
}

void ToProto(const queue::QueueInfo& info, v1::QueueInfo* out) {
  out->set_name(info.name);
  ToProto(info.config, out->mutable_config());
  for (const auto& [key, value] : info.labels) {
    (*out->mutable_labels())[key] = value;
  }
  ToTimestamp(info.create_time, out->mutable_create_time());
  out->set_auto_created(info.auto_created);
  out->set_closed(info.closed);
  out->set_depth(info.depth);
  out->set_depth_bytes(info.depth_bytes);
  out->set_in_flight(info.in_flight);
  out->set_in_flight_bytes(info.in_flight_bytes);
  out->set_delayed(info.delayed);
  out->set_consumers_waiting(info.consumers_waiting);
  out->set_producers_waiting(info.producers_waiting);
  out->set_oldest_item_age_ms(info.oldest_item_age_ms);
  v1::QueueTotals* totals = out->mutable_totals();
  totals->set_put(info.totals.put);
  totals->set_delivered(info.totals.delivered);
  totals->set_acked(info.totals.acked);
  totals->set_nacked(info.totals.nacked);
  totals->set_redelivered(info.totals.redelivered);
  totals->set_dead_lettered(info.totals.dead_lettered);
  totals->set_purged(info.totals.purged);
  totals->set_deduplicated(info.totals.deduplicated);
}

void ToProto(const queue::Delivery& delivery, v1::QueueItem* out) {
  const queue::StoredItem& item = *delivery.item;
  out->set_item_id(item.id);
  out->set_payload(item.payload);
  for (const auto& [key, value] : item.headers) {
    (*out->mutable_headers())[key] = value;
  }
  out->set_delivery_count(delivery.delivery_count);
  ToTimestamp(item.enqueue_time, out->mutable_enqueue_time());
  if (!delivery.receipt.empty()) {
    out->set_receipt(delivery.receipt);
    ToTimestamp(delivery.lease_expire, out->mutable_lease_expire_time());
  }
  out->set_dedup_id(item.dedup_id);
  out->set_source_queue(item.source_queue);
}

void ToProto(const queue::ReceiptResult& result, v1::QueueReceiptResult* out) {
  out->set_receipt(result.receipt);
  ToProtoStatus(result.status, out->mutable_status());
  if (result.status.ok() && result.lease_expire != absl::Time()) {
    ToTimestamp(result.lease_expire, out->mutable_lease_expire_time());
  }
}

absl::StatusOr<std::vector<queue::PutItem>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::QueuePutItem>& items, absl::string_view field) {
  if (items.empty() || items.size() > 1000) {
    return InvalidArgument("INVALID_BATCH",
                           absl::StrCat(field, " has ", items.size(), " items; give 1..1000"));
  }
  std::vector<queue::PutItem> out;
  out.reserve(items.size());
  for (int i = 0; i < items.size(); ++i) {
    const v1::QueuePutItem& item = items[i];
    const std::string at = absl::StrCat(field, "[", i, "]");
    if (item.headers_size() > 64) {
      return InvalidArgument(
          "INVALID_HEADERS",
          absl::StrCat(at, ".headers has ", item.headers_size(), " entries, over 64"));
    }
    queue::PutItem put;
    for (const auto& [key, value] : item.headers()) {
      if (key.empty() || key.size() > 128 || value.size() > 4096) {
        return InvalidArgument("INVALID_HEADERS",
                               absl::StrCat(at, ".headers: key '", key.substr(0, 130),
                                            "' must be 1..128 bytes, its value at most 4096"));
      }
      put.headers.emplace(key, value);
    }
    if (item.dedup_id().size() > 128) {
      return InvalidArgument(
          "INVALID_DEDUP_ID",
          absl::StrCat(at, ".dedup_id is ", item.dedup_id().size(), " bytes, over 128"));
    }
    if (absl::Status s = CheckRange(absl::StrCat(at, ".delay_ms"), item.delay_ms(), 0, 43'200'000);
        !s.ok()) {
      return s;
    }
    put.payload = item.payload();
    put.dedup_id = item.dedup_id();
    put.delay = absl::Milliseconds(item.delay_ms());
    out.push_back(std::move(put));
  }
  return out;
}

absl::Status ValidateReceipts(const google::protobuf::RepeatedPtrField<std::string>& receipts) {
  if (receipts.empty() || receipts.size() > 1000) {
    return InvalidArgument("INVALID_RECEIPTS", absl::StrCat("receipts has ", receipts.size(),
                                                            " entries; give 1..1000"));
  }
  for (int i = 0; i < receipts.size(); ++i) {
    if (receipts[i].empty() || receipts[i].size() > 128) {
      return InvalidArgument("INVALID_RECEIPTS",
                             absl::StrCat("receipts[", i, "] must be 1..128 bytes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<queue::GetOptions> GetOptionsFromProto(v1::QueueGetMode mode,
                                                      int64_t visibility_timeout_ms,
                                                      const std::string& session_id,
                                                      absl::string_view prefix) {
  queue::GetOptions options;
  switch (mode) {
    case v1::QUEUE_GET_MODE_UNSPECIFIED:
    case v1::QUEUE_GET_MODE_TAKE:
      options.mode = queue::GetMode::kTake;
      break;
    case v1::QUEUE_GET_MODE_LEASE:
      options.mode = queue::GetMode::kLease;
      break;
    default:
      return InvalidArgument("INVALID_MODE",
                             absl::StrCat(prefix, "mode ", static_cast<int>(mode), " is unknown"));
  }
  if (options.mode == queue::GetMode::kTake &&
      (visibility_timeout_ms != 0 || !session_id.empty())) {
    return InvalidArgument("LEASE_ONLY", absl::StrCat(prefix, "visibility_timeout_ms and ", prefix,
                                                      "session_id apply to LEASE mode only"));
  }
  if (visibility_timeout_ms != 0) {
    SPINDLE_RETURN_IF_ERROR(CheckRange(absl::StrCat(prefix, "visibility_timeout_ms"),
                                       visibility_timeout_ms, 100, 43'200'000));
  }
  options.visibility_timeout = absl::Milliseconds(visibility_timeout_ms);
  options.session_id = session_id;
  return options;
}

// ---- values ----

absl::StatusOr<value::Data> FromProto(const v1::ValueData& data, absl::string_view field) {
  // Built in place and returned by name: GCC 12 warns (falsely) about a variant temporary moved
  // into a StatusOr.
  absl::StatusOr<value::Data> out(absl::in_place, int64_t{0});
  switch (data.kind_case()) {
    case v1::ValueData::kInt64Value:
      out->emplace<int64_t>(data.int64_value());
      break;
    case v1::ValueData::kDoubleValue:
      out->emplace<double>(data.double_value());
      break;
    case v1::ValueData::kBytesValue:
      out->emplace<value::Bytes>().data = data.bytes_value();
      break;
    case v1::ValueData::kStringValue:
      out->emplace<std::string>(data.string_value());
      break;
    case v1::ValueData::kInt64Array:
      out->emplace<std::vector<int64_t>>(data.int64_array().items().begin(),
                                         data.int64_array().items().end());
      break;
    case v1::ValueData::kDoubleArray:
      out->emplace<std::vector<double>>(data.double_array().items().begin(),
                                        data.double_array().items().end());
      break;
    case v1::ValueData::kMapValue: {
      value::Map& map = out->emplace<value::Map>();
      for (const auto& [key, scalar] : data.map_value().entries()) {
        if (key.empty() || key.size() > 256) {
          return InvalidArgument("INVALID_KEY",
                                 absl::StrCat(field, ".map_value: key '", key.substr(0, 260),
                                              "' must be 1..256 bytes"));
        }
        switch (scalar.kind_case()) {
          case v1::ValueScalar::kInt64Value:
            map.emplace(key, scalar.int64_value());
            break;
          case v1::ValueScalar::kDoubleValue:
            map.emplace(key, scalar.double_value());
            break;
          case v1::ValueScalar::kBytesValue:
            map.emplace(key, value::Bytes{scalar.bytes_value()});
            break;
          case v1::ValueScalar::kStringValue:
            map.emplace(key, scalar.string_value());
            break;
          default:
            return InvalidArgument("MISSING_DATA", absl::StrCat(field, ".map_value: entry '", key,
                                                                "' has no scalar set"));
        }
      }
      break;
    }
    default:
      return InvalidArgument("MISSING_DATA", absl::StrCat(field, " has no data arm set"));
  }
  return out;
}

void ToProto(const value::Scalar& scalar, v1::ValueScalar* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          out->set_int64_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_double_value(v);
        } else if constexpr (std::is_same_v<T, value::Bytes>) {
          out->set_bytes_value(v.data);
        } else {
          out->set_string_value(v);
        }
      },
      scalar);
}

void ToProto(const value::Data& data, v1::ValueData* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          out->set_int64_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_double_value(v);
        } else if constexpr (std::is_same_v<T, value::Bytes>) {
          out->set_bytes_value(v.data);
        } else if constexpr (std::is_same_v<T, std::string>) {
          out->set_string_value(v);
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          out->mutable_int64_array()->mutable_items()->Add(v.begin(), v.end());
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          out->mutable_double_array()->mutable_items()->Add(v.begin(), v.end());
        } else {
          auto* entries = out->mutable_map_value()->mutable_entries();
          for (const auto& [key, scalar] : v) {
            ToProto(scalar, &(*entries)[key]);
          }
        }
      },
      data);
}

absl::StatusOr<std::optional<value::Element>> FromProto(const v1::ValueElement& element,
                                                        bool has_element) {
  if (!has_element) {
    return std::nullopt;
  }
  switch (element.selector_case()) {
    case v1::ValueElement::kIndex:
      return std::optional<value::Element>(value::Element(element.index()));
    case v1::ValueElement::kKey:
      if (element.key().empty() || element.key().size() > 256) {
        return InvalidArgument(
            "INVALID_KEY",
            absl::StrCat("element.key '", element.key().substr(0, 260), "' must be 1..256 bytes"));
      }
      return std::optional<value::Element>(value::Element(element.key()));
    default:
      return InvalidArgument("INVALID_ELEMENT",
                             "element is given but neither index nor key is set");
  }
}

void ToProto(const value::Element& element, v1::ValueElement* out) {
  if (const auto* index = std::get_if<int64_t>(&element)) {
    out->set_index(*index);
  } else {
    out->set_key(std::get<std::string>(element));
  }
}

void ToProto(const value::Entry& entry, v1::ValueEntry* out) {
  out->set_name(entry.name);
  out->set_type(static_cast<v1::ValueType>(static_cast<int>(entry.type)));
  if (entry.data != nullptr) {
    ToProto(*entry.data, out->mutable_data());
  }
  out->set_version(entry.version);
  out->set_create_version(entry.create_version);
  ToTimestamp(entry.create_time, out->mutable_create_time());
  ToTimestamp(entry.update_time, out->mutable_update_time());
  if (entry.expire_time != absl::InfiniteFuture()) {
    ToTimestamp(entry.expire_time, out->mutable_expire_time());
  }
  out->set_session_id(entry.session_id);
  out->set_length(entry.length);
  out->set_size_bytes(entry.size_bytes);
}

void ToProto(const value::Event& event, bool names_only, v1::ValueEvent* out) {
  out->set_kind(static_cast<v1::ValueEventKind>(static_cast<int>(event.kind)));
  out->set_version(event.version);
  value::Entry entry = event.entry;
  if (names_only) {
    entry.data = nullptr;
  }
  ToProto(entry, out->mutable_entry());
  if (event.element.has_value()) {
    ToProto(*event.element, out->mutable_element());
  }
  out->set_prev_version(event.prev_version);
}

absl::StatusOr<value::WriteGuard> FenceGuard(bool has_fence, const v1::ValueFence& fence,
                                             const FenceChecker& checker) {
  if (!has_fence) {
    return value::WriteGuard();
  }
  SPINDLE_RETURN_IF_ERROR(ValidateName("fence.lock_name", fence.lock_name()));
  if (fence.fencing_token() <= 0) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("fence.fencing_token ",
                                                            fence.fencing_token(), " must be > 0"));
  }
  if (!checker) {
    return FailedPrecondition("FENCING_UNAVAILABLE",
                              absl::StrCat("fence on lock '", fence.lock_name(),
                                           "' given, but this server has no lock table to check "
                                           "fencing tokens against"));
  }
  return value::WriteGuard([checker, lock = fence.lock_name(), token = fence.fencing_token()]() {
    return checker(lock, token);
  });
}

}  // namespace spindle::services
