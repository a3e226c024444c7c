// Export bundles (evidence/bundle.h) checked with outside tools only:
// sha256sum -c, openssl pkeyutl on SHA256SUMS and every checkpoint, the
// bundle's own VERIFY.sh under sh, mactime on the timeline; then the
// standalone verifier (custos evidence verify) on a good bundle and on each
// kind of tampering, asserting that it names the problem.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <chrono>

#include "base/file_util.h"
#include "evidence/ledger.h"
#include "evidence/verify.h"
#include "tests/evidence/evidence_fixture.h"

using namespace custos;
using namespace custos::evidence;
using namespace custos::evidencetest;

namespace {

struct Exported {
  test::TempDir dir;
  std::unique_ptr<CaseStore> store;
  std::string id, folder, tar, fingerprint;
};

std::unique_ptr<Exported> ExportFilledCase() {
  auto e = std::make_unique<Exported>();
  e->store = OpenStore(e->dir.path() + "/ev", TestKey());
  auto c = e->store->OpenCase("Web shell on web01", "2026-11-27T08:15:00Z", "TICKET-42", Operator());
  REQUIRE(c.ok());
  e->id = c->id;
  FillCase(*e->store, e->id, e->dir.path());
  e->folder = ExportAndExtract(*e->store, e->id, e->dir.path());
  e->tar = e->dir.path() + "/bundle.tar";
  e->fingerprint = e->store->KeyFingerprint();
  return e;
}

std::string Sh(const std::string& folder, const std::string& cmd) { return "cd " + folder + " && " + cmd; }

// The verifier's verdict on a repacked, tampered folder.
test::RunResult VerifyTampered(const Exported& e, const std::string& flags = "") {
  std::string tar = Repack(e.folder, e.dir.path() + "/tampered.tar");
  return VerifyCli(tar, flags);
}

}  // namespace

TEST_CASE("bundle verifies with sha256sum, openssl, VERIFY.sh and mactime alone", "[evidence][bundle]") {
  auto e = ExportFilledCase();
  const std::string& f = e->folder;
  auto sums = test::Run(Sh(f, "sha256sum -c SHA256SUMS"));
  INFO(sums.out << sums.err);
  CHECK(sums.exit_code == 0);
  CHECK(sums.out.find("ledger.jsonl: OK") != std::string::npos);
  auto sig = test::Run(Sh(f, "openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig"));
  CHECK(sig.exit_code == 0);
  auto cps = test::Run(Sh(f, "for t in checkpoints/*.txt; do openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin "
                             "-in $t -sigfile ${t%.txt}.sig || exit 1; done; ls checkpoints/*.txt | wc -l"));
  INFO(cps.out << cps.err);
  CHECK(cps.exit_code == 0);
  // open, task.end, hold, close, export
  CHECK(cps.out.substr(cps.out.find_last_of('\n', cps.out.size() - 2) + 1) == "5\n");
  auto fp = test::Run(Sh(f, "openssl pkey -pubin -in pubkey.pem -outform DER | sha256sum"));
  CHECK("sha256:" + fp.out.substr(0, 64) == e->fingerprint);
  CHECK(Slurp(f + "/README").find(e->fingerprint) != std::string::npos);

  auto sh = test::Run(Sh(f, "sh VERIFY.sh"));
  INFO(sh.out << sh.err);
  CHECK(sh.exit_code == 0);
  CHECK(sh.err.empty());  // a clean run says nothing on stderr (a stray glob once ran a hash as a command)
  CHECK(sh.out.find("OK: ") != std::string::npos);
  CHECK(sh.out.find("signing key: " + e->fingerprint) != std::string::npos);

  auto mac = test::Run(Sh(f, "mactime -b timeline/web01.body -d"));
  INFO(mac.out << mac.err);
  CHECK(mac.exit_code == 0);
  CHECK(mac.out.find("/var/www/web01/shell.php") != std::string::npos);
  CHECK(Slurp(f + "/timeline/web01.body") == Bodyfile("web01"));

  // Every object a record names is there, under its hash.
  auto lines = Lines(Slurp(f + "/ledger.jsonl"));
  size_t objects = 0;
  for (const auto& l : lines) {
    auto r = ParseRecord(l);
    REQUIRE(r.ok());
    for (const auto& o : ObjectReferences(r->body)) {
      auto h = test::Run("sha256sum " + f + "/objects/" + o);
      CHECK(h.out.substr(0, 64) == o);
      ++objects;
    }
  }
  CHECK(objects == 4);  // the file, the timeline, the command's output, the note's attachment
  auto last = ParseRecord(lines.back());
  REQUIRE(last.ok());
  CHECK(last->header.type == "checkpoint");
  CHECK(ParseRecord(lines[lines.size() - 2])->header.type == "export");

  auto v = VerifyCli(e->tar, "--expect-key " + e->fingerprint);
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK(v.out.find("OK: bundle verified") != std::string::npos);
  auto j = VerifyCli(e->tar, "--json");
  CHECK(j.exit_code == 0);
  auto parsed = json::parse(j.out);
  CHECK(parsed["verified"] == true);
  CHECK(parsed["case"] == e->id);
  CHECK(parsed["records"] == lines.size());
  CHECK(parsed["checkpoints"] == 5);
}

