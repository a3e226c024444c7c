// Restores through an agent (`custos restore SNAPSHOT --agent NAME --target
// DIR`): custosd sends the agent the blobs of the snapshot path, the agent
// runs the restore issue's restorer on them (temporaries, read-back
// verification, no symlink followed) and custosd keeps the signed report.
// The blob allowance (403 for anything else) is driven by hand from the
// independent Python client (cap_client_test.py, section 5c).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <string>

#include "appliance/registry.h"
#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

// Files of every kind the restorer handles, a file larger than the agent's
// 16 MiB credit window, and names that are not UTF-8.
void MakeTree(const std::string& root) {
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  REQUIRE(::mkdir((root + "/sub").c_str(), 0750) == 0);
  REQUIRE(::mkdir((root + "/sub/deeper").c_str(), 0700) == 0);
  REQUIRE(::mkdir((root + "/empty-dir").c_str(), 0711) == 0);
  test::WriteBytes(root + "/large.bin", test::RandomBytes(20u << 20, 11));
  test::WriteBytes(root + "/sub/medium.bin", test::RandomBytes(3u << 20, 12));
  test::WriteString(root + "/empty", "");
  test::WriteString(root + "/sub/deeper/note.txt", "deep");
  test::WriteString(root + "/odd \xff\xfe name", "not utf-8");
  test::WriteString(root + "/new\nline", "newline in the name");
  for (int i = 0; i < 30; ++i) test::WriteString(root + "/sub/f" + std::to_string(i), "small " + std::to_string(i));
  REQUIRE(::chmod((root + "/sub/f3").c_str(), 0600) == 0);
  REQUIRE(::link((root + "/sub/f1").c_str(), (root + "/hardlink").c_str()) == 0);
  REQUIRE(::symlink("sub/f2", (root + "/link").c_str()) == 0);
  REQUIRE(::symlink("/nonexistent/target", (root + "/dangling").c_str()) == 0);
}

json Summary(const RunResult& r) {
  auto lines = JsonLines(r.out);
  REQUIRE_FALSE(lines.empty());
  return lines.back();
}

std::string BackUp(const Appliance& a, const std::string& agent, const std::string& src) {
  RunResult b = Cli(a.data, "--json backup --agent " + agent + " " + Q(src));
  INFO(b.err);
  REQUIRE_EXIT(b, 0);
  return Summary(b)["snapshot"];
}

}  // namespace

TEST_CASE("remote restore: the agent restores a snapshot byte for byte and the appliance keeps the signed report",
          "[appliance][remote][restore]") {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  MakeTree(src);
  std::string snap = BackUp(a, "db01", src);

  std::string target = work.path() + "/restored";
  RunResult r = Cli(a.data, "--json restore latest:" + Q(src) + " --agent db01 --target " + Q(target));
  INFO(r.out << r.err << "\nagent: " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err));
  REQUIRE_EXIT(r, 0);
  json s = Summary(r);
  REQUIRE(s["state"] == "ok");
  REQUIRE(s["kind"] == "restore");
  REQUIRE(s["snapshot"] == snap);
  REQUIRE(s["counts"]["files_failed"] == 0);
  REQUIRE(s["counts"]["files_verified"] == s["counts"]["files_restored"]);
  REQUIRE(s["counts"]["links"] == 1);
  std::string report = s["report_id"];

  // Byte for byte, links as links, and the metadata.
  RunResult diff = test::Run("diff -r --no-dereference " + Q(src) + " " + Q(target));
  INFO(diff.out << diff.err);
  REQUIRE(diff.exit_code == 0);
  for (const char* p : {"/sub", "/sub/deeper", "/empty-dir", "/sub/f3", "/large.bin", "/empty", "/link"}) {
    struct stat a1 = test::Lstat(src + p), b1 = test::Lstat(target + p);
    INFO(p);
    REQUIRE(a1.st_mode == b1.st_mode);
    REQUIRE(a1.st_mtim.tv_sec == b1.st_mtim.tv_sec);
    REQUIRE(a1.st_mtim.tv_nsec == b1.st_mtim.tv_nsec);
    REQUIRE(a1.st_size == b1.st_size);
  }
  REQUIRE(test::Lstat(target + "/hardlink").st_ino == test::Lstat(target + "/sub/f1").st_ino);
  REQUIRE(test::Lstat(target + "/hardlink").st_nlink == 2);

  // The report is in the appliance's repository, signed, and says where.
  RunResult list = a.Repo("--json reports list");
  REQUIRE_EXIT(list, 0);
  json reports = json::parse(list.out);
  REQUIRE(reports.size() == 1);
  RunResult verify = a.Repo("reports verify " + report.substr(0, 12));
  INFO(verify.out << verify.err);
  REQUIRE_EXIT(verify, 0);
  RunResult show = a.Repo("--json reports show " + report.substr(0, 12));
  REQUIRE_EXIT(show, 0);
  json body = json::parse(show.out);
  if (body.contains("body")) body = body["body"];
  REQUIRE(body["agent"] == "db01");
  REQUIRE(body["target"] == target);
  REQUIRE(body["result"] == "ok");
  REQUIRE(body["snapshot"]["id"] == snap);
  // The job history has it too.
  RunResult job = Cli(a.data, "--json status");
  REQUIRE_EXIT(job, 0);

  // Again into the same target: everything is already correct.
  RunResult again = Cli(a.data, "--json restore " + snap.substr(0, 10) + ":" + Q(src) + " --agent db01 --target " +
                                    Q(target));
  INFO(again.err);
  REQUIRE_EXIT(again, 0);
  REQUIRE(Summary(again)["counts"]["files_restored"] == 0);

  // A subpath: only that subtree, into its own target.
  std::string sub_target = work.path() + "/sub-restored";
  RunResult sub = Cli(a.data, "restore latest:" + Q(src + "/sub") + " --agent db01 --target " + Q(sub_target));
  INFO(sub.out << sub.err);
  REQUIRE_EXIT(sub, 0);
  REQUIRE(Contains(sub.out, "report "));
  REQUIRE(test::Run("diff -r --no-dereference " + Q(src + "/sub") + " " + Q(sub_target)).exit_code == 0);
  REQUIRE(json::parse(a.Repo("--json reports list").out).size() == 3);

  // Bad requests: a relative target, an unknown snapshot or path, no daemon.
  REQUIRE_EXIT(Cli(a.data, "restore latest --agent db01 --target relative"), 2);
  RunResult nosnap = Cli(a.data, "restore ffffffff --agent db01 --target " + Q(work.path() + "/x"));
  REQUIRE_EXIT(nosnap, 1);
  RunResult nopath = Cli(a.data, "restore latest:/no/such/path --agent db01 --target " + Q(work.path() + "/x"));
  REQUIRE_EXIT(nopath, 1);
  REQUIRE(Contains(nopath.err, "not in the snapshot"));
  REQUIRE_EXIT(Cli(work.path() + "/no-appliance", "restore latest --agent db01 --target /tmp/x"), 13);
}

