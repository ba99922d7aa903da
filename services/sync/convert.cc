#include "services/sync/convert.h"

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"

namespace spindle::services::sync_convert {

void ToProto(absl::Time time, google::protobuf::Timestamp* out) {
  if (time == absl::InfiniteFuture() || time == absl::InfinitePast()) {
    out->Clear();
    return;
  }
  int64_t nanos = absl::ToUnixNanos(time);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

absl::Duration Ms(int64_t ms) { return absl::Milliseconds(ms); }

sync::Labels FromProto(const google::protobuf::Map<std::string, std::string>& labels) {
  return sync::Labels(labels.begin(), labels.end());
}

void ToProto(const sync::Labels& labels, google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& [key, value] : labels) {
    (*out)[key] = value;
  }
}

absl::Status FromProto(absl::string_view field, v1::LockKind kind, sync::LockKind* out) {
  if (!v1::LockKind_IsValid(kind)) {
    return InvalidArgument("INVALID_KIND",
                           absl::StrCat(field, " ", static_cast<int>(kind), " is not a LockKind"));
  }
  *out = static_cast<sync::LockKind>(kind);
  return absl::OkStatus();
}

absl::Status FromProto(absl::string_view field, v1::LockMode mode, sync::LockMode* out) {
  if (!v1::LockMode_IsValid(mode)) {
    return InvalidArgument("INVALID_MODE",
                           absl::StrCat(field, " ", static_cast<int>(mode), " is not a LockMode"));
  }
  *out = static_cast<sync::LockMode>(mode);
  return absl::OkStatus();
}

v1::LockKind ToProto(sync::LockKind kind) { return static_cast<v1::LockKind>(kind); }
v1::LockMode ToProto(sync::LockMode mode) { return static_cast<v1::LockMode>(mode); }
v1::SessionState ToProto(sync::SessionState state) { return static_cast<v1::SessionState>(state); }

sync::LockConfig FromProto(const v1::LockConfig& config) {
  sync::LockConfig out;
  out.permits = config.permits();
  out.bounded = config.bounded();
  out.parties = config.parties();
  out.lock_name = config.lock_name();
  return out;
}

void ToProto(const sync::LockConfig& config, v1::LockConfig* out) {
  out->set_permits(config.permits);
  out->set_bounded(config.bounded);
  out->set_parties(config.parties);
  out->set_lock_name(config.lock_name);
}

void ToProto(const sync::SessionInfo& info, v1::Session* out) {
  out->set_session_id(info.session_id);
  out->set_client_name(info.client_name);
  ToProto(info.labels, out->mutable_labels());
  out->set_ttl_ms(absl::ToInt64Milliseconds(info.ttl));
  ToProto(info.create_time, out->mutable_create_time());
  ToProto(info.expire_time, out->mutable_expire_time());
  ToProto(info.refresh_time, out->mutable_refresh_time());
  out->set_state(ToProto(info.state));
  out->set_peer(info.peer);
  out->set_held_locks(info.held_locks);
  out->set_held_permits(info.held_permits);
  out->set_keepalive_streams(info.keepalive_streams);
  out->set_last_event_seq(info.last_event_seq);
}

void ToProto(const sync::GrantInfo& grant, v1::LockGrant* out) {
  out->set_lease_id(grant.lease_id);
  out->set_fencing_token(grant.fencing_token);
  ToProto(grant.expire_time, out->mutable_expire_time());
  out->set_held_count(grant.held_count);
  out->set_permits(grant.permits);
  out->set_mode(ToProto(grant.mode));
  out->set_session_id(grant.session_id);
  ToProto(grant.acquire_time, out->mutable_acquire_time());
}

void ToProto(const sync::GrantInfo& grant, v1::SessionLockGrant* out) {
  out->set_name(grant.name);
  out->set_kind(ToProto(grant.kind));
  out->set_fencing_token(grant.fencing_token);
  out->set_held_count(grant.held_count);
  out->set_permits(grant.permits);
  out->set_mode(ToProto(grant.mode));
  out->set_owner(grant.owner);
  ToProto(grant.acquire_time, out->mutable_acquire_time());
  if (grant.has_lease_ttl) {
    ToProto(grant.expire_time, out->mutable_lease_expire_time());
  }
}

void ToProto(const sync::LockInfo& info, v1::LockInfo* out) {
  out->set_name(info.name);
  out->set_kind(ToProto(info.kind));
  ToProto(info.config, out->mutable_config());
  ToProto(info.labels, out->mutable_labels());
  ToProto(info.create_time, out->mutable_create_time());
  out->set_last_fencing_token(info.last_fencing_token);
  out->set_holders(info.holders);
  out->set_waiters(info.waiters);
  out->set_available_permits(info.available_permits);
  out->set_event_set(info.event_set);
  out->set_barrier_waiting(info.barrier_waiting);
  out->set_barrier_generation(info.barrier_generation);
  out->set_barrier_broken(info.barrier_broken);
}

void ToProto(const sync::LockDescription& description, v1::DescribeLockResponse* out) {
  ToProto(description.info, out->mutable_lock());
  for (const auto& holder : description.holders) {
    v1::LockHolder* h = out->add_holders();
    h->set_owner(holder.owner);
    h->set_session_id(holder.session_id);
    ToProto(holder.acquire_time, h->mutable_acquire_time());
    h->set_fencing_token(holder.fencing_token);
    h->set_held_count(holder.held_count);
    h->set_permits(holder.permits);
    h->set_mode(ToProto(holder.mode));
    ToProto(holder.expire_time, h->mutable_expire_time());
  }
  for (const auto& waiter : description.waiters) {
    v1::LockWaiter* w = out->add_waiters();
    w->set_owner(waiter.owner);
    w->set_session_id(waiter.session_id);
    ToProto(waiter.wait_start_time, w->mutable_wait_start_time());
    w->set_wait_for(static_cast<v1::LockWaiter::WaitFor>(waiter.wait_for));
    w->set_permits(waiter.permits);
    w->set_mode(ToProto(waiter.mode));
    w->set_position(waiter.position);
  }
}

void ToProto(const sync::AcquireResult& result, v1::AcquireResponse* out) {
  out->set_acquired(result.acquired);
  if (result.acquired) {
    ToProto(result.grant, out->mutable_grant());
  }
  out->set_kind(ToProto(result.kind));
  out->set_waited_ms(absl::ToInt64Milliseconds(result.waited));
}

void ToProto(const sync::ReleaseResult& result, v1::ReleaseResponse* out) {
  out->set_remaining(result.remaining);
  out->set_granted_waiters(result.granted_waiters);
  out->set_available_permits(result.available_permits);
}

void ToProto(const sync::SessionEvent& event, v1::KeepAliveResponse* out) {
  out->set_event_seq(event.seq);
  ToProto(event.time, out->mutable_time());
  switch (event.type) {
    case sync::SessionEvent::Type::kLockLost: {
      auto* lost = out->mutable_lock_lost();
      lost->set_name(event.lock_name);
      lost->set_kind(ToProto(event.lock_kind));
      lost->set_fencing_token(event.fencing_token);
      lost->set_lease_id(event.lease_id);
      lost->set_cause(static_cast<v1::KeepAliveResponse::LockLostCause>(event.cause));
      lost->set_message(event.message);
      break;
    }
    case sync::SessionEvent::Type::kExpiring: {
      auto* expiring = out->mutable_expiring();
      ToProto(event.expire_time, expiring->mutable_expire_time());
      expiring->set_remaining_ms(absl::ToInt64Milliseconds(event.remaining));
      break;
    }
    case sync::SessionEvent::Type::kEnded: {
      auto* ended = out->mutable_ended();
      ended->set_state(ToProto(event.end_state));
      ToProto(event.time, ended->mutable_end_time());
      ended->set_released_locks(event.released_locks);
      break;
    }
  }
}

absl::Status FromProto(const v1::AcquireRequest& request, absl::Time deadline,
                       sync::AcquireParams* out) {
  out->name = request.name();
  SPINDLE_RETURN_IF_ERROR(FromProto("kind", request.kind(), &out->kind));
  SPINDLE_RETURN_IF_ERROR(FromProto("mode", request.mode(), &out->mode));
  if (request.lease_ttl_ms() < 0) {
    return InvalidArgument("INVALID_TTL", absl::StrCat("lease_ttl_ms ", request.lease_ttl_ms(),
                                                       " must not be negative"));
  }
  if (request.max_wait_ms() < 0) {
    return InvalidArgument("INVALID_ARGUMENT", absl::StrCat("max_wait_ms ", request.max_wait_ms(),
                                                            " must not be negative"));
  }
  out->config = FromProto(request.config());
  out->session_id = request.session_id();
  out->lease_ttl = Ms(request.lease_ttl_ms());
  out->owner = request.owner();
  out->permits = request.permits();
  out->wait = request.wait();
  out->max_wait = Ms(request.max_wait_ms());
  out->deadline = deadline;
  out->request_id = request.request_id();
  return absl::OkStatus();
}

sync::ReleaseParams FromProto(const v1::ReleaseRequest& request) {
  sync::ReleaseParams params;
  params.lease_id = request.lease_id();
  params.count = request.count();
  params.all = request.all();
  params.name = request.name();
  params.request_id = request.request_id();
  return params;
}

}  // namespace spindle::services::sync_convert
