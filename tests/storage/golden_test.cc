// The golden repository: tests/testdata/repo-v1 was written once by the
// code of format version 1 and is committed. Every later build must still
// open it (with the passphrase and with the recovery key), read every blob
// byte for byte, load the snapshot and pass check --read-data. It is never
// regenerated: if this test fails, the change broke format v1.
//
// The tests work on a copy in a temporary directory (reading must not need
// to write, but tests/testdata is never put at risk). Git keeps no empty
// directories, so the copy, like a fresh checkout, lacks most data/XX.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <map>

#include "base/crypto.h"
#include "base/file_util.h"
#include "storage/check.h"
#include "storage/repository.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::storage;

namespace {

namespace fs = std::filesystem;

const std::string kGoldenDir = std::string(CUSTOS_TESTDATA) + "/repo-v1";
const std::string kPassphrase = "golden-v1-passphrase";
// From the generator's one run (see the README).
const std::string kRecoveryKey = "ILYPA-ISGA2-DKOQI-T4TZV-ISR3O-MRYZN-W22AI-4GP4D-2YGLM-YSH2Y-CNKXY";
const std::string kRepoId = "da1c005fe9c8dac213a4af4101ee657bc280ac13a65510aa5cd2640ab5c34f04";
const std::string kSnapshotId = "ea00cf1716b548062bc9b105519d46088e9d508b272406f4b69214e135910c66";
const std::string kSnapshotPayload = R"({"golden":1})";

// ---- the blobs, rebuilt from their description in the README

Bytes HelloBlob() {
  std::string s = "hello golden\n";
  return Bytes(s.begin(), s.end());
}
Bytes EmptyBlob() { return Bytes(); }
// 100 KiB: byte i is i mod 251.
Bytes PatternBlob() {
  Bytes b(100 * 1024);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(i % 251);
  return b;
}
// 3000 bytes: the low byte of each output of std::mt19937_64 seeded with 1.
Bytes RandomBlob() { return test::RandomBytes(3000, 1); }
Bytes TreeBlob() {
  std::string s = R"({"golden-tree":["hello","pattern","random"]})";
  return Bytes(s.begin(), s.end());
}

struct GoldenBlob {
  const char* name;
  BlobType type;
  Bytes (*content)();
  const char* id;           // SHA-256 of the content, as committed
  Compression compression;  // as stored in the golden pack
};

const std::vector<GoldenBlob>& Blobs() {
  static const std::vector<GoldenBlob> blobs = {
      {"hello", BlobType::kData, HelloBlob, "3585ff92a190a8dc23da1c2dde1cdd4662d0e0b15ae68ad04e635d9097425bd0", Compression::kNone},
      {"empty", BlobType::kData, EmptyBlob, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Compression::kNone},
      {"pattern", BlobType::kData, PatternBlob, "74588b7f0bcc354ac14d9cf199fa3a20c05f0c7293b9075b2f2e146e718de800", Compression::kZstd},
      {"random", BlobType::kData, RandomBlob, "52d1251c0d408c21a944a7f576ceb01d99d990de1295ffe2678308702b2868d2", Compression::kNone},
      {"tree", BlobType::kTree, TreeBlob, "df598bcae0475211890eaf05983adf495ddb162a46f0ea04eb29113ada1c40eb", Compression::kNone},
  };
  return blobs;
}

// Copies the golden repository as git would check it out: no empty
// directories, no lock file.
std::string CopyGolden(const test::TempDir& dir) {
  REQUIRE(fs::is_regular_file(kGoldenDir + "/config"));
  std::string root = dir.path() + "/repo-v1";
  fs::copy(kGoldenDir, root, fs::copy_options::recursive);
  fs::remove(root + "/README.md");
  fs::remove(root + "/lock");
  for (const auto& de : fs::directory_iterator(root + "/data")) {
    if (de.is_directory() && fs::is_empty(de.path())) fs::remove(de.path());
  }
  return root;
}

struct Entry {
  std::string sha256;
  uint64_t size = 0;
  unsigned mode = 0;
  int64_t mtime_ns = 0;
  bool operator==(const Entry&) const = default;
};

std::map<std::string, Entry> SnapshotTree(const std::string& root) {
  std::map<std::string, Entry> t;
  for (const auto& de : fs::recursive_directory_iterator(root)) {
    struct stat sb;
    REQUIRE(::lstat(de.path().c_str(), &sb) == 0);
    Entry e{"", S_ISDIR(sb.st_mode) ? 0 : uint64_t(sb.st_size), unsigned(sb.st_mode),
            int64_t(sb.st_mtim.tv_sec) * 1000000000 + sb.st_mtim.tv_nsec};
    if (S_ISREG(sb.st_mode)) e.sha256 = Sha256(*ReadFile(de.path().string())).Hex();
    t[fs::relative(de.path(), root).string()] = e;
  }
  return t;
}

std::unique_ptr<Repository> OpenGolden(const std::string& root, const std::string& secret) {
  auto repo = Repository::Open(NewLocalBackend(root), secret);
  INFO(repo.status().ToString());
  REQUIRE(repo.ok());
  return std::move(repo).value();
}

}  // namespace

