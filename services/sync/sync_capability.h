// The sessions + locks capability: the session table (set as CapabilityContext::sessions so later
// capabilities bind to sessions), the lock table, SessionService, LockService and their metrics.
#ifndef SPINDLE_SERVICES_SYNC_SYNC_CAPABILITY_H_
#define SPINDLE_SERVICES_SYNC_SYNC_CAPABILITY_H_

#include <memory>

#include "services/server/capability.h"

namespace spindle::services {

// REQUIRES: called first among the capabilities that use sessions.
std::unique_ptr<Capability> MakeSyncCapability(CapabilityContext& context);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_SYNC_SYNC_CAPABILITY_H_
