// The evidence store (evidence/case_store.h): case ids, summaries, what a
// closed case accepts, objects, automatic checkpoints verified with the real
// openssl, the key fingerprint as openssl computes it, reopening after a
// torn append, and one process per store.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "base/file_util.h"
#include "evidence/ledger.h"
#include "tests/evidence/evidence_fixture.h"

using namespace custos;
using namespace custos::evidence;
using namespace custos::evidencetest;

TEST_CASE("case store numbers cases per year and summarises them", "[evidence][store]") {
  test::TempDir dir;
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto a = s->OpenCase("Web shell on web01", "2026-11-27T08:15:00Z", "TICKET-42", Operator());
  REQUIRE(a.ok());
  CHECK(a->id == "2026-0001");
  CHECK(a->state == "open");
  CHECK(a->records == 2);  // case.open and its checkpoint
  REQUIRE(a->last_checkpoint);
  CHECK(a->last_checkpoint->size == 1);
  CHECK(a->last_checkpoint->text_file == "checkpoints/00000001.txt");
  auto b = s->OpenCase("Phishing", "", "", Operator());
  REQUIRE(b.ok());
  CHECK(b->id == "2026-0002");
  CHECK(s->OpenCase("", "", "", Operator()).status().code() == Code::kInvalidArgument);

  FillCase(*s, a->id, dir.path(), /*close=*/true);
  auto shown = s->Show(a->id);
  REQUIRE(shown.ok());
  CHECK(shown->title == "Web shell on web01");
  CHECK(shown->reference == "TICKET-42");
  CHECK(shown->detected_at == "2026-11-27T08:15:00Z");
  CHECK(shown->items == 2);
  CHECK(shown->gaps == 1);
  CHECK(shown->held);
  CHECK(shown->state == "closed");
  CHECK(shown->close_reason == "contained");
  CHECK_FALSE(shown->closed_at.empty());

  auto list = s->List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].id == "2026-0001");
  CHECK((*list)[1].title == "Phishing");
  CHECK(s->Show("2026-0003").status().code() == Code::kNotFound);
  CHECK(s->Show("../etc").status().code() == Code::kInvalidArgument);

  // Another year starts at 0001 again.
  s.reset();
  StoreOptions o;
  o.clock = FakeClock(kT0 + 40LL * 86400 * 1000000000LL);  // 2027-01-06
  auto s2 = OpenStore(dir.path() + "/ev", TestKey(), o);
  auto c = s2->OpenCase("New year", "", "", Operator());
  REQUIRE(c.ok());
  CHECK(c->id == "2027-0001");
}

