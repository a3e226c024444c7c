// Prune (storage/prune.h, D38): mark, then sweep after the grace period;
// blobs referenced again, held or protected are never swept; repacking
// keeps every live blob readable; a crash at every backend write leaves a
// repository that checks clean and a next prune that finishes the job.
//
// Snapshots here are real (trees and manifests of the snapshot layer), so
// the referenced set is snapshot::ReferencedBlobs, as in custos and custosd.
// Times are injected (PruneOptions::now_ns): no sleeps.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "snapshot/browse.h"
#include "snapshot/holds.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/check.h"
#include "storage/index_file.h"
#include "storage/prune.h"
#include "storage/repository.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::storage;

namespace {

constexpr int64_t kHour = 3600;
constexpr int64_t kT0 = int64_t(1800000000) * 1000000000;  // a fixed "now" (2027)

Actor TestActor() { return Actor{"testhost", "tester", "prune-test"}; }

InitOptions SmallPacks() {
  InitOptions o;
  o.kdf = Argon2Params{1, 1 << 20};
  o.pack_size = 64 << 10;  // 8 random 8 KiB files per pack
  o.make_recovery_key = false;
  o.zstd_level = 0;
  return o;
}

// File i's content: 8 KiB of random bytes (incompressible, distinct).
Bytes FileData(int i) { return test::RandomBytes(8192, 1000 + uint64_t(i)); }

// A snapshot of files `first`..`last` (one chunk each) in one tree.
Id MakeSnapshot(Repository& repo, int first, int last, int64_t time_ns) {
  snapshot::Tree t;
  for (int i = first; i <= last; ++i) {
    Bytes data = FileData(i);
    REQUIRE(repo.AddBlob(BlobType::kData, data).ok());
    snapshot::Node n;
    char name[16];
    std::snprintf(name, sizeof name, "f%05d", i);
    n.name = name;
    n.type = snapshot::NodeType::kFile;
    n.mode = 0644;
    n.size = data.size();
    n.content.push_back({Sha256(data), uint32_t(data.size())});
    n.file_sha256 = Sha256(data);
    t.nodes.push_back(n);
  }
  Bytes tree = snapshot::EncodeTree(t);
  REQUIRE(repo.AddBlob(BlobType::kTree, tree).ok());
  snapshot::Manifest m;
  m.tree = Sha256(tree);
  m.time_ns = time_ns;
  m.time = snapshot::FormatTimeNs(time_ns);
  m.host = "h";
  m.paths = {"/data"};
  auto id = repo.SaveSnapshot(snapshot::EncodeManifest(m));
  REQUIRE(id.ok());
  return *id;
}

std::unique_ptr<Repository> Reopen(std::unique_ptr<Backend> backend) {
  auto repo = Repository::Open(std::move(backend), "pw");
  REQUIRE(repo.ok());
  REQUIRE((*repo)->LockForWrite(TestActor()).ok());
  return std::move(repo).value();
}

Result<PruneStats> RunPrune(Repository& repo, int64_t now_s, int64_t grace_s = kHour, const BlobSet& keep = {},
                            double max_waste = kDefaultMaxWaste) {
  PruneOptions o;
  o.now_ns = kT0 + now_s * 1000000000;
  o.grace_s = grace_s;
  o.max_waste = max_waste;
  return Prune(repo, [&] { return snapshot::ReferencedBlobs(repo); }, keep, o);
}

PruneStats PruneOk(Repository& repo, int64_t now_s, int64_t grace_s = kHour, const BlobSet& keep = {},
                   double max_waste = kDefaultMaxWaste) {
  auto s = RunPrune(repo, now_s, grace_s, keep, max_waste);
  INFO(s.status().ToString());
  REQUIRE(s.ok());
  return *s;
}

bool Has(Repository& repo, int file) { return repo.HasBlob(Sha256(FileData(file))); }

// Every blob of every snapshot reads back and verifies, and check
// --read-data finds no error; returns the report.
CheckReport RequireIntact(Repository& repo) {
  auto refs = snapshot::ReferencedBlobs(repo);
  INFO(refs.status().ToString());
  REQUIRE(refs.ok());
  for (const Id& id : *refs) {
    auto b = repo.ReadBlob(id);
    INFO("blob " << id.Hex() << ": " << b.status().ToString());
    REQUIRE(b.ok());
  }
  auto report = Check(repo, CheckOptions{.read_data = true});
  REQUIRE(report.ok());
  std::string errors;
  for (const auto& e : report->errors) errors += e.object + ": " + e.message + "\n";
  INFO(errors);
  REQUIRE(report->ok());
  return *report;
}

// A new repository with small packs: in memory, or on disk under a
// temporary directory (`root`) when `local`.
struct TestRepo {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  std::unique_ptr<Repository> repo;
  explicit TestRepo(bool local = false) {
    auto init = Repository::Init(local ? NewLocalBackend(root) : NewMemoryBackend(), "pw", SmallPacks(), TestActor());
    REQUIRE(init.ok());
    repo = std::move(init->repo);
  }
};

size_t CountFiles(Backend& b, FileType t) {
  size_t n = 0;
  REQUIRE(b.List(t, [&](const FileInfo&) {
    ++n;
    return Status::Ok();
  }).ok());
  return n;
}

}  // namespace

