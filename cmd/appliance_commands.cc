// custos agent add|list|revoke, custos status: the appliance's control
// socket (custosd must be running; its data directory's mode limits who may
// talk to it).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include "base/bytes.h"

#include "appliance/server.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"

namespace custos::cli {

using nlohmann::json;

std::string DataDir(const Globals& g) { return g.data_dir.empty() ? appliance::DefaultDataDir() : g.data_dir; }

namespace {

// A control reply; prints the error and sets rc when it is one.
std::optional<json> Reply(const Result<std::string>& reply, int& rc) {
  if (!reply.ok()) {
    rc = Fail(reply.status(), kExitNoDaemon);
    return std::nullopt;
  }
  json j = json::parse(*reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    rc = Fail(IOError("malformed reply from custosd"));
    return std::nullopt;
  }
  if (!j.value("ok", false)) {
    rc = Fail(InvalidArgumentError(j.value("error", std::string("custosd refused the request"))));
    return std::nullopt;
  }
  return j;
}

}  // namespace

// Sends one control request; prints the error and sets rc when it fails.
std::optional<json> Control(const Globals& g, const json& request, int& rc) {
  return Reply(appliance::ControlRequest(DataDir(g), request.dump()), rc);
}

namespace {

std::string Ago(int64_t t) {
  if (t == 0) return "never";
  int64_t d = int64_t(::time(nullptr)) - t;
  if (d < 120) return std::to_string(d) + " s ago";
  if (d < 7200) return std::to_string(d / 60) + " min ago";
  return std::to_string(d / 3600) + " h ago";
}

void PrintAgents(const json& agents) {
  std::printf("%-20s %-9s %-10s %-12s %-10s %s\n", "AGENT", "STATE", "CONNECTED", "LAST SEEN", "VERSION", "HOST");
  for (const auto& a : agents) {
    std::printf("%-20s %-9s %-10s %-12s %-10s %s\n", a.value("name", "").c_str(), a.value("state", "").c_str(),
                a.value("connected", false) ? "yes" : "no", Ago(a.value("last_seen", int64_t(0))).c_str(),
                a.value("version", "").c_str(), EscapeForDisplay(a.value("host", "")).c_str());
  }
}

}  // namespace

// Polls job `job` until it is no longer running, showing progress on a
// terminal (or status lines with --json). custosd may restart during the
// job (an upgrade, a crash): the job waits for it and so does this, for a
// while. Returns the job's final record, or nothing with rc set.
std::optional<json> WaitForJob(const Globals& g, const std::string& job, int& rc) {
  bool tty = StderrIsTty() && !g.quiet && !g.json;
  json j;
  constexpr int kDaemonWaitS = 300;
  auto lost_since = std::chrono::steady_clock::time_point();
  auto last_shown = std::chrono::steady_clock::time_point();
  for (;;) {
    auto text = appliance::ControlRequest(DataDir(g), json{{"cmd", "job"}, {"job", job}}.dump());
    if (!text.ok() && text.status().code() == Code::kUnavailable) {
      auto now = std::chrono::steady_clock::now();
      if (lost_since == std::chrono::steady_clock::time_point()) {
        lost_since = now;
        if (!g.quiet && !g.json) {
          std::fprintf(stderr, "%scustosd does not answer (%s); waiting up to %d s for it to come back\n",
                       tty ? "\r\033[K" : "", text.status().message().c_str(), kDaemonWaitS);
        }
      }
      if (now - lost_since > std::chrono::seconds(kDaemonWaitS)) {
        rc = Fail(UnavailableError("custosd did not come back within " + std::to_string(kDaemonWaitS) +
                                     " s; job " + job + " may still finish (see custos jobs)"),
                  kExitNoDaemon);
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    lost_since = {};
    auto reply = Reply(text, rc);
    if (!reply) return std::nullopt;
    j = (*reply)["job"];
    std::string state = j.value("state", "");
    if (state != "running") break;
    // Polled every 50 ms so that the end of a job is seen at once (a poll
    // costs custosd well under a millisecond); progress is shown every 300.
    auto now = std::chrono::steady_clock::now();
    if (now - last_shown < std::chrono::milliseconds(300)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    last_shown = now;
    if (tty) {
      std::fprintf(stderr, "\r\033[K%llu files, %s%s", (unsigned long long)j.value("files", uint64_t(0)),
                   HumanBytes(j.value("bytes", uint64_t(0))).c_str(),
                   j.value("waiting_for_agent", false) ? " (waiting for the agent to reconnect)" : "");
    } else if (g.json) {
      std::cout << json{{"message_type", "status"}, {"job", job}, {"files_done", j.value("files", uint64_t(0))},
                        {"bytes_done", j.value("bytes", uint64_t(0))}}
                       .dump()
                << std::endl;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  return j;
}

int JobExitCode(const Globals& g, const std::string& what, const std::string& job, const json& done) {
  std::string state = done.value("state", "");
  if (state == "ok") return kExitOk;
  if (state == "partial") return kExitPartial;
  if (!g.json) PrintError(what + " job " + job + " " + state + ": " + done.value("error", ""));
  return kExitError;
}

int RemoteBackup(const Globals& g, const std::string& agent, const std::vector<std::string>& paths,
                 const std::vector<std::string>& excludes, bool exclude_caches, bool one_file_system) {
  int rc = 0;
  auto started = Control(g, json{{"cmd", "backup"}, {"agent", agent}, {"paths", paths}, {"excludes", excludes},
                                 {"exclude_caches", exclude_caches}, {"one_file_system", one_file_system}},
                         rc);
  if (!started) return rc;
  std::string job = (*started)["job"];
  if (!g.quiet && !g.json) std::fprintf(stderr, "job %s: backup of %s started\n", job.c_str(), agent.c_str());
  auto done = WaitForJob(g, job, rc);
  if (!done) return rc;
  json j = std::move(*done);
  std::string state = j.value("state", "");
  if (g.json) {
    j["message_type"] = "summary";
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  } else if (!g.quiet && (state == "ok" || state == "partial")) {
    std::printf("processed %llu files, %s\n", (unsigned long long)j.value("files", uint64_t(0)),
                HumanBytes(j.value("bytes", uint64_t(0))).c_str());
    std::printf("snapshot %s saved on the appliance%s\n", j.value("snapshot", "").substr(0, 8).c_str(),
                state == "partial" ? " (partial: some items could not be read)" : "");
  }
  return JobExitCode(g, "backup", job, j);
}

int RemoteRestore(const Globals& g, const RemoteRestoreRequest& q) {
  int rc = 0;
  auto started = Control(g, json{{"cmd", "restore"}, {"agent", q.agent}, {"snapshot", q.snapshot},
                                 {"subpath", q.subpath}, {"target", q.target}, {"overwrite", q.overwrite},
                                 {"verify", q.verify}, {"includes", q.includes}, {"excludes", q.excludes},
                                 {"host", q.host}},
                         rc);
  if (!started) return rc;
  std::string job = (*started)["job"];
  std::string snap = started->value("snapshot", "");
  if (!g.quiet && !g.json) {
    std::fprintf(stderr, "job %s: restore of snapshot %s to %s:%s started\n", job.c_str(), snap.substr(0, 8).c_str(),
                 q.agent.c_str(), EscapeForDisplay(q.target).c_str());
  }
  auto done = WaitForJob(g, job, rc);
  if (!done) return rc;
  json j = std::move(*done);
  std::string state = j.value("state", "");
  std::string report = j.value("report", "");
  // The signed report, as the appliance stored it (custosd checks its signature).
  json body;
  if (!report.empty()) {
    int ignored = 0;
    if (auto r = Control(g, json{{"cmd", "report"}, {"report", report}}, ignored)) body = (*r)["body"];
  }
  const json counts = body.value("counts", json::object());
  auto count = [&](const char* k) { return counts.value(k, uint64_t(0)); };
  if (g.json) {
    json out = j;
    out["message_type"] = "summary";
    out["report_id"] = report.empty() ? json(nullptr) : json(report);
    out["counts"] = counts;
    out["failures"] = body.value("failures", json::array());
    out["bytes_written"] = body.value("bytes_written", uint64_t(0));
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  } else {
    for (const auto& f : body.value("failures", json::array())) {
      std::fprintf(stderr, "error: %s: %s\n", EscapeForDisplay(f.value("path", "")).c_str(),
                   EscapeForDisplay(f.value("reason", "")).c_str());
    }
    if (body.value("failures_truncated", false)) {
      std::fprintf(stderr, "error: ... %llu failures in all (the report lists the first ones)\n",
                   (unsigned long long)count("failures"));
    }
    if (!g.quiet && (state == "ok" || state == "partial")) {
      std::printf("restored %llu files (%s), %llu dirs, %llu links, %llu special on %s; %llu already correct; "
                  "%llu failed\n",
                  (unsigned long long)count("files_restored"), HumanBytes(body.value("bytes_written", uint64_t(0))).c_str(),
                  (unsigned long long)count("dirs"), (unsigned long long)count("links"),
                  (unsigned long long)count("specials"), q.agent.c_str(), (unsigned long long)count("files_skipped"),
                  (unsigned long long)count("files_failed"));
      if (q.verify) {
        std::printf("verification: %llu files match their recorded SHA-256\n", (unsigned long long)count("files_verified"));
      } else {
        std::printf("verification: off\n");
      }
    }
    if (!g.quiet && !report.empty()) {
      std::printf("report %s saved on the appliance (custos reports show %s)\n", report.substr(0, 8).c_str(),
                  report.substr(0, 8).c_str());
    }
  }
  return JobExitCode(g, "restore", job, j);
}

void AddApplianceCommands(CLI::App& app, Globals& g, int& rc) {
  auto* agent = app.add_subcommand("agent", "Enrol, list and revoke the agents of the appliance (custosd)");
  agent->require_subcommand(1);
  agent->footer(R"(
These commands talk to the running custosd through its control socket in the
data directory (--data-dir or $CUSTOS_DATA_DIR); only a user who can open that
directory (the appliance's admin) can use them.

  custos agent add db01        prints a one-time enrolment token (valid 24 h)
  custos-agent enroll --appliance tcp://APPLIANCE:7468 --token TOKEN   (on db01)
  custos agent list
  custos agent revoke db01     refused at its very next message

Exit code 13 when no custosd answers.)");
  auto* add = agent->add_subcommand("add", "Register an agent and print its one-time enrolment token");
  static std::string add_name;
  add->add_option("NAME", add_name, "Agent name: 1-64 of A-Z a-z 0-9 . _ -")->required();
  add->callback([&] {
    auto j = Control(g, json{{"cmd", "agent-add"}, {"name", add_name}}, rc);
    if (!j) return;
    if (g.json) {
      std::cout << j->dump() << "\n";
      return;
    }
    std::printf("agent %s registered. On that server, within 24 hours, run:\n\n"
                "  custos-agent enroll --appliance %s --token %s\n\n"
                "appliance key: %s\n"
                "(the token is shown once; anyone holding it can enrol as %s until it is used)\n",
                add_name.c_str(), j->value("endpoint", "").c_str(), j->value("token", "").c_str(),
                j->value("appliance_key", "").c_str(), add_name.c_str());
  });
  auto* list = agent->add_subcommand("list", "List agents: state, connection, last seen, version");
  list->callback([&] {
    auto j = Control(g, json{{"cmd", "agent-list"}}, rc);
    if (!j) return;
    if (g.json) std::cout << (*j)["agents"].dump() << "\n";
    else PrintAgents((*j)["agents"]);
  });
  auto* revoke = agent->add_subcommand("revoke", "Revoke an agent: it is refused at its next message");
  static std::string revoke_name;
  revoke->add_option("NAME", revoke_name, "Agent name")->required();
  revoke->callback([&] {
    auto j = Control(g, json{{"cmd", "agent-revoke"}, {"name", revoke_name}}, rc);
    if (!j) return;
    if (g.json) std::cout << j->dump() << "\n";
    else if (!g.quiet) std::printf("agent %s revoked\n", revoke_name.c_str());
  });

  auto* jobs = app.add_subcommand("jobs", "Show the appliance's job history, newest first");
  jobs->footer(R"(
Every job the appliance ran or should have run: backups and restores started by
hand or by a schedule, with their outcome (running, ok, partial, failed, or
missed: a scheduled slot that could not run, with the reason), start and end,
files, bytes and error. --failed shows only failed and missed ones.

Talks to custosd (--data-dir or $CUSTOS_DATA_DIR). Exit code 13 when no custosd answers.)");
  static int jobs_limit = 20;
  static bool jobs_failed = false;
  static std::string jobs_agent;
  jobs->add_option("-n,--limit", jobs_limit, "How many jobs (default 20)")->check(CLI::Range(1, 100000));
  jobs->add_flag("--failed", jobs_failed, "Only failed and missed jobs");
  jobs->add_option("--agent", jobs_agent, "Only this agent's jobs");
  jobs->callback([&] {
    auto j = Control(g, json{{"cmd", "jobs"}, {"limit", jobs_limit}, {"failed", jobs_failed}, {"agent", jobs_agent}},
                     rc);
    if (!j) return;
    if (g.json) {
      std::cout << (*j)["jobs"].dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      return;
    }
    std::printf("%-16s %-8s %-12s %-8s %-20s %-10s %s\n", "JOB", "KIND", "AGENT", "STATE", "STARTED", "SNAPSHOT",
                "ERROR");
    for (const auto& r : (*j)["jobs"]) {
      time_t t = time_t(r.value("started", int64_t(0)));
      tm lt;
      localtime_r(&t, &lt);
      char when[32];
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &lt);
      std::printf("%-16s %-8s %-12s %-8s %-20s %-10s %s\n", r.value("id", "").c_str(), r.value("kind", "").c_str(),
                  r.value("agent", "").c_str(), r.value("state", "").c_str(), when,
                  r.value("snapshot", "").substr(0, 8).c_str(), EscapeForDisplay(r.value("error", "")).c_str());
    }
  });

  auto* schedule = app.add_subcommand("schedule", "Add, list and remove the appliance's schedules");
  schedule->require_subcommand(1);
  schedule->footer(R"(
Schedules make custosd start jobs by itself: every night's backup of each
server. CALENDAR is a 5-field cron expression ("M H DOM MON DOW", e.g.
'30 1 * * mon-fri') or one of: 'hourly [:MM]', 'daily HH:MM',
'weekly DAY HH:MM' (DAY: sun..sat), 'monthly DAY HH:MM'. Times are wall-clock
times in --timezone (an IANA name such as Asia/Ho_Chi_Minh; default: the
appliance config's timezone, else the system's). A time the clocks skip runs
at the jump; a time they repeat runs once.

What custosd does with a slot: starts the job at the time plus a fixed random
delay within --jitter; if the agent is offline it retries (5, 10, 20, 40 min,
then hourly) until the next slot, and records the slot as missed if it never
came; a failed job is retried the same way up to --retries times. Slots that
passed while the appliance was off are caught up once at start-up; the
earlier ones are recorded as missed. One job per agent at a time. See
'custos jobs --failed'.

Jobs: backup (of --paths on --agent's server); verify, the rolling scrub of
the appliance's repository: each run reads one of --parts parts of the packs
(every byte hashed and decrypted), so --parts nights read everything once, and
the position survives restarts; damage fails the job with the problems named;
drill, a restore drill of --agent's newest snapshot (--sample files restored
into scratch space under the data directory and verified; the signed drill
report is kept: custos reports list); forget, the agent's retention policy
(--keep-* as in custos forget, periods in --timezone) applied to its
snapshots: held snapshots are never removed, and data stays until a prune;
prune, the appliance's whole repository (no --agent): marks unreferenced data
and deletes what was marked more than 24 h before (custos prune), beside
running backups, which it never takes data from; the job records the bytes
freed.

  custos schedule add --agent db01 --paths /srv,/etc --calendar 'daily 02:00'
  custos schedule add --job verify --calendar 'daily 05:00' --parts 30
  custos schedule add --job drill --agent db01 --calendar 'weekly sun 06:00'
  custos schedule add --job forget --agent db01 --calendar 'daily 04:00' \
      --keep-daily 7 --keep-weekly 5 --keep-monthly 12
  custos schedule add --job prune --calendar 'daily 04:30'
  custos schedule list
  custos schedule run 3        run it now (exit 0 ok, 3 partial, 1 failed)
  custos schedule remove 3

Schedules can also be written in custosd's config ([[schedule]] tables; shown
with source "config", removed by editing the config). Exit code 2 for a bad
calendar, zone or path; 13 when no custosd answers.)");
  auto* sadd = schedule->add_subcommand("add", "Add a schedule");
  static std::string s_agent, s_calendar, s_zone, s_job = "backup";
  static std::vector<std::string> s_paths;
  static int s_jitter = 0, s_retries = 3, s_parts = 30;
  static uint64_t s_sample = 1000;
  sadd->add_option("--agent", s_agent, "backup, drill: the agent (its server, its snapshots)");
  sadd->add_option("--paths", s_paths, "backup: absolute paths on that server, comma-separated")->delimiter(',');
  sadd->add_option("--parts", s_parts, "verify: read 1/N of the packs per run (default 30)")->check(CLI::Range(1, 10000));
  sadd->add_option("--sample", s_sample, "drill: files restored per drill, 0 for all (default 1000)");
  static int k_last = 0, k_hourly = 0, k_daily = 0, k_weekly = 0, k_monthly = 0, k_yearly = 0;
  static std::string k_within;
  sadd->add_option("--keep-last", k_last, "forget: keep the N newest snapshots (-1: all)");
  sadd->add_option("--keep-hourly", k_hourly, "forget: keep the newest of each of N hours");
  sadd->add_option("--keep-daily", k_daily, "forget: ... of N days");
  sadd->add_option("--keep-weekly", k_weekly, "forget: ... of N ISO weeks");
  sadd->add_option("--keep-monthly", k_monthly, "forget: ... of N months");
  sadd->add_option("--keep-yearly", k_yearly, "forget: ... of N years");
  sadd->add_option("--keep-within", k_within, "forget: keep all within DURATION of the newest (30d, 2w, 1y6m)");
  sadd->add_option("--calendar", s_calendar, "When: cron fields or daily HH:MM etc. (see above)")->required();
  sadd->add_option("--timezone", s_zone, "IANA time zone of the calendar");
  sadd->add_option("--jitter", s_jitter, "Start within this many seconds after the time (default 0)")
      ->check(CLI::Range(0, 6 * 3600));
  sadd->add_option("--job", s_job, "What to run: backup (default), verify (rolling scrub), drill, forget, prune");
  sadd->add_option("--retries", s_retries, "Retries of a failed job before the next slot (default 3)")
      ->check(CLI::Range(0, 20));
  sadd->callback([&] {
    json req = {{"cmd", "schedule-add"}, {"agent", s_agent},     {"paths", s_paths},     {"calendar", s_calendar},
                {"timezone", s_zone},    {"jitter_s", s_jitter}, {"job", s_job},         {"retries", s_retries},
                {"scrub_parts", s_parts}, {"drill_sample", s_sample}};
    json policy = json::object();
    for (auto [key, v] : {std::pair<const char*, int>{"keep_last", k_last}, {"keep_hourly", k_hourly},
                          {"keep_daily", k_daily}, {"keep_weekly", k_weekly}, {"keep_monthly", k_monthly},
                          {"keep_yearly", k_yearly}}) {
      if (v) policy[key] = v;
    }
    if (!k_within.empty()) policy["keep_within"] = k_within;
    if (!policy.empty()) req["retention"] = policy;
    auto reply = appliance::ControlRequest(DataDir(g), req.dump());
    if (reply.ok()) {
      json r = json::parse(*reply, nullptr, false);
      if (r.is_object() && !r.value("ok", false)) {  // a bad calendar, zone or path: usage
        rc = Fail(InvalidArgumentError(r.value("error", std::string("refused"))), kExitUsage);
        return;
      }
    }
    auto j = Reply(reply, rc);
    if (!j) return;
    const json& sc = (*j)["schedule"];
    if (g.json) std::cout << sc.dump() << "\n";
    else if (!g.quiet) {
      std::printf("schedule %lld added: %s of %s at '%s' (%s), next run %s\n", (long long)sc.value("id", int64_t(0)),
                  sc.value("job", "").c_str(), sc.value("agent", "").c_str(), sc.value("calendar", "").c_str(),
                  sc.value("timezone", "").c_str(), sc.value("next_run", "").c_str());
    }
  });
  auto* slist = schedule->add_subcommand("list", "List schedules with their next run");
  slist->callback([&] {
    auto j = Control(g, json{{"cmd", "schedule-list"}}, rc);
    if (!j) return;
    if (g.json) {
      std::cout << (*j)["schedules"].dump() << "\n";
      return;
    }
    std::printf("%-6s %-8s %-12s %-20s %-18s %-21s %s\n", "ID", "JOB", "AGENT", "CALENDAR", "TIMEZONE", "NEXT RUN (UTC)",
                "PATHS");
    for (const auto& sc : (*j)["schedules"]) {
      std::string paths;
      for (const auto& p : sc["paths"]) paths += (paths.empty() ? "" : ",") + p.get<std::string>();
      std::string id = sc.value("source", "") == "config" ? "config" : std::to_string(sc.value("id", int64_t(0)));
      std::printf("%-6s %-8s %-12s %-20s %-18s %-21s %s\n", id.c_str(), sc.value("job", "").c_str(),
                  sc.value("agent", "").c_str(), sc.value("calendar", "").c_str(), sc.value("timezone", "").c_str(),
                  sc.value("next_run", "").c_str(), EscapeForDisplay(paths).c_str());
    }
  });
  auto* srun = schedule->add_subcommand("run", "Run a schedule's job now (an extra slot), and wait for it");
  static int64_t s_run_id = 0;
  static bool s_run_detach = false;
  srun->add_option("ID", s_run_id, "The schedule's ID (custos schedule list)")->required();
  srun->add_flag("--no-wait", s_run_detach, "Start it and return");
  srun->callback([&] {
    auto j = Control(g, json{{"cmd", "schedule-run"}, {"id", s_run_id}}, rc);
    if (!j) return;
    std::string job = j->value("job", "");
    if (job.empty()) {
      if (!g.quiet && !g.json) std::printf("schedule %lld: slot queued (its agent is busy or offline: see custos jobs)\n", (long long)s_run_id);
      if (g.json) std::cout << j->dump() << "\n";
      return;
    }
    if (!g.quiet && !g.json) std::fprintf(stderr, "job %s started\n", job.c_str());
    if (s_run_detach) {
      if (g.json) std::cout << j->dump() << "\n";
      return;
    }
    auto done = WaitForJob(g, job, rc);
    if (!done) return;
    std::string state = done->value("state", "");
    if (g.json) std::cout << done->dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else if (!g.quiet) std::printf("job %s %s%s\n", job.c_str(), state.c_str(),
                                   done->value("error", "").empty() ? "" : (": " + done->value("error", "")).c_str());
    rc = state == "ok" ? 0 : state == "partial" ? kExitPartial : kExitError;
  });
  auto* sremove = schedule->add_subcommand("remove", "Remove a schedule added with 'schedule add'");
  static int64_t s_remove_id = 0;
  sremove->add_option("ID", s_remove_id, "The schedule's ID (custos schedule list)")->required();
  sremove->callback([&] {
    auto j = Control(g, json{{"cmd", "schedule-remove"}, {"id", s_remove_id}}, rc);
    if (!j) return;
    if (!g.quiet && !g.json) std::printf("schedule %lld removed\n", (long long)s_remove_id);
    if (g.json) std::cout << j->dump() << "\n";
  });

  auto* alerts = app.add_subcommand("alerts", "Check the appliance's alerts (webhook, email)");
  alerts->require_subcommand(1);
  alerts->footer(R"(
custosd sends an alert when a job fails or ends partial, when a scheduled
slot is missed, and (once they exist) on scrub damage or a failed drill: a
webhook (HTTP POST of JSON, doc/formats/alerts.md) and/or an email, as its
config's [alerts] table says (custosd --help).

  custos alerts test      sends a test alert through every configured
                          channel now and shows each one's outcome

Exit codes: 0 every channel delivered, 1 a channel failed or none is
configured, 13 no custosd answers.)");
  auto* atest = alerts->add_subcommand("test", "Send a test alert through every configured channel");
  atest->callback([&] {
    // Each channel gets one try of up to [alerts] timeout_s (at most 300 s).
    auto j = Reply(appliance::ControlRequest(DataDir(g), json{{"cmd", "alert-test"}}.dump(), 2 * 300 * 1000 + 5000), rc);
    if (!j) return;
    const json& channels = (*j)["channels"];
    bool all = !channels.empty();
    for (const auto& c : channels) all = all && c.value("ok", false);
    if (g.json) {
      std::cout << json{{"delivered", all}, {"channels", channels}}.dump() << "\n";
    } else if (channels.empty()) {
      PrintError("no alert channel is configured (custosd's config: [alerts] webhook_url or smtp_url)");
    } else {
      for (const auto& c : channels) {
        std::printf("%-8s %s\n", c.value("channel", "").c_str(),
                    c.value("ok", false) ? "delivered" : ("FAILED: " + EscapeForDisplay(c.value("error", ""))).c_str());
      }
    }
    rc = all ? kExitOk : kExitError;
  });

  auto* status = app.add_subcommand("status", "Show the appliance: agents and running jobs");
  status->footer("\nTalks to custosd (--data-dir or $CUSTOS_DATA_DIR). Exit code 13 when no custosd answers.");
  status->callback([&] {
    auto j = Control(g, json{{"cmd", "status"}}, rc);
    if (!j) return;
    if (g.json) {
      std::cout << j->dump() << "\n";
      return;
    }
    std::printf("custosd %s listening on %s\nappliance key %s\n\n", j->value("version", "").c_str(),
                j->value("endpoint", "").c_str(), j->value("appliance_key", "").c_str());
    PrintAgents((*j)["agents"]);
    std::printf("\njobs: %zu running\n", (*j)["jobs"].size());
  });
}

}  // namespace custos::cli
