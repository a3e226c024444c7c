#include "scheduler/calendar.h"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <vector>

namespace custos::scheduler {

namespace {

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::vector<std::string> Words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

// A number, or a name from `names` (index + `base`); -1 if neither.
int Value(const std::string& s, const char* const* names, int count, int base) {
  if (!s.empty() && s.size() <= 4 && std::all_of(s.begin(), s.end(), ::isdigit)) return std::stoi(s);
  for (int i = 0; names && i < count; ++i) {
    if (s == names[i]) return i + base;
  }
  return -1;
}

// One cron field into `bits` (positions lo..hi). `what` names it in errors.
template <size_t N>
Status ParseField(const std::string& text, int lo, int hi, const char* const* names, int count, int base,
                  const char* what, std::bitset<N>* bits, bool* restricted) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError(std::string("calendar: ") + what + " field \"" + text + "\": " + why);
  };
  if (text.empty()) return bad("empty");
  *restricted = text[0] != '*';
  for (const std::string& part : Split(text, ',')) {
    auto slash = Split(part, '/');
    if (slash.size() > 2) return bad("more than one '/'");
    int step = 1;
    if (slash.size() == 2) {
      step = Value(slash[1], nullptr, 0, 0);
      if (step < 1) return bad("bad step \"" + slash[1] + "\"");
    }
    int a, b;
    if (slash[0] == "*") {
      a = lo;
      b = hi;
    } else {
      auto range = Split(slash[0], '-');
      if (range.size() > 2) return bad("bad range \"" + slash[0] + "\"");
      a = Value(range[0], names, count, base);
      b = range.size() == 2 ? Value(range[1], names, count, base) : (slash.size() == 2 ? hi : a);
      if (a < 0 || b < 0) return bad("\"" + slash[0] + "\" is not a number" + (names ? " or a name" : ""));
    }
    if (a < lo || b > hi || a > b) {
      return bad(std::to_string(a) + "-" + std::to_string(b) + " outside " + std::to_string(lo) + "-" +
                 std::to_string(hi));
    }
    for (int v = a; v <= b; v += step) bits->set(size_t(v));
  }
  return Status::Ok();
}

// "HH:MM" into hour and minute.
bool ParseClock(const std::string& s, int* h, int* m) {
  auto p = Split(s, ':');
  if (p.size() != 2 || p[0].empty() || p[0].size() > 2 || p[1].size() != 2) return false;
  *h = Value(p[0], nullptr, 0, 0);
  *m = Value(p[1], nullptr, 0, 0);
  return *h >= 0 && *h <= 23 && *m >= 0 && *m <= 59;
}

}  // namespace

bool IsKnownZone(const std::string& zone) {
  try {
    return date::locate_zone(zone) != nullptr;
  } catch (const std::exception&) {
    return false;
  }
}

std::string SystemZone() {
  try {
    if (const date::time_zone* z = date::current_zone()) return std::string(z->name());
  } catch (const std::exception&) {
  }
  return "UTC";
}

Seconds Now() { return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()); }

std::string FormatUtc(Seconds t) {
  if (t == Seconds::max()) return "never";
  return date::format("%Y-%m-%dT%H:%M:%SZ", t);
}

