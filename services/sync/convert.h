// The one place where sync engine types and spindle.v1 session/lock messages meet.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_SERVICES_SYNC_CONVERT_H_
#define SPINDLE_SERVICES_SYNC_CONVERT_H_

#include <google/protobuf/map.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "spindle/sync/lock_table.h"
#include "spindle/sync/session_table.h"
#include "spindle/v1/lock.pb.h"
#include "spindle/v1/session.pb.h"

namespace spindle::services::sync_convert {

void ToProto(absl::Time time, google::protobuf::Timestamp* out);
// A duration field in milliseconds; INVALID_ARGUMENT naming `field` when it would overflow.
absl::Duration Ms(int64_t ms);

sync::Labels FromProto(const google::protobuf::Map<std::string, std::string>& labels);
void ToProto(const sync::Labels& labels, google::protobuf::Map<std::string, std::string>* out);

// Enums: INVALID_ARGUMENT naming `field` for a value outside the enum.
absl::Status FromProto(absl::string_view field, v1::LockKind kind, sync::LockKind* out);
absl::Status FromProto(absl::string_view field, v1::LockMode mode, sync::LockMode* out);
v1::LockKind ToProto(sync::LockKind kind);
v1::LockMode ToProto(sync::LockMode mode);
v1::SessionState ToProto(sync::SessionState state);

sync::LockConfig FromProto(const v1::LockConfig& config);
void ToProto(const sync::LockConfig& config, v1::LockConfig* out);

void ToProto(const sync::SessionInfo& info, v1::Session* out);
void ToProto(const sync::GrantInfo& grant, v1::LockGrant* out);
void ToProto(const sync::GrantInfo& grant, v1::SessionLockGrant* out);
void ToProto(const sync::LockInfo& info, v1::LockInfo* out);
void ToProto(const sync::LockDescription& description, v1::DescribeLockResponse* out);
void ToProto(const sync::AcquireResult& result, v1::AcquireResponse* out);
void ToProto(const sync::ReleaseResult& result, v1::ReleaseResponse* out);
// A session event as a KeepAlive message.
void ToProto(const sync::SessionEvent& event, v1::KeepAliveResponse* out);

// Builds the engine's AcquireParams from a request; `deadline` is the call's.
absl::Status FromProto(const v1::AcquireRequest& request, absl::Time deadline,
                       sync::AcquireParams* out);
sync::ReleaseParams FromProto(const v1::ReleaseRequest& request);

}  // namespace spindle::services::sync_convert

#endif  // SPINDLE_SERVICES_SYNC_CONVERT_H_