TEST_CASE("prune marks unreferenced blobs and sweeps them only after the grace period", "[storage][prune]") {
  TestRepo t;
  Repository& repo = *t.repo;
  Id a = MakeSnapshot(repo, 0, 19, kT0);
  MakeSnapshot(repo, 10, 29, kT0);
  REQUIRE(repo.RemoveSnapshot(a).ok());
  size_t packs_before = CountFiles(repo.backend(), FileType::kPack);

  PruneStats mark = PruneOk(repo, 0);
  CHECK(mark.marked_blobs == 11);  // files 0..9 and a's tree
  CHECK(mark.swept_blobs == 0);
  CHECK(mark.bytes_freed == 0);
  CHECK(CountFiles(repo.backend(), FileType::kMark) == 1);
  for (int i = 0; i < 30; ++i) CHECK(Has(repo, i));

  PruneStats early = PruneOk(repo, kHour - 1);
  CHECK(early.marked_blobs == 0);  // already marked
  CHECK(early.pending_blobs == 11);
  CHECK(early.swept_blobs == 0);
  for (int i = 0; i < 10; ++i) CHECK(Has(repo, i));

  PruneStats sweep = PruneOk(repo, kHour);
  CHECK(sweep.swept_blobs + sweep.kept_garbage_blobs == 11);
  CHECK(sweep.packs_dropped >= 1);  // the first pack held files 0..7 only
  CHECK(sweep.bytes_freed > 0);
  for (int i = 0; i < 30; ++i) {
    if (i >= 10) CHECK(Has(repo, i));
    else if (sweep.kept_garbage_blobs == 0) CHECK_FALSE(Has(repo, i));
  }
  RequireIntact(repo);
  CHECK(CountFiles(repo.backend(), FileType::kPack) <= packs_before);
}

TEST_CASE("prune keeps marked blobs that a snapshot saved after the mark uses again", "[storage][prune]") {
  TestRepo t;
  Repository& repo = *t.repo;
  Id a = MakeSnapshot(repo, 0, 15, kT0);
  MakeSnapshot(repo, 16, 31, kT0);
  REQUIRE(repo.RemoveSnapshot(a).ok());
  REQUIRE(PruneOk(repo, 0).marked_blobs == 17);
  // A backup after the mark deduplicates against the marked blobs (the
  // store still has them) and commits a snapshot that needs them.
  Id c = MakeSnapshot(repo, 0, 4, kT0 + 10);
  PruneStats s = PruneOk(repo, 2 * kHour, kHour, {}, 0.0);
  CHECK(s.swept_blobs == 12);  // files 5..15 and a's tree, not 0..4
  for (int i = 0; i < 32; ++i) CHECK(Has(repo, i) == (i < 5 || i > 15));
  RequireIntact(repo);
  auto snaps = snapshot::LoadSnapshots(repo);
  REQUIRE(snaps.ok());
  CHECK(snaps->size() == 2);
  (void)c;
}

TEST_CASE("prune never sweeps the data of a held snapshot", "[storage][prune]") {
  TestRepo t;
  Repository& repo = *t.repo;
  Id held = MakeSnapshot(repo, 0, 9, kT0);
  Id gone = MakeSnapshot(repo, 10, 19, kT0);
  MakeSnapshot(repo, 20, 29, kT0);
  REQUIRE(snapshot::AddHold(repo, held, "case 7", "", TestActor()).ok());
  auto forgot = snapshot::ForgetSnapshots(repo, {held});
  REQUIRE(forgot.status().code() == Code::kPermissionDenied);
  REQUIRE(snapshot::ForgetSnapshots(repo, {gone}).ok());
  PruneStats s = PruneOk(repo, 0, 0, {}, 0.0);  // grace 0, every garbage byte repacked
  CHECK(s.swept_blobs == 11);
  for (int i = 0; i < 30; ++i) CHECK(Has(repo, i) == (i < 10 || i >= 20));
  RequireIntact(repo);
}

