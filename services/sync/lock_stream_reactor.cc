#include "services/sync/lock_stream_reactor.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/coro_call.h"
#include "services/common/status_convert.h"
#include "services/sync/convert.h"
#include "services/sync/waiting_call.h"
#include "spindle/common/status.h"

namespace spindle::services {
namespace {

// The per-operation status: the code the unary rpc would return, with its ErrorInfo.
void SetStatus(const absl::Status& status, v1::Status* out) {
  out->set_code(static_cast<int32_t>(status.code()));
  if (status.ok()) {
    return;
  }
  grpc::Status grpc_status = ToGrpcStatus(status);
  if (!grpc_status.error_details().empty() && out->ParseFromString(grpc_status.error_details())) {
    return;
  }
  out->set_code(static_cast<int32_t>(status.code()));
  out->set_message(std::string(status.message()));
}

}  // namespace

LockStreamReactor::LockStreamReactor(grpc::CallbackServerContext* context, sync::LockTable& locks)
    : context_(context), locks_(locks) {
  StartRead(&request_);
}

void LockStreamReactor::OnReadDone(bool ok) {
  if (!ok) {
    {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
    }
    Pump();
    return;
  }
  Handle(request_);
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || cancelled_) {
      return;
    }
    if (queue_.size() >= kMaxUnwritten) {
      read_paused_ = true;  // the writer resumes reading once the client has read some answers
      return;
    }
  }
  StartRead(&request_);
}

void LockStreamReactor::Handle(const v1::LockStreamRequest& request) {
  const uint64_t call_id = request.call_id();
  v1::LockStreamResponse response;
  response.set_call_id(call_id);
  if (request.timeout_ms() < 0 || request.timeout_ms() > 86400000) {
    SetStatus(InvalidArgument("INVALID_ARGUMENT", absl::StrCat("timeout_ms ", request.timeout_ms(),
                                                               " is out of bounds 0..86400000")),
              response.mutable_status());
    Answer(std::move(response));
    return;
  }
  switch (request.operation_case()) {
    case v1::LockStreamRequest::kAcquire:
      StartAcquire(call_id, request.timeout_ms(), request.acquire());
      return;
    case v1::LockStreamRequest::kRelease: {
      auto released = locks_.Release(sync_convert::FromProto(request.release()));
      SetStatus(released.status(), response.mutable_status());
      if (released.ok()) {
        sync_convert::ToProto(*released, response.mutable_release());
      }
      break;
    }
    case v1::LockStreamRequest::kRefreshLease: {
      const auto& refresh = request.refresh_lease();
      absl::StatusOr<absl::Time> expiry =
          refresh.lease_ttl_ms() < 0
              ? absl::StatusOr<absl::Time>(InvalidArgument(
                    "INVALID_ARGUMENT",
                    absl::StrCat("lease_ttl_ms ", refresh.lease_ttl_ms(), " must not be negative")))
              : locks_.RefreshLease(refresh.lease_id(), sync_convert::Ms(refresh.lease_ttl_ms()));
      SetStatus(expiry.status(), response.mutable_status());
      if (expiry.ok()) {
        sync_convert::ToProto(*expiry, response.mutable_refresh_lease()->mutable_expire_time());
      }
      break;
    }
    case v1::LockStreamRequest::kCancelCallId: {
      const uint64_t target = request.cancel_call_id();
      sync::WaitHandle handle;
      {
        absl::MutexLock lock(&mu_);
        auto it = pending_.find(target);
        if (it == pending_.end()) {
          return;  // unknown or answered: ignored
        }
        handle = it->second;
      }
      if (locks_.Cancel(handle)) {
        v1::LockStreamResponse cancelled;
        cancelled.set_call_id(target);
        SetStatus(Cancelled(absl::StrCat("call ", target, " was withdrawn")),
                  cancelled.mutable_status());
        {
          absl::MutexLock lock(&mu_);
          pending_.erase(target);
        }
        Answer(std::move(cancelled));
        Unref();
      }
      return;
    }
    case v1::LockStreamRequest::OPERATION_NOT_SET:
      SetStatus(
          InvalidArgument("INVALID_ARGUMENT", absl::StrCat("call ", call_id, " has no operation")),
          response.mutable_status());
      break;
  }
  Answer(std::move(response));
}

