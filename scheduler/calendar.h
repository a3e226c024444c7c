// Calendar expressions: when a schedule fires, in an IANA time zone.
//
// Forms (case-insensitive, fields separated by blanks):
//   5-field cron   "M H DOM MON DOW": each field `*`, a number, a range
//                  `a-b`, a step `*/n` or `a-b/n`, or a comma list of these;
//                  MON also jan..dec, DOW also sun..sat (0 and 7 are Sunday).
//                  As in cron, when both DOM and DOW are restricted a day
//                  matches if either does.
//   "hourly [:MM]"           every hour at minute MM (default 0)
//   "daily HH:MM"            every day
//   "weekly DOW HH:MM"       e.g. "weekly sun 03:00"
//   "monthly DAY HH:MM"      DAY 1..31; months without that day are skipped
//
// Times are wall-clock times in the schedule's zone. Daylight saving: a
// time that does not exist that day (the clocks jump over it) fires at the
// jump, once; a time that happens twice (the clocks go back) fires at its
// first occurrence only. So "daily 02:30" in Europe/Berlin fires every day
// exactly once, DST or not. Zones come from the system's tz database
// (/usr/share/zoneinfo, through Howard Hinnant's date library).
//
// Thread-safety: a parsed Calendar is immutable; Next is thread-safe.
#pragma once

#include <bitset>
#include <chrono>
#include <string>

#include "base/status.h"

namespace date {
class time_zone;
}

namespace custos::scheduler {

using Seconds = std::chrono::sys_seconds;

class Calendar {
 public:
  // InvalidArgument naming the field when `expr` is not one of the forms
  // above, or NotFound when `zone` is not a known IANA zone.
  static Result<Calendar> Parse(const std::string& expr, const std::string& zone);

  // The first firing strictly after `after`.
  Seconds Next(Seconds after) const;

  const std::string& expr() const { return expr_; }
  const std::string& zone() const { return zone_name_; }

 private:
  Calendar() = default;
  bool DayMatches(int dom, int mon, int dow) const;

  std::string expr_, zone_name_;
  const date::time_zone* zone_ = nullptr;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> doms_;    // 1..31
  std::bitset<13> months_;  // 1..12
  std::bitset<7> dows_;     // 0 = Sunday
  bool dom_restricted_ = false, dow_restricted_ = false;
};

// Whether `zone` names a zone of the system's tz database.
bool IsKnownZone(const std::string& zone);
// The system's zone (/etc/localtime), or "UTC" when it cannot be told.
std::string SystemZone();
// The current time, to the second.
Seconds Now();
// "2026-11-27T02:00:00Z".
std::string FormatUtc(Seconds t);

}  // namespace custos::scheduler
