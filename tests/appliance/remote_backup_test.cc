// Backups through the appliance (issue 5): `custos backup --agent` runs the
// backup issue's archiver on the agent, blobs cross CAP/1, custosd checks
// and stores them and stamps the snapshot; the snapshot then restores and
// verifies with the ordinary CLI. Also: the host is the agent's enrolled
// name, unchanged data does not cross twice, and another agent's first
// backup of the same data is asked for everything (no dedup side channel)
// while the store still keeps it once.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

// A small server tree: several chunks of random data, duplicates, small
// files, a symlink, an empty directory.
void MakeServerTree(const std::string& root) {
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/etc").c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/empty").c_str(), 0700) == 0);
  test::WriteBytes(root + "/big.bin", test::RandomBytes(3u << 20, 7));
  test::WriteBytes(root + "/copy.bin", test::RandomBytes(3u << 20, 7));
  for (int i = 0; i < 50; ++i) test::WriteString(root + "/etc/f" + std::to_string(i), "config " + std::to_string(i));
  REQUIRE(::symlink("etc/f1", (root + "/link").c_str()) == 0);
}

json LastJsonLine(const std::string& out) {
  auto lines = JsonLines(out);
  REQUIRE_FALSE(lines.empty());
  return lines.back();
}

uint64_t RepoBytes(const std::string& dir) {
  RunResult r = test::Run("du -sb " + Q(dir) + " | cut -f1");
  return std::stoull(r.out);
}

}  // namespace

TEST_CASE("remote backup: an agent backs up, the appliance stamps and stores, the snapshot restores and verifies",
          "[appliance][remote]") {
  test::TempDir work;
  Appliance a(work.path());
  auto db01 = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  MakeServerTree(src);

  RunResult b1 = Cli(a.data, "--json backup --agent db01 " + Q(src));
  INFO(b1.err << Slurp(db01->err) << Slurp(a.daemon->err));
  REQUIRE_EXIT(b1, 0);
  json s1 = LastJsonLine(b1.out);
  REQUIRE(s1["message_type"] == "summary");
  REQUIRE(s1["state"] == "ok");
  std::string snap = s1["snapshot"];
  REQUIRE(snap.size() == 64);

  // The appliance's repository holds it under the agent's enrolled name,
  // with the appliance's time.
  RunResult list = a.Repo("--json snapshots");
  REQUIRE_EXIT(list, 0);
  json snaps = json::parse(list.out);
  REQUIRE(snaps.size() == 1);
  REQUIRE(snaps[0]["host"] == "db01");
  REQUIRE(snaps[0]["paths"] == json::array({src}));
  uint64_t added1 = snaps[0]["summary"]["data_blobs_added"];
  REQUIRE(added1 >= 4);  // three+ chunks of big.bin (copy.bin is the same), small files

  // Restore with verification: bit for bit.
  std::string target = work.path() + "/restored";
  RunResult r = a.Repo("restore " + snap.substr(0, 12) + ":" + Q(src) + " --target " + Q(target));
  INFO(r.out << r.err);
  REQUIRE_EXIT(r, 0);
  REQUIRE(Contains(r.out + r.err, "52 files match their recorded SHA-256"));
  RunResult diff = test::Run("diff -r --no-dereference " + Q(src) + " " + Q(target));
  INFO(diff.out);
  REQUIRE(diff.exit_code == 0);
  REQUIRE(test::Lstat(target + "/empty").st_mode % 01000 == 0700);

  // Again, unchanged: nothing crosses (HAVE/LACK from this host's blobs).
  RunResult b2 = Cli(a.data, "--json backup --agent db01 " + Q(src));
  REQUIRE_EXIT(b2, 0);
  json snaps2 = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps2.size() == 2);
  REQUIRE(snaps2[1]["summary"]["data_blobs_added"] == 0);
  // The agent's own files cache: nothing was read again.
  REQUIRE(snaps2[1]["summary"]["files_unmodified"] == 52);
  REQUIRE(snaps2[1]["summary"]["bytes_read"] == 0);
  // A changed file is read again, and only it.
  test::WriteString(src + "/etc/f7", "config 7, edited");
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 " + Q(src)), 0);
  json snaps2b = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps2b.size() == 3);
  REQUIRE(snaps2b[2]["summary"]["files_unmodified"] == 51);
  REQUIRE(snaps2b[2]["summary"]["files_changed"] == 1);
  REQUIRE(snaps2b[2]["summary"]["data_blobs_added"] == 1);

  // A second server with the same data: the appliance asks for every blob
  // (it never tells db02 what db01 holds), and stores none twice.
  auto db02 = StartAgent(a, work.path(), "db02");
  uint64_t before = RepoBytes(a.data + "/repository/data");
  RunResult b3 = Cli(a.data, "--json backup --agent db02 " + Q(src));
  REQUIRE_EXIT(b3, 0);
  json snaps3 = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps3.size() == 4);
  REQUIRE(snaps3[3]["host"] == "db02");
  // All sent (as many as db01 first sent; f7 changed, not added): no side channel.
  REQUIRE(snaps3[3]["summary"]["data_blobs_added"] == added1);
  uint64_t after = RepoBytes(a.data + "/repository/data");
  INFO("data grew from " << before << " to " << after);
  REQUIRE(after < before + (64u << 10));  // but stored once (a few small packs of trees at most)

  // Bad requests: an unknown agent, relative paths.
  RunResult unknown = Cli(a.data, "backup --agent nosuch " + Q(src));
  REQUIRE_EXIT(unknown, 1);
  REQUIRE(Contains(unknown.err, "not connected"));
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 relative/path"), 2);
  REQUIRE_EXIT(Cli(a.data, "backup --agent db01 --tag x " + Q(src)), 2);

  // The whole repository checks clean.
  RunResult check = a.Repo("check --read-data");
  INFO(check.out << check.err);
  REQUIRE_EXIT(check, 0);
}

