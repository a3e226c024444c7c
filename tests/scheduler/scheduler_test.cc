// The scheduler on an injected clock (issue 6, "Testing"): a month of nights
// in well under a second, with a daylight-saving change, three days of
// appliance downtime, an agent offline for three nights, two schedules of
// one agent at the same time, and jitter. Checks exactly which slots ran,
// which were caught up and which were recorded missed.
#include <catch2/catch.hpp>
#include <date/date.h>

#include "tests/scheduler/time_util.h"

#include <map>
#include <set>

#include "scheduler/scheduler.h"

using namespace custos;
using namespace custos::scheduler;
using namespace std::chrono;

namespace {

using test::Utc;

// Jobs take `duration`; an agent inside one of its offline windows is not
// connected (Unavailable, as custosd answers).
struct FakeRunner : Runner {
  Seconds now{};
  minutes duration{20};
  std::map<std::string, std::vector<std::pair<Seconds, Seconds>>> offline;
  std::set<std::string> failing;  // agents whose jobs fail
  struct Job {
    RunSpec run;
    Seconds started, ends;
    std::string outcome;
  };
  std::map<std::string, Job> jobs;
  std::vector<std::string> order;

  Result<std::string> Start(const RunSpec& run) override {
    for (const auto& [from, to] : offline[run.agent]) {
      if (now >= from && now < to) return UnavailableError("agent " + run.agent + " is not connected");
    }
    std::string id = "j-" + std::to_string(jobs.size() + 1);
    jobs[id] = Job{run, now, now + duration, failing.count(run.agent) ? "failed" : "ok"};
    order.push_back(id);
    return id;
  }
  std::string State(const std::string& job, std::string* error) override {
    const Job& j = jobs.at(job);
    if (now < j.ends) return "running";
    if (j.outcome == "failed") *error = "disk full on the agent";
    return j.outcome;
  }
  // Start times of schedule `id`'s runs, by slot.
  std::map<Seconds, Job> RunsOf(int64_t id) const {
    std::map<Seconds, Job> out;
    for (const auto& name : order) {
      const Job& j = jobs.at(name);
      if (j.run.schedule == id) out.emplace(j.run.slot, j);
    }
    return out;
  }
};

struct MemStore : Store {
  std::map<int64_t, Seconds> last;
  std::vector<std::tuple<int64_t, Seconds, std::string>> missed;
  std::optional<Seconds> LastSlot(int64_t s) override {
    auto it = last.find(s);
    return it == last.end() ? std::nullopt : std::optional<Seconds>(it->second);
  }
  void SetLastSlot(int64_t s, Seconds t) override { last[s] = t; }
  void RecordMissed(const Schedule& s, Seconds slot, const std::string& why) override {
    missed.emplace_back(s.id, slot, why);
  }
  std::vector<Seconds> MissedOf(int64_t id, std::string* whys = nullptr) const {
    std::vector<Seconds> out;
    for (const auto& [s, t, why] : missed) {
      if (s == id) {
        out.push_back(t);
        if (whys) *whys += why + ";";
      }
    }
    return out;
  }
};

Schedule Make(int64_t id, const std::string& agent, const std::string& cal, const std::string& zone, int jitter = 0) {
  Schedule s;
  s.id = id;
  s.agent = agent;
  s.paths = {"/srv"};
  s.calendar = cal;
  s.zone = zone;
  s.jitter_s = jitter;
  return s;
}

}  // namespace

