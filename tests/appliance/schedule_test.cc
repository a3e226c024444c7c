// Schedules in custosd (issue 6): `custos schedule add|list|remove`, a
// scheduled backup that runs by itself, catch-up after downtime with the
// missed slots in `custos jobs --failed`, and schedules in the config.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <string>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/scheduler/alert_sinks.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

// Waits up to `seconds` for `pred`.
template <typename F>
bool Within(int seconds, F pred) {
  for (int i = 0; i < seconds * 4; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return false;
}

// custosd config text that sends alerts to `web`.
std::string WebhookConfig(const alerttest::HttpSink& web) {
  return "[alerts]\nwebhook_url = \"" + web.url("/hook") + "\"\n";
}

json Jobs(const Appliance& a, const std::string& args = "") {
  RunResult r = Cli(a.data, "--json jobs -n 100 " + args);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

}  // namespace

TEST_CASE("schedules: add, list, remove, a scheduled backup runs by itself, catch-up after downtime",
          "[appliance][scheduler]") {
  alerttest::HttpSink web;
  AgentSite site("db01", WebhookConfig(web));
  Appliance& a = site.a;
  const std::string& src = site.src;
  test::WriteString(src + "/config", "every minute");

  // Bad input: usage errors with the reason.
  RunResult bad = Cli(a.data, "schedule add --agent db01 --paths " + Q(src) + " --calendar 'daily 25:00'");
  REQUIRE(bad.exit_code == 2);
  REQUIRE(Contains(bad.err, "daily HH:MM"));
  bad = Cli(a.data, "schedule add --agent db01 --paths " + Q(src) + " --calendar 'daily 02:00' --timezone Mars/Base");
  REQUIRE(bad.exit_code == 2);
  REQUIRE(Contains(bad.err, "unknown time zone"));
  bad = Cli(a.data, "schedule add --agent db01 --paths relative --calendar 'daily 02:00'");
  REQUIRE(bad.exit_code == 2);
  bad = Cli(a.data, "schedule add --agent db01 --paths " + Q(src) + " --calendar 'daily 02:00' --job prune");
  REQUIRE(bad.exit_code == 2);
  REQUIRE(Contains(bad.err, "whole repository"));
  bad = Cli(a.data, "schedule add --calendar 'daily 02:00' --job compact");
  REQUIRE(bad.exit_code == 2);
  REQUIRE(Contains(bad.err, "not supported"));
  bad = Cli(a.data, "schedule add --job verify --agent db01 --calendar 'daily 02:00'");
  REQUIRE(bad.exit_code == 2);
  bad = Cli(a.data, "schedule add --job drill --calendar 'daily 02:00'");
  REQUIRE(bad.exit_code == 2);

  RunResult add = Cli(a.data, "--json schedule add --agent db01 --paths " + Q(src) +
                                  " --calendar '* * * * *' --timezone Asia/Ho_Chi_Minh");
  INFO(add.err);
  REQUIRE(add.exit_code == 0);
  json sc = json::parse(add.out);
  int64_t id = sc["id"];
  REQUIRE(sc["timezone"] == "Asia/Ho_Chi_Minh");
  REQUIRE(sc["next_run"].get<std::string>().size() == 20);
  // The rolling scrub in two parts, and a drill of db01's newest snapshot
  // (it waits for db01's backup of the same minute: one job per agent).
  RunResult verify = Cli(a.data, "--json schedule add --job verify --calendar '* * * * *' --parts 2");
  INFO(verify.err);
  REQUIRE(verify.exit_code == 0);
  RunResult drill = Cli(a.data, "--json schedule add --job drill --agent db01 --calendar '* * * * *' --sample 0");
  INFO(drill.err);
  REQUIRE(drill.exit_code == 0);
  json list = json::parse(Cli(a.data, "--json schedule list").out);
  REQUIRE(list.size() == 3);
  REQUIRE(list[0]["calendar"] == "* * * * *");

  // Within a minute (and a bit) the backup runs, started by the schedule.
  json run;
  bool ran = Within(80, [&] {
    for (const auto& j : Jobs(a)) {
      if (j["params"].value("schedule", int64_t(0)) == id && j["state"] == "ok") run = j;
    }
    return !run.is_null();
  });
  INFO(Slurp(a.daemon->err));
  REQUIRE(ran);
  REQUIRE(json::parse(a.Repo("--json snapshots").out).size() >= 1);
  // The scrub read part 1 of 2 (the next run reads part 2); the drill
  // restored db01's snapshot and its signed report is in the repository.
  json scrub, drilled;
  bool local_ran = Within(80, [&] {
    for (const auto& j : Jobs(a)) {
      if (j["kind"] == "verify" && j["state"] == "ok" && j["params"]["part"] == "1/2") scrub = j;
      if (j["kind"] == "drill" && j["state"] == "ok") drilled = j;
    }
    return !scrub.is_null() && !drilled.is_null();
  });
  INFO(Slurp(a.daemon->err));
  REQUIRE(local_ran);
  REQUIRE(drilled["agent"] == "db01");
  REQUIRE(drilled["report"].get<std::string>().size() == 64);
  RunResult reports = a.Repo("--json reports list");
  REQUIRE(reports.exit_code == 0);
  REQUIRE(Contains(reports.out, drilled["report"].get<std::string>()));
  REQUIRE(Jobs(a, "--failed").empty());
  for (const auto& sc : json::parse(Cli(a.data, "--json schedule list").out)) {
    if (sc["job"] != "backup") REQUIRE(Cli(a.data, "schedule remove " + std::to_string(sc["id"].get<int64_t>())).exit_code == 0);
  }

  // Downtime: custosd stops, and its memory says the last slot handled was
  // 5 minutes ago. At start-up the latest missed slot is caught up once,
  // the earlier ones are recorded missed.
  a.daemon->Stop(SIGTERM);
  std::string db = a.data + "/registry.db";
  RunResult py = test::Run("/usr/bin/python3 -c \"import sqlite3,time; c=sqlite3.connect('" + db +
                           "'); c.execute('UPDATE schedule_slots SET last_slot=?', (int(time.time()//60*60)-300,)); "
                           "c.commit()\"");
  INFO(py.err);
  REQUIRE(py.exit_code == 0);
  a.Start(a.endpoint);
  bool caught = Within(60, [&] {  // catch-up waits 20 s for agents to reconnect
    for (const auto& j : Jobs(a)) {
      if (j["params"].value("catch_up", false) && j["state"] == "ok") return true;
    }
    return false;
  });
  INFO(Slurp(a.daemon->err));
  REQUIRE(caught);
  json missed = Jobs(a, "--failed");
  REQUIRE(missed.size() >= 3);  // 4 or 5 slots passed, depending on the second we restarted in
  for (const auto& m : missed) {
    REQUIRE(m["state"] == "missed");
    REQUIRE(m["error"] == "the appliance was off");
    REQUIRE(m["agent"] == "db01");
  }
  REQUIRE(Jobs(a, "--agent nobody").empty());
  // Each missed slot alerted, as slot-missed.
  INFO([&] {
    std::string kinds;
    for (const auto& r : web.requests()) kinds += json::parse(r.body).dump() + "\n";
    return kinds;
  }());
  REQUIRE(alerttest::WaitUntil([&] {
    size_t n = 0;
    for (const auto& r : web.requests()) n += json::parse(r.body)["kind"] == "slot-missed" ? 1 : 0;
    return n == missed.size();
  }));
  RunResult human = Cli(a.data, "jobs --failed");
  REQUIRE(Contains(human.out, "missed"));

  REQUIRE(Cli(a.data, "schedule remove " + std::to_string(id)).exit_code == 0);
  REQUIRE(json::parse(Cli(a.data, "--json schedule list").out).empty());
  REQUIRE(Cli(a.data, "schedule remove 999").exit_code == 1);
}

TEST_CASE("schedules: in custosd's config, checked at start", "[appliance][scheduler]") {
  test::TempDir work;
  std::string data = work.path() + "/appliance";
  test::WriteString(work.path() + "/good.toml", R"(
timezone = "Europe/Berlin"
[[schedule]]
agent = "web01"
paths = ["/var/www", "/etc"]
calendar = "weekly sun 03:00"
jitter_s = 600
)");
  Proc d(kBin + "/custosd --data-dir " + Q(data) + " --listen tcp://127.0.0.1:0 --config " +
             Q(work.path() + "/good.toml"),
         work.path(), "custosd");
  REQUIRE(Eventually([&] { return Contains(Slurp(d.out), "listening on"); }));
  json list = json::parse(Cli(data, "--json schedule list").out);
  REQUIRE(list.size() == 1);
  REQUIRE(list[0]["source"] == "config");
  REQUIRE(list[0]["timezone"] == "Europe/Berlin");
  REQUIRE(list[0]["paths"] == json({"/var/www", "/etc"}));
  REQUIRE(list[0]["id"].get<int64_t>() < 0);
  REQUIRE(d.Stop() == 0);

  for (const char* bad : {"[[schedule]]\nagent = \"w\"\npaths = [\"/x\"]\ncalendar = \"daily 99:00\"\n",
                          "[[schedule]]\nagent = \"w\"\npaths = [\"/x\"]\ncalendar = \"daily 01:00\"\ncolour = 1\n",
                          "timezone = \"Nowhere/Town\"\n"}) {
    test::WriteString(work.path() + "/bad.toml", bad);
    RunResult r = test::Run(kBin + "/custosd --data-dir " + Q(data) + " --config " + Q(work.path() + "/bad.toml"));
    INFO(bad << r.err);
    REQUIRE(r.exit_code == 2);
  }
}

TEST_CASE("schedules: run now, the rolling scrub finds damage, records it in the job history and alerts",
          "[appliance][scheduler]") {
  alerttest::HttpSink web;
  AgentSite site("db01", WebhookConfig(web));
  Appliance& a = site.a;
  const std::string& src = site.src;
  test::WriteBytes(src + "/data.bin", test::RandomBytes(2u << 20, 3));
  RunResult add = Cli(a.data, "--json schedule add --agent db01 --paths " + Q(src) + " --calendar 'monthly 1 03:00'");
  REQUIRE(add.exit_code == 0);
  int64_t backup_id = json::parse(add.out)["id"];
  RunResult run = Cli(a.data, "schedule run " + std::to_string(backup_id));
  INFO(run.out << run.err << Slurp(a.daemon->err));
  REQUIRE(run.exit_code == 0);
  REQUIRE(Contains(run.out, " ok"));
  REQUIRE(Cli(a.data, "schedule run 999").exit_code == 1);

  // The agent's retention, applied by the appliance on a schedule: three
  // snapshots, the oldest held, keep-last 1: the newest and the held one stay.
  for (int i = 0; i < 2; ++i) {
    test::WriteString(src + "/n" + std::to_string(i), std::to_string(i));
    REQUIRE(Cli(a.data, "schedule run " + std::to_string(backup_id)).exit_code == 0);
  }
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == 3);
  std::string oldest = snaps[0]["id"], newest = snaps[2]["id"];
  RunResult hold = Cli(a.data, "hold add " + oldest + " --reason 'incident 7'");
  INFO(hold.err);
  REQUIRE(hold.exit_code == 0);
  REQUIRE(Cli(a.data, "schedule add --job forget --agent db01 --calendar 'daily 04:00'").exit_code == 2);  // no rule
  RunResult forget = Cli(a.data, "--json schedule add --job forget --agent db01 --calendar 'daily 04:00' --keep-last 1");
  INFO(forget.err);
  REQUIRE(forget.exit_code == 0);
  REQUIRE(json::parse(forget.out)["policy"] == "keep-last 1");
  RunResult forgot = Cli(a.data, "schedule run " + std::to_string(json::parse(forget.out)["id"].get<int64_t>()));
  INFO(forgot.out << forgot.err << Slurp(a.daemon->err));
  REQUIRE(forgot.exit_code == 0);
  json left = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(left.size() == 2);
  REQUIRE(left[0]["id"] == oldest);
  REQUIRE(left[1]["id"] == newest);

  RunResult verify = Cli(a.data, "--json schedule add --job verify --calendar 'monthly 1 04:00' --parts 1");
  REQUIRE(verify.exit_code == 0);
  std::string verify_id = std::to_string(json::parse(verify.out)["id"].get<int64_t>());
  REQUIRE(Cli(a.data, "schedule run " + verify_id).exit_code == 0);  // a clean repository

  // Damage one pack: the next scrub fails, naming it.
  RunResult pack = test::Run("find " + Q(a.data + "/repository/data") + " -type f | head -1");
  std::string pack_path = pack.out.substr(0, pack.out.find('\n'));
  REQUIRE_FALSE(pack_path.empty());
  ::chmod(pack_path.c_str(), 0600);
  {
    std::fstream f(pack_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  RunResult damaged = Cli(a.data, "schedule run " + verify_id);
  INFO(damaged.out << damaged.err);
  REQUIRE(damaged.exit_code == 1);
  json failed = Jobs(a, "--failed");
  REQUIRE(failed.size() == 1);
  REQUIRE(failed[0]["kind"] == "verify");
  REQUIRE(Contains(failed[0]["error"].get<std::string>(), "DAMAGE"));
  std::string name = pack_path.substr(pack_path.rfind('/') + 1);
  REQUIRE(Contains(failed[0]["error"].get<std::string>(), name.substr(0, 8)));
  // One alert, of its own kind.
  REQUIRE(alerttest::WaitUntil([&] { return !web.requests().empty(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto posts = web.requests();
  REQUIRE(posts.size() == 1);
  json alert = json::parse(posts[0].body);
  REQUIRE(alert["kind"] == "scrub-damage");
  REQUIRE(Contains(alert.dump(), "DAMAGE"));
}