TEST_CASE("case store takes checkpoints after tasks, holds and custody, signed for openssl",
          "[evidence][store][checkpoint]") {
  test::TempDir dir;
  auto key = TestKey();
  auto s = OpenStore(dir.path() + "/ev", key);
  auto c = s->OpenCase("c", "", "", Operator());
  REQUIRE(c.ok());
  uint64_t before = s->Show(c->id)->records;
  REQUIRE(s->Append(c->id, "task.start", json{{"host", "h"}}, Operator()).ok());
  CHECK(s->Show(c->id)->records == before + 1);
  auto end = s->Append(c->id, "task.end", json{{"task", before}}, Operator());
  REQUIRE(end.ok());
  auto info = s->Show(c->id);
  CHECK(info->records == *end + 2);
  REQUIRE(info->last_checkpoint);
  CHECK(info->last_checkpoint->size == *end + 1);
  CHECK(info->last_checkpoint->record_seq == *end + 1);
  REQUIRE(s->Append(c->id, "custody", json{{"from", "alice"}, {"to", "bob"}, {"reason", "handover"}}, Operator()).ok());
  REQUIRE(s->Append(c->id, "hold", json{{"action", "release"}}, Operator()).ok());
  CHECK_FALSE(s->Show(c->id)->held);
  CHECK(s->Append(c->id, "hold", json{{"action", "maybe"}}, Operator()).status().code() == Code::kInvalidArgument);
  auto cp = s->Checkpoint(c->id, Operator());
  REQUIRE(cp.ok());

  std::string pem = dir.path() + "/pubkey.pem";
  Spit(pem, PublicKeyPem(key.public_key));
  std::string case_dir = s->CaseDir(c->id);
  std::string ledger = Slurp(case_dir + "/ledger.jsonl");
  auto lines = Lines(ledger);
  int checked = 0;
  for (const auto& line : lines) {
    auto r = ParseRecord(line);
    REQUIRE(r.ok());
    if (r->header.type != "checkpoint") continue;
    std::string base = case_dir + "/" + r->body["text"].get<std::string>();
    base = base.substr(0, base.size() - 4);
    auto v = test::Run("openssl pkeyutl -verify -pubin -inkey " + pem + " -rawin -in " + base + ".txt -sigfile " + base + ".sig");
    INFO(v.out << v.err);
    CHECK(v.exit_code == 0);
    CHECK(v.out.find("Signature Verified Successfully") != std::string::npos);
    // The text says what the ledger held when it was signed.
    auto parsed = ParseCheckpoint(Slurp(base + ".txt"));
    REQUIRE(parsed.ok());
    CHECK(parsed->origin == "custos.evidence/" + c->id);
    CHECK(parsed->size == r->header.seq);
    MerkleTree t;
    for (uint64_t i = 0; i < parsed->size; ++i) t.AppendLeaf(AsBytes(lines[i]));
    CHECK(parsed->root == t.Root());
    CHECK(r->body["signature"] == Base64Encode(AsBytes(Slurp(base + ".sig"))));
    ++checked;
  }
  CHECK(checked == 5);  // open, task.end, custody, hold, on demand
  // A tampered checkpoint text no longer verifies.
  std::string txt = case_dir + "/checkpoints/00000001.txt";
  std::string t = Slurp(txt);
  t[t.find('\n') + 1] = '9';
  Spit(dir.path() + "/bad.txt", t);
  auto v = test::Run("openssl pkeyutl -verify -pubin -inkey " + pem + " -rawin -in " + dir.path() +
                     "/bad.txt -sigfile " + case_dir + "/checkpoints/00000001.sig");
  CHECK(v.exit_code != 0);
}