void LockStreamReactor::StartAcquire(uint64_t call_id, int64_t timeout_ms,
                                     const v1::AcquireRequest& acquire) {
  absl::Time deadline = CallDeadline(*context_);
  if (timeout_ms > 0) {
    deadline = std::min(deadline, absl::Now() + absl::Milliseconds(timeout_ms));
  }
  sync::AcquireParams params;
  absl::Status problem = sync_convert::FromProto(acquire, deadline, &params);
  if (problem.ok()) {
    absl::MutexLock lock(&mu_);
    if (pending_.contains(call_id)) {
      problem = InvalidArgument("DUPLICATE_CALL_ID",
                                absl::StrCat("call_id ", call_id, " is already pending"));
    } else if (pending_.size() >= kMaxPending) {
      problem = ResourceExhausted(
          "TOO_MANY_PENDING",
          absl::StrCat("the stream has ", kMaxPending, " operations pending, its limit"));
    } else {
      pending_.emplace(call_id, sync::WaitHandle());
      ++refs_;
    }
  }
  if (!problem.ok()) {
    v1::LockStreamResponse response;
    response.set_call_id(call_id);
    SetStatus(problem, response.mutable_status());
    Answer(std::move(response));
    return;
  }
  std::string request_id = params.request_id;
  sync::WaitHandle handle =
      locks_.Acquire(std::move(params), [this, call_id, request_id = std::move(request_id)](
                                            absl::StatusOr<sync::AcquireResult> result) {
        OnAcquired(call_id, request_id, std::move(result));
      });
  if (handle.pending()) {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(call_id);
    if (it != pending_.end()) {
      it->second = handle;
    }
  }
}

void LockStreamReactor::OnAcquired(uint64_t call_id, const std::string& request_id,
                                   absl::StatusOr<sync::AcquireResult> result) {
  bool deliver;
  {
    absl::MutexLock lock(&mu_);
    pending_.erase(call_id);
    deliver = !finished_ && !cancelled_;
  }
  if (deliver) {
    v1::LockStreamResponse response;
    response.set_call_id(call_id);
    SetStatus(result.status(), response.mutable_status());
    if (result.ok()) {
      sync_convert::ToProto(*result, response.mutable_acquire());
    }
    Answer(std::move(response));
  } else if (result.ok() && result->acquired) {
    // Nobody will receive this grant: give it back at once.
    sync::ReleaseParams release;
    release.lease_id = result->grant.lease_id;
    release.abandoned_request_id = request_id;
    (void)locks_.Release(release);
  }
  Pump();
  Unref();
}

void LockStreamReactor::Answer(v1::LockStreamResponse response) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || cancelled_) {
      return;
    }
    queue_.push_back(std::move(response));
  }
  Pump();
}

void LockStreamReactor::Pump() {
  const v1::LockStreamResponse* to_write = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (write_in_flight_ || finished_) {
      return;
    }
    if (cancelled_) {
      finished_ = true;
      finish = true;
      status = grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled");
    } else if (!queue_.empty()) {
      writing_ = std::move(queue_.front());
      queue_.pop_front();
      write_in_flight_ = true;
      to_write = &writing_;
    } else if (reads_done_ && pending_.empty()) {
      finished_ = true;
      finish = true;
    }
  }
  if (to_write != nullptr) {
    StartWrite(to_write);
  } else if (finish) {
    Finish(status);
  }
}

void LockStreamReactor::OnWriteDone(bool ok) {
  bool resume_reading = false;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    // Reading paused on a full answer queue; a write that completes is the only thing that
    // shortens it (Pump takes the next answer only to write it), so reading resumes here.
    if (ok && read_paused_ && queue_.size() < kMaxUnwritten && !finished_ && !cancelled_) {
      read_paused_ = false;
      resume_reading = true;
    }
  }
  if (!ok) {
    WithdrawAll();  // the stream broke
    return;
  }
  if (resume_reading) {
    StartRead(&request_);
  }
  Pump();
}

void LockStreamReactor::OnCancel() { WithdrawAll(); }

void LockStreamReactor::WithdrawAll() {
  std::vector<std::pair<uint64_t, sync::WaitHandle>> pending;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    pending.assign(pending_.begin(), pending_.end());
  }
  int withdrawn = 0;
  for (auto& [call_id, handle] : pending) {
    if (locks_.Cancel(handle)) {
      absl::MutexLock lock(&mu_);
      pending_.erase(call_id);
      ++withdrawn;
    }
  }
  Pump();
  for (int i = 0; i < withdrawn; ++i) {
    Unref();
  }
}

void LockStreamReactor::OnDone() { Unref(); }

void LockStreamReactor::Unref() {
  bool last;
  {
    absl::MutexLock lock(&mu_);
    last = --refs_ == 0;
  }
  if (last) {
    delete this;
  }
}

}  // namespace spindle::services
