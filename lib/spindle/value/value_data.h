// Typed data of shared values: scalars (int64, double, bytes, string), int64 and double arrays,
// and maps of string keys to scalars; element addressing (array index, map key); equality and
// encoded size. Plain value types with no wire types: services/queue converts protobufs.
//
// Thread-safety: plain values (thread-compatible).
#ifndef SPINDLE_VALUE_VALUE_DATA_H_
#define SPINDLE_VALUE_VALUE_DATA_H_

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace spindle::value {

// Opaque bytes (distinct from a UTF-8 string).
struct Bytes {
  std::string data;
  bool operator==(const Bytes&) const = default;
};

// A map entry or an array element. Alternatives in the order of ValueScalar's arms.
using Scalar = std::variant<int64_t, double, Bytes, std::string>;
using Map = std::map<std::string, Scalar>;
// A whole value. Alternatives in the order of ValueType (index + 1 = the type).
using Data = std::variant<int64_t, double, Bytes, std::string, std::vector<int64_t>,
                          std::vector<double>, Map>;

enum class ValueType : int {
  kInt64 = 1,
  kDouble = 2,
  kBytes = 3,
  kString = 4,
  kInt64Array = 5,
  kDoubleArray = 6,
  kMap = 7,
};

inline ValueType TypeOf(const Data& data) { return static_cast<ValueType>(data.index() + 1); }
const char* TypeName(ValueType type);

// An element selector: an array index (negative counts from the end) or a map key.
using Element = std::variant<int64_t, std::string>;

// Encoded size in bytes: 8 per number, the length of bytes and strings, keys included for maps.
int64_t EncodedSize(const Data& data);
int64_t ScalarSize(const Scalar& scalar);
// Arrays: length; maps: number of keys; scalars: 0.
int64_t Length(const Data& data);

// A scalar as a whole value of the same type, and back (nullopt-like error when not a scalar).
Data ScalarToData(const Scalar& scalar);
// FAILED_PRECONDITION TYPE_MISMATCH when `data` is an array or a map.
absl::StatusOr<Scalar> DataToScalar(const Data& data, const std::string& field);

}  // namespace spindle::value

#endif  // SPINDLE_VALUE_VALUE_DATA_H_
