// Signed restore and drill reports (restore/report.h, restore/drill.h and
// `custos reports`, `custos drill`): the signature round trip, tampering
// and foreign keys, malformed payloads; every restore recording a report
// (also a failed or partial one); verification with `openssl pkeyutl`
// given the exported public key; damaged report files found by `reports
// verify` and `check`; drills of a whole snapshot and of a random sample,
// a damaged blob failing a drill, not enough scratch space, --keep.
// Runs as root (a tmpfs mount for the scratch-space case).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>

#include "base/crypto.h"
#include "base/file_util.h"
#include "restore/drill.h"
#include "restore/report.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "storage/backend.h"
#include "storage/repository.h"
#include "tests/cli/cli_fixture.h"
#include "tests/restore/restore_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using custos::test::RunResult;

namespace {

std::string Slurp(const std::string& path) {
  auto b = ReadFile(path);
  return b.ok() ? std::string(b->begin(), b->end()) : std::string();
}

// A small source tree: n files of distinct content "f<i>" in two dirs.
// Returns rel path -> SHA-256.
std::map<std::string, Id> MakeSource(const std::string& dir, int n, size_t size = 3000) {
  std::map<std::string, Id> sha;
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir + "/a").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir + "/b").c_str(), 0700) == 0);
  for (int i = 0; i < n; ++i) {
    std::string rel = std::string(i % 2 ? "a" : "b") + "/f" + std::to_string(i);
    Bytes data = test::FastRandom(size + size_t(i), uint64_t(i) + 1);
    test::WriteString(dir + "/" + rel, std::string(data.begin(), data.end()));
    sha[rel] = Sha256(data);
  }
  return sha;
}

json Body(const std::string& kind = "restore") {
  return json{{"type", restore::kRestoreReportType}, {"kind", kind}, {"result", "ok"}, {"finished", "2026-01-01"}};
}

std::vector<json> ReportsList(const std::string& repo) {
  RunResult r = C(repo, "--json reports list");
  REQUIRE_EXIT(r, 0);
  json arr = json::parse(r.out);
  return std::vector<json>(arr.begin(), arr.end());
}

int Openssl(const std::string& dir) {
  return test::Run("openssl pkeyutl -verify -pubin -inkey " + Q(dir + "/signing-key.pem") + " -rawin -in " +
                   Q(dir + "/report.json") + " -sigfile " + Q(dir + "/report.sig"))
      .exit_code;
}

size_t Entries(const std::string& dir) { return test::ScanTree(dir).size() - 1; }  // without the root

}  // namespace

// ----------------------------------------------------------------------------
// Library

TEST_CASE("reports: a signed report round-trips and any change to it is detected", "[report]") {
  test::TestRepo r;
  json body = Body();
  body["target"] = "/srv/restore";
  auto id = restore::SaveReport(*r.repo, body);
  REQUIRE(id.ok());
  auto loaded = restore::LoadReport(*r.repo, *id);
  INFO(loaded.status().ToString());
  REQUIRE(loaded.ok());
  REQUIRE(loaded->body == body);
  REQUIRE(restore::SignatureValid(loaded->signed_report));

  // Encode/Decode are inverses; any changed body byte breaks the signature.
  restore::SignedReport s = loaded->signed_report;
  auto again = restore::DecodeSignedReport(AsBytes(restore::EncodeSignedReport(s)));
  REQUIRE(again.ok());
  REQUIRE(again->body == s.body);
  REQUIRE(again->signature == s.signature);
  for (size_t i = 0; i < s.body.size(); ++i) {
    restore::SignedReport t = s;
    t.body[i] ^= 0x01;
    REQUIRE_FALSE(restore::SignatureValid(t));
  }
  restore::SignedReport t = s;
  t.signature[10] ^= 0x80;
  REQUIRE_FALSE(restore::SignatureValid(t));

  // Stored with a changed body but the old signature: refused on load.
  restore::SignedReport forged = s;
  forged.body = json{{"type", restore::kRestoreReportType}, {"result", "ok"}, {"target", "/elsewhere"}}.dump();
  auto fid = r.repo->SaveReport(AsBytes(restore::EncodeSignedReport(forged)));
  REQUIRE(fid.ok());
  auto fl = restore::LoadReport(*r.repo, *fid);
  REQUIRE(fl.status().code() == Code::kIntegrity);
  REQUIRE(fl.status().message().find("signature does not verify") != std::string::npos);

  // Validly signed, but by a key that is not this repository's.
  Key32 seed;
  RandomBytes(seed.data(), seed.size());
  restore::SignedReport other = restore::SignReport(SigningKeyFromSeed(seed), body);
  REQUIRE(restore::SignatureValid(other));
  auto oid = r.repo->SaveReport(AsBytes(restore::EncodeSignedReport(other)));
  REQUIRE(oid.ok());
  auto ol = restore::LoadReport(*r.repo, *oid);
  REQUIRE(ol.status().code() == Code::kIntegrity);
  REQUIRE(ol.status().message().find("another key") != std::string::npos);

  // LoadReports keeps the good one and names the two bad ones.
  std::vector<std::string> problems;
  auto all = restore::LoadReports(*r.repo, &problems);
  REQUIRE(all.ok());
  REQUIRE(all->size() == 1);
  REQUIRE((*all)[0].id == *id);
  REQUIRE(problems.size() == 2);
}

