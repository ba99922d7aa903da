// Makes every error a client sees uniform, in one place:
//
// * copies the reason from the status details to the `spindle-reason` trailer;
// * turns the bare UNIMPLEMENTED of a method whose engine part is not built into a message that
//   names the method and the capability (reason NOT_IMPLEMENTED);
// * logs the call in one line: errors the server caused (INTERNAL, UNKNOWN, DATA_LOSS) at error
//   level, other failures at debug, successes at trace.
//
// Thread-safety: the factory is thread-safe; one interceptor per call.
#ifndef SPINDLE_SERVICES_INTERCEPTORS_ERRORS_INTERCEPTOR_H_
#define SPINDLE_SERVICES_INTERCEPTORS_ERRORS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <string>

#include "absl/strings/string_view.h"

namespace spindle::services {

// The capability (as the docs and issues name it) that a Spindle service belongs to, e.g.
// "processes" for "spindle.v1.ProcessService"; "" for services outside Spindle.
absl::string_view CapabilityOf(absl::string_view service);

class ErrorsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace spindle::services

#endif  // SPINDLE_SERVICES_INTERCEPTORS_ERRORS_INTERCEPTOR_H_