TEST_CASE("golden v1: the committed blobs are the documented contents", "[storage][golden]") {
  for (const auto& b : Blobs()) {
    INFO(b.name);
    REQUIRE(Sha256(b.content()).Hex() == b.id);
  }
  REQUIRE(Blobs()[2].content().size() == 102400);
  REQUIRE(Blobs()[3].content().size() == 3000);
}

TEST_CASE("golden v1: the repository opens with its passphrase and with its recovery key", "[storage][golden]") {
  test::TempDir dir;
  std::string root = CopyGolden(dir);
  REQUIRE_FALSE(fs::exists(root + "/data/00"));  // most data/XX are missing, as in a checkout
  auto before = SnapshotTree(root);

  for (const std::string& secret : {kPassphrase, kRecoveryKey}) {
    auto repo = OpenGolden(root, secret);
    const RepoConfig& c = repo->config();
    REQUIRE(c.version == 1);
    REQUIRE(c.id == kRepoId);
    REQUIRE(c.pack_size == 1u << 20);
    REQUIRE(c.zstd_level == 3);
    REQUIRE(c.chunk_min == 512u << 10);
    REQUIRE(c.chunk_avg == 1u << 20);
    REQUIRE(c.chunk_max == 8u << 20);
    REQUIRE(repo->index_load_errors().empty());
    REQUIRE(repo->index_file_names().size() == 2);
    REQUIRE(repo->PackCount() == 2);
    REQUIRE(repo->BlobCount() == Blobs().size());

    auto keys = repo->ListKeys();
    REQUIRE(keys.ok());
    REQUIRE(keys->problems.empty());
    REQUIRE(keys->slots.size() == 2);
    for (const auto& s : keys->slots) {
      if (s.id == repo->current_key_id()) {
        REQUIRE(s.kind == (secret == kPassphrase ? SlotKind::kPassphrase : SlotKind::kRecovery));
      }
    }
  }
  // Lowercase without dashes is still the recovery key.
  std::string loose;
  for (char ch : kRecoveryKey) {
    if (ch != '-') loose += char(std::tolower(static_cast<unsigned char>(ch)));
  }
  OpenGolden(root, loose);
  REQUIRE(Repository::Open(NewLocalBackend(root), "not-the-passphrase").status().code() == Code::kUnauthenticated);
  // Opening and reading wrote nothing.
  REQUIRE(before == SnapshotTree(root));
}

TEST_CASE("golden v1: every blob reads back byte for byte", "[storage][golden]") {
  test::TempDir dir;
  std::string root = CopyGolden(dir);
  auto before = SnapshotTree(root);
  for (const std::string& secret : {kPassphrase, kRecoveryKey}) {
    auto repo = OpenGolden(root, secret);
    for (const auto& b : Blobs()) {
      INFO(b.name);
      Id id = *Id::FromHex(b.id);
      auto loc = repo->FindBlob(id);
      REQUIRE(loc);
      REQUIRE(loc->entry.type == b.type);
      REQUIRE(loc->entry.compression == b.compression);
      auto data = repo->ReadBlob(id);
      INFO(data.status().ToString());
      REQUIRE(data.ok());
      REQUIRE(*data == b.content());
    }
  }
  REQUIRE(before == SnapshotTree(root));
}