TEST_CASE("bundle verifier names an edited record", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  auto lines = Lines(Slurp(e->folder + "/ledger.jsonl"));
  size_t k = 0;
  while (lines[k].find("\"/etc/passwd\"") == std::string::npos) ++k;
  lines[k].replace(lines[k].find("/etc/passwd"), 11, "/etc/shadow");
  Spit(e->folder + "/ledger.jsonl", JoinLines(lines));
  auto v = VerifyTampered(*e);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("record " + std::to_string(k) + " was altered"));
  CHECK_THAT(v.out, Catch::Contains("ledger.jsonl: SHA-256") && Catch::Contains("differs from SHA256SUMS"));
  CHECK_THAT(v.out, Catch::Contains("root is not the Merkle root"));
  auto sh = test::Run(Sh(e->folder, "sh VERIFY.sh"));
  CHECK(sh.exit_code != 0);
  CHECK_THAT(sh.out, Catch::Contains("record " + std::to_string(k) + " altered"));
}

TEST_CASE("bundle verifier names a deleted record", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  auto lines = Lines(Slurp(e->folder + "/ledger.jsonl"));
  lines.erase(lines.begin() + 4);
  Spit(e->folder + "/ledger.jsonl", JoinLines(lines));
  auto v = VerifyTampered(*e);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("record 4 is missing (deleted)"));
  auto sh = test::Run(Sh(e->folder, "sh VERIFY.sh"));
  CHECK(sh.exit_code != 0);
  CHECK_THAT(sh.out, Catch::Contains("seq 5 where seq 4 belongs"));
}

TEST_CASE("bundle verifier names reordered records", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  auto lines = Lines(Slurp(e->folder + "/ledger.jsonl"));
  std::swap(lines[3], lines[4]);
  Spit(e->folder + "/ledger.jsonl", JoinLines(lines));
  auto v = VerifyTampered(*e);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("records out of order") && Catch::Contains("reordered"));
}

TEST_CASE("bundle verifier names a ledger cut short against an earlier checkpoint", "[evidence][bundle][tamper]") {
  // The same appliance key (a compromised appliance can sign anything): the
  // bundle is internally consistent, only the checkpoint kept out of band
  // shows that records were dropped or rewritten.
  test::TempDir dir;
  auto key = TestKey();
  std::string earlier;
  {
    auto s = OpenStore(dir.path() + "/a", key);
    auto c = s->OpenCase("c", "", "", Operator());
    REQUIRE(c.ok());
    FillCase(*s, c->id, dir.path(), /*close=*/false);
    auto cp = s->Checkpoint(c->id, Operator());
    REQUIRE(cp.ok());
    earlier = s->CaseDir(c->id) + "/" + cp->text_file;
  }
  auto s = OpenStore(dir.path() + "/b", key);
  auto c = s->OpenCase("c", "", "", Operator());
  REQUIRE(c.ok());
  std::string tar = dir.path() + "/short.tar";
  REQUIRE(s->Export(c->id, tar, Operator()).ok());
  auto plain = VerifyCli(tar);
  INFO(plain.out);
  CHECK(plain.exit_code == 0);  // alone, it verifies
  auto v = VerifyCli(tar, "--checkpoint " + earlier);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("ledger cut short"));

  // Same length, other history: not contained.
  auto s2 = OpenStore(dir.path() + "/c", key);
  auto c2 = s2->OpenCase("c", "", "", Operator());
  REQUIRE(c2.ok());
  for (int i = 0; i < 20; ++i) REQUIRE(s2->Append(c2->id, "note", json{{"text", "filler " + std::to_string(i)}}, Operator()).ok());
  std::string tar2 = dir.path() + "/other.tar";
  REQUIRE(s2->Export(c2->id, tar2, Operator()).ok());
  auto v2 = VerifyCli(tar2, "--checkpoint " + earlier);
  INFO(v2.out);
  CHECK(v2.exit_code == 4);
  CHECK_THAT(v2.out, Catch::Contains("does not contain the given checkpoint") && Catch::Contains("history rewritten"));
}

