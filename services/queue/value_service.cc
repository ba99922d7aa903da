#include "services/queue/value_service.h"

#include "absl/strings/str_cat.h"
#include "services/common/status_convert.h"
#include "services/queue/convert.h"
#include "services/queue/value_stream_reactor.h"
#include "services/queue/watch_reactor.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

constexpr int64_t kMaxTtlMs = 31'536'000'000;

grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

ValueServiceImpl::ValueServiceImpl(value::ValueStore& store, TimerService& timers,
                                   StreamSet& streams, OpCounter count_op,
                                   const FenceChecker& check_fence)
    : store_(store),
      timers_(timers),
      streams_(streams),
      count_op_(std::move(count_op)),
      check_fence_(check_fence) {}

grpc::ServerUnaryReactor* ValueServiceImpl::GetValue(grpc::CallbackServerContext* context,
                                                     const v1::GetValueRequest* request,
                                                     v1::GetValueResponse* response) {
  return FinishWith(context, Get(*request, response));
}

absl::Status ValueServiceImpl::Get(const v1::GetValueRequest& request,
                                   v1::GetValueResponse* response) {
  count_op_("get");
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
  SPINDLE_ASSIGN_OR_RETURN(auto element, FromProto(request.element(), request.has_element()));
  if (element.has_value() && request.keys_only()) {
    return InvalidArgument("INVALID_ARGUMENT", "give element or keys_only, not both");
  }
  SPINDLE_ASSIGN_OR_RETURN(auto result, store_.Get(request.name(), element, request.keys_only()));
  ToProto(result.entry, response->mutable_entry());
  if (result.element.has_value()) {
    ToProto(*result.element, response->mutable_element_data());
  }
  for (auto& key : result.keys) {
    response->add_keys(std::move(key));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ValueServiceImpl::SetValue(grpc::CallbackServerContext* context,
                                                     const v1::SetValueRequest* request,
                                                     v1::SetValueResponse* response) {
  return FinishWith(context, Set(*request, response));
}

absl::Status ValueServiceImpl::Set(const v1::SetValueRequest& request,
                                   v1::SetValueResponse* response) {
  count_op_("set");
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
  SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  SPINDLE_RETURN_IF_ERROR(CheckRange("ttl_ms", request.ttl_ms(), 0, kMaxTtlMs));
  SPINDLE_RETURN_IF_ERROR(CheckRange("only_if_version", request.only_if_version(), 0, INT64_MAX));
  value::SetRequest set;
  SPINDLE_ASSIGN_OR_RETURN(set.guard,
                           FenceGuard(request.has_fence(), request.fence(), check_fence_));
  set.name = request.name();
  SPINDLE_ASSIGN_OR_RETURN(set.data, FromProto(request.data(), "data"));
  SPINDLE_ASSIGN_OR_RETURN(set.element, FromProto(request.element(), request.has_element()));
  set.only_if_version = request.only_if_version();
  set.only_if_absent = request.only_if_absent();
  set.ttl = absl::Milliseconds(request.ttl_ms());
  set.keep_ttl = request.keep_ttl();
  set.session_id = request.session_id();
  set.return_previous = request.return_previous();
  SPINDLE_ASSIGN_OR_RETURN(auto result, store_.Set(std::move(set)));
  ToProto(result.entry, response->mutable_entry());
  response->set_prev_version(result.prev_version);
  if (result.previous.has_value()) {
    ToProto(*result.previous, response->mutable_previous());
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ValueServiceImpl::AddToValue(grpc::CallbackServerContext* context,
                                                       const v1::AddToValueRequest* request,
                                                       v1::AddToValueResponse* response) {
  return FinishWith(context, Add(*request, response));
}

absl::Status ValueServiceImpl::Add(const v1::AddToValueRequest& request,
                                   v1::AddToValueResponse* response) {
  count_op_("add");
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
  SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  SPINDLE_RETURN_IF_ERROR(CheckRange("ttl_ms", request.ttl_ms(), 0, kMaxTtlMs));
  SPINDLE_ASSIGN_OR_RETURN(value::WriteGuard guard,
                           FenceGuard(request.has_fence(), request.fence(), check_fence_));
  SPINDLE_ASSIGN_OR_RETURN(auto element, FromProto(request.element(), request.has_element()));
  value::Delta delta;
  switch (request.delta_case()) {
    case v1::AddToValueRequest::kInt64Delta:
      delta = request.int64_delta();
      break;
    case v1::AddToValueRequest::kDoubleDelta:
      delta = request.double_delta();
      break;
    default:
      return InvalidArgument("MISSING_DELTA", "give int64_delta or double_delta");
  }
  SPINDLE_ASSIGN_OR_RETURN(
      auto result, store_.Add(request.name(), element, delta, absl::Milliseconds(request.ttl_ms()),
                              request.request_id(), guard));
  ToProto(result.result, response->mutable_result());
  response->set_version(result.version);
  response->set_created(result.created);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ValueServiceImpl::CompareAndSwapValue(
    grpc::CallbackServerContext* context, const v1::CompareAndSwapValueRequest* request,
    v1::CompareAndSwapValueResponse* response) {
  return FinishWith(context, CompareAndSwap(*request, response));
}

absl::Status ValueServiceImpl::CompareAndSwap(const v1::CompareAndSwapValueRequest& request,
                                              v1::CompareAndSwapValueResponse* response) {
  count_op_("cas");
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
  SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  SPINDLE_ASSIGN_OR_RETURN(value::WriteGuard guard,
                           FenceGuard(request.has_fence(), request.fence(), check_fence_));
  SPINDLE_ASSIGN_OR_RETURN(auto element, FromProto(request.element(), request.has_element()));
  value::Expected expected;
  switch (request.expected_case()) {
    case v1::CompareAndSwapValueRequest::kExpectedValue: {
      SPINDLE_ASSIGN_OR_RETURN(value::Data data,
                               FromProto(request.expected_value(), "expected_value"));
      expected = std::move(data);
      break;
    }
    case v1::CompareAndSwapValueRequest::kExpectedVersion:
      if (request.expected_version() <= 0) {
        return InvalidArgument(
            "INVALID_VERSION",
            absl::StrCat("expected_version ", request.expected_version(), " must be > 0"));
      }
      expected = request.expected_version();
      break;
    case v1::CompareAndSwapValueRequest::kExpectAbsent:
      if (!request.expect_absent()) {
        return InvalidArgument("INVALID_ARGUMENT", "expect_absent must be true when used");
      }
      expected = value::ExpectAbsent{};
      break;
    default:
      return InvalidArgument("MISSING_EXPECTED",
                             "give expected_value, expected_version or expect_absent");
  }
  SPINDLE_ASSIGN_OR_RETURN(value::Data new_value, FromProto(request.new_value(), "new_value"));
  SPINDLE_ASSIGN_OR_RETURN(
      auto result, store_.CompareAndSwap(request.name(), element, expected, new_value, guard));
  response->set_swapped(result.swapped);
  if (result.current.has_value()) {
    ToProto(*result.current, response->mutable_current());
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ValueServiceImpl::DeleteValue(grpc::CallbackServerContext* context,
                                                        const v1::DeleteValueRequest* request,
                                                        v1::DeleteValueResponse* response) {
  return FinishWith(context, Delete(*request, response));
}

absl::Status ValueServiceImpl::Delete(const v1::DeleteValueRequest& request,
                                      v1::DeleteValueResponse* response) {
  count_op_("delete");
  SPINDLE_RETURN_IF_ERROR(ValidateName("name", request.name()));
  SPINDLE_RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  SPINDLE_RETURN_IF_ERROR(CheckRange("only_if_version", request.only_if_version(), 0, INT64_MAX));
  SPINDLE_ASSIGN_OR_RETURN(value::WriteGuard guard,
                           FenceGuard(request.has_fence(), request.fence(), check_fence_));
  SPINDLE_ASSIGN_OR_RETURN(auto element, FromProto(request.element(), request.has_element()));
  SPINDLE_ASSIGN_OR_RETURN(
      auto result, store_.Delete(request.name(), element, request.only_if_version(), guard));
  response->set_version(result.version);
  response->set_prev_version(result.prev_version);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ValueServiceImpl::ListValues(grpc::CallbackServerContext* context,
                                                       const v1::ListValuesRequest* request,
                                                       v1::ListValuesResponse* response) {
  count_op_("list");
  auto run = [&]() -> absl::Status {
    SPINDLE_RETURN_IF_ERROR(ValidatePrefix("prefix", request->prefix()));
    if (!v1::ValueType_IsValid(request->type())) {
      return InvalidArgument(
          "INVALID_TYPE", absl::StrCat("type ", static_cast<int>(request->type()), " is unknown"));
    }
    SPINDLE_ASSIGN_OR_RETURN(
        auto page, store_.List(request->prefix(), static_cast<int>(request->type()),
                               request->page_size(), request->page_token(), request->names_only()));
    for (const auto& entry : page.entries) {
      ToProto(entry, response->add_entries());
    }
    response->set_next_page_token(page.next_page_token);
    response->set_current_version(page.current_version);
    return absl::OkStatus();
  };
  return FinishWith(context, run());
}

grpc::ServerWriteReactor<v1::WatchValuesResponse>* ValueServiceImpl::WatchValues(
    grpc::CallbackServerContext* context, const v1::WatchValuesRequest* request) {
  count_op_("watch");
  return NewWatchReactor(context, *request, store_, timers_, streams_);
}

grpc::ServerBidiReactor<v1::ValueStreamRequest, v1::ValueStreamResponse>*
ValueServiceImpl::ValueStream(grpc::CallbackServerContext* /*context*/) {
  return NewValueStreamReactor(*this);
}

}  // namespace spindle::services
