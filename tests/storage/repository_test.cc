#include <catch2/catch.hpp>

#include "storage/check.h"
#include "storage/repository.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::storage;

namespace {

InitOptions FastInit() {
  InitOptions o;
  o.kdf = Argon2Params{1, 1 << 20};  // tests: cheap KDF
  o.pack_size = 64 << 10;
  return o;
}

Actor TestActor() { return Actor{"testhost", "tester", "test"}; }

}  // namespace

TEST_CASE("blobs round trip through packs, index files and a reopen", "[storage][repository]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  std::vector<Id> ids;
  {
    auto init = Repository::Init(NewLocalBackend(root), "pw", FastInit(), TestActor());
    REQUIRE(init.ok());
    auto& repo = *init->repo;
    for (int i = 0; i < 50; ++i) {
      Bytes b = test::RandomBytes(10000 + i, i);
      if (i % 2) b.assign(20000, uint8_t(i));  // compressible
      auto added = repo.AddBlob(BlobType::kData, b);
      REQUIRE(added.ok());
      REQUIRE(*added);
      ids.push_back(Sha256(b));
      // Adding the same content again stores nothing.
      REQUIRE_FALSE(*repo.AddBlob(BlobType::kData, b));
    }
    REQUIRE(repo.SaveSnapshot(AsBytes("{\"test\":1}")).ok());
  }
  auto repo = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE(repo.ok());
  REQUIRE((*repo)->BlobCount() == 50);
  for (int i = 0; i < 50; ++i) {
    auto b = (*repo)->ReadBlob(ids[i]);
    REQUIRE(b.ok());
    REQUIRE(Sha256(*b) == ids[i]);
  }
  auto snaps = (*repo)->ListSnapshots();
  REQUIRE(snaps->size() == 1);
  REQUIRE(AsString(*(*repo)->LoadSnapshot((*snaps)[0])) == "{\"test\":1}");
  auto report = Check(**repo, CheckOptions{.read_data = true});
  REQUIRE(report.ok());
  INFO((report->errors.empty() ? "" : report->errors[0].message));
  REQUIRE(report->ok());
  REQUIRE(report->blobs_read == 50);
}

TEST_CASE("wrong passphrase is refused and the recovery key opens", "[storage][keys]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  auto init = Repository::Init(NewLocalBackend(root), "right", FastInit(), TestActor());
  REQUIRE(init.ok());
  std::string rk = init->recovery_key;
  REQUIRE(rk.size() == 55 + 10);
  init->repo.reset();
  REQUIRE(Repository::Open(NewLocalBackend(root), "wrong").status().code() == Code::kUnauthenticated);
  REQUIRE(Repository::Open(NewLocalBackend(root), "right").ok());
  REQUIRE(Repository::Open(NewLocalBackend(root), rk).ok());
  // Lowercase, no dashes: still the recovery key.
  std::string loose;
  for (char c : rk) if (c != '-') loose += char(std::tolower(c));
  REQUIRE(Repository::Open(NewLocalBackend(root), loose).ok());
  // A one-letter typo fails the checksum.
  std::string typo = rk;
  typo[0] = typo[0] == 'A' ? 'B' : 'A';
  REQUIRE_FALSE(ParseRecoveryKey(typo).has_value());
  REQUIRE(Repository::Open(NewLocalBackend(root + "-none"), "x").status().code() == Code::kNotFound);
}

TEST_CASE("key slots can be added, changed and removed", "[storage][keys]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  auto init = Repository::Init(NewLocalBackend(root), "one", FastInit(), TestActor());
  REQUIRE(init.ok());
  auto& repo = *init->repo;
  auto two = repo.AddKey("two", Argon2Params{1, 1 << 20}, "second", TestActor());
  REQUIRE(two.ok());
  REQUIRE(repo.ListKeys()->slots.size() == 3);  // one, recovery, two
  REQUIRE(repo.RemoveKey(repo.current_key_id()).code() == Code::kInvalidArgument);
  REQUIRE(repo.RemoveKey("zz").code() == Code::kNotFound);
  REQUIRE(Repository::Open(NewLocalBackend(root), "two").ok());
  REQUIRE(repo.RemoveKey(two->id.substr(0, 6)).ok());
  REQUIRE(Repository::Open(NewLocalBackend(root), "two").status().code() == Code::kUnauthenticated);
  auto changed = repo.ChangePassphrase("three", Argon2Params{1, 1 << 20}, TestActor());
  REQUIRE(changed.ok());
  REQUIRE(Repository::Open(NewLocalBackend(root), "one").status().code() == Code::kUnauthenticated);
  REQUIRE(Repository::Open(NewLocalBackend(root), "three").ok());
  REQUIRE(repo.ListKeys()->slots.size() == 2);
}

TEST_CASE("a second writer gets Busy naming the holder", "[storage][lock]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  auto init = Repository::Init(NewLocalBackend(root), "pw", FastInit(), TestActor());
  REQUIRE(init.ok());
  auto other = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE(other.ok());
  Status st = (*other)->LockForWrite(Actor{"h2", "u2", "second"});
  REQUIRE(st.code() == Code::kBusy);
  REQUIRE(st.message().find("tester@testhost (test)") != std::string::npos);
  init->repo.reset();
  REQUIRE((*other)->LockForWrite(Actor{"h2", "u2", "second"}).ok());
}

TEST_CASE("packs left unindexed by a dead writer are indexed by the next", "[storage][repository]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  Bytes b = test::RandomBytes(200000, 9);  // larger than the 64 KiB pack size
  {
    auto init = Repository::Init(NewLocalBackend(root), "pw", FastInit(), TestActor());
    REQUIRE(init.ok());
    REQUIRE(*init->repo->AddBlob(BlobType::kData, b));  // pack saved, index not written
  }
  auto repo = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE_FALSE((*repo)->HasBlob(Sha256(b)));
  auto warn = Check(**repo, CheckOptions());
  REQUIRE(warn->ok());
  REQUIRE(warn->warnings.size() == 1);
  REQUIRE((*repo)->LockForWrite(TestActor()).ok());
  REQUIRE((*repo)->HasBlob(Sha256(b)));
  REQUIRE_FALSE(*(*repo)->AddBlob(BlobType::kData, b));
  auto reopened = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE((*reopened)->HasBlob(Sha256(b)));
}
