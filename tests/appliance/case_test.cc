// Incident cases through custosd and a real agent (issue 7): open, collect
// with a recipe, the ledger's records and objects, holds and case
// snapshots that survive forget, export and verification with outside
// tools only.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

std::vector<json> Ledger(const Appliance& a, const std::string& id) {
  std::ifstream f(a.data + "/evidence/cases/" + id + "/ledger.jsonl");
  std::vector<json> out;
  for (std::string line; std::getline(f, line);) out.push_back(json::parse(line));
  return out;
}

std::string Sha256Of(const std::string& path) {
  RunResult r = test::Run("sha256sum " + Q(path));
  REQUIRE(r.exit_code == 0);
  return r.out.substr(0, 64);
}

// The summary line of a command that streams status lines with --json.
json LastLine(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1));
}

std::string OpenCase(const Appliance& a, const std::string& title) {
  RunResult r = Cli(a.data, "--json case open --title " + Q(title) + " --detected-at 2026-11-27T07:40:00+07:00");
  REQUIRE_EXIT(r, 0);
  return json::parse(r.out)["id"];
}

}  // namespace

TEST_CASE("case collect: a recipe runs on the agent, every item is hashed twice into the ledger",
          "[appliance][evidence][case]") {
  AgentSite site("web01");
  const std::string& src = site.src;
  test::Run("mkdir -p " + Q(src + "/etc/cron.d") + " " + Q(src + "/log") + " && printf 'root:x:0:0\\n' > " +
            Q(src + "/etc/passwd") + " && printf '* * * * * root /tmp/x\\n' > " + Q(src + "/etc/cron.d/evil") +
            " && head -c 3000000 /dev/urandom > " + Q(src + "/log/big.log") + " && ln -s /etc/passwd " +
            Q(src + "/etc/link"));
  std::string id = OpenCase(site.a, "Web server defaced");
  CHECK(id.size() == 9);

  std::string recipe_file = site.work.path() + "/test.recipe";
  std::ofstream(recipe_file) << "recipe test-triage 1\n"
                                "cmd       sys.uname      uname -a\n"
                                "processes processes\n"
                                "timeline  timeline       " + src + "\n"
                                "tree      logs           " + src + "/log\n"
                                "file      persistence    " + src + "/etc/passwd " + src + "/etc/cron.d/* " + src +
                                    "/etc/link " + src + "/etc/ld.so.preload\n"
                                "cmd       missing.tool   no-such-tool-custos --x\n";
  RunResult col = Cli(site.a.data, "--json case collect " + id + " --agent web01 --recipe " + Q(recipe_file));
  INFO(col.out << col.err << Slurp(site.a.daemon->err) << Slurp(site.agent->err));
  REQUIRE_EXIT(col, 0);

  auto ledger = Ledger(site.a, id);
  REQUIRE(ledger.size() > 8);
  // The chain: each record names the SHA-256 of the line before it.
  {
    std::ifstream f(site.a.data + "/evidence/cases/" + id + "/ledger.jsonl");
    std::string prev_line, line;
    for (uint64_t seq = 0; std::getline(f, line); ++seq) {
      json r = json::parse(line);
      CHECK(r["seq"] == seq);
      if (seq > 0) CHECK(r["prev"] == test::Run("printf %s " + Q(prev_line) + " | sha256sum").out.substr(0, 64));
      prev_line = line;
    }
  }
  std::map<std::string, std::vector<json>> by_type;
  for (const auto& r : ledger) by_type[r["type"]].push_back(r);
  CHECK(ledger[0]["type"] == "case.open");
  REQUIRE(by_type["plan"].size() == 1);
  const json& plan = by_type["plan"][0]["body"];
  CHECK(plan["recipe"] == "test-triage");
  CHECK(plan["recipe_sha256"] == Sha256Of(recipe_file));
  // The plan comes before the task starts, and the task ends with counts.
  REQUIRE(by_type["task.start"].size() == 1);
  CHECK(by_type["plan"][0]["seq"] < by_type["task.start"][0]["seq"]);
  REQUIRE(by_type["task.end"].size() == 1);
  const json& end = by_type["task.end"][0]["body"];
  CHECK(end["state"] == "ok");
  CHECK(end["collected"].get<uint64_t>() == by_type["item"].size() + by_type["cmd"].size());
  CHECK(end["failed"] == 0);
  CHECK(end["planned"].get<uint64_t>() >= end["collected"].get<uint64_t>());
  // A checkpoint after the task.
  CHECK(ledger.back()["type"] == "checkpoint");
  CHECK(by_type["task.end"][0]["actor"]["kind"] == "agent");
  CHECK(by_type["task.end"][0]["actor"]["key"].get<std::string>().rfind("sha256:", 0) == 0);

  // Items: both hashes equal the file's, and the object holds its bytes.
  std::map<std::string, json> items;
  for (const auto& r : by_type["item"]) {
    const json& b = r["body"];
    CHECK(b["agent_sha256"] == b["appliance_sha256"]);
    CHECK(b["object"] == b["appliance_sha256"]);
    std::string obj = b["object"];
    std::string obj_path = site.a.data + "/evidence/objects/" + obj.substr(0, 2) + "/" + obj;
    CHECK(Sha256Of(obj_path) == obj);
    if (b.contains("path")) items[b["path"]] = b;
    else items[b["artifact"]] = b;
  }
  REQUIRE(items.count(src + "/etc/passwd"));
  CHECK(items[src + "/etc/passwd"]["agent_sha256"] == Sha256Of(src + "/etc/passwd"));
  CHECK(items[src + "/etc/passwd"]["before"]["size"] == 11);
  REQUIRE(items.count(src + "/log/big.log"));  // three chunks, across messages
  CHECK(items[src + "/log/big.log"]["size"] == 3000000);
  CHECK(items[src + "/log/big.log"]["agent_sha256"] == Sha256Of(src + "/log/big.log"));
  REQUIRE(items.count(src + "/etc/cron.d/evil"));
  REQUIRE(items.count(src + "/etc/link"));
  CHECK(items[src + "/etc/link"]["kind"] == "symlink");
  REQUIRE(items.count("timeline"));
  REQUIRE(items.count("processes"));
  REQUIRE(by_type["cmd"].size() == 1);
  CHECK(by_type["cmd"][0]["body"]["exit"] == 0);
  // Gaps: a tool that is not there, a file that does not exist.
  std::set<std::string> gap_reasons;
  for (const auto& r : by_type["gap"]) gap_reasons.insert(r["body"]["reason"].get<std::string>());
  bool no_tool = false, no_file = false;
  for (const auto& g : gap_reasons) {
    no_tool |= Contains(g, "program not found: no-such-tool-custos");
    no_file |= Contains(g, "absent");
  }
  CHECK(no_tool);
  CHECK(no_file);
  CHECK(!by_type["footprint"].empty());

  // The job history and `case show`.
  RunResult jobs = Cli(site.a.data, "--json jobs");
  REQUIRE_EXIT(jobs, 0);
  CHECK(json::parse(jobs.out)[0]["kind"] == "collect");
  RunResult show = Cli(site.a.data, "--json case show " + id);
  REQUIRE_EXIT(show, 0);
  CHECK(json::parse(show.out)["case"]["items"].get<uint64_t>() == by_type["item"].size());

  // Export, and verification with outside tools only: the bundle's own
  // VERIFY.sh (sh, sha256sum, openssl, sed, xxd), sha256sum -c, and
  // Sleuth Kit's mactime on the host's timeline; then custos evidence
  // verify with the fingerprint the operator was given.
  std::string tar = site.work.path() + "/case.tar";
  RunResult ex = Cli(site.a.data, "--json case export " + id + " -o " + Q(tar));
  REQUIRE_EXIT(ex, 0);
  std::string key = json::parse(ex.out)["key"];
  CHECK(key.rfind("sha256:", 0) == 0);
  CHECK(Ledger(site.a, id).back()["type"] == "checkpoint");  // the export is recorded and checkpointed
  std::string out = site.work.path() + "/bundle";
  REQUIRE(test::Run("mkdir " + Q(out) + " && tar -xf " + Q(tar) + " -C " + Q(out)).exit_code == 0);
  std::string root = out + "/custos-case-" + id;
  RunResult vs = test::Run("cd " + Q(root) + " && sh VERIFY.sh");
  INFO(vs.out << vs.err);
  CHECK(vs.exit_code == 0);
  CHECK(vs.err.empty());
  CHECK(test::Run("cd " + Q(root) + " && sha256sum --quiet -c SHA256SUMS").exit_code == 0);
  CHECK(test::Run("cd " + Q(root) + " && openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in SHA256SUMS "
                  "-sigfile SHA256SUMS.sig").exit_code == 0);
  RunResult mt = test::Run("mactime -b " + Q(root + "/timeline/web01.body") + " -d");
  INFO(mt.err);
  CHECK(mt.exit_code == 0);
  CHECK(Contains(mt.out, src + "/etc/cron.d/evil"));
  CHECK(Contains(mt.out, src + "/log/big.log"));
  // Every item's object is in the bundle under its hash.
  for (const auto& [name, b] : items) {
    std::string obj = b["object"];
    CHECK(Sha256Of(root + "/objects/" + obj) == obj);
  }
  RunResult cv = test::Run(kBin + "/custos evidence verify " + Q(tar) + " --expect-key " + key);
  INFO(cv.out << cv.err);
  CHECK(cv.exit_code == 0);
  RunResult wrong = test::Run(kBin + "/custos evidence verify " + Q(tar) + " --expect-key sha256:" + std::string(64, '0'));
  CHECK(wrong.exit_code != 0);

  // A collection for a case that does not exist, or from an unknown agent.
  CHECK(Cli(site.a.data, "case collect 2026-9999 --agent web01 --profile linux-triage").exit_code == 1);
  CHECK(Cli(site.a.data, "case collect " + id + " --agent nobody --profile linux-triage").exit_code == 1);
  CHECK(Cli(site.a.data, "case collect " + id + " --agent web01 --profile no-such").exit_code == 1);
  CHECK(Cli(site.a.data, "case collect " + id + " --agent web01").exit_code == 2);
}

