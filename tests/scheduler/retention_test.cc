// Retention (scheduler/retention.h): the bucket rules over a hand-made
// calendar of snapshots, ISO week boundaries, daylight saving in
// Europe/Berlin (a repeated hour, a local day that is not the UTC day),
// keep-within as calendar arithmetic from the newest snapshot, holds,
// grouping, and the refusal of a policy that keeps nothing.
#include <catch2/catch.hpp>

#include <map>

#include "tests/scheduler/time_util.h"

#include "scheduler/retention.h"

using namespace custos;
using namespace custos::scheduler;

namespace {

using test::Utc;

int64_t Ns(Seconds t, int extra_s = 0) { return (t.time_since_epoch().count() + extra_s) * 1000000000LL; }

RetentionSnapshot Snap(const std::string& id, int64_t ns, const std::string& host = "db01",
                       std::vector<std::string> paths = {"/srv"}) {
  return RetentionSnapshot{id, ns, host, std::move(paths)};
}

// id -> reasons, for every snapshot of every group (absent reasons: it goes).
std::map<std::string, std::vector<std::string>> Decide(const std::vector<RetentionSnapshot>& snaps,
                                                       const RetentionPolicy& p, const std::string& zone = "UTC",
                                                       const std::set<std::string>& held = {}) {
  auto groups = ApplyRetention(snaps, p, zone, held);
  INFO(groups.status().ToString());
  REQUIRE(groups.ok());
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& g : *groups) {
    for (const auto& d : g.decisions) {
      REQUIRE(d.keep == !d.reasons.empty());
      out[d.id] = d.reasons;
    }
  }
  return out;
}

using Reasons = std::vector<std::string>;

// A winter around New Year: 2025-12-31 is a Wednesday of ISO week 2026-W01
// (2026-01-01 is a Thursday), 2026-01-05 starts W02, 2026-02-01 is the
// Sunday of W05.
std::vector<RetentionSnapshot> Winter() {
  return {Snap("s01", Ns(Utc(2025, 12, 31, 23))), Snap("s02", Ns(Utc(2026, 1, 1, 10))),
          Snap("s03", Ns(Utc(2026, 1, 4, 22))),   Snap("s04", Ns(Utc(2026, 1, 5, 1))),
          Snap("s05", Ns(Utc(2026, 1, 5, 13))),   Snap("s06", Ns(Utc(2026, 1, 6, 2))),
          Snap("s07", Ns(Utc(2026, 2, 1, 2))),    Snap("s08", Ns(Utc(2026, 2, 2, 2)))};
}

}  // namespace

TEST_CASE("retention: the newest snapshot of each of the N newest periods survives", "[scheduler][retention]") {
  RetentionPolicy p;
  p.keep_daily = 3;
  p.keep_weekly = 2;
  p.keep_monthly = 2;
  p.keep_yearly = 2;
  auto r = Decide(Winter(), p);
  CHECK(r["s08"] == Reasons{"daily 2026-02-02", "weekly 2026-W06", "monthly 2026-02", "yearly 2026"});
  CHECK(r["s07"] == Reasons{"daily 2026-02-01", "weekly 2026-W05"});
  CHECK(r["s06"] == Reasons{"daily 2026-01-06", "monthly 2026-01"});
  CHECK(r["s05"].empty());
  CHECK(r["s04"].empty());
  CHECK(r["s03"].empty());
  CHECK(r["s02"].empty());
  CHECK(r["s01"] == Reasons{"yearly 2025"});
}

