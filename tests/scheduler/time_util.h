// Shared by the scheduler tests: UTC instants from calendar fields.
#pragma once

#include <date/date.h>

#include "scheduler/calendar.h"

namespace custos::scheduler::test {

inline Seconds Utc(int y, unsigned mo, unsigned d, int h, int mi = 0) {
  using namespace std::chrono;
  return Seconds{date::sys_days{date::year{y} / mo / d}.time_since_epoch() + hours(h) + minutes(mi)};
}

}  // namespace custos::scheduler::test
