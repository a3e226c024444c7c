// Retention: which snapshots a policy keeps. A pure function of the
// snapshots, the policy, the time zone and the held IDs; no I/O, no clock.
//
// Semantics (those of restic's `forget`, doc/design.md D36):
// - Snapshots are grouped by host and path set; each group is decided on
//   its own. Within a group, snapshots are taken newest first.
// - keep_last N keeps the N newest.
// - keep_hourly/daily/weekly/monthly/yearly N: walking newest first, a
//   snapshot whose period (local hour, day, ISO week, month, year in the
//   zone) differs from the previous kept period of that rule is kept, until
//   N periods are kept. So the newest snapshot of each of the N newest
//   periods that have a snapshot survives. -1 means unlimited.
// - When a rule still has periods left after the oldest snapshot (there was
//   not enough history to fill it), the group's oldest snapshot is kept
//   too ("oldest daily"), so the history's start is not lost.
// - keep_within D keeps every snapshot newer than D before the group's
//   NEWEST snapshot (not before now): an agent that stopped backing up keeps
//   its last history instead of ageing it out.
// - A held snapshot is always kept (reason "held"). Holds are an overlay:
//   they never change what the rules do to the other snapshots.
// - A policy that keeps nothing is refused (InvalidArgument): a typo must
//   not delete everything.
//
// Thread-safety: pure functions of values.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace custos::scheduler {

// A calendar duration for keep_within: "30d", "2w", "1y6m", "12h",
// "1y2m3w4d5h" (units y, m, w, d, h; each at most once, in that order).
// Years and months are calendar months in the zone (the day is clamped to
// the month's last day: 31 March minus 1m is 28/29 February); weeks are 7
// days; days are calendar days; hours are 3600 s.
struct RetentionDuration {
  int years = 0, months = 0, days = 0, hours = 0;
  bool zero() const { return years == 0 && months == 0 && days == 0 && hours == 0; }
  std::string ToString() const;  // canonical: "1y6m", "14d" (weeks as days)
};
// InvalidArgument naming the text when it is not of the form above.
Result<RetentionDuration> ParseRetentionDuration(const std::string& text);

struct RetentionPolicy {
  // 0: rule off; -1: unlimited.
  int keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0, keep_monthly = 0, keep_yearly = 0;
  RetentionDuration keep_within;
  // Whether no rule is set (such a policy is refused).
  bool empty() const;
  // "keep-last 3, keep-daily 7, keep-within 30d".
  std::string ToString() const;
};

struct RetentionSnapshot {
  std::string id;  // hex; ties in time are broken by ID
  int64_t time_ns = 0;
  std::string host;
  std::vector<std::string> paths;
};

struct RetentionDecision {
  std::string id;
  int64_t time_ns = 0;
  bool keep = false;
  // Why it is kept, in rule order: "held", "last 1", "hourly 2026-11-26 14h",
  // "daily 2026-11-26", "weekly 2026-W48", "monthly 2026-11", "yearly 2026",
  // "oldest daily", "within 30d". Empty when it goes.
  std::vector<std::string> reasons;
};

struct RetentionGroup {
  std::string host;
  std::vector<std::string> paths;           // sorted
  std::vector<RetentionDecision> decisions;  // newest first
};

// Decides every snapshot. `zone` is an IANA zone (NotFound if unknown);
// periods are local calendar periods there, weeks ISO 8601 weeks.
// InvalidArgument for an empty policy or a count below -1. Groups are
// sorted by host, then paths.
Result<std::vector<RetentionGroup>> ApplyRetention(const std::vector<RetentionSnapshot>& snapshots,
                                                   const RetentionPolicy& policy, const std::string& zone,
                                                   const std::set<std::string>& held);

}  // namespace custos::scheduler
