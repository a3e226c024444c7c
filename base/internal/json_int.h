// Range-checked integers from nlohmann::json, for the parsers of JSON files
// (config, key slots, manifests). Private to the modules' .cc files: keeps
// the JSON library out of public headers.
//
// nlohmann's get<uint32_t>() converts a float such as 1e20 with a
// static_cast (undefined behaviour) and silently wraps integers that do not
// fit. JsonInt accepts only integers within T's range and otherwise throws
// std::out_of_range, which the parsers' catch turns into Corruption.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace custos::internal {

template <typename T>
T JsonInt(const nlohmann::json& v, const char* key) {
  if (v.is_number_unsigned()) {
    uint64_t x = v.get<uint64_t>();
    if (x <= uint64_t(std::numeric_limits<T>::max())) return T(x);
  } else if (v.is_number_integer() && std::is_signed_v<T>) {
    int64_t x = v.get<int64_t>();
    if (x >= int64_t(std::numeric_limits<T>::min()) && x <= int64_t(std::numeric_limits<T>::max())) return T(x);
  }
  throw std::out_of_range(std::string(key) + " is not an integer in range");
}

// obj[key] as T; throws (like json::at) when the key is missing.
template <typename T>
T JsonIntAt(const nlohmann::json& obj, const char* key) {
  return JsonInt<T>(obj.at(key), key);
}

}  // namespace custos::internal
