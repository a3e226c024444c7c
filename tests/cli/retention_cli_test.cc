// `custos forget` and `custos hold` on a local repository (issue 6): a dry
// run removes nothing, a held snapshot survives keep-last 1 and goes once
// released, a policy that keeps nothing is refused (exit 2), the writer
// lock is honoured, a damaged hold file stops every removal, and `check`
// passes after forgetting. (Snapshot times cannot be injected through the
// CLI; the calendar rules are tested on the engine, tests/scheduler/
// retention_test.cc.)
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "snapshot/holds.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;

namespace {

std::set<std::string> SnapshotIds(const std::string& repo) {
  RunResult r = C(repo, "--json snapshots");
  REQUIRE_EXIT(r, 0);
  std::set<std::string> ids;
  for (const auto& s : json::parse(r.out)) ids.insert(s["id"].get<std::string>());
  return ids;
}

// The forget reply's kept snapshots: id -> reasons.
std::map<std::string, std::vector<std::string>> Kept(const json& j) {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& g : j["groups"]) {
    for (const auto& k : g["keep"]) out[k["id"]] = k["reasons"].get<std::vector<std::string>>();
  }
  return out;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  REQUIRE(f.good());
}

}  // namespace

TEST_CASE("forget cli: dry run, keep-last 1 spares a held snapshot, release, check", "[cli][retention]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  std::filesystem::create_directory(src);
  InitRepo(repo);
  std::vector<std::string> s;  // oldest first
  for (int i = 0; i < 4; ++i) {
    WriteFile(src + "/f", "version " + std::to_string(i));
    s.push_back(CliBackup(repo, Q(src)));
  }

  RunResult hold = C(repo, "--json hold add " + s[1].substr(0, 10) + " --reason 'incident 7' --case IR-1");
  REQUIRE_EXIT(hold, 0);
  json h = json::parse(hold.out);
  CHECK(h["snapshot"] == s[1]);
  CHECK(h["reason"] == "incident 7");
  CHECK(h["case"] == "IR-1");
  CHECK(h["released"] == false);
  std::string hold_id = h["id"];

  // Dry run: the decision, nothing removed.
  RunResult dry = C(repo, "--json forget --keep-last 1 --dry-run");
  REQUIRE_EXIT(dry, 0);
  json d = json::parse(dry.out);
  CHECK(d["dry_run"] == true);
  CHECK(d["removed"] == 2);
  CHECK(d["kept"] == 2);
  REQUIRE(d["groups"].size() == 1);
  auto kept = Kept(d);
  CHECK(kept[s[3]] == std::vector<std::string>{"last 1"});
  CHECK(kept[s[1]] == std::vector<std::string>{"held"});
  CHECK(SnapshotIds(repo).size() == 4);
  RunResult text = C(repo, "forget --keep-last 1 --dry-run");
  REQUIRE_EXIT(text, 0);
  CHECK(Contains(text.out, "held"));
  CHECK(Contains(text.out, "nothing was changed"));

  // The real run: the held one survives.
  RunResult real = C(repo, "--json forget --keep-last 1");
  REQUIRE_EXIT(real, 0);
  CHECK(json::parse(real.out)["removed"] == 2);
  CHECK(SnapshotIds(repo) == std::set<std::string>{s[1], s[3]});
  RunResult check = C(repo, "check");
  REQUIRE_EXIT(check, 0);
  CHECK(Contains(check.out, "1 holds"));

  // Release (recorded, listed), then it goes.
  REQUIRE_EXIT(C(repo, "hold release " + hold_id.substr(0, 8) + " --reason closed"), 0);
  RunResult again = C(repo, "hold release " + hold_id.substr(0, 8));
  REQUIRE_EXIT(again, 2);
  CHECK(Contains(again.err, "released already"));
  RunResult list = C(repo, "--json hold list");
  REQUIRE_EXIT(list, 0);
  json holds = json::parse(list.out)["holds"];
  REQUIRE(holds.size() == 1);
  CHECK(holds[0]["released"] == true);
  CHECK(holds[0]["release_reason"] == "closed");
  CHECK(json::parse(C(repo, "--json hold list --active").out)["holds"].empty());
  REQUIRE_EXIT(C(repo, "forget --keep-last 1"), 0);
  CHECK(SnapshotIds(repo) == std::set<std::string>{s[3]});
  REQUIRE_EXIT(C(repo, "check --read-data"), 0);
}