TEST_CASE("scheduler: a month of nights on an injected clock", "[scheduler]") {
  FakeRunner runner;
  MemStore store;
  std::vector<Event> events;
  auto on_event = [&](const Event& e) { events.push_back(e); };
  std::vector<Schedule> schedules = {
      Make(1, "db01", "daily 02:30", "Europe/Berlin"),          // through the spring-forward night
      Make(2, "web01", "0 2 * * *", "Asia/Ho_Chi_Minh", 600),   // 19:00 UTC, with jitter
      Make(3, "db01", "30 1 * * *", "UTC"),                     // db01 again: waits for schedule 1 in March
  };
  // Appliance off from 10 March 12:00 to 13 March 12:00 UTC; db01 offline
  // from 19 March 12:00 to 22 March 12:00 (the nights of the 20th, 21st, 22nd).
  const Seconds start = Utc(2026, 3, 1, 0), end = Utc(2026, 4, 1, 0);
  const Seconds down = Utc(2026, 3, 10, 12), up = Utc(2026, 3, 13, 12);
  runner.offline["db01"] = {{Utc(2026, 3, 19, 12), Utc(2026, 3, 22, 12)}};

  auto sched = std::make_unique<Scheduler>(runner, store, on_event);
  REQUIRE(sched->SetSchedules(schedules, start).ok());
  for (Seconds t = start; t < end; t += minutes(1)) {
    runner.now = t;
    if (t == down) sched.reset();  // custosd stops; its Store (SQLite) stays
    if (t == up) {
      sched = std::make_unique<Scheduler>(runner, store, on_event);
      REQUIRE(sched->SetSchedules(schedules, t).ok());
    }
    if (sched) sched->Tick(t);
  }

  // Schedule 1 (Berlin 02:30): 01:30 UTC in CET, 01:00 UTC on the night the
  // clocks jump, 00:30 UTC in CEST.
  auto runs1 = runner.RunsOf(1);
  std::string whys;
  std::vector<Seconds> missed1 = store.MissedOf(1, &whys);
  REQUIRE(missed1 == std::vector<Seconds>{Utc(2026, 3, 11, 1, 30), Utc(2026, 3, 12, 1, 30), Utc(2026, 3, 20, 1, 30),
                                          Utc(2026, 3, 21, 1, 30)});
  REQUIRE(whys == "the appliance was off;the appliance was off;agent db01 is not connected;agent db01 is not connected;");
  REQUIRE(runs1.size() == 31 - 4);
  REQUIRE(runs1.at(Utc(2026, 3, 2, 1, 30)).started == Utc(2026, 3, 2, 1, 30));
  REQUIRE(runs1.at(Utc(2026, 3, 28, 1, 30)).started == Utc(2026, 3, 28, 1, 30));
  REQUIRE(runs1.at(Utc(2026, 3, 29, 1)).started == Utc(2026, 3, 29, 1));  // 02:30 did not exist: at the jump
  REQUIRE(runs1.at(Utc(2026, 3, 30, 0, 30)).started == Utc(2026, 3, 30, 0, 30));
  REQUIRE(runs1.count(Utc(2026, 3, 29, 0, 30)) == 0);  // one run that night, not two
  // Caught up once at start-up for the three slots missed while off.
  const auto& caught = runs1.at(Utc(2026, 3, 13, 1, 30));
  REQUIRE(caught.started == up);
  REQUIRE(caught.run.catch_up);
  // The third offline night: retried with backoff (01:35, 01:45, 02:05,
  // 02:45, then hourly) and run as soon as db01 was back.
  const auto& late = runs1.at(Utc(2026, 3, 22, 1, 30));
  REQUIRE(late.started == Utc(2026, 3, 22, 12, 45));
  REQUIRE(late.run.attempt == 14);
  REQUIRE_FALSE(late.run.catch_up);

  // Schedule 2 (Ho Chi Minh 02:00 = 19:00 UTC the day before): 31 slots
  // from 1 March 19:00 to 31 March 19:00; 10, 11 and 12 March fell in the
  // downtime (the last caught up).
  auto runs2 = runner.RunsOf(2);
  REQUIRE(store.MissedOf(2) == std::vector<Seconds>{Utc(2026, 3, 10, 19), Utc(2026, 3, 11, 19)});
  REQUIRE(runs2.size() == 31 - 2);
  REQUIRE(runs2.at(Utc(2026, 3, 12, 19)).started == up);
  int jittered = 0;
  for (const auto& [slot, job] : runs2) {
    if (job.run.catch_up) continue;
    // Jitter: a fixed offset within 10 minutes, rounded up to the minute we tick at.
    auto offset = job.started - slot;
    REQUIRE(offset >= seconds(0));
    REQUIRE(offset < seconds(660));
    REQUIRE(job.started == slot + ceil<minutes>(seconds(JitterFor(2, slot, 600))));
    jittered += offset > seconds(0) ? 1 : 0;
  }
  REQUIRE(jittered > 20);

  // Schedule 3 (db01 at 01:30 UTC): in March before the jump it falls on
  // schedule 1's time and waits for it (one job per agent at a time).
  auto runs3 = runner.RunsOf(3);
  REQUIRE(runs3.at(Utc(2026, 3, 2, 1, 30)).started == Utc(2026, 3, 2, 1, 50));
  REQUIRE(runs3.at(Utc(2026, 3, 30, 1, 30)).started == Utc(2026, 3, 30, 1, 30));  // CEST: no overlap
  for (const auto& [name, job] : runner.jobs) {
    for (const auto& [other_name, other] : runner.jobs) {
      if (name != other_name && job.run.agent == other.run.agent) {
        REQUIRE((job.ends <= other.started || other.ends <= job.started));  // never two at once on one agent
      }
    }
  }
  // Every slot is accounted for exactly once: run or missed.
  REQUIRE(runs1.size() + missed1.size() == 31);
  REQUIRE(runs2.size() + store.MissedOf(2).size() == 31);
  size_t missed_events = 0;
  for (const auto& e : events) missed_events += e.kind == Event::kMissed ? 1 : 0;
  REQUIRE(missed_events == store.missed.size());
}

TEST_CASE("scheduler: failed jobs are retried with backoff, then reported failed", "[scheduler]") {
  FakeRunner runner;
  runner.failing = {"db01"};
  MemStore store;
  std::vector<Event> events;
  Scheduler sched(runner, store, [&](const Event& e) { events.push_back(e); });
  Schedule s = Make(1, "db01", "daily 02:00", "UTC");
  s.max_retries = 2;
  REQUIRE(sched.SetSchedules({s}, Utc(2026, 3, 1, 0)).ok());
  for (Seconds t = Utc(2026, 3, 1, 0); t < Utc(2026, 3, 2, 0); t += minutes(1)) {
    runner.now = t;
    sched.Tick(t);
  }
  // 02:00 fails at 02:20, retried at 02:25, fails 02:45, retried at 02:55, fails at 03:15: given up.
  REQUIRE(runner.order.size() == 3);
  REQUIRE(runner.jobs.at("j-2").started == Utc(2026, 3, 1, 2, 25));
  REQUIRE(runner.jobs.at("j-3").started == Utc(2026, 3, 1, 2, 55));
  REQUIRE(events.back().kind == Event::kFailed);
  REQUIRE(events.back().detail == "disk full on the agent");
  REQUIRE(store.missed.empty());
  // A bad calendar is refused and changes nothing.
  Schedule bad = Make(2, "db01", "daily 26:00", "UTC");
  REQUIRE(sched.SetSchedules({s, bad}, Utc(2026, 3, 2, 0)).code() == Code::kInvalidArgument);
  REQUIRE(sched.NextRun(1) == Utc(2026, 3, 2, 2));
  REQUIRE_FALSE(ValidateSchedule(bad).ok());
  Schedule relative = Make(3, "db01", "daily 02:00", "UTC");
  relative.paths = {"srv"};
  REQUIRE(ValidateSchedule(relative).code() == Code::kInvalidArgument);
}