TEST_CASE("remote restore: a symlink in the target is not followed, a file that cannot be written makes the job "
          "partial (exit 3) and the report names it",
          "[appliance][remote][restore][security]") {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "web01");
  std::string src = work.path() + "/server";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/etc").c_str(), 0755) == 0);
  test::WriteString(src + "/etc/passwd", "root:x:0:0");
  test::WriteString(src + "/blocked", "a file where the target has a directory");
  test::WriteString(src + "/fine", "restored as usual");
  BackUp(a, "web01", src);

  // The target: "etc" is a symlink to a directory outside, "blocked" a
  // non-empty directory.
  std::string target = work.path() + "/target", outside = work.path() + "/outside";
  REQUIRE(::mkdir(target.c_str(), 0755) == 0);
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  REQUIRE(::symlink(outside.c_str(), (target + "/etc").c_str()) == 0);
  REQUIRE(::mkdir((target + "/blocked").c_str(), 0755) == 0);
  test::WriteString(target + "/blocked/keep", "x");

  RunResult r = Cli(a.data, "--json restore latest:" + Q(src) + " --agent web01 --target " + Q(target));
  INFO(r.out << r.err << "\nagent: " << Slurp(agent->err));
  REQUIRE_EXIT(r, 3);
  json s = Summary(r);
  REQUIRE(s["state"] == "partial");
  std::string failures = s["failures"].dump();
  REQUIRE(Contains(failures, "/etc"));
  REQUIRE(Contains(failures, "/blocked"));
  // Nothing was written outside the target, the rest was restored.
  REQUIRE(test::Run("ls -A " + Q(outside)).out.empty());
  REQUIRE(Slurp(target + "/fine") == "restored as usual");
  REQUIRE(Slurp(target + "/blocked/keep") == "x");

  // The signed report lists both, and the job history points to it.
  json reports = json::parse(a.Repo("--json reports list").out);
  REQUIRE(reports.size() == 1);
  std::string id = s["report_id"];
  RunResult show = a.Repo("--json reports show " + id.substr(0, 12));
  REQUIRE_EXIT(show, 0);
  REQUIRE(Contains(show.out, "/blocked"));
  REQUIRE(Contains(show.out, "partial"));

  // Text output: the failures on stderr, exit 3.
  RunResult text = Cli(a.data, "restore latest:" + Q(src) + " --agent web01 --target " + Q(target));
  REQUIRE_EXIT(text, 3);
  REQUIRE(Contains(text.err, "error: " + src + "/blocked: exists in the target"));
}

TEST_CASE("registry: a schema-1 registry (no jobs.report) opens, gains the column and keeps its rows",
          "[appliance][restore]") {
  test::TempDir work;
  std::string path = work.path() + "/registry.db";
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "CREATE TABLE jobs (id TEXT PRIMARY KEY, agent TEXT NOT NULL, kind TEXT NOT NULL,"
                       " state TEXT NOT NULL, started INTEGER NOT NULL, ended INTEGER NOT NULL DEFAULT 0,"
                       " params TEXT NOT NULL DEFAULT '{}', snapshot TEXT NOT NULL DEFAULT '',"
                       " error TEXT NOT NULL DEFAULT '', files INTEGER NOT NULL DEFAULT 0,"
                       " bytes INTEGER NOT NULL DEFAULT 0);"
                       "INSERT INTO jobs (id, agent, kind, state, started) VALUES ('j-old', 'db01', 'backup', 'ok', 5);",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  for (int round = 0; round < 2; ++round) {  // upgraded once, then opened as it is
    auto reg = appliance::Registry::Open(path);
    INFO(reg.status().ToString());
    REQUIRE(reg.ok());
    if (round == 0) {
      appliance::JobRecord j{"j-new", "db01", "restore", "ok", 10, 11, "{}", "", "", 1, 2};
      j.report = std::string(64, 'b');
      REQUIRE((*reg)->SaveJob(j).ok());
    }
    auto jobs = (*reg)->Jobs();
    REQUIRE(jobs.ok());
    REQUIRE(jobs->size() == 2);
    REQUIRE((*jobs)[0].report == std::string(64, 'b'));
    REQUIRE((*jobs)[1].id == "j-old");
    REQUIRE((*jobs)[1].report.empty());
  }
}