TEST_CASE("reports: malformed payloads are refused with clear errors", "[report]") {
  auto code = [](const std::string& p) { return restore::DecodeSignedReport(AsBytes(p)).status().code(); };
  std::string sig = Base64Encode(test::RandomBytes(64, 1));
  std::string pub = Base64Encode(test::RandomBytes(32, 2));
  auto payload = [&](json j) { return j.dump(); };
  json good{{"format", "custos-signed-report-1"}, {"body", "{}"}, {"signature", sig}, {"public_key", pub}};
  REQUIRE(code(payload(good)) == Code::kOk);
  REQUIRE(code("") == Code::kCorruption);
  REQUIRE(code("not json") == Code::kCorruption);
  REQUIRE(code("[1,2]") == Code::kCorruption);
  json j = good;
  j["format"] = "custos-signed-report-9";
  REQUIRE(code(payload(j)) == Code::kNotSupported);
  for (const char* field : {"body", "signature", "public_key"}) {
    j = good;
    j.erase(field);
    REQUIRE(code(payload(j)) == Code::kCorruption);
    j = good;
    j[field] = 5;
    REQUIRE(code(payload(j)) == Code::kCorruption);
  }
  j = good;
  j["signature"] = Base64Encode(test::RandomBytes(63, 3));
  REQUIRE(code(payload(j)) == Code::kCorruption);
  j = good;
  j["public_key"] = "!!not base64!!";
  REQUIRE(code(payload(j)) == Code::kCorruption);
}

TEST_CASE("reports: IDs are found by prefix and 'latest', ambiguity and junk are refused", "[report]") {
  test::TestRepo r;
  std::vector<Id> ids;
  for (int i = 0; i < 40; ++i) {
    json b = Body();
    b["finished"] = "2026-01-01T00:00:" + std::string(i < 10 ? "0" : "") + std::to_string(i) + "Z";
    auto id = restore::SaveReport(*r.repo, b);
    REQUIRE(id.ok());
    ids.push_back(*id);
  }
  auto latest = restore::FindReport(*r.repo, "latest");
  REQUIRE(latest.ok());
  REQUIRE(*latest == ids.back());
  auto full = restore::FindReport(*r.repo, ids[3].Hex());
  REQUIRE(full.ok());
  REQUIRE(*full == ids[3]);
  // 40 IDs: some single hex digit is shared by two of them (pigeonhole).
  std::map<char, int> first;
  for (const auto& id : ids) first[id.Hex()[0]]++;
  for (const auto& [c, n] : first) {
    if (n > 1) REQUIRE(restore::FindReport(*r.repo, std::string(1, c)).status().code() == Code::kInvalidArgument);
  }
  REQUIRE(restore::FindReport(*r.repo, "zz").status().code() == Code::kInvalidArgument);
  REQUIRE(restore::FindReport(*r.repo, "../x").status().code() == Code::kInvalidArgument);
  std::string absent = "0000000000000000";
  REQUIRE(restore::FindReport(*r.repo, absent).status().code() == Code::kNotFound);
}

// ----------------------------------------------------------------------------
// CLI: restore reports