TEST_CASE("prune spares protected blobs and sweeps them once they are no longer protected", "[storage][prune]") {
  TestRepo t;
  Repository& repo = *t.repo;
  Id a = MakeSnapshot(repo, 0, 9, kT0);
  MakeSnapshot(repo, 10, 19, kT0);
  REQUIRE(repo.RemoveSnapshot(a).ok());
  BlobSet running;  // what a running backup received or relies on
  for (int i = 0; i < 5; ++i) running.insert(Sha256(FileData(i)));
  PruneStats s = PruneOk(repo, 0, 0, running, 0.0);
  CHECK(s.protected_blobs == 5);
  CHECK(s.swept_blobs == 6);
  for (int i = 0; i < 20; ++i) CHECK(Has(repo, i) == (i < 5 || i >= 10));
  RequireIntact(repo);
  // The job ended without a snapshot: they are garbage now.
  PruneStats later = PruneOk(repo, 10, 0);
  CHECK(later.swept_blobs == 5);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(Has(repo, i));
  RequireIntact(repo);
}

TEST_CASE("repacked packs stay readable for old readers until the next grace period ends", "[storage][prune]") {
  TestRepo t(true);
  Repository& repo = *t.repo;
  const std::string& root = t.root;
  // Packs of 8 files: forgetting all but file 0 drops three packs and
  // repacks the first (file 0 is copied).
  Id big = MakeSnapshot(repo, 0, 31, kT0);
  MakeSnapshot(repo, 0, 0, kT0);
  REQUIRE(repo.RemoveSnapshot(big).ok());
  // A reader that loaded the index before the prune.
  auto reader = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE(reader.ok());
  PruneOk(repo, 0);
  PruneStats s = PruneOk(repo, kHour);
  CHECK(s.packs_repacked + s.packs_dropped > 0);
  CHECK(s.retired_deleted == 0);
  CHECK(Has(repo, 0));
  REQUIRE((*reader)->ReadBlob(Sha256(FileData(0))).ok());  // its old pack is still there
  CheckReport mid = RequireIntact(repo);
  CHECK(mid.retired_packs == s.packs_repacked);
  CHECK(mid.warnings.empty());
  // Another process sees them as retired (a writer would not index them as orphans).
  auto other = Repository::Open(NewLocalBackend(root), "pw");
  REQUIRE(other.ok());
  CHECK((*other)->retired_packs().size() >= s.packs_repacked);  // and the dropped ones, gone already
  CHECK((*other)->ReadBlob(Sha256(FileData(0))).ok());
  PruneStats done = PruneOk(repo, 2 * kHour + 1);
  CHECK(done.retired_deleted == s.packs_repacked);
  CheckReport end = RequireIntact(repo);
  CHECK(end.retired_packs == 0);
  CHECK(end.warnings.empty());
}

TEST_CASE("prune refuses to run on a damaged snapshot and deletes nothing", "[storage][prune]") {
  TestRepo t(true);
  Repository& repo = *t.repo;
  const std::string& root = t.root;
  Id a = MakeSnapshot(repo, 0, 9, kT0);
  MakeSnapshot(repo, 10, 19, kT0);
  // Damage snapshot a: its blobs would otherwise look unreferenced.
  std::string path = root + "/snapshots/" + a.Hex();
  REQUIRE(test::Run("printf x | dd of=" + test::ShellQuote(path) + " bs=1 seek=40 conv=notrunc 2>/dev/null").exit_code == 0);
  auto s = RunPrune(repo, 0, 0);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().message().find(a.Hex()) != std::string::npos);
  for (int i = 0; i < 20; ++i) CHECK(Has(repo, i));
  CHECK(CountFiles(repo.backend(), FileType::kMark) == 0);
}