TEST_CASE("retention: ISO weeks span the new year, unfilled rules keep the oldest", "[scheduler][retention]") {
  RetentionPolicy p;
  p.keep_weekly = 4;
  auto r = Decide(Winter(), p);
  CHECK(r["s08"] == Reasons{"weekly 2026-W06"});
  CHECK(r["s07"] == Reasons{"weekly 2026-W05"});
  CHECK(r["s06"] == Reasons{"weekly 2026-W02"});
  CHECK(r["s05"].empty());
  CHECK(r["s04"].empty());
  CHECK(r["s03"] == Reasons{"weekly 2026-W01"});  // Sunday 4 January ends W01
  CHECK(r["s02"].empty());
  CHECK(r["s01"].empty());  // 31 December 2025 is in 2026-W01 too

  // Five weeks asked, four exist: the group's oldest snapshot stays as well.
  p.keep_weekly = 5;
  r = Decide(Winter(), p);
  CHECK(r["s03"] == Reasons{"weekly 2026-W01"});
  CHECK(r["s01"] == Reasons{"oldest weekly"});
  CHECK(r["s02"].empty());
}

TEST_CASE("retention: keep-last and unlimited counts", "[scheduler][retention]") {
  RetentionPolicy p;
  p.keep_last = 2;
  p.keep_daily = -1;
  auto r = Decide(Winter(), p);
  CHECK(r["s08"] == Reasons{"last 1", "daily 2026-02-02"});
  CHECK(r["s07"] == Reasons{"last 2", "daily 2026-02-01"});
  CHECK(r["s06"] == Reasons{"daily 2026-01-06"});
  CHECK(r["s05"] == Reasons{"daily 2026-01-05"});
  CHECK(r["s04"].empty());  // same day as s05, older
  CHECK(r["s03"] == Reasons{"daily 2026-01-04"});
  CHECK(r["s02"] == Reasons{"daily 2026-01-01"});
  CHECK(r["s01"] == Reasons{"daily 2025-12-31"});

  RetentionPolicy all;
  all.keep_last = -1;
  r = Decide(Winter(), all);
  CHECK(r["s01"] == Reasons{"last 8"});
  for (const auto& [id, reasons] : r) CHECK(reasons.size() == 1);
}

TEST_CASE("retention: periods are local in the zone, across daylight saving in Europe/Berlin",
          "[scheduler][retention]") {
  // 2026-10-25: at 01:00 UTC the clocks go from 03:00 CEST back to 02:00
  // CET, so 02:30 local happens twice (00:30 and 01:30 UTC). b4 is 00:30
  // local on the 25th but still the 24th in UTC.
  std::vector<RetentionSnapshot> autumn = {
      Snap("b1", Ns(Utc(2026, 10, 25, 0, 30))),   // 02:30 CEST
      Snap("b2", Ns(Utc(2026, 10, 25, 1, 30))),   // 02:30 CET, the same local hour
      Snap("b3", Ns(Utc(2026, 10, 25, 2, 30))),   // 03:30 CET
      Snap("b4", Ns(Utc(2026, 10, 24, 22, 30))),  // 00:30 CEST on the 25th
      Snap("b5", Ns(Utc(2026, 10, 24, 21, 30))),  // 23:30 CEST on the 24th
  };
  RetentionPolicy hourly;
  hourly.keep_hourly = 3;
  auto r = Decide(autumn, hourly, "Europe/Berlin");
  CHECK(r["b3"] == Reasons{"hourly 2026-10-25 03h"});
  CHECK(r["b2"] == Reasons{"hourly 2026-10-25 02h"});
  CHECK(r["b1"].empty());  // the first 02:30 is the same local hour as the second
  CHECK(r["b4"] == Reasons{"hourly 2026-10-25 00h"});
  CHECK(r["b5"].empty());

  RetentionPolicy daily;
  daily.keep_daily = 2;
  r = Decide(autumn, daily, "Europe/Berlin");
  CHECK(r["b3"] == Reasons{"daily 2026-10-25"});
  CHECK(r["b4"].empty());
  CHECK(r["b5"] == Reasons{"daily 2026-10-24"});
  // In UTC the same snapshots fall on other days.
  r = Decide(autumn, daily, "UTC");
  CHECK(r["b3"] == Reasons{"daily 2026-10-25"});
  CHECK(r["b4"] == Reasons{"daily 2026-10-24"});
  CHECK(r["b5"].empty());

  // 2026-03-29 has 23 hours in Berlin (02:00 CET jumps to 03:00 CEST).
  std::vector<RetentionSnapshot> spring = {
      Snap("c1", Ns(Utc(2026, 3, 28, 23, 30))),  // 00:30 CET on the 29th
      Snap("c2", Ns(Utc(2026, 3, 29, 0, 59))),   // 01:59 CET
      Snap("c3", Ns(Utc(2026, 3, 29, 1, 0))),    // 03:00 CEST: no 02h that day
      Snap("c4", Ns(Utc(2026, 3, 29, 21, 30))),  // 23:30 CEST on the 29th
      Snap("c5", Ns(Utc(2026, 3, 29, 22, 30))),  // 00:30 CEST on the 30th
  };
  RetentionPolicy both;
  both.keep_daily = -1;
  both.keep_hourly = 4;
  r = Decide(spring, both, "Europe/Berlin");
  CHECK(r["c5"] == Reasons{"hourly 2026-03-30 00h", "daily 2026-03-30"});
  CHECK(r["c4"] == Reasons{"hourly 2026-03-29 23h", "daily 2026-03-29"});
  CHECK(r["c3"] == Reasons{"hourly 2026-03-29 03h"});
  CHECK(r["c2"] == Reasons{"hourly 2026-03-29 01h"});
  CHECK(r["c1"].empty());  // same local day as c4; hourly is full
}