TEST_CASE("reports cli: every restore records a signed report that openssl verifies", "[report][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  InitRepo(repo);
  auto sha = MakeSource(src, 6);
  std::string snap = CliBackup(repo, Q(src));

  std::string target = work.path() + "/t";
  RunResult rr = C(repo, "--json restore latest --target " + Q(target));
  REQUIRE_EXIT(rr, 0);
  json summary = json::parse(rr.out);
  std::string rid = summary["report_id"];

  auto list = ReportsList(repo);
  REQUIRE(list.size() == 1);
  REQUIRE(list[0]["id"] == rid);
  json b = list[0]["report"];
  INFO(b.dump(2));
  REQUIRE(b["type"] == "custos.restore-report.v1");
  REQUIRE(b["kind"] == "restore");
  REQUIRE(b["result"] == "ok");
  REQUIRE(b["snapshot"]["id"] == snap);
  REQUIRE(b["snapshot"]["host"] == summary["host"]);
  REQUIRE(b["target"] == target);
  REQUIRE(b["counts"]["files_restored"] == 6);
  REQUIRE(b["counts"]["files_verified"] == 6);
  REQUIRE(b["counts"]["files_failed"] == 0);
  REQUIRE(b["bytes_written"] == summary["bytes_written"]);
  REQUIRE(b["verification"]["result"] == "all files match");
  REQUIRE(b["failures"] == json::array());
  REQUIRE(b["duration_s"].get<double>() >= 0);
  REQUIRE(b["started"].get<std::string>() <= b["finished"].get<std::string>());

  // The human view.
  RunResult show = C(repo, "reports show " + rid.substr(0, 10));
  REQUIRE_EXIT(show, 0);
  REQUIRE(Contains(show.out, "signature verified"));
  REQUIRE(Contains(show.out, "result:             ok"));
  REQUIRE(Contains(show.out, "6 restored, 0 already correct, 0 failed"));
  RunResult text = C(repo, "reports list");
  REQUIRE_EXIT(text, 0);
  REQUIRE(Contains(text.out, rid.substr(0, 8)));
  // --json show prints exactly the signed bytes.
  RunResult js = C(repo, "--json reports show latest");
  REQUIRE_EXIT(js, 0);

  // Exported for outsiders: openssl verifies the exact bytes with the PEM key.
  std::string exp = work.path() + "/export";
  RunResult v = C(repo, "reports verify " + rid + " --export " + Q(exp));
  REQUIRE_EXIT(v, 0);
  REQUIRE(Contains(v.out, "1 reports verified, 0 invalid"));
  REQUIRE(Slurp(exp + "/report.json") + "\n" == js.out);
  REQUIRE(Slurp(exp + "/report.sig").size() == 64);
  RunResult pem = C(repo, "reports public-key");
  REQUIRE_EXIT(pem, 0);
  REQUIRE(pem.out == Slurp(exp + "/signing-key.pem"));
  RunResult ok = test::Run("openssl pkeyutl -verify -pubin -inkey " + Q(exp + "/signing-key.pem") + " -rawin -in " +
                           Q(exp + "/report.json") + " -sigfile " + Q(exp + "/report.sig"));
  INFO(ok.out << ok.err);
  REQUIRE(ok.exit_code == 0);
  REQUIRE(Contains(ok.out, "Signature Verified Successfully"));
  // ... and refuses a report with one changed byte.
  std::string body = Slurp(exp + "/report.json");
  size_t at = body.find("\"result\":\"ok\"");
  REQUIRE(at != std::string::npos);
  body.replace(at, 13, "\"result\":\"OK\"");
  REQUIRE(WriteFileAtomic(exp + "/report.json", AsBytes(body), 0644, Overwrite::kYes).ok());
  REQUIRE(Openssl(exp) != 0);

  // A second restore adds a second report; --no-report adds none.
  REQUIRE_EXIT(C(repo, "restore latest --target " + Q(work.path() + "/t2")), 0);
  REQUIRE_EXIT(C(repo, "restore latest --no-report --target " + Q(work.path() + "/t3")), 0);
  REQUIRE(ReportsList(repo).size() == 2);
  RunResult all = C(repo, "reports verify");
  REQUIRE_EXIT(all, 0);
  REQUIRE(Contains(all.out, "2 reports verified, 0 invalid"));
  // check counts reports and finds them sound.
  RunResult check = C(repo, "check");
  REQUIRE_EXIT(check, 0);
  REQUIRE(Contains(check.out, "2 reports"));
}