TEST_CASE("forget cli: refusals and exit codes", "[cli][retention]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  std::filesystem::create_directory(src);
  InitRepo(repo);
  WriteFile(src + "/f", "x");
  std::string s1 = CliBackup(repo, Q(src));
  std::string s2 = CliBackup(repo, Q(src));

  // A policy that keeps nothing, or a malformed one: usage, nothing removed.
  RunResult empty = C(repo, "forget");
  REQUIRE_EXIT(empty, 2);
  CHECK(Contains(empty.err, "keeps nothing"));
  REQUIRE_EXIT(C(repo, "forget --keep-daily 0"), 2);
  REQUIRE_EXIT(C(repo, "forget --keep-within 0d"), 2);
  REQUIRE_EXIT(C(repo, "forget --keep-within 5x"), 2);
  REQUIRE_EXIT(C(repo, "forget --keep-last -2"), 2);
  REQUIRE_EXIT(C(repo, "forget --keep-last 1 --timezone Mars/Base"), 2);
  REQUIRE_EXIT(C(repo, "hold add " + s1), 2);  // no --reason
  REQUIRE_EXIT(C(repo, "hold add 0000 --reason x"), 1);
  CHECK(SnapshotIds(repo).size() == 2);
  // -1 is unlimited: keeps all.
  RunResult all = C(repo, "--json forget --keep-last -1");
  REQUIRE_EXIT(all, 0);
  CHECK(json::parse(all.out)["removed"] == 0);
  // A host filter that matches nothing decides nothing.
  RunResult other = C(repo, "--json forget --keep-last 1 --host nosuch");
  REQUIRE_EXIT(other, 0);
  CHECK(json::parse(other.out)["groups"].empty());
  CHECK(SnapshotIds(repo).size() == 2);

  {
    // Another writer holds the lock: a real forget is refused (11), a dry
    // run needs no lock; the library refuses to remove a held snapshot.
    auto lib = OpenLib(repo);
    REQUIRE_EXIT(C(repo, "forget --keep-last 1"), 11);
    REQUIRE_EXIT(C(repo, "forget --keep-last 1 --dry-run"), 0);
    auto h = snapshot::AddHold(*lib, *Id::FromHex(s1), "test", "", storage::Actor::FromProcess("test"));
    REQUIRE(h.ok());
    auto gone = snapshot::ForgetSnapshots(*lib, {*Id::FromHex(s1), *Id::FromHex(s2)});
    CHECK(gone.status().code() == Code::kPermissionDenied);
  }
  CHECK(SnapshotIds(repo).size() == 2);

  // A damaged hold file might hold anything: forget removes nothing (exit 1)
  // and check names the file.
  std::string hold_dir = repo + "/holds";
  std::string name = std::filesystem::directory_iterator(hold_dir)->path().filename();
  std::string path = hold_dir + "/" + name;
  std::filesystem::permissions(path, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x5a');
  }
  RunResult damaged = C(repo, "forget --keep-last 1");
  REQUIRE_EXIT(damaged, 1);
  CHECK(Contains(damaged.err, "damaged hold file"));
  CHECK(SnapshotIds(repo).size() == 2);
  RunResult check = C(repo, "check");
  REQUIRE_EXIT(check, 1);
  CHECK(Contains(check.err, "hold " + name));
}

TEST_CASE("prune cli: dry run, forget --prune, grace, refusals", "[cli][retention][prune]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  std::filesystem::create_directory(src);
  InitRepo(repo);
  WriteFile(src + "/f", std::string(300000, 'a') + "first");
  CliBackup(repo, Q(src));
  WriteFile(src + "/f", std::string(300000, 'b') + "second");
  CliBackup(repo, Q(src));

  REQUIRE_EXIT(C(repo, "prune --grace 24x"), 2);
  REQUIRE_EXIT(C(repo, "prune --max-waste 101"), 2);
  REQUIRE_EXIT(C(repo, "forget --keep-last 1 --grace 0"), 2);  // --grace belongs to --prune
  REQUIRE(SnapshotIds(repo).size() == 2);

  // Forget and prune with the default grace: the data is marked, not deleted.
  RunResult fp = C(repo, "--json forget --keep-last 1 --prune");
  REQUIRE_EXIT(fp, 0);
  json f = json::parse(fp.out);
  CHECK(f["removed"] == 1);
  CHECK(f["prune"]["marked"].get<uint64_t>() >= 1);
  CHECK(f["prune"]["swept"] == 0);
  CHECK(f["prune"]["grace_s"] == 86400);
  // A dry run with grace 0 shows what would go and changes nothing.
  RunResult dry = C(repo, "--json prune --grace 0 --dry-run");
  REQUIRE_EXIT(dry, 0);
  json d = json::parse(dry.out);
  CHECK(d["dry_run"] == true);
  CHECK(d["swept"].get<uint64_t>() >= 1);
  RunResult text = C(repo, "prune --grace 0");
  REQUIRE_EXIT(text, 0);
  CHECK(Contains(text.out, "freed"));
  CHECK(Contains(text.err, "prune: done"));  // progress on stderr
  RunResult after = C(repo, "--json prune --grace 0");
  REQUIRE_EXIT(after, 0);
  CHECK(json::parse(after.out)["swept"] == 0);  // nothing left to sweep
  REQUIRE_EXIT(C(repo, "check --read-data"), 0);
  RunResult restore = C(repo, "restore latest --target " + Q(work.path() + "/out"));
  REQUIRE_EXIT(restore, 0);
  RunResult diff = test::Run("diff -r " + Q(src) + " " + Q(work.path() + "/out" + src));
  REQUIRE(diff.exit_code == 0);
}