TEST_CASE("remote backup: an unreadable path makes a partial snapshot, exit 3", "[appliance][remote]") {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "web01");
  std::string src = work.path() + "/server";
  MakeServerTree(src);
  RunResult b = Cli(a.data, "--json backup --agent web01 " + Q(src) + " " + Q(work.path() + "/does-not-exist"));
  INFO(b.out << b.err << Slurp(agent->err));
  REQUIRE_EXIT(b, 3);
  json s = LastJsonLine(b.out);
  REQUIRE(s["state"] == "partial");
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == 1);
  REQUIRE(snaps[0]["partial"] == true);
}

TEST_CASE("remote backup: eight agents back up at once to one appliance", "[appliance][remote]") {
  test::TempDir work;
  Appliance a(work.path());
  constexpr int kAgents = 8;
  std::vector<std::unique_ptr<Proc>> agents;
  std::vector<std::string> sources;
  for (int i = 0; i < kAgents; ++i) {
    std::string name = "srv" + std::to_string(i);
    agents.push_back(StartAgent(a, work.path(), name));
    std::string src = work.path() + "/data-" + name;
    REQUIRE(::mkdir(src.c_str(), 0755) == 0);
    // Each server: its own 2 MiB, and 1 MiB that all share.
    test::WriteBytes(src + "/own.bin", test::RandomBytes(2u << 20, 100 + i));
    test::WriteBytes(src + "/shared.bin", test::RandomBytes(1u << 20, 99));
    for (int k = 0; k < 20; ++k) test::WriteString(src + "/f" + std::to_string(k), name + " " + std::to_string(k));
    sources.push_back(src);
  }
  std::vector<RunResult> results(kAgents);
  std::vector<std::thread> threads;
  for (int i = 0; i < kAgents; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Cli(a.data, "--json backup --agent srv" + std::to_string(i) + " " + Q(sources[i]));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kAgents; ++i) {
    INFO("agent srv" << i << ": " << results[i].err << Slurp(agents[i]->err));
    REQUIRE_EXIT(results[i], 0);
  }
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == kAgents);
  std::set<std::string> hosts;
  for (const auto& s : snaps) hosts.insert(s["host"].get<std::string>());
  REQUIRE(hosts.size() == kAgents);
  // Each snapshot restores to exactly its server's files.
  for (int i : {0, kAgents - 1}) {
    std::string target = work.path() + "/restore" + std::to_string(i);
    RunResult r = a.Repo("restore latest --host srv" + std::to_string(i) + " --target " + Q(target));
    REQUIRE_EXIT(r, 0);
    REQUIRE(test::Run("diff -r " + Q(sources[i]) + " " + Q(target + sources[i])).exit_code == 0);
  }
  RunResult check = a.Repo("check --read-data");
  INFO(check.out << check.err);
  REQUIRE_EXIT(check, 0);
}