TEST_CASE("bundle verifier names a swapped evidence object", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  std::string sums = Slurp(e->folder + "/SHA256SUMS");
  std::string obj;
  for (const auto& l : Lines(sums)) {
    if (l.find("  objects/") != std::string::npos) {
      obj = l.substr(66);
      break;
    }
  }
  REQUIRE_FALSE(obj.empty());
  Spit(e->folder + "/" + obj, "planted\n");
  auto v = VerifyTampered(*e);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains(obj + ": content hashes to") && Catch::Contains("evidence object swapped or altered"));
  CHECK_THAT(v.out, Catch::Contains(obj + ": SHA-256"));
  auto sums_check = test::Run(Sh(e->folder, "sha256sum -c SHA256SUMS"));
  CHECK(sums_check.exit_code != 0);
  CHECK_THAT(sums_check.out, Catch::Contains(obj + ": FAILED"));
}

TEST_CASE("bundle verifier names an altered signature", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  std::string sig = e->folder + "/checkpoints/00000001.sig";
  std::string s = Slurp(sig);
  s[10] ^= 0x20;
  Spit(sig, s);
  auto v = VerifyTampered(*e);
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("checkpoints/00000001.sig: does not verify with the bundle's key"));
  CHECK_THAT(v.out, Catch::Contains("signature differs from checkpoints/00000001.sig"));
  auto sh = test::Run(Sh(e->folder, "sh VERIFY.sh"));
  CHECK(sh.exit_code != 0);
  CHECK_THAT(sh.out, Catch::Contains("checkpoints/00000001.sig does not verify"));

  auto e2 = ExportFilledCase();
  std::string sums_sig = e2->folder + "/SHA256SUMS.sig";
  s = Slurp(sums_sig);
  s[0] ^= 1;
  Spit(sums_sig, s);
  auto v2 = VerifyTampered(*e2);
  CHECK(v2.exit_code == 4);
  CHECK_THAT(v2.out, Catch::Contains("SHA256SUMS.sig: does not verify with pubkey.pem"));
}

TEST_CASE("bundle verifier names a checkpoint signed by another key", "[evidence][bundle][tamper]") {
  auto e = ExportFilledCase();
  // (a) The whole bundle, consistent, but not from the expected appliance.
  auto other = TestKey(99);
  auto v = VerifyCli(e->tar, "--expect-key " + KeyFingerprint(other.public_key));
  INFO(v.out);
  CHECK(v.exit_code == 4);
  CHECK_THAT(v.out, Catch::Contains("signed by key " + e->fingerprint + ", not the expected " + KeyFingerprint(other.public_key)));
  // (b) One checkpoint re-signed by another key inside the bundle.
  std::string base = e->folder + "/checkpoints/00000001";
  auto sig = Sign(other, AsBytes(Slurp(base + ".txt")));
  Spit(base + ".sig", std::string(AsString(sig)));
  auto v2 = VerifyTampered(*e);
  INFO(v2.out);
  CHECK(v2.exit_code == 4);
  CHECK_THAT(v2.out, Catch::Contains("checkpoints/00000001.sig: does not verify with the bundle's key (checkpoint altered, or signed by another key)"));
  // (c) Everything re-signed by another key, pubkey.pem replaced: only
  // the pinned key (or the case.open record's key) gives it away.
  auto e3 = ExportFilledCase();
  Spit(e3->folder + "/pubkey.pem", PublicKeyPem(other.public_key));
  auto r = test::Run(Sh(e3->folder, "sha256sum pubkey.pem"));
  std::string sums = Slurp(e3->folder + "/SHA256SUMS");
  auto lines = Lines(sums);
  for (auto& l : lines) {
    if (l.substr(66) == "pubkey.pem") l = r.out.substr(0, 64) + "  pubkey.pem";
  }
  sums = JoinLines(lines);
  Spit(e3->folder + "/SHA256SUMS", sums);
  Spit(e3->folder + "/SHA256SUMS.sig", std::string(AsString(Sign(other, AsBytes(sums)))));
  auto v3 = VerifyTampered(*e3, "--expect-key " + e3->fingerprint);
  INFO(v3.out);
  CHECK(v3.exit_code == 4);
  CHECK_THAT(v3.out, Catch::Contains("not the expected " + e3->fingerprint));
  CHECK_THAT(v3.out, Catch::Contains("case opened under appliance key " + e3->fingerprint));
}

