// The scheduler: turns schedules (calendar, zone, jitter, agent, paths,
// job) into job runs, on whatever clock it is ticked with. custosd ticks it
// every second with the real clock; tests tick it through a month of
// simulated nights in seconds.
//
// Rules (issue 6):
// - A slot fires at its calendar time plus a fixed jitter in [0, jitter_s)
//   derived from the schedule and the slot (so a restart does not move it).
// - Slots missed while the appliance was off: the latest is run once at
//   start-up ("caught up"), each earlier one is recorded `missed`.
// - An agent that is offline (or busy) when its slot comes is retried with
//   backoff (5, 10, 20... minutes) until the next slot of that schedule; if
//   it never comes, the slot is recorded `missed`. A job that fails is
//   retried the same way, at most `max_retries` times.
// - At most `per_agent` jobs run at once per agent (default 1); a slot that
//   finds its agent busy waits (that is not a retry).
// - A new slot that comes while the previous one is still waiting for its
//   agent records the previous one `missed`; one that comes while the
//   previous job still runs waits for it.
//
// The scheduler owns no threads and does no I/O: the Runner starts and
// polls jobs, the Store keeps what must survive a restart (the last slot
// handled per schedule) and the history rows of missed slots.
//
// Thread-safety: one thread calls everything.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "scheduler/calendar.h"
#include "scheduler/retention.h"

namespace custos::scheduler {

struct Schedule {
  int64_t id = 0;
  std::string agent;
  std::vector<std::string> paths;
  std::string calendar = "daily 02:00";
  std::string zone = "UTC";
  int jitter_s = 0;
  // "backup" (agent, paths), "verify" (the rolling scrub of the appliance's
  // repository: one of `scrub_parts` parts of the packs per run; no agent),
  // "drill" (a restore drill of `agent`'s newest snapshot, `drill_sample`
  // files, 0 = all), "forget" (`retention` applied to `agent`'s snapshots;
  // held ones are never removed), "prune" (the appliance's repository:
  // storage/prune.h with its defaults; no agent).
  std::string job = "backup";
  int max_retries = 3;
  int scrub_parts = 30;
  uint64_t drill_sample = 1000;
  // "forget": the agent's retention policy, applied by the appliance to
  // that agent's snapshots (periods in `zone`).
  RetentionPolicy retention;
};

// Checks a schedule as `custos schedule add` gets it: calendar and zone
// parse, a known job kind with what it needs (backup: agent and absolute
// paths; drill: agent; verify: neither), sane numbers.
Status ValidateSchedule(const Schedule& s);

// One run of a slot, as handed to the Runner.
struct RunSpec {
  int64_t schedule = 0;
  std::string agent, job;
  std::vector<std::string> paths;
  int scrub_parts = 30;
  uint64_t drill_sample = 0;
  RetentionPolicy retention;
  std::string zone;
  Seconds slot{};
  bool catch_up = false;  // run at start-up for a slot missed while the appliance was off
  int attempt = 0;        // 0 first, then retries
};

class Runner {
 public:
  virtual ~Runner() = default;
  // Starts a job; its ID. Busy: the agent or the appliance runs another
  // job (tried again at the next tick); Unavailable: the agent is offline
  // (retried with backoff); any other error fails the attempt.
  virtual Result<std::string> Start(const RunSpec& run) = 0;
  // A started job's state: "running", "ok", "partial" or "failed" (then
  // `*error` says why).
  virtual std::string State(const std::string& job, std::string* error) = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // The last slot of `schedule` that was handled (started, or recorded
  // missed), if any.
  virtual std::optional<Seconds> LastSlot(int64_t schedule) = 0;
  virtual void SetLastSlot(int64_t schedule, Seconds slot) = 0;
  // A history row with outcome `missed` for this slot.
  virtual void RecordMissed(const Schedule& s, Seconds slot, const std::string& why) = 0;
};

// What happened, for logs and alerts.
struct Event {
  enum Kind { kStarted, kRetry, kMissed, kFinished, kFailed } kind;
  int64_t schedule = 0;
  std::string agent;
  Seconds slot{};
  Seconds at{};
  std::string job;     // the job ID when there is one
  std::string detail;  // outcome, reason
  bool catch_up = false;
  int attempt = 0;
};

class Scheduler {
 public:
  // `startup_grace`: catch-up runs wait this long after SetSchedules first
  // adopts a schedule, so that agents can reconnect to a restarted appliance.
  Scheduler(Runner& runner, Store& store, std::function<void(const Event&)> on_event, int per_agent = 1,
            std::chrono::seconds startup_grace = std::chrono::seconds(0));
  ~Scheduler();

  // Replaces the schedules. Ones that were already known keep their state;
  // new ones start from their LastSlot in the store (catching up once if
  // slots passed), or, never run before, from `now`. InvalidArgument /
  // NotFound if a calendar or zone does not parse (nothing is changed).
  Status SetSchedules(const std::vector<Schedule>& schedules, Seconds now);

  // Starts, polls and retries; call often (every second or so).
  void Tick(Seconds now);

  // Runs schedule `id` now, as an extra slot at `now` (`custos schedule run`):
  // NotFound for an unknown schedule, Busy while one of its slots is still
  // being handled. The calendar's own slots are unchanged.
  Status RunNow(int64_t id, Seconds now);

  // When the schedule's next slot fires (with jitter), for `schedule list`.
  std::optional<Seconds> NextRun(int64_t schedule) const;

 private:
  struct State;
  void Handle(State& st, Seconds now);
  void Emit(Event e);
  bool AgentFree(const std::string& agent) const;

  Runner& runner_;
  Store& store_;
  std::function<void(const Event&)> on_event_;
  int per_agent_;
  std::chrono::seconds grace_;
  std::map<int64_t, std::unique_ptr<State>> states_;
};

// The jitter of `slot` for schedule `id`: a fixed offset in [0, jitter_s).
int JitterFor(int64_t id, Seconds slot, int jitter_s);

}  // namespace custos::scheduler
