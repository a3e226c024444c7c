// Prune through custosd (D38): it runs beside a backup, with no lock of its
// own, and never takes what the running backup relies on. The backup below
// answers "already stored" for the data of a snapshot that is forgotten and
// pruned (grace 0) while the backup is held still; the snapshot it then
// commits needs that data, and must verify and restore.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <string>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

TEST_CASE("appliance prune: runs beside a backup and spares what the backup relies on",
          "[appliance][retention][prune]") {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  Bytes old_data = test::RandomBytes(24u << 20, 5);  // 24 MiB the forgotten snapshot holds
  test::WriteBytes(src + "/a-old.bin", old_data);
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 " + Q(src)), 0);
  REQUIRE(::unlink((src + "/a-old.bin").c_str()) == 0);
  test::WriteString(src + "/small", "small");
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 " + Q(src)), 0);

  // The third backup: the old data again (its host set, loaded at the
  // start, says the store has it) and 64 MiB of new data to keep it busy.
  test::WriteBytes(src + "/a-old.bin", old_data);
  test::WriteBytes(src + "/b-new.bin", test::RandomBytes(64u << 20, 6));
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " backup --agent db01 " + Q(src), work.path(), "job");
  REQUIRE(ReceivedAtLeast(a, 8u << 20));
  ::kill(agent->pid, SIGSTOP);  // held mid-job while its host's old snapshot goes
  RunResult forget = Cli(a.data, "--json forget --keep-last 1 --host db01");
  REQUIRE_EXIT(forget, 0);
  CHECK(json::parse(forget.out)["removed"] == 1);
  RunResult prune = Cli(a.data, "--json prune --grace 0 --max-waste 0");
  INFO(prune.out << prune.err << Slurp(a.daemon->err));
  REQUIRE_EXIT(prune, 0);
  json p = json::parse(prune.out);
  CHECK(p["protected"].get<uint64_t>() >= 24);  // the old file's chunks: about 1 MiB each
  ::kill(agent->pid, SIGCONT);
  REQUIRE(job.Wait() == 0);
  INFO("agent: " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err) << "\njob: " << Slurp(job.err));
  RunResult check = a.Repo("check --read-data");
  INFO(check.out << check.err);
  REQUIRE_EXIT(check, 0);
  RequireRestoresLike(a, src, work.path() + "/out");

  // The prune is in the job history with what it freed; the next one, with
  // no job running, has nothing left to spare.
  json jobs = json::parse(Cli(a.data, "--json jobs").out);
  bool recorded = false;
  for (const auto& j : jobs) {
    if (j["kind"] == "prune") recorded = j["state"] == "ok" && j["id"] == p["job"];
  }
  CHECK(recorded);
  RunResult again = Cli(a.data, "--json prune --grace 0");
  REQUIRE_EXIT(again, 0);
  CHECK(json::parse(again.out)["protected"] == 0);
  REQUIRE_EXIT(a.Repo("check --read-data"), 0);
  RequireRestoresLike(a, src, work.path() + "/out2");
}

TEST_CASE("appliance prune: scheduled as a job of its own, recorded with the bytes freed",
          "[appliance][retention][prune][schedule]") {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteBytes(src + "/f", test::RandomBytes(3u << 20, 7));
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 " + Q(src)), 0);
  test::WriteBytes(src + "/f", test::RandomBytes(3u << 20, 8));
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 " + Q(src)), 0);
  REQUIRE_EXIT(Cli(a.data, "forget --keep-last 1"), 0);

  REQUIRE_EXIT(Cli(a.data, "schedule add --job prune --agent db01 --calendar 'daily 04:30'"), 2);
  RunResult add = Cli(a.data, "--json schedule add --job prune --calendar 'daily 04:30'");
  REQUIRE_EXIT(add, 0);
  int64_t id = json::parse(add.out)["id"];
  // The default grace (24 h): this run marks; nothing is old enough to go.
  RunResult run = Cli(a.data, "schedule run " + std::to_string(id));
  INFO(run.out << run.err << Slurp(a.daemon->err));
  REQUIRE_EXIT(run, 0);
  json jobs = json::parse(Cli(a.data, "--json jobs").out);
  REQUIRE(jobs[0]["kind"] == "prune");
  CHECK(jobs[0]["state"] == "ok");
  CHECK(jobs[0]["bytes"] == 0);
  CHECK(jobs[0]["params"]["grace_s"] == 86400);
  // By hand with grace 0: the marked data goes and the job records it.
  RunResult now = Cli(a.data, "--json prune --grace 0 --max-waste 0");
  REQUIRE_EXIT(now, 0);
  uint64_t freed = json::parse(now.out)["bytes_freed"];
  CHECK(freed >= (3u << 20));
  jobs = json::parse(Cli(a.data, "--json jobs").out);
  CHECK(jobs[0]["kind"] == "prune");
  CHECK(jobs[0]["bytes"] == freed);
  REQUIRE_EXIT(a.Repo("check --read-data"), 0);
  RequireRestoresLike(a, src, work.path() + "/out");
}