TEST_CASE("mark files round trip and reject damage", "[storage][prune]") {
  Key32 key = RandomKey();
  MarkFile m;
  m.time_ns = kT0;
  m.packs.push_back(MarkedPack{Sha256(AsBytes("p")), {Sha256(AsBytes("a")), Sha256(AsBytes("b"))}});
  m.retired_packs.push_back(Sha256(AsBytes("r")));
  Bytes file = EncodeMarkFile(key, m);
  auto back = DecodeMarkFile(key, file);
  REQUIRE(back.ok());
  CHECK(back->time_ns == kT0);
  REQUIRE(back->packs.size() == 1);
  CHECK(back->packs[0].blobs.size() == 2);
  CHECK(back->retired_packs == m.retired_packs);
  for (size_t i = 0; i < file.size(); i += 7) {
    Bytes bad = file;
    bad[i] ^= 0x20;
    CHECK_FALSE(DecodeMarkFile(key, bad).ok());
  }
  CHECK_FALSE(DecodeMarkFile(RandomKey(), file).ok());
}

TEST_CASE("grace periods parse", "[storage][prune]") {
  CHECK(*ParseGrace("0") == 0);
  CHECK(*ParseGrace("24h") == 86400);
  CHECK(*ParseGrace("1d12h") == 129600);
  CHECK(*ParseGrace("90m") == 5400);
  CHECK(*ParseGrace("2w") == 1209600);
  for (const char* bad : {"", "h", "24", "24x", "-1h", "1.5h"}) CHECK_FALSE(ParseGrace(bad).ok());
}

namespace {

// A backend that "crashes" after `budget` writes (Save, pack commit,
// Remove): that write and everything after it fails, as if the process had
// died there. Reads fail too once crashed. The files live in `base`.
class CrashingBackend : public Backend {
 public:
  CrashingBackend(Backend& base, int64_t budget) : base_(base), budget_(budget) {}
  int64_t writes() const { return writes_; }

  std::string Location() const override { return base_.Location(); }
  Status Create() override { return base_.Create(); }
  Status Save(FileType type, const std::string& name, ByteView data) override {
    RETURN_IF_ERROR(Spend());
    return base_.Save(type, name, data);
  }
  Result<std::unique_ptr<FileWriter>> NewWriter(FileType type) override {
    if (crashed_) return IOError("crashed");
    ASSIGN_OR_RETURN(auto inner, base_.NewWriter(type));
    return std::unique_ptr<FileWriter>(new Writer(*this, std::move(inner)));
  }
  Result<Bytes> Load(FileType type, const std::string& name, uint64_t offset, uint64_t length) override {
    if (crashed_) return IOError("crashed");
    return base_.Load(type, name, offset, length);
  }
  Result<uint64_t> Size(FileType type, const std::string& name) override {
    if (crashed_) return IOError("crashed");
    return base_.Size(type, name);
  }
  Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) override {
    if (crashed_) return IOError("crashed");
    return base_.List(type, fn);
  }
  Status Remove(FileType type, const std::string& name) override {
    RETURN_IF_ERROR(Spend());
    return base_.Remove(type, name);
  }
  Result<std::unique_ptr<WriterLock>> LockWriter(const std::string& holder) override {
    return base_.LockWriter(holder);
  }
  Status RemoveStaleTemporaries() override { return base_.RemoveStaleTemporaries(); }

 private:
  class Writer : public FileWriter {
   public:
    Writer(CrashingBackend& b, std::unique_ptr<FileWriter> inner) : b_(b), inner_(std::move(inner)) {}
    Status Append(ByteView data) override { return b_.crashed_ ? IOError("crashed") : inner_->Append(data); }
    Status Commit(const std::string& name) override {
      RETURN_IF_ERROR(b_.Spend());
      return inner_->Commit(name);
    }
    uint64_t size() const override { return inner_->size(); }

   private:
    CrashingBackend& b_;
    std::unique_ptr<FileWriter> inner_;
  };

  Status Spend() {
    if (crashed_ || writes_ == budget_) {
      crashed_ = true;
      return IOError("injected crash");
    }
    ++writes_;
    return Status::Ok();
  }

  Backend& base_;
  int64_t budget_;
  int64_t writes_ = 0;
  bool crashed_ = false;
};

// Forwards to a backend the test owns (a Repository owns its backend).
class Borrowed : public CrashingBackend {
 public:
  explicit Borrowed(Backend& base) : CrashingBackend(base, -1) {}
};

// When the prune under test runs: its due marks are those of kHour + 2 and
// earlier.
constexpr int64_t kCrashAt = 2 * kHour + 2;

