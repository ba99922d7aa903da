// The processes capability: the ProcessTable engine, its ProcessService and its metrics, as the
// server assembly sees them (services/server/capability.h).
#ifndef SPINDLE_SERVICES_PROCESS_PROCESS_CAPABILITY_H_
#define SPINDLE_SERVICES_PROCESS_PROCESS_CAPABILITY_H_

#include <memory>

#include "services/server/capability.h"

namespace spindle::services {

// Binds processes to sessions through `context.sessions` when set (else session_id is
// FAILED_PRECONDITION SESSIONS_UNAVAILABLE). Reaps orphans when spindled is a child subreaper.
std::unique_ptr<Capability> MakeProcessCapability(CapabilityContext& context);

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_PROCESS_PROCESS_CAPABILITY_H_