TEST_CASE("retention: keep-within counts calendar time back from the newest snapshot", "[scheduler][retention]") {
  // Newest: 2026-03-31 12:00 CEST. "1m" reaches back to 2026-02-28 12:00 CET
  // (31 February does not exist: clamped) = 11:00 UTC; newer than that stays.
  std::vector<RetentionSnapshot> snaps = {
      Snap("n", Ns(Utc(2026, 3, 31, 10))),
      Snap("m-in", Ns(Utc(2026, 2, 28, 11), 1)),
      Snap("m-edge", Ns(Utc(2026, 2, 28, 11))),  // exactly at the boundary: goes
      Snap("d-in", Ns(Utc(2026, 3, 1, 11, 30))),
      Snap("d-out", Ns(Utc(2026, 3, 1, 10, 30))),
  };
  RetentionPolicy p;
  p.keep_within = ParseRetentionDuration("1m").value();
  auto r = Decide(snaps, p, "Europe/Berlin");
  CHECK(r["n"] == Reasons{"within 1m"});
  CHECK(r["m-in"] == Reasons{"within 1m"});
  CHECK(r["m-edge"].empty());
  CHECK(r["d-in"] == Reasons{"within 1m"});

  // "30d" is 30 local days: 2026-03-01 12:00 CET = 11:00 UTC, one hour less
  // than 720 hours because the clocks went forward in between.
  p.keep_within = ParseRetentionDuration("30d").value();
  r = Decide(snaps, p, "Europe/Berlin");
  CHECK(r["d-in"] == Reasons{"within 30d"});
  CHECK(r["d-out"].empty());
  CHECK(r["m-in"].empty());

  p.keep_within = ParseRetentionDuration("12h").value();
  r = Decide({Snap("a", Ns(Utc(2026, 3, 31, 10))), Snap("b", Ns(Utc(2026, 3, 30, 22), 1)),
              Snap("c", Ns(Utc(2026, 3, 30, 22)))},
             p, "Europe/Berlin");
  CHECK(r["b"] == Reasons{"within 12h"});
  CHECK(r["c"].empty());

  // Measured from the newest snapshot, not from now: a host that stopped
  // backing up in 2020 keeps its last day.
  p.keep_within = ParseRetentionDuration("1d").value();
  r = Decide({Snap("old1", Ns(Utc(2020, 5, 1, 8))), Snap("old2", Ns(Utc(2020, 5, 1, 2))),
              Snap("old3", Ns(Utc(2020, 4, 29, 8)))},
             p);
  CHECK(r["old1"] == Reasons{"within 1d"});
  CHECK(r["old2"] == Reasons{"within 1d"});
  CHECK(r["old3"].empty());
}