TEST_CASE("golden v1: the snapshot loads and check --read-data finds no errors", "[storage][golden]") {
  test::TempDir dir;
  std::string root = CopyGolden(dir);
  auto before = SnapshotTree(root);
  auto repo = OpenGolden(root, kPassphrase);

  auto snaps = repo->ListSnapshots();
  REQUIRE(snaps.ok());
  REQUIRE(snaps->size() == 1);
  REQUIRE((*snaps)[0].Hex() == kSnapshotId);
  auto payload = repo->LoadSnapshot((*snaps)[0]);
  REQUIRE(payload.ok());
  REQUIRE(AsString(*payload) == kSnapshotPayload);

  auto report = Check(*repo, CheckOptions{.read_data = true});
  REQUIRE(report.ok());
  for (const auto& e : report->errors) FAIL_CHECK(e.object << ": " << e.message);
  for (const auto& w : report->warnings) FAIL_CHECK("warning: " << w.object << ": " << w.message);
  REQUIRE(report->ok());
  REQUIRE(report->key_slots == 2);
  REQUIRE(report->index_files == 2);
  REQUIRE(report->packs == 2);
  REQUIRE(report->packs_read == 2);
  REQUIRE(report->blobs == Blobs().size());
  REQUIRE(report->blobs_read == Blobs().size());
  REQUIRE(report->snapshots == 1);
  REQUIRE(before == SnapshotTree(root));
}

TEST_CASE("golden v1: the CLI checks it and lists its keys", "[storage][golden][cli]") {
  test::TempDir dir;
  std::string root = CopyGolden(dir);
  std::string repo = "--repo " + test::ShellQuote(root);
  for (const std::string& secret : {kPassphrase, kRecoveryKey}) {
    std::string env = "CUSTOS_PASSWORD=" + test::ShellQuote(secret);
    auto r = test::Custos(repo + " --json check --read-data", env);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    json j = json::parse(r.out);
    REQUIRE(j["ok"] == true);
    REQUIRE(j["packs_read"] == 2);
    REQUIRE(j["blobs_read"] == Blobs().size());

    auto k = test::Custos(repo + " --json key list", env);
    REQUIRE(k.exit_code == 0);
    REQUIRE(json::parse(k.out)["keys"].size() == 2);
  }
  auto wrong = test::Custos(repo + " check", "CUSTOS_PASSWORD=golden-v2-passphrase");
  REQUIRE(wrong.exit_code == 12);
}

// Made the committed repository, once. Hidden: never runs by default.
//   CUSTOS_GOLDEN_OUT=/tmp/repo-v1 ./custos_tests '[generate-golden-v1]'
// Prints the recovery key and IDs for the constants above and the README.
TEST_CASE("generate the golden repository v1 (run by hand, once)", "[.][generate-golden-v1]") {
  const char* out = std::getenv("CUSTOS_GOLDEN_OUT");
  REQUIRE(out);
  std::string root = out;
  REQUIRE_FALSE(fs::exists(root));
  auto init = test::Custos("--repo " + test::ShellQuote(root) +
                               " --json init --pack-size 1 --kdf-ops 1 --kdf-memory 1",
                           "CUSTOS_PASSWORD=" + test::ShellQuote(kPassphrase));
  INFO(init.out << init.err);
  REQUIRE(init.exit_code == 0);
  json j = json::parse(init.out);

  auto repo = OpenGolden(root, kPassphrase);
  REQUIRE(repo->LockForWrite(Actor{"golden-host", "golden", "make golden v1"}).ok());
  // Two packs and two index files: hello, empty and pattern, then the rest.
  for (size_t i = 0; i < Blobs().size(); ++i) {
    const auto& b = Blobs()[i];
    auto added = repo->AddBlob(b.type, b.content());
    REQUIRE(added.ok());
    REQUIRE(*added);
    if (i == 2) REQUIRE(repo->Flush().ok());
  }
  auto snap = repo->SaveSnapshot(AsBytes(kSnapshotPayload));
  REQUIRE(snap.ok());

  std::printf("repository id: %s\n", j["id"].get<std::string>().c_str());
  std::printf("recovery key:  %s\n", j["recovery_key"].get<std::string>().c_str());
  std::printf("snapshot:      %s\n", snap->Hex().c_str());
  for (const auto& b : Blobs()) {
    Id id = Sha256(b.content());
    auto loc = repo->FindBlob(id);
    std::printf("blob %-8s %s pack %s compression %d\n", b.name, id.Hex().c_str(), loc->pack.Hex().c_str(),
                int(loc->entry.compression));
  }
}
