// The program version, recorded in snapshots and reports. Keep in step with
// project(... VERSION ...) in the top-level CMakeLists.txt.
#pragma once

namespace custos {

inline constexpr const char* kCustosVersion = "0.1.0";

}  // namespace custos