Result<Calendar> Calendar::Parse(const std::string& expr_in, const std::string& zone) {
  Calendar c;
  c.expr_ = expr_in;
  c.zone_name_ = zone;
  try {
    c.zone_ = date::locate_zone(zone);
  } catch (const std::exception&) {
    return NotFoundError("calendar: unknown time zone \"" + zone + "\" (an IANA name such as Asia/Ho_Chi_Minh)");
  }
  std::string expr = expr_in;
  std::transform(expr.begin(), expr.end(), expr.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  std::vector<std::string> w = Words(expr);
  if (w.empty()) return InvalidArgumentError("calendar: empty expression");
  std::string cron;
  int h = 0, m = 0;
  auto usage = [&](const std::string& form) {
    return InvalidArgumentError("calendar \"" + expr_in + "\": expected " + form);
  };
  if (w[0] == "hourly") {
    if (w.size() > 2) return usage("hourly [:MM]");
    int minute = 0;
    if (w.size() == 2) {
      std::string mm = w[1][0] == ':' ? w[1].substr(1) : w[1];
      minute = mm.size() == 2 ? Value(mm, nullptr, 0, 0) : -1;
      if (minute < 0 || minute > 59) return usage("hourly [:MM]");
    }
    cron = std::to_string(minute) + " * * * *";
  } else if (w[0] == "daily") {
    if (w.size() != 2 || !ParseClock(w[1], &h, &m)) return usage("daily HH:MM");
    cron = std::to_string(m) + " " + std::to_string(h) + " * * *";
  } else if (w[0] == "weekly") {
    if (w.size() != 3 || !ParseClock(w[2], &h, &m) || Value(w[1], kDays, 7, 0) < 0 || Value(w[1], kDays, 7, 0) > 7) {
      return usage("weekly DAY HH:MM (DAY: sun..sat)");
    }
    cron = std::to_string(m) + " " + std::to_string(h) + " * * " + w[1];
  } else if (w[0] == "monthly") {
    int day = w.size() == 3 ? Value(w[1], nullptr, 0, 0) : -1;
    if (w.size() != 3 || day < 1 || day > 31 || !ParseClock(w[2], &h, &m)) return usage("monthly DAY HH:MM");
    cron = std::to_string(m) + " " + std::to_string(h) + " " + w[1] + " * *";
  } else if (w.size() == 5) {
    cron = expr;
  } else {
    return usage("5 cron fields (M H DOM MON DOW), or hourly, daily, weekly, monthly");
  }
  w = Words(cron);
  bool unused;
  RETURN_IF_ERROR(ParseField(w[0], 0, 59, nullptr, 0, 0, "minute", &c.minutes_, &unused));
  RETURN_IF_ERROR(ParseField(w[1], 0, 23, nullptr, 0, 0, "hour", &c.hours_, &unused));
  RETURN_IF_ERROR(ParseField(w[2], 1, 31, nullptr, 0, 0, "day-of-month", &c.doms_, &c.dom_restricted_));
  RETURN_IF_ERROR(ParseField(w[3], 1, 12, kMonths, 12, 1, "month", &c.months_, &unused));
  std::bitset<8> dows;
  RETURN_IF_ERROR(ParseField(w[4], 0, 7, kDays, 7, 0, "day-of-week", &dows, &c.dow_restricted_));
  for (int d = 0; d < 7; ++d) c.dows_[size_t(d)] = dows[size_t(d)];
  if (dows[7]) c.dows_.set(0);  // 7 is Sunday too
  return c;
}

bool Calendar::DayMatches(int dom, int mon, int dow) const {
  if (!months_[size_t(mon)]) return false;
  bool d = doms_[size_t(dom)], w = dows_[size_t(dow)];
  if (dom_restricted_ && dow_restricted_) return d || w;  // cron's rule
  return d && w;
}

Seconds Calendar::Next(Seconds after) const {
  using namespace std::chrono;
  auto local_after = zone_->to_local(after);
  auto day = floor<days>(local_after) - days(1);  // a day early: offsets and jumps near midnight
  // A day that matches comes within 8 years (29 February, or DOM 31 in
  // months that have it); an expression that never matches (31 feb) gives up.
  for (int i = 0; i < 366 * 8 + 2; ++i, day += days(1)) {
    date::year_month_day ymd{day};
    date::weekday wd{day};
    if (!DayMatches(int(unsigned(ymd.day())), int(unsigned(ymd.month())), int(wd.c_encoding()))) continue;
    for (int h = 0; h < 24; ++h) {
      if (!hours_[size_t(h)]) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_[size_t(m)]) continue;
        date::local_seconds lt{day.time_since_epoch() + hours(h) + minutes(m)};
        auto info = zone_->get_info(lt);
        Seconds t;
        if (info.result == date::local_info::nonexistent) {
          t = info.second.begin;  // the clocks jumped over it: fire at the jump
        } else {
          t = Seconds{lt.time_since_epoch() - info.first.offset};  // unique, or the first of two
        }
        if (t > after) return t;
      }
    }
  }
  return Seconds::max();
}

}  // namespace custos::scheduler
