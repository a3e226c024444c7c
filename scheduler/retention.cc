#include "scheduler/retention.h"

#include <date/iso_week.h>
#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>

namespace custos::scheduler {

namespace {

using std::chrono::hours;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// The rules that count calendar periods, in the order reasons are listed.
enum Period { kHourly, kDaily, kWeekly, kMonthly, kYearly, kPeriods };
const char* const kPeriodNames[kPeriods] = {"hourly", "daily", "weekly", "monthly", "yearly"};

struct LocalStamp {
  std::string period[kPeriods];  // "2026-11-26 14h", "2026-11-26", "2026-W48", "2026-11", "2026"
};

LocalStamp Stamp(const date::time_zone& zone, int64_t time_ns) {
  auto sys = date::floor<seconds>(date::sys_time<nanoseconds>(nanoseconds(time_ns)));
  auto local = zone.to_local(sys);
  auto day = date::floor<date::days>(local);
  date::year_month_day ymd{day};
  iso_week::year_weeknum_weekday iso{day};
  int hour = int(date::floor<hours>(local - day).count());
  int y = int(ymd.year()), m = int(unsigned(ymd.month())), d = int(unsigned(ymd.day()));
  char buf[32];
  LocalStamp s;
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02dh", y, m, d, hour);
  s.period[kHourly] = buf;
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", y, m, d);
  s.period[kDaily] = buf;
  std::snprintf(buf, sizeof buf, "%04d-W%02u", int(iso.year()), unsigned(iso.weeknum()));
  s.period[kWeekly] = buf;
  std::snprintf(buf, sizeof buf, "%04d-%02d", y, m);
  s.period[kMonthly] = buf;
  std::snprintf(buf, sizeof buf, "%04d", y);
  s.period[kYearly] = buf;
  return s;
}

// The instant `d` before `newest_ns`, in the zone's calendar (see the header).
int64_t WithinBoundaryNs(const date::time_zone& zone, int64_t newest_ns, const RetentionDuration& d) {
  auto sys = date::sys_time<nanoseconds>(nanoseconds(newest_ns));
  auto local = zone.to_local(sys);
  auto day = date::floor<date::days>(local);
  auto time_of_day = local - day;
  date::year_month_day ymd{day};
  date::year_month ym = date::year_month{ymd.year(), ymd.month()} - date::years(d.years) - date::months(d.months);
  date::day last = date::year_month_day_last{ym.year(), date::month_day_last{ym.month()}}.day();
  date::local_days start = date::local_days{ym / std::min(ymd.day(), last)} - date::days(d.days);
  auto boundary = zone.to_sys(start + time_of_day, date::choose::earliest) - hours(d.hours);
  return boundary.time_since_epoch().count();
}

std::string Pad(int n, const char* unit) { return n ? std::to_string(n) + unit : std::string(); }

}  // namespace

std::string RetentionDuration::ToString() const {
  std::string s = Pad(years, "y") + Pad(months, "m") + Pad(days, "d") + Pad(hours, "h");
  return s.empty() ? "0h" : s;
}

Result<RetentionDuration> ParseRetentionDuration(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("keep-within \"" + text + "\": " + why +
                                " (write e.g. 30d, 2w, 1y6m, 12h: units y m w d h, in that order)");
  };
  if (text.empty()) return bad("empty");
  RetentionDuration d;
  const std::string units = "ymwdh";
  size_t next_unit = 0, i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start) return bad("expected a number at \"" + text.substr(start) + "\"");
    if (i - start > 6) return bad("number too large");
    if (i == text.size()) return bad("number without a unit");
    int n = std::stoi(text.substr(start, i - start));
    size_t u = units.find(char(std::tolower(static_cast<unsigned char>(text[i]))));
    if (u == std::string::npos) return bad(std::string("unknown unit '") + text[i] + "'");
    if (u < next_unit) return bad(std::string("unit '") + text[i] + "' repeated or out of order");
    next_unit = u + 1;
    ++i;
    switch (units[u]) {
      case 'y': d.years = n; break;
      case 'm': d.months = n; break;
      case 'w': d.days += 7 * n; break;
      case 'd': d.days += n; break;
      case 'h': d.hours = n; break;
    }
  }
  if (d.zero()) return bad("zero keeps nothing");
  if (d.days > 999999) return bad("too long");  // weeks add up: keep the canonical form parseable
  return d;
}