TEST_CASE("bundle verifier refuses hostile tar members", "[evidence][bundle][security]") {
  test::TempDir dir;
  // Python's tarfile writes exactly the names it is given (GNU tar would
  // strip "..", "/" and store a repeated file as a hard link).
  std::string py = R"PY(
import io, sys, tarfile
def tar(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                t.addfile(info)
            else:
                info.size = 2
                t.addfile(info, io.BytesIO(b"x\n"))
d = sys.argv[1]
tar(d + "/dots.tar", [("custos-case-2026-0001/../../etc/cron.d/x", "file")])
tar(d + "/abs.tar", [("/etc/cron.d/x", "file")])
tar(d + "/link.tar", [("custos-case-2026-0001/ledger.jsonl", "link")])
tar(d + "/dup.tar", [("custos-case-2026-0001/a", "file"), ("custos-case-2026-0001/a", "file")])
tar(d + "/two.tar", [("custos-case-2026-0001/a", "file"), ("other/a", "file")])
open(d + "/junk.tar", "wb").write(bytes(range(256)) * 12)
)PY";
  Spit(dir.path() + "/mk.py", py);
  auto r = test::Run("/usr/bin/python3 " + dir.path() + "/mk.py " + dir.path());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  struct Case {
    const char* file;
    const char* why;
  };
  for (Case c : {Case{"dots.tar", "\"..\""}, Case{"abs.tar", "absolute name"}, Case{"link.tar", "not a regular file"},
                 Case{"dup.tar", "appears twice"}, Case{"two.tar", "outside the bundle folder"},
                 Case{"junk.tar", "does not"}}) {
    INFO(c.file);
    auto rep = VerifyBundleFile(dir.path() + "/" + c.file, VerifyOptions{});
    REQUIRE(rep.ok());
    CHECK_FALSE(rep->ok());
    REQUIRE_FALSE(rep->problems.empty());
    CHECK_THAT(rep->problems[0], Catch::Contains(c.why));
  }
  auto missing = VerifyCli(dir.path() + "/nothing.tar");
  CHECK(missing.exit_code == 1);
  auto usage = VerifyCli(dir.path() + "/dots.tar", "--expect-key md5:abc");
  CHECK(usage.exit_code == 2);
}

TEST_CASE("VERIFY.sh checks a ledger of 5000 records", "[evidence][bundle][slow]") {
  test::TempDir dir;
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto c = s->OpenCase("big", "", "", Operator());
  REQUIRE(c.ok());
  std::string obj = PutBytes(*s, "x");
  for (int b = 0; b < 10; ++b) {
    std::vector<NewRecord> batch;
    for (int i = 0; i < 500; ++i) {
      batch.push_back(FileItem("/srv/f" + std::to_string(b * 500 + i), obj));
    }
    REQUIRE(s->AppendBatch(c->id, batch).ok());
  }
  std::string folder = ExportAndExtract(*s, c->id, dir.path());
  auto t = std::chrono::steady_clock::now();
  auto sh = test::Run("cd " + folder + " && sh VERIFY.sh");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  INFO(sh.out << sh.err);
  CHECK(sh.exit_code == 0);
  CHECK_THAT(sh.out, Catch::Contains("OK: 5004 records"));
  WARN("VERIFY.sh on 5004 records took " << secs << " s");
  // The same bundle with one record edited near the end fails, naming it.
  auto lines = Lines(Slurp(folder + "/ledger.jsonl"));
  lines[4000].replace(lines[4000].find("/srv/f"), 6, "/srv/g");
  Spit(folder + "/ledger.jsonl", JoinLines(lines));
  auto bad = test::Run("cd " + folder + " && sh VERIFY.sh");
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.out, Catch::Contains("ledger line 4002: prev is not the SHA-256 of line 4001 (record 4000 altered)"));
}
