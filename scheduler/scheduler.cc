#include "scheduler/scheduler.h"

#include <algorithm>

#include "base/crypto.h"

namespace custos::scheduler {

using namespace std::chrono;

namespace {

// Retries: 5, 10, 20, 40 minutes, then hourly.
seconds Backoff(int attempt) { return minutes(std::min(60, 5 << std::min(attempt, 4))); }

// Slots that passed while the appliance was off, beyond which we stop
// counting one by one (a year of hourly slots).
constexpr int kMaxMissedRecorded = 9000;

}  // namespace

int JitterFor(int64_t id, Seconds slot, int jitter_s) {
  if (jitter_s <= 0) return 0;
  std::string key = std::to_string(id) + "/" + std::to_string(slot.time_since_epoch().count());
  Id h = Sha256(AsBytes(key));
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | h.bytes[size_t(i)];
  return int(v % uint64_t(jitter_s));
}

Status ValidateSchedule(const Schedule& s) {
  if (s.job != "backup" && s.job != "verify" && s.job != "drill" && s.job != "forget" && s.job != "prune") {
    return InvalidArgumentError("schedule: job \"" + s.job +
                                "\" is not supported (backup, verify, drill, forget, prune are)");
  }
  if (s.job == "forget" && s.retention.empty()) {
    return InvalidArgumentError("schedule: a forget needs a policy (--keep-last, --keep-daily, ...)");
  }
  if (s.job != "forget" && !s.retention.empty()) {
    return InvalidArgumentError("schedule: keep rules belong to a forget job");
  }
  bool whole_repository = s.job == "verify" || s.job == "prune";
  if (!whole_repository && s.agent.empty()) return InvalidArgumentError("schedule: a " + s.job + " needs --agent");
  if (whole_repository && (!s.agent.empty() || !s.paths.empty())) {
    return InvalidArgumentError("schedule: " + s.job + " works on the appliance's whole repository: no agent or paths");
  }
  if (s.job == "backup" && s.paths.empty()) return InvalidArgumentError("schedule: a backup needs paths");
  if ((s.job == "drill" || s.job == "forget") && !s.paths.empty()) {
    return InvalidArgumentError("schedule: a " + s.job + " takes no paths");
  }
  if (s.scrub_parts < 1 || s.scrub_parts > 10000) return InvalidArgumentError("schedule: parts must be 1 to 10000");
  for (const auto& p : s.paths) {
    if (p.empty() || p[0] != '/') return InvalidArgumentError("schedule: path \"" + p + "\" is not absolute");
  }
  if (s.jitter_s < 0 || s.jitter_s > 6 * 3600) return InvalidArgumentError("schedule: jitter must be 0 to 6 hours");
  if (s.max_retries < 0 || s.max_retries > 20) return InvalidArgumentError("schedule: retries must be 0 to 20");
  return Calendar::Parse(s.calendar, s.zone).status();
}

struct Scheduler::State {
  Schedule s;
  Calendar cal;
  Seconds next_slot{};  // the first slot not yet due
  // The slot being handled: waiting to start, running, or waiting to retry.
  std::optional<Seconds> active;
  bool catch_up = false;
  int attempt = 0, failures = 0;
  Seconds try_at{};
  std::string job;          // running job, if any
  std::string last_reason;  // why the last try did not start
  std::optional<Seconds> queued;  // a slot that came while `active` ran