TEST_CASE("reports cli: failures and restores that cannot start are recorded with their reasons",
          "[report][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  InitRepo(repo);
  MakeSource(src, 4);
  std::string snap = CliBackup(repo, Q(src));

  // A damaged blob: the report is partial and names the file and the reason.
  std::string victim = src + "/a/f1";
  {
    auto lib = OpenLib(repo);
    auto s = snapshot::FindSnapshot(*lib, snap);
    REQUIRE(s.ok());
    test::DamageBlob(*lib, repo, test::FindNode(*lib, s->manifest.tree, victim).content[0].id);
  }
  RunResult r = C(repo, "--json restore latest --target " + Q(work.path() + "/t"));
  REQUIRE_EXIT(r, 3);
  std::string rid = json::parse(r.out)["report_id"];
  RunResult show = C(repo, "--json reports show " + rid);
  REQUIRE_EXIT(show, 0);
  json b = json::parse(show.out);
  INFO(b.dump(2));
  REQUIRE(b["result"] == "partial");
  REQUIRE(b["counts"]["files_failed"] == 1);
  REQUIRE(b["counts"]["files_restored"] == 3);
  REQUIRE(b["failures"].size() == 1);
  REQUIRE(b["failures"][0]["path"] == victim);
  REQUIRE(Contains(b["failures"][0]["reason"], "blob"));
  REQUIRE(b["verification"]["result"] == "failures");
  RunResult text = C(repo, "reports show " + rid);
  REQUIRE(Contains(text.out, "FAILED (1 failures)"));
  REQUIRE(Contains(text.out, victim + ": "));

  // A target that is a file: nothing restored, and an error report.
  std::string file_target = work.path() + "/plain-file";
  test::WriteString(file_target, "x");
  RunResult e = C(repo, "restore latest --target " + Q(file_target));
  REQUIRE(e.exit_code != 0);
  auto list = ReportsList(repo);
  REQUIRE(list.size() == 2);
  json eb = list.back()["report"];
  REQUIRE(eb["result"] == "error");
  REQUIRE(eb["target"] == file_target);
  REQUIRE(!eb["error"].get<std::string>().empty());
  RunResult el = C(repo, "reports list");
  REQUIRE(Contains(el.out, "ERROR"));
}

TEST_CASE("reports cli: damaged and forged report files are named by reports verify and check", "[report][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src";
  InitRepo(repo);
  MakeSource(src, 2);
  CliBackup(repo, Q(src));
  REQUIRE_EXIT(C(repo, "restore latest --target " + Q(work.path() + "/t1")), 0);
  REQUIRE_EXIT(C(repo, "restore latest --target " + Q(work.path() + "/t2")), 0);
  auto list = ReportsList(repo);
  REQUIRE(list.size() == 2);
  std::string damaged = list[0]["id"];

  // Flip one byte of a report file.
  std::string path = repo + "/reports/" + damaged;
  auto bytes = ReadFile(path);
  REQUIRE(bytes.ok());
  (*bytes)[bytes->size() / 2] ^= 0x40;
  ::chmod(path.c_str(), 0600);
  REQUIRE(WriteFileAtomic(path, *bytes, 0600, Overwrite::kYes).ok());

  RunResult v = C(repo, "reports verify");
  REQUIRE_EXIT(v, 1);
  REQUIRE(Contains(v.out, damaged.substr(0, 8) + "  INVALID"));
  REQUIRE(Contains(v.out, "1 reports verified, 1 invalid"));
  RunResult l = C(repo, "reports list");
  REQUIRE_EXIT(l, 1);
  REQUIRE(Contains(l.err, "report " + damaged));
  RunResult check = C(repo, "check");
  REQUIRE(check.exit_code != 0);
  REQUIRE(Contains(check.out + check.err, "report " + damaged));

  // A report signed by another key, planted in the repository.
  {
    auto lib = OpenLib(repo);
    Key32 seed;
    RandomBytes(seed.data(), seed.size());
    auto forged = restore::SignReport(SigningKeyFromSeed(seed), Body());
    REQUIRE(lib->SaveReport(AsBytes(restore::EncodeSignedReport(forged))).ok());
  }
  RunResult v2 = C(repo, "--json reports verify");
  REQUIRE_EXIT(v2, 1);
  json j = json::parse(v2.out);
  REQUIRE(j["invalid"] == 2);
  REQUIRE(j["valid"] == 1);
  bool foreign = false;
  for (const auto& e : j["reports"]) {
    if (e.contains("error") && Contains(e["error"], "another key")) foreign = true;
  }
  REQUIRE(foreign);
  // Usage errors.
  REQUIRE_EXIT(C(repo, "reports verify --export " + Q(work.path() + "/x")), 2);
  REQUIRE_EXIT(C(repo, "reports show nothex"), 1);
}