bool RetentionPolicy::empty() const {
  return keep_last == 0 && keep_hourly == 0 && keep_daily == 0 && keep_weekly == 0 && keep_monthly == 0 &&
         keep_yearly == 0 && keep_within.zero();
}

std::string RetentionPolicy::ToString() const {
  std::string s;
  auto add = [&](const char* name, int n) {
    if (n == 0) return;
    s += (s.empty() ? "" : ", ") + std::string(name) + " " + (n < 0 ? "unlimited" : std::to_string(n));
  };
  add("keep-last", keep_last);
  add("keep-hourly", keep_hourly);
  add("keep-daily", keep_daily);
  add("keep-weekly", keep_weekly);
  add("keep-monthly", keep_monthly);
  add("keep-yearly", keep_yearly);
  if (!keep_within.zero()) s += (s.empty() ? "" : ", ") + std::string("keep-within ") + keep_within.ToString();
  return s.empty() ? "(nothing)" : s;
}

Result<std::vector<RetentionGroup>> ApplyRetention(const std::vector<RetentionSnapshot>& snapshots,
                                                   const RetentionPolicy& policy, const std::string& zone_name,
                                                   const std::set<std::string>& held) {
  if (policy.empty()) {
    return InvalidArgumentError("retention policy keeps nothing: refused (give at least one --keep-* rule)");
  }
  const int counts[kPeriods] = {policy.keep_hourly, policy.keep_daily, policy.keep_weekly, policy.keep_monthly,
                                policy.keep_yearly};
  for (int n : counts) {
    if (n < -1) return InvalidArgumentError("retention policy: a count must be -1 (unlimited) or more");
  }
  if (policy.keep_last < -1) return InvalidArgumentError("retention policy: keep-last must be -1 (unlimited) or more");
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(zone_name);
  } catch (const std::exception&) {
    return NotFoundError("time zone \"" + zone_name + "\" is not in the tz database");
  }

  // Group by host and path set.
  std::map<std::pair<std::string, std::vector<std::string>>, std::vector<const RetentionSnapshot*>> groups;
  for (const auto& s : snapshots) {
    auto paths = s.paths;
    std::sort(paths.begin(), paths.end());
    groups[{s.host, paths}].push_back(&s);
  }

  std::vector<RetentionGroup> out;
  for (auto& [key, members] : groups) {
    std::sort(members.begin(), members.end(), [](const RetentionSnapshot* a, const RetentionSnapshot* b) {
      return a->time_ns > b->time_ns || (a->time_ns == b->time_ns && a->id > b->id);
    });
    RetentionGroup g;
    g.host = key.first;
    g.paths = key.second;
    int left[kPeriods];
    std::copy(std::begin(counts), std::end(counts), left);
    std::string last_period[kPeriods];
    bool kept_by[kPeriods] = {};  // whether the snapshot in hand was kept by that rule
    int64_t within_boundary =
        policy.keep_within.zero() ? 0 : WithinBoundaryNs(*zone, members.front()->time_ns, policy.keep_within);
    for (size_t i = 0; i < members.size(); ++i) {
      const RetentionSnapshot& s = *members[i];
      RetentionDecision d;
      d.id = s.id;
      d.time_ns = s.time_ns;
      if (held.count(s.id)) d.reasons.push_back("held");
      if (policy.keep_last < 0 || i < size_t(policy.keep_last)) d.reasons.push_back("last " + std::to_string(i + 1));
      LocalStamp stamp = Stamp(*zone, s.time_ns);
      for (int p = 0; p < kPeriods; ++p) {
        kept_by[p] = false;
        if (left[p] == 0 || stamp.period[p] == last_period[p]) continue;
        last_period[p] = stamp.period[p];
        if (left[p] > 0) --left[p];
        kept_by[p] = true;
        d.reasons.push_back(std::string(kPeriodNames[p]) + " " + stamp.period[p]);
      }
      if (i + 1 == members.size()) {
        for (int p = 0; p < kPeriods; ++p) {
          if (left[p] > 0 && !kept_by[p]) d.reasons.push_back(std::string("oldest ") + kPeriodNames[p]);
        }
      }
      if (!policy.keep_within.zero() && s.time_ns > within_boundary) {
        d.reasons.push_back("within " + policy.keep_within.ToString());
      }
      d.keep = !d.reasons.empty();
      g.decisions.push_back(std::move(d));
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace custos::scheduler
