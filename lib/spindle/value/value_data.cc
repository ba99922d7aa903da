#include "spindle/value/value_data.h"

#include "absl/strings/str_cat.h"
#include "spindle/common/status.h"

namespace spindle::value {

const char* TypeName(ValueType type) {
  switch (type) {
    case ValueType::kInt64:
      return "int64";
    case ValueType::kDouble:
      return "double";
    case ValueType::kBytes:
      return "bytes";
    case ValueType::kString:
      return "string";
    case ValueType::kInt64Array:
      return "int64 array";
    case ValueType::kDoubleArray:
      return "double array";
    case ValueType::kMap:
      return "map";
  }
  return "unknown";
}

int64_t ScalarSize(const Scalar& scalar) {
  if (const auto* b = std::get_if<Bytes>(&scalar)) {
    return static_cast<int64_t>(b->data.size());
  }
  if (const auto* s = std::get_if<std::string>(&scalar)) {
    return static_cast<int64_t>(s->size());
  }
  return 8;
}

int64_t EncodedSize(const Data& data) {
  switch (data.index()) {
    case 0:
    case 1:
      return 8;
    case 2:
      return static_cast<int64_t>(std::get<Bytes>(data).data.size());
    case 3:
      return static_cast<int64_t>(std::get<std::string>(data).size());
    case 4:
      return 8 * static_cast<int64_t>(std::get<std::vector<int64_t>>(data).size());
    case 5:
      return 8 * static_cast<int64_t>(std::get<std::vector<double>>(data).size());
    default: {
      int64_t size = 0;
      for (const auto& [key, scalar] : std::get<Map>(data)) {
        size += static_cast<int64_t>(key.size()) + ScalarSize(scalar);
      }
      return size;
    }
  }
}

int64_t Length(const Data& data) {
  if (const auto* a = std::get_if<std::vector<int64_t>>(&data)) {
    return static_cast<int64_t>(a->size());
  }
  if (const auto* a = std::get_if<std::vector<double>>(&data)) {
    return static_cast<int64_t>(a->size());
  }
  if (const auto* m = std::get_if<Map>(&data)) {
    return static_cast<int64_t>(m->size());
  }
  return 0;
}

Data ScalarToData(const Scalar& scalar) {
  return std::visit([](const auto& v) -> Data { return v; }, scalar);
}

absl::StatusOr<Scalar> DataToScalar(const Data& data, const std::string& field) {
  switch (data.index()) {
    case 0:
      return Scalar(std::get<int64_t>(data));
    case 1:
      return Scalar(std::get<double>(data));
    case 2:
      return Scalar(std::get<Bytes>(data));
    case 3:
      return Scalar(std::get<std::string>(data));
    default:
      return FailedPrecondition(
          "TYPE_MISMATCH",
          absl::StrCat(field, " must be a scalar for an element, not a ", TypeName(TypeOf(data))));
  }
}

}  // namespace spindle::value