TEST_CASE("key fingerprint is the SHA-256 of the DER public key, as openssl computes it", "[evidence][checkpoint]") {
  test::TempDir dir;
  auto key = TestKey(9);
  Spit(dir.path() + "/pubkey.pem", PublicKeyPem(key.public_key));
  auto r = test::Run("openssl pkey -pubin -in " + dir.path() + "/pubkey.pem -outform DER | sha256sum");
  REQUIRE(r.exit_code == 0);
  CHECK(KeyFingerprint(key.public_key) == "sha256:" + r.out.substr(0, 64));
  auto parsed = ParsePublicKeyPem(PublicKeyPem(key.public_key));
  REQUIRE(parsed.ok());
  CHECK(*parsed == key.public_key);
  CHECK_FALSE(ParsePublicKeyPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").ok());
}

TEST_CASE("checkpoint text is four strict lines", "[evidence][checkpoint]") {
  Checkpoint c{"custos.evidence/2026-0001", 12, Sha256(AsBytes("x")), "2026-11-27T10:00:00.000000000Z"};
  std::string text = FormatCheckpoint(c);
  CHECK(text == "custos.evidence/2026-0001\n12\n" + Base64Encode(c.root.bytes) + "\n2026-11-27T10:00:00.000000000Z\n");
  auto p = ParseCheckpoint(text);
  REQUIRE(p.ok());
  CHECK(p->size == 12);
  CHECK(p->root == c.root);
  for (std::string bad : std::vector<std::string>{text.substr(0, text.size() - 1), text + "extra\n", "custos.evidence/x\n012\n" + Base64Encode(c.root.bytes) + "\nt\n",
                          "other/2026-0001\n12\n" + Base64Encode(c.root.bytes) + "\nt\n", "custos.evidence/x\n12\nAAAA\nt\n",
                          "custos.evidence/x\n99999999999999999999\n" + Base64Encode(c.root.bytes) + "\nt\n"}) {
    INFO(bad);
    CHECK(ParseCheckpoint(bad).status().code() == Code::kCorruption);
  }
  CHECK(CheckpointBaseName(12) == "checkpoints/00000012");
  CHECK(CheckpointBaseName(123456789) == "checkpoints/123456789");
}

TEST_CASE("closed cases accept only notes, holds, custody and exports", "[evidence][store]") {
  test::TempDir dir;
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto c = s->OpenCase("c", "", "", Operator());
  REQUIRE(c.ok());
  for (const char* t : {"case.open", "case.close", "checkpoint", "export"}) {
    INFO(t);
    CHECK(s->Append(c->id, t, json::object(), Operator()).status().code() == Code::kInvalidArgument);
  }
  CHECK(s->Append(c->id, "bogus", json::object(), Operator()).status().code() == Code::kInvalidArgument);
  CHECK(s->Append(c->id, "item", json{{"object", std::string(64, 'a')}}, Agent()).status().code() == Code::kNotFound);
  CHECK(s->Append(c->id, "item", json{{"object", "../../etc/passwd"}}, Agent()).status().code() == Code::kInvalidArgument);
  REQUIRE(s->Close(c->id, "done", Operator()).ok());
  CHECK(s->Close(c->id, "again", Operator()).code() == Code::kInvalidArgument);
  auto item = s->Append(c->id, "item", json{{"host", "h"}}, Agent());
  CHECK(item.status().code() == Code::kInvalidArgument);
  CHECK_THAT(item.status().message(), Catch::Contains("is closed"));
  CHECK(s->Append(c->id, "task.start", json::object(), Operator()).status().code() == Code::kInvalidArgument);
  CHECK(s->Append(c->id, "note", json{{"text", "late finding"}}, Operator()).ok());
  CHECK(s->Append(c->id, "custody", json{{"to", "court"}}, Operator()).ok());
  CHECK(s->Append(c->id, "hold", json{{"action", "place"}}, Operator()).ok());
  CHECK(s->Export(c->id, dir.path() + "/b.tar", Operator()).ok());
}

TEST_CASE("evidence objects are stored by SHA-256 and shared", "[evidence][store]") {
  test::TempDir dir;
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  std::string data = "evidence bytes\n";
  std::string hex = PutBytes(*s, data);
  auto r = test::Run("printf '%s' " + test::ShellQuote(data) + " | sha256sum");
  CHECK(hex == r.out.substr(0, 64));
  CHECK(s->HasObject(hex));
  CHECK(s->ObjectPath(hex) == dir.path() + "/ev/objects/" + hex.substr(0, 2) + "/" + hex);
  CHECK(Slurp(s->ObjectPath(hex)) == data);
  CHECK(PutBytes(*s, data) == hex);  // same bytes, same object
  Spit(dir.path() + "/f", data);
  auto put = s->PutFile(dir.path() + "/f");
  REQUIRE(put.ok());
  CHECK(*put == hex);
  auto w = s->NewObject();
  REQUIRE(w.ok());
  REQUIRE((*w)->Write(AsBytes(std::string("abandoned"))).ok());
  (*w)->Abort();
  CHECK_FALSE(s->HasObject(Sha256(AsBytes(std::string("abandoned"))).Hex()));
  auto leftovers = test::Run("ls -A " + dir.path() + "/ev/objects | grep -c tmp || true");
  CHECK(leftovers.out == "0\n");
}

TEST_CASE("case store repairs a torn append at reopen and says so in the ledger", "[evidence][store][fault]") {
  test::TempDir dir;
  std::string id;
  {
    auto s = OpenStore(dir.path() + "/ev", TestKey());
    auto c = s->OpenCase("c", "", "", Operator());
    REQUIRE(c.ok());
    id = c->id;
    CHECK(evidence::CaseStore::Open(dir.path() + "/ev", TestKey()).status().code() == Code::kBusy);
  }
  std::string ledger = dir.path() + "/ev/cases/" + id + "/ledger.jsonl";
  std::string good = Slurp(ledger);
  std::string torn = "{\"v\":1,\"seq\":2,\"pr";
  Spit(ledger, good + torn);
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto info = s->Show(id);
  REQUIRE(info.ok());
  CHECK(info->records == 3);
  auto lines = Lines(Slurp(ledger));
  REQUIRE(lines.size() == 3);
  CHECK(Slurp(ledger).substr(0, good.size()) == good);
  CHECK_THAT(lines[2], Catch::Contains("removed a torn last ledger line of " + std::to_string(torn.size()) + " bytes"));
  CHECK(ScanLedger(Slurp(ledger)).ok());
}

TEST_CASE("case store appends a batch with one commit, all or nothing", "[evidence][store]") {
  test::TempDir dir;
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto c = s->OpenCase("c", "", "", Operator());
  REQUIRE(c.ok());
  std::string obj = PutBytes(*s, "x");
  std::vector<NewRecord> batch;
  for (int i = 0; i < 50; ++i) {
    batch.push_back(FileItem("/f" + std::to_string(i), obj));
  }
  batch.push_back({"task.end", json{{"task", 2}}, Agent()});
  uint64_t before = s->Show(c->id)->records;
  auto bad = batch;
  bad[20].body["object"] = std::string(64, 'f');  // not stored
  CHECK(s->AppendBatch(c->id, bad).status().code() == Code::kNotFound);
  bad = batch;
  bad[30].type = "export";
  CHECK(s->AppendBatch(c->id, bad).status().code() == Code::kInvalidArgument);
  CHECK(s->Show(c->id)->records == before);
  auto first = s->AppendBatch(c->id, batch);
  REQUIRE(first.ok());
  CHECK(*first == before);
  auto info = s->Show(c->id);
  CHECK(info->items == 50);
  CHECK(info->records == before + 51 + 1);  // and one checkpoint after the batch
  CHECK(info->last_checkpoint->size == before + 51);
  auto scan = ScanLedger(Slurp(s->CaseDir(c->id) + "/ledger.jsonl"));
  REQUIRE(scan.ok());
  CHECK(scan->records == info->records);
}

TEST_CASE("case store lists a damaged case as damaged and skips an interrupted creation", "[evidence][store][fault]") {
  test::TempDir dir;
  std::string a, b;
  {
    auto s = OpenStore(dir.path() + "/ev", TestKey());
    a = s->OpenCase("a", "", "", Operator())->id;
    b = s->OpenCase("b", "", "", Operator())->id;
  }
  // An edited record in a, an empty directory (crash right after mkdir) for a third.
  std::string ledger = dir.path() + "/ev/cases/" + a + "/ledger.jsonl";
  auto lines = Lines(Slurp(ledger));
  lines[0].replace(lines[0].find("\"title\":\"a\""), 11, "\"title\":\"z\"");
  Spit(ledger, JoinLines(lines));
  REQUIRE(::mkdir((dir.path() + "/ev/cases/2026-0003").c_str(), 0700) == 0);
  auto s = OpenStore(dir.path() + "/ev", TestKey());
  auto list = s->List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].id == a);
  CHECK((*list)[0].state == "damaged");
  CHECK_THAT((*list)[0].problem, Catch::Contains("record 0 was altered"));
  CHECK((*list)[1].state == "open");
  CHECK(s->Show(a).status().code() == Code::kIntegrity);
  CHECK(s->Show("2026-0003").status().code() == Code::kNotFound);
  auto next = s->OpenCase("d", "", "", Operator());
  REQUIRE(next.ok());
  CHECK(next->id == "2026-0004");
}
