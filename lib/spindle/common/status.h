// Errors in the engine: absl::Status with a machine-readable reason.
//
// Every error the engine returns carries a canonical code (the gRPC codes; see DESIGN.md "Errors")
// and, for errors a client can act on, a reason in UPPER_SNAKE (QUEUE_FULL, LOCK_NOT_HELD, ...)
// stored as a payload. services/ turns both into a grpc::Status with the reason in its details.
// Messages quote the offending name or value.
//
// Thread-safety: free functions, all thread-safe.
#ifndef SPINDLE_COMMON_STATUS_H_
#define SPINDLE_COMMON_STATUS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace spindle {

// The payload URL under which the reason is stored in an absl::Status.
inline constexpr absl::string_view kReasonPayloadUrl = "spindle.dev/reason";

// Builds a status with `code`, `message` and machine-readable `reason` (UPPER_SNAKE).
// REQUIRES: code != kOk.
absl::Status Error(absl::StatusCode code, absl::string_view reason, absl::string_view message);

// The reason attached by Error(), or "" when there is none.
std::string Reason(const absl::Status& status);

// Shorthands for the codes the engine uses most, each with a reason.
absl::Status InvalidArgument(absl::string_view reason, absl::string_view message);
absl::Status NotFound(absl::string_view reason, absl::string_view message);
absl::Status AlreadyExists(absl::string_view reason, absl::string_view message);
absl::Status FailedPrecondition(absl::string_view reason, absl::string_view message);
absl::Status ResourceExhausted(absl::string_view reason, absl::string_view message);
absl::Status Aborted(absl::string_view reason, absl::string_view message);
absl::Status OutOfRange(absl::string_view reason, absl::string_view message);
absl::Status Cancelled(absl::string_view message);
absl::Status DeadlineExceeded(absl::string_view message);
absl::Status Unavailable(absl::string_view reason, absl::string_view message);
absl::Status PermissionDenied(absl::string_view reason, absl::string_view message);

// Returns `status` with "context: " put in front of its message; code and payloads are kept.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace spindle

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define SPINDLE_RETURN_IF_ERROR(expr)                                                  \
  do {                                                                                 \
    if (::absl::Status spindle_status_ = (expr); !spindle_status_.ok()) [[unlikely]] { \
      return spindle_status_;                                                          \
    }                                                                                  \
  } while (false)

#define SPINDLE_STATUS_CONCAT_INNER_(a, b) a##b
#define SPINDLE_STATUS_CONCAT_(a, b) SPINDLE_STATUS_CONCAT_INNER_(a, b)

// `SPINDLE_ASSIGN_OR_RETURN(auto x, F());` assigns the value of an absl::StatusOr or returns its
// status from the enclosing function.
#define SPINDLE_ASSIGN_OR_RETURN(lhs, expr) \
  SPINDLE_ASSIGN_OR_RETURN_IMPL_(SPINDLE_STATUS_CONCAT_(spindle_statusor_, __LINE__), lhs, expr)
#define SPINDLE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) [[unlikely]] {                        \
    return std::move(statusor).status();                    \
  }                                                         \
  lhs = *std::move(statusor)

// The same two for coroutines (Task<absl::Status>, Task<absl::StatusOr<T>>): co_return instead of
// return.
#define SPINDLE_CO_RETURN_IF_ERROR(expr)                                               \
  do {                                                                                 \
    if (::absl::Status spindle_status_ = (expr); !spindle_status_.ok()) [[unlikely]] { \
      co_return spindle_status_;                                                       \
    }                                                                                  \
  } while (false)

#define SPINDLE_CO_ASSIGN_OR_RETURN(lhs, expr) \
  SPINDLE_CO_ASSIGN_OR_RETURN_IMPL_(SPINDLE_STATUS_CONCAT_(spindle_statusor_, __LINE__), lhs, expr)
#define SPINDLE_CO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                      \
  if (!statusor.ok()) [[unlikely]] {                           \
    co_return std::move(statusor).status();                    \
  }                                                            \
  lhs = *std::move(statusor)

#endif  // SPINDLE_COMMON_STATUS_H_