TEST_CASE("remote backup: an agent killed mid-backup fails the job, corrupts nothing, and the next run completes",
          "[appliance][remote]") {
  test::TempDir work;
  Appliance a(work.path(), 300, /*resume_window_s=*/2);
  auto agent = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteBytes(src + "/large.bin", test::RandomBytes(96u << 20, 5));
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " backup --agent db01 " + Q(src), work.path(), "job");
  // Freeze the agent once some of its data arrived, then kill it: it never
  // finishes, and does not come back within the resume window.
  uint64_t arrived = 0;
  REQUIRE(Eventually([&] {
    RunResult s = Cli(a.data, "--json status");
    if (s.exit_code != 0 || json::parse(s.out)["jobs"].empty()) return false;
    arrived = json::parse(s.out)["jobs"][0].value("bytes_received", uint64_t(0));
    return arrived >= (8u << 20);
  }));
  ::kill(agent->pid, SIGSTOP);
  REQUIRE(agent->Stop(SIGKILL) == 128 + SIGKILL);
  int code = -1;
  REQUIRE(Eventually([&] { return job.Exited(&code); }));
  INFO(Slurp(job.err) << Slurp(a.daemon->err));
  REQUIRE(code == 1);
  REQUIRE(Contains(Slurp(job.err), "failed"));
  REQUIRE(Contains(Slurp(job.err), "did not come back"));
  REQUIRE(json::parse(a.Repo("--json snapshots").out).empty());
  // The repository is consistent, and a new run of the agent completes.
  REQUIRE_EXIT(a.Repo("check"), 0);
  auto again = std::make_unique<Proc>(kBin + "/custos-agent --state-dir " + Q(work.path() + "/db01") + " run",
                                      work.path(), "agent-db01-again");
  REQUIRE(Eventually([&] {
    RunResult s = Cli(a.data, "--json status");
    return s.exit_code == 0 && Contains(s.out, "\"connected\":true");
  }));
  RunResult b = Cli(a.data, "backup --agent db01 " + Q(src));
  INFO(b.err);
  REQUIRE_EXIT(b, 0);
  REQUIRE_EXIT(a.Repo("check --read-data"), 0);
  // What arrived in the failed job was not sent again: the new snapshot's
  // count of bytes that crossed leaves out at least what had arrived.
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == 1);
  CHECK(snaps[0]["summary"]["bytes_added"].get<uint64_t>() <= (96u << 20) - arrived + (4u << 20));
}

TEST_CASE("remote backup: six thousand small new blobs in one job, every one accounted for", "[appliance][remote]") {
  // More BLOBs than a ZeroMQ queue holds (1000 messages) go through one job
  // with the agent's window of unanswered BLOBs. (The benchmark's 80,000
  // blobs once overran the queue and lost messages; this smaller run does
  // not reproduce that on its own, it checks the counts and the content.)
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "files01");
  std::string src = work.path() + "/many";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  for (int d = 0; d < 6; ++d) {
    std::string dir = src + "/d" + std::to_string(d);
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    for (int f = 0; f < 1000; ++f) {
      test::WriteString(dir + "/" + std::to_string(f), "file " + std::to_string(d) + "/" + std::to_string(f));
    }
  }
  RunResult b = Cli(a.data, "--json backup --agent files01 " + Q(src));
  INFO(b.err << Slurp(agent->err) << Slurp(a.daemon->err));
  REQUIRE_EXIT(b, 0);
  REQUIRE_FALSE(Contains(Slurp(a.daemon->err), "out of order"));
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == 1);
  REQUIRE(snaps[0]["summary"]["data_blobs_added"] == 6000);
  std::string target = work.path() + "/restored";
  REQUIRE_EXIT(a.Repo("restore latest --target " + Q(target)), 0);
  REQUIRE(test::Run("diff -r " + Q(src) + " " + Q(target + src)).exit_code == 0);
}