// A repository whose prune at kCrashAt (grace 1 h, waste limit 20 %) takes
// every kind of step: a new mark (file 44), due marks, a pack to drop and
// packs to repack (files 40-47), garbage left under the waste limit and
// carried to a new mark (file 24), retired packs to delete and the
// superseded index files naming them, a retire mark, due marks removed.
// Returns the files no snapshot keeps.
std::set<int> PrepareForCrash(Backend& base) {
  auto init = Repository::Init(std::make_unique<Borrowed>(base), "pw", SmallPacks(), TestActor());
  REQUIRE(init.ok());
  Repository& repo = *init->repo;
  Id a = MakeSnapshot(repo, 0, 39, kT0);  // packs of files 0-7, 8-15, 16-23, 24-31, 32-39
  MakeSnapshot(repo, 12, 14, kT0);
  MakeSnapshot(repo, 20, 23, kT0);
  MakeSnapshot(repo, 25, 39, kT0);        // 24 alone is garbage in its pack: 1/8, kept
  REQUIRE(repo.RemoveSnapshot(a).ok());
  PruneOk(repo, 0);          // mark
  PruneOk(repo, kHour + 1);  // sweep: drop 0-7, repack 8-15 and 16-23 (retired until kCrashAt)
  Id b = MakeSnapshot(repo, 40, 47, kT0 + 1);
  Id c = MakeSnapshot(repo, 44, 44, kT0 + 1);
  REQUIRE(repo.RemoveSnapshot(b).ok());
  PruneOk(repo, kHour + 2);  // marks 40-43 and 45-47
  REQUIRE(repo.RemoveSnapshot(c).ok());
  return {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19, 24, 40, 41, 42, 43, 44, 45, 46, 47};
}

}  // namespace

TEST_CASE("a prune crashed at every write leaves a clean repository and the next prune finishes",
          "[storage][prune][fault]") {
  // How many writes the prune under test makes.
  int64_t total = 0;
  {
    auto base = NewMemoryBackend();
    PrepareForCrash(*base);
    auto counting = std::make_unique<CrashingBackend>(*base, -1);
    CrashingBackend* c = counting.get();
    auto repo = Reopen(std::move(counting));
    int64_t before = c->writes();
    PruneStats s = PruneOk(*repo, kCrashAt);
    CHECK(s.marked_blobs >= 1);
    CHECK(s.swept_blobs >= 7);
    CHECK(s.kept_garbage_blobs >= 1);
    CHECK(s.retired_deleted >= 2);
    CHECK(s.packs_repacked >= 1);
    CHECK(s.index_files_removed >= 1);
    total = c->writes() - before;
  }
  REQUIRE(total >= 6);
  for (int64_t n = 0; n < total; ++n) {
    DYNAMIC_SECTION("crash before write " << n + 1 << " of " << total) {
      auto base = NewMemoryBackend();
      std::set<int> gone = PrepareForCrash(*base);
      {
        // Reopened so that the budget counts the prune's writes only
        // (LockForWrite writes nothing on a tidy repository).
        auto repo = Repository::Open(std::make_unique<CrashingBackend>(*base, n), "pw");
        REQUIRE(repo.ok());
        REQUIRE((*repo)->LockForWrite(TestActor()).ok());
        auto s = RunPrune(**repo, kCrashAt);
        REQUIRE_FALSE(s.ok());
      }
      // "Restart": a new writer on what the crash left.
      auto repo = Reopen(std::make_unique<Borrowed>(*base));
      RequireIntact(*repo);
      // The next prunes finish the job: every forgotten file gone, every
      // leftover (orphans indexed again, retired packs, marks) cleaned.
      PruneOk(*repo, kCrashAt);
      RequireIntact(*repo);
      PruneOk(*repo, kCrashAt + 2 * kHour, kHour, {}, 0.0);  // and what stayed under the waste limit
      PruneOk(*repo, kCrashAt + 4 * kHour, kHour, {}, 0.0);
      PruneOk(*repo, kCrashAt + 6 * kHour, kHour, {}, 0.0);
      CheckReport end = RequireIntact(*repo);
      for (int i = 0; i < 48; ++i) {
        INFO("file " << i);
        CHECK(Has(*repo, i) == !gone.count(i));
      }
      CHECK(end.retired_packs == 0);
      CHECK(end.warnings.empty());
    }
  }
}