// ----------------------------------------------------------------------------
// CLI: drills

TEST_CASE("drill cli: a whole-snapshot drill restores, verifies, reports and removes its scratch data",
          "[report][drill][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src", scratch = work.path() + "/scratch";
  InitRepo(repo);
  auto sha = MakeSource(src, 12, 200000);
  std::string snap = CliBackup(repo, Q(src));
  REQUIRE(::mkdir(scratch.c_str(), 0755) == 0);

  RunResult r = C(repo, "--json drill latest --scratch " + Q(scratch));
  REQUIRE_EXIT(r, 0);
  json b = json::parse(r.out);
  INFO(b.dump(2));
  REQUIRE(b["type"] == "custos.drill-report.v1");
  REQUIRE(b["kind"] == "drill");
  REQUIRE(b["result"] == "ok");
  REQUIRE(b["snapshot"]["id"] == snap);
  REQUIRE(b["counts"]["files_restored"] == 12);
  REQUIRE(b["counts"]["files_verified"] == 12);
  REQUIRE(b["drill"]["mode"] == "all");
  REQUIRE(b["drill"]["snapshot_files"] == 12);
  uint64_t total = 0;
  for (int i = 0; i < 12; ++i) total += 200000 + uint64_t(i);
  REQUIRE(b["drill"]["snapshot_bytes"] == total);
  REQUIRE(b["drill"]["bytes_sampled"] == total);
  REQUIRE(b["drill"]["throughput_bytes_per_s"].get<double>() > 0);
  REQUIRE(b["drill"]["estimated_full_restore_s"] == b["duration_s"]);
  REQUIRE(b["drill"]["scratch_removed"] == true);
  REQUIRE(Entries(scratch) == 0);  // nothing left behind

  // It is a signed report like the others, and the text view shows the RTO.
  auto list = ReportsList(repo);
  REQUIRE(list.size() == 1);
  REQUIRE(list[0]["id"] == b["report_id"]);
  RunResult kind = C(repo, "--json reports list --kind restore");
  REQUIRE(json::parse(kind.out).empty());
  RunResult show = C(repo, "reports show latest");
  REQUIRE(Contains(show.out, "full restore time:"));
  REQUIRE(Contains(show.out, "measured"));
  REQUIRE(Contains(show.out, "scratch data:       removed"));
  std::string exp = work.path() + "/exp";
  REQUIRE_EXIT(C(repo, "reports verify latest --export " + Q(exp)), 0);
  REQUIRE(Openssl(exp) == 0);

  // --keep leaves a tree identical to the source.
  RunResult k = C(repo, "--json drill latest --keep --scratch " + Q(scratch));
  REQUIRE_EXIT(k, 0);
  json kb = json::parse(k.out);
  REQUIRE(kb["drill"]["scratch_removed"] == false);
  std::string kept = kb["drill"]["scratch"];
  REQUIRE(kept.rfind(scratch + "/custos-drill-", 0) == 0);
  test::TreeInfo t = test::ScanTree(kept + src);
  for (const auto& [rel, h] : sha) REQUIRE(t[rel].sha256 == h);

  // Usage errors.
  REQUIRE_EXIT(C(repo, "drill latest --sample 0"), 2);
  REQUIRE_EXIT(C(repo, "drill latest --sample 3 --all"), 2);
  REQUIRE_EXIT(C(repo, "drill"), 2);
}