TEST_CASE("retention: durations parse strictly", "[scheduler][retention]") {
  auto d = ParseRetentionDuration("1y6m");
  REQUIRE(d.ok());
  CHECK(d->years == 1);
  CHECK(d->months == 6);
  CHECK(ParseRetentionDuration("2w")->days == 14);
  CHECK(ParseRetentionDuration("2w")->ToString() == "14d");
  CHECK(ParseRetentionDuration("1y2m3w4d5h")->ToString() == "1y2m25d5h");
  CHECK(ParseRetentionDuration("12H")->hours == 12);
  for (const char* bad : {"", "30", "d", "1x", "1d1y", "1d1d", "0d", "-1d", "1.5d", "99999999d", "1d "}) {
    INFO(bad);
    CHECK(ParseRetentionDuration(bad).status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("retention: held snapshots always stay and change nothing else, groups are separate",
          "[scheduler][retention]") {
  std::vector<RetentionSnapshot> snaps = {
      Snap("a1", Ns(Utc(2026, 11, 20, 2))), Snap("a2", Ns(Utc(2026, 11, 21, 2))),
      Snap("a3", Ns(Utc(2026, 11, 22, 2))), Snap("b1", Ns(Utc(2026, 11, 20, 3), 0), "web01"),
      Snap("b2", Ns(Utc(2026, 11, 21, 3), 0), "web01"),
      Snap("c1", Ns(Utc(2026, 11, 23, 3), 0), "db01", {"/etc"}),  // same host, other paths
  };
  RetentionPolicy p;
  p.keep_last = 1;
  auto r = Decide(snaps, p, "UTC", {"a1"});
  CHECK(r["a3"] == Reasons{"last 1"});
  CHECK(r["a2"].empty());
  CHECK(r["a1"] == Reasons{"held"});
  CHECK(r["b2"] == Reasons{"last 1"});
  CHECK(r["b1"].empty());
  CHECK(r["c1"] == Reasons{"last 1"});

  // A held snapshot that a rule keeps anyway lists both.
  r = Decide(snaps, p, "UTC", {"a3"});
  CHECK(r["a3"] == Reasons{"held", "last 1"});

  auto groups = ApplyRetention(snaps, p, "UTC", {});
  REQUIRE(groups.ok());
  REQUIRE(groups->size() == 3);
  CHECK((*groups)[0].host == "db01");
  CHECK((*groups)[0].paths == std::vector<std::string>{"/etc"});
  CHECK((*groups)[1].paths == std::vector<std::string>{"/srv"});
  CHECK((*groups)[1].decisions.front().id == "a3");  // newest first
  CHECK((*groups)[2].host == "web01");
}

TEST_CASE("retention: a policy that keeps nothing is refused", "[scheduler][retention]") {
  RetentionPolicy empty;
  CHECK(empty.empty());
  CHECK(ApplyRetention({Snap("x", 0)}, empty, "UTC", {}).status().code() == Code::kInvalidArgument);
  CHECK(ApplyRetention({}, empty, "UTC", {}).status().code() == Code::kInvalidArgument);
  RetentionPolicy negative;
  negative.keep_daily = -2;
  CHECK(ApplyRetention({Snap("x", 0)}, negative, "UTC", {}).status().code() == Code::kInvalidArgument);
  RetentionPolicy ok;
  ok.keep_last = 1;
  CHECK(ApplyRetention({Snap("x", 0)}, ok, "Mars/Olympus_Mons", {}).status().code() == Code::kNotFound);
  CHECK(ok.ToString() == "keep-last 1");
}

TEST_CASE("retention: a keep-within whose weeks add up past six digits of days is refused (fuzz)", "[scheduler][retention]") {
  // 707575 weeks is 4953025 days: its canonical form would not parse back.
  REQUIRE(custos::scheduler::ParseRetentionDuration("27277y707575w0d").status().code() == custos::Code::kInvalidArgument);
  auto ok = custos::scheduler::ParseRetentionDuration("142857w");  // 999999 days
  REQUIRE(ok.ok());
  REQUIRE(custos::scheduler::ParseRetentionDuration(ok->ToString()).ok());
}
