// Calendar expressions (scheduler/calendar.h): the forms, their errors, and
// the daylight-saving rules (a skipped time fires at the jump, a repeated
// one at its first occurrence).
#include <catch2/catch.hpp>
#include <date/date.h>

#include "tests/scheduler/time_util.h"

#include "scheduler/calendar.h"

using namespace custos;
using namespace custos::scheduler;
using namespace std::chrono;

namespace {

using test::Utc;

Calendar Cal(const std::string& expr, const std::string& zone = "UTC") {
  auto c = Calendar::Parse(expr, zone);
  INFO(expr << " " << zone << ": " << c.status().ToString());
  REQUIRE(c.ok());
  return std::move(c).value();
}

}  // namespace

TEST_CASE("calendar: forms and their errors", "[scheduler]") {
  REQUIRE(Cal("daily 02:00").Next(Utc(2026, 3, 1, 0)) == Utc(2026, 3, 1, 2));
  REQUIRE(Cal("daily 02:00").Next(Utc(2026, 3, 1, 2)) == Utc(2026, 3, 2, 2));  // strictly after
  REQUIRE(Cal("hourly").Next(Utc(2026, 3, 1, 5, 10)) == Utc(2026, 3, 1, 6));
  REQUIRE(Cal("hourly :30").Next(Utc(2026, 3, 1, 5, 10)) == Utc(2026, 3, 1, 5, 30));
  REQUIRE(Cal("weekly sun 03:00").Next(Utc(2026, 3, 2, 0)) == Utc(2026, 3, 8, 3));  // 2026-03-08 is a Sunday
  REQUIRE(Cal("monthly 31 02:00").Next(Utc(2026, 2, 1, 0)) == Utc(2026, 3, 31, 2));  // February has no 31st
  // Cron: steps, ranges, names; weekdays only.
  Calendar work = Cal("*/15 9-17 * * mon-fri");
  REQUIRE(work.Next(Utc(2026, 3, 6, 17, 50)) == Utc(2026, 3, 9, 9));  // Friday evening -> Monday 09:00
  REQUIRE(work.Next(Utc(2026, 3, 9, 9)) == Utc(2026, 3, 9, 9, 15));
  // Day of month and day of week both given: either matches (cron's rule).
  Calendar c13 = Cal("0 0 13 * fri");
  REQUIRE(c13.Next(Utc(2026, 3, 1, 0)) == Utc(2026, 3, 6, 0));   // a Friday
  REQUIRE(c13.Next(Utc(2026, 3, 10, 0)) == Utc(2026, 3, 13, 0)); // the 13th (also a Friday)
  REQUIRE(Cal("0 4 1 jan,jul 7").Next(Utc(2026, 1, 2, 0)) == Utc(2026, 1, 4, 4));  // 7 = Sunday
  // A date that never comes: no next run.
  REQUIRE(Cal("0 0 31 feb *").Next(Utc(2026, 1, 1, 0)) == Seconds::max());

  for (const char* bad : {"", "daily", "daily 25:00", "daily 2:7", "weekly xyz 03:00", "monthly 32 01:00",
                          "* * *", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                          "5-1 * * * *", "*/0 * * * *", "a * * * *", "hourly 75"}) {
    INFO(bad);
    REQUIRE(Calendar::Parse(bad, "UTC").status().code() == Code::kInvalidArgument);
  }
  REQUIRE(Calendar::Parse("daily 02:00", "Mars/Olympus_Mons").status().code() == Code::kNotFound);
  REQUIRE(IsKnownZone("Asia/Ho_Chi_Minh"));
  REQUIRE_FALSE(IsKnownZone("Asia/Nowhere"));
}

TEST_CASE("calendar: time zones and daylight saving", "[scheduler]") {
  // Ho Chi Minh City: UTC+7 all year.
  REQUIRE(Cal("0 2 * * *", "Asia/Ho_Chi_Minh").Next(Utc(2026, 3, 1, 0)) == Utc(2026, 3, 1, 19));
  // Berlin, spring forward on 2026-03-29: 02:00 CET -> 03:00 CEST, so 02:30
  // does not exist that night: it fires at the jump (01:00 UTC), once.
  Calendar berlin = Cal("daily 02:30", "Europe/Berlin");
  REQUIRE(berlin.Next(Utc(2026, 3, 27, 12)) == Utc(2026, 3, 28, 1, 30));  // CET: 02:30 = 01:30 UTC
  REQUIRE(berlin.Next(Utc(2026, 3, 28, 12)) == Utc(2026, 3, 29, 1));      // the jump
  REQUIRE(berlin.Next(Utc(2026, 3, 29, 1)) == Utc(2026, 3, 30, 0, 30));   // CEST: 02:30 = 00:30 UTC
  // Every 15 minutes through the gap: the skipped 02:00-02:45 fire once, at the jump.
  Calendar quarter = Cal("*/15 * * * *", "Europe/Berlin");
  REQUIRE(quarter.Next(Utc(2026, 3, 29, 0, 50)) == Utc(2026, 3, 29, 1));
  REQUIRE(quarter.Next(Utc(2026, 3, 29, 1)) == Utc(2026, 3, 29, 1, 15));  // 03:15 CEST
  // Fall back on 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens
  // twice: it fires at the first (00:30 UTC) only.
  REQUIRE(berlin.Next(Utc(2026, 10, 24, 12)) == Utc(2026, 10, 25, 0, 30));
  REQUIRE(berlin.Next(Utc(2026, 10, 25, 0, 30)) == Utc(2026, 10, 26, 1, 30));
}