TEST_CASE("drill cli: --sample N restores exactly N random files and extrapolates the restore time",
          "[report][drill][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src", scratch = work.path() + "/scratch";
  InitRepo(repo);
  MakeSource(src, 30, 5000);
  CliBackup(repo, Q(src));
  REQUIRE(::mkdir(scratch.c_str(), 0755) == 0);
  std::set<std::string> seen;
  for (int run = 0; run < 3; ++run) {
    RunResult r = C(repo, "--json drill latest --sample 7 --keep --scratch " + Q(scratch));
    REQUIRE_EXIT(r, 0);
    json b = json::parse(r.out);
    INFO(b.dump(2));
    REQUIRE(b["drill"]["mode"] == "sample");
    REQUIRE(b["drill"]["files_sampled"] == 7);
    REQUIRE(b["drill"]["snapshot_files"] == 30);
    REQUIRE(b["counts"]["files_restored"] == 7);
    REQUIRE(b["counts"]["files_verified"] == 7);
    REQUIRE(b["drill"]["estimated_full_restore_s"].get<double>() > 0);
    // Exactly 7 regular files in the kept scratch tree.
    test::TreeInfo t = test::ScanTree(b["drill"]["scratch"].get<std::string>());
    int files = 0;
    for (const auto& [rel, e] : t) {
      if (S_ISREG(e.st.st_mode)) {
        ++files;
        seen.insert(rel);
      }
    }
    REQUIRE(files == 7);
  }
  // Three random samples of 7 out of 30 are not all the same set.
  REQUIRE(seen.size() > 7);
  // A sample larger than the snapshot is the whole snapshot.
  RunResult big = C(repo, "--json drill latest --sample 1000 --scratch " + Q(scratch));
  REQUIRE_EXIT(big, 0);
  REQUIRE(json::parse(big.out)["drill"]["mode"] == "all");
}

TEST_CASE("drill cli: a damaged blob fails the drill, and too little scratch space is refused up front",
          "[report][drill][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src", scratch = work.path() + "/scratch";
  InitRepo(repo);
  MakeSource(src, 4, 3u << 20);  // 4 files of 3 MiB
  std::string snap = CliBackup(repo, Q(src));
  REQUIRE(::mkdir(scratch.c_str(), 0755) == 0);

  // 4 MiB of tmpfs cannot hold 12 MiB: refused before anything is written.
  MountGuard guard{scratch};
  REQUIRE(::mount("tmpfs", scratch.c_str(), "tmpfs", 0, "size=4m") == 0);
  guard.mounted = true;
  RunResult full = C(repo, "drill latest --scratch " + Q(scratch));
  REQUIRE_EXIT(full, 1);
  REQUIRE(Contains(full.err, "the drill needs about"));
  REQUIRE(Contains(full.err, "--sample N"));
  REQUIRE(Entries(scratch) == 0);
  // A sample of one file fits.
  REQUIRE_EXIT(C(repo, "drill latest --sample 1 --scratch " + Q(scratch)), 0);
  REQUIRE(Entries(scratch) == 0);

  {
    auto lib = OpenLib(repo);
    auto s = snapshot::FindSnapshot(*lib, snap);
    REQUIRE(s.ok());
    test::DamageBlob(*lib, repo, test::FindNode(*lib, s->manifest.tree, src + "/b/f2").content[0].id);
  }
  ::umount2(scratch.c_str(), MNT_DETACH);
  guard.mounted = false;
  RunResult r = C(repo, "--json drill latest --scratch " + Q(scratch));
  REQUIRE_EXIT(r, 3);
  json b = json::parse(r.out);
  INFO(b.dump(2));
  REQUIRE(b["result"] == "partial");
  REQUIRE(b["counts"]["files_failed"] == 1);
  REQUIRE(b["failures"][0]["path"] == src + "/b/f2");
  REQUIRE(b["drill"]["scratch_removed"] == true);
  REQUIRE(Entries(scratch) == 0);
  RunResult text = C(repo, "drill latest --scratch " + Q(scratch));
  REQUIRE_EXIT(text, 3);
  REQUIRE(Contains(text.err, "error: " + src + "/b/f2: "));
  REQUIRE(Contains(text.out, "FAILED"));
}

TEST_CASE("drill: RemoveTree removes read-only trees and never follows symlinks out", "[report][drill]") {
  test::TempDir work;
  std::string outside = work.path() + "/outside", tree = work.path() + "/tree";
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  test::WriteString(outside + "/keep", "must survive");
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  REQUIRE(::mkdir((tree + "/ro").c_str(), 0755) == 0);
  test::WriteString(tree + "/ro/file", "x", 0444);
  REQUIRE(::symlink(outside.c_str(), (tree + "/ro/link").c_str()) == 0);
  REQUIRE(::symlink((outside + "/keep").c_str(), (tree + "/filelink").c_str()) == 0);
  REQUIRE(::chmod((tree + "/ro").c_str(), 0555) == 0);
  REQUIRE(restore::RemoveTree(tree).ok());
  struct stat st;
  REQUIRE(::lstat(tree.c_str(), &st) != 0);
  REQUIRE(Slurp(outside + "/keep") == "must survive");
  REQUIRE(restore::RemoveTree(work.path() + "/absent").ok());
}