TEST_CASE("case hold and case snapshot: held snapshots survive forget, every action is a ledger record",
          "[appliance][evidence][case]") {
  AgentSite site("db01");
  test::Run("echo one > " + Q(site.src + "/f"));
  RunResult b = Cli(site.a.data, "--json backup --agent db01 " + Q(site.src));
  REQUIRE_EXIT(b, 0);
  std::string first = LastLine(b.out)["snapshot"];
  std::string id = OpenCase(site.a, "Ransomware note on db01");

  RunResult h = Cli(site.a.data, "--json case hold " + id + " " + first.substr(0, 8));
  REQUIRE_EXIT(h, 0);
  // The "before remediation" state: a fresh backup held at once.
  test::Run("echo two > " + Q(site.src + "/f"));
  RunResult s = Cli(site.a.data, "--json case snapshot " + id + " --agent db01 --label before-remediation");
  REQUIRE_EXIT(s, 0);
  std::string second = LastLine(s.out)["snapshot"];
  // A third, unheld one; then a policy that would keep only the newest.
  REQUIRE_EXIT(Cli(site.a.data, "backup --agent db01 " + Q(site.src)), 0);
  RunResult f = Cli(site.a.data, "--json forget --keep-last 1");
  REQUIRE_EXIT(f, 0);
  RunResult snaps = site.a.Repo("--json snapshots");
  REQUIRE_EXIT(snaps, 0);
  std::set<std::string> left;
  for (const auto& x : json::parse(snaps.out)) left.insert(x["id"]);
  CHECK(left.count(first));
  CHECK(left.count(second));
  CHECK(left.size() == 3);

  // Ledger: two holds (place), each followed by a checkpoint.
  auto ledger = Ledger(site.a, id);
  std::vector<json> holds;
  for (size_t i = 0; i < ledger.size(); ++i) {
    if (ledger[i]["type"] != "hold") continue;
    holds.push_back(ledger[i]);
    REQUIRE(i + 1 < ledger.size());
    CHECK(ledger[i + 1]["type"] == "checkpoint");
  }
  REQUIRE(holds.size() == 2);
  CHECK(holds[0]["body"]["snapshot"] == first);
  CHECK(holds[1]["body"]["snapshot"] == second);
  CHECK(Contains(holds[1]["body"]["reason"].get<std::string>(), "before-remediation"));
  CHECK(holds[0]["actor"]["kind"] == "operator");

  // Release needs a reason and is recorded; the snapshot can then go.
  std::string hold_id = holds[0]["body"]["hold"];
  CHECK(Cli(site.a.data, "case release " + id + " " + hold_id.substr(0, 8)).exit_code == 2);
  REQUIRE_EXIT(Cli(site.a.data, "case release " + id + " " + hold_id.substr(0, 8) + " --reason 'copied to CERT'"), 0);
  auto after = Ledger(site.a, id);
  bool released = false;
  for (const auto& r : after) released |= r["type"] == "hold" && r["body"]["action"] == "release";
  CHECK(released);
  REQUIRE_EXIT(Cli(site.a.data, "forget --keep-last 1"), 0);
  snaps = site.a.Repo("--json snapshots");
  left.clear();
  for (const auto& x : json::parse(snaps.out)) left.insert(x["id"]);
  CHECK(!left.count(first));
  CHECK(left.count(second));

  // Notes (with an attachment), close; a closed case refuses collection.
  std::string att = site.work.path() + "/call.txt";
  std::ofstream(att) << "phone call with the provincial CERT\n";
  REQUIRE_EXIT(Cli(site.a.data, "case note " + id + " 'called CERT' --attach " + Q(att)), 0);
  REQUIRE_EXIT(Cli(site.a.data, "case close " + id + " --reason done"), 0);
  CHECK(Cli(site.a.data, "case collect " + id + " --agent db01 --path /etc/hostname").exit_code == 1);
  auto closed = Ledger(site.a, id);
  bool note = false;
  for (const auto& r : closed) {
    if (r["type"] == "note") note = r["body"]["object"] == Sha256Of(att);
  }
  CHECK(note);
  CHECK(closed[closed.size() - 2]["type"] == "case.close");
  RunResult list = Cli(site.a.data, "--json case list");
  REQUIRE_EXIT(list, 0);
  CHECK(json::parse(list.out)[0]["state"] == "closed");
}