  explicit State(Calendar c) : cal(std::move(c)) {}
  Seconds Fire(Seconds slot) const { return slot + seconds(JitterFor(s.id, slot, s.jitter_s)); }
  void Activate(Seconds slot, Seconds at, bool is_catch_up) {
    active = slot;
    catch_up = is_catch_up;
    attempt = failures = 0;
    try_at = at;
    job.clear();
    last_reason.clear();
  }
};

Scheduler::Scheduler(Runner& runner, Store& store, std::function<void(const Event&)> on_event, int per_agent,
                     seconds startup_grace)
    : runner_(runner),
      store_(store),
      on_event_(std::move(on_event)),
      per_agent_(std::max(1, per_agent)),
      grace_(startup_grace) {}

Scheduler::~Scheduler() = default;

void Scheduler::Emit(Event e) {
  if (on_event_) on_event_(e);
}

Status Scheduler::SetSchedules(const std::vector<Schedule>& schedules, Seconds now) {
  std::vector<Calendar> cals;
  for (const auto& s : schedules) {  // all parse, or nothing changes
    ASSIGN_OR_RETURN(Calendar cal, Calendar::Parse(s.calendar, s.zone));
    cals.push_back(std::move(cal));
  }
  std::map<int64_t, std::unique_ptr<State>> next;
  std::vector<std::unique_ptr<State>> fresh;
  for (size_t i = 0; i < schedules.size(); ++i) {
    const Schedule& s = schedules[i];
    Calendar& cal = cals[i];
    auto old = states_.find(s.id);
    if (old != states_.end() && old->second->s.calendar == s.calendar && old->second->s.zone == s.zone) {
      old->second->s = s;  // paths, jitter, retries may change; the slot state stays
      next[s.id] = std::move(old->second);
      continue;
    }
    auto st = std::make_unique<State>(std::move(cal));
    st->s = s;
    fresh.push_back(std::move(st));
  }
  for (auto& st : fresh) {
    std::optional<Seconds> last = store_.LastSlot(st->s.id);
    if (!last) {
      st->next_slot = st->cal.Next(now);  // a new schedule does not fire for the past
    } else {
      // Slots that passed while the appliance was off: the latest runs
      // now, once; the earlier ones are recorded missed.
      std::vector<Seconds> passed;
      Seconds t = st->cal.Next(*last);
      while (t != Seconds::max() && st->Fire(t) <= now && int(passed.size()) < kMaxMissedRecorded) {
        passed.push_back(t);
        t = st->cal.Next(t);
      }
      while (t != Seconds::max() && st->Fire(t) <= now) t = st->cal.Next(t);  // beyond the cap: skipped
      st->next_slot = t;
      for (size_t i = 0; i + 1 < passed.size(); ++i) {
        store_.RecordMissed(st->s, passed[i], "the appliance was off");
        store_.SetLastSlot(st->s.id, passed[i]);
        Emit(Event{Event::kMissed, st->s.id, st->s.agent, passed[i], now, "", "the appliance was off"});
      }
      if (!passed.empty()) st->Activate(passed.back(), now + grace_, true);
    }
    next[st->s.id] = std::move(st);
  }
  states_ = std::move(next);
  return Status::Ok();
}

bool Scheduler::AgentFree(const std::string& agent) const {
  int running = 0;
  for (const auto& [id, st] : states_) running += st->s.agent == agent && !st->job.empty() ? 1 : 0;
  return running < per_agent_;
}

void Scheduler::Handle(State& st, Seconds now) {
  // 1. A running job: has it ended?
  if (st.active && !st.job.empty()) {
    std::string error;
    std::string state = runner_.State(st.job, &error);
    if (state != "running") {
      Event e{state == "failed" ? Event::kFailed : Event::kFinished, st.s.id, st.s.agent, *st.active, now, st.job,
              state == "failed" ? error : state};
      e.catch_up = st.catch_up;
      e.attempt = st.attempt;
      st.job.clear();
      if (state == "failed" && st.failures < st.s.max_retries && now + Backoff(st.failures) < st.Fire(st.next_slot)) {
        // Retried before the next slot comes.
        e.kind = Event::kRetry;
        e.detail = "failed (" + error + "), retry in " + std::to_string(Backoff(st.failures).count() / 60) + " min";
        st.try_at = now + Backoff(st.failures);
        ++st.failures;
        ++st.attempt;
        Emit(e);
      } else {
        Emit(e);
        st.active.reset();
      }
    }
  }
  // 2. Slots that came due.
  while (st.next_slot != Seconds::max() && st.Fire(st.next_slot) <= now) {
    Seconds slot = st.next_slot;
    st.next_slot = st.cal.Next(slot);
    if (st.active && !st.job.empty()) {
      // The previous run still goes: this slot waits for it (one waiting
      // slot at most; an older waiting one is missed).
      if (st.queued) {
        store_.RecordMissed(st.s, *st.queued, "the previous run was still going");
        store_.SetLastSlot(st.s.id, *st.queued);
        Emit(Event{Event::kMissed, st.s.id, st.s.agent, *st.queued, now, "", "the previous run was still going"});
      }
      st.queued = slot;
      continue;
    }
    if (st.active) {
      // Still waiting for its agent when the next slot comes: missed.
      std::string why = st.last_reason.empty() ? "it could not start before the next slot" : st.last_reason;
      store_.RecordMissed(st.s, *st.active, why);
      store_.SetLastSlot(st.s.id, *st.active);
      Emit(Event{Event::kMissed, st.s.id, st.s.agent, *st.active, now, "", why});
    }
    st.Activate(slot, st.Fire(slot), false);
  }
  if (!st.active && st.queued) {
    st.Activate(*st.queued, now, false);
    st.queued.reset();
  }
  // 3. Start the active slot when its time came and its agent is free.
  if (st.active && st.job.empty() && now >= st.try_at && AgentFree(st.s.agent)) {
    RunSpec run{st.s.id,          st.s.agent,   st.s.job,    st.s.paths, st.s.scrub_parts,
                st.s.drill_sample, st.s.retention, st.s.zone, *st.active, st.catch_up, st.attempt};
    auto started = runner_.Start(run);
    if (started.ok()) {
      st.job = *started;
      store_.SetLastSlot(st.s.id, *st.active);
      Event e{Event::kStarted, st.s.id, st.s.agent, *st.active, now, st.job, ""};
      e.catch_up = st.catch_up;
      e.attempt = st.attempt;
      Emit(e);
    } else if (started.status().code() == Code::kBusy) {
      // Its agent (or the appliance) is busy with another job: wait, and
      // try again at the next tick. Not a retry.
      st.last_reason = started.status().message();
    } else {
      bool offline = started.status().code() == Code::kUnavailable;
      st.last_reason = started.status().message();
      int n = offline ? st.attempt : st.failures;
      if (!offline && st.failures >= st.s.max_retries) {
        Event e{Event::kFailed, st.s.id, st.s.agent, *st.active, now, "", st.last_reason};
        e.attempt = st.attempt;
        store_.SetLastSlot(st.s.id, *st.active);
        Emit(e);
        st.active.reset();
        return;
      }
      if (!offline) ++st.failures;
      st.try_at = now + Backoff(n);
      Event e{Event::kRetry, st.s.id, st.s.agent, *st.active, now, "",
              st.last_reason + "; retry in " + std::to_string(Backoff(n).count() / 60) + " min"};
      e.attempt = st.attempt;
      ++st.attempt;
      Emit(e);
    }
  }
}

void Scheduler::Tick(Seconds now) {
  for (auto& [id, st] : states_) Handle(*st, now);
}

Status Scheduler::RunNow(int64_t id, Seconds now) {
  auto it = states_.find(id);
  if (it == states_.end()) return NotFoundError("no schedule " + std::to_string(id));
  State& st = *it->second;
  if (st.active) return BusyError("schedule " + std::to_string(id) + " is already running a slot");
  st.Activate(now, now, false);
  Handle(st, now);
  return Status::Ok();
}

std::optional<Seconds> Scheduler::NextRun(int64_t schedule) const {
  auto it = states_.find(schedule);
  if (it == states_.end()) return std::nullopt;
  if (it->second->active && it->second->job.empty()) return it->second->try_at;
  if (it->second->next_slot == Seconds::max()) return std::nullopt;
  return it->second->Fire(it->second->next_slot);
}

}  // namespace custos::scheduler
