// Corruption (issue 2): damage to any byte of any repository file is found
// by `check --read-data`, which names the damaged file and, for packs, the
// blobs whose bytes were hit; nothing crashes (these tests also run under
// ASan/UBSan) and nothing damaged is reported as fine.
//
// Which bytes are flipped (the policy; keeps the whole file under a minute
// even with sanitizers):
// - Files up to kFlipEveryByteUpTo (key slots, index files, snapshots, the
//   config and the small pack): every byte, one at a time, restored after.
// - Larger packs: every byte of the structure (leading magic, the encrypted
//   header, the trailer), the first and last kBlobEdge bytes of every blob
//   box (so a flip blamed on the neighbouring blob would show), and every
//   kStride-th byte of the rest. Every byte of a box is authenticated alike,
//   so a sample of the middle loses nothing but time.
// Each flip XORs the byte with a mask that cycles over single bits and whole
// bytes (kMasks), so text files also see flips that stay valid hex/ASCII.
// Plus truncation to several lengths and to zero bytes for every file type.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "storage/check.h"
#include "storage/format.h"
#include "storage/pack.h"
#include "storage/repository.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::storage;

namespace {

constexpr size_t kFlipEveryByteUpTo = 2048;
constexpr size_t kStride = 97;   // prime: does not align with any field size
constexpr size_t kBlobEdge = 4;  // where one box ends and the next begins
constexpr uint8_t kMasks[] = {0x01, 0x80, 0xff, 0x20, 0x10, 0x02, 0x40, 0x04, 0x08};

const Argon2Params kCheapKdf{1, 1 << 20};  // tests: cheap KDF

Actor TestActor() { return Actor{"testhost", "tester", "corruption test"}; }

// A small repository: three commits, so three index files; packs of 4 KiB
// holding several blobs, one pack holding a single blob bigger than the pack
// size, one tiny pack; three key slots (passphrases "one" and "two" and the
// recovery key).
struct RepoContents {
  std::string recovery_key;
  std::string slot_one, slot_two, slot_recovery;
  std::vector<Id> blobs;
  std::vector<std::string> packs, indexes, snapshots;
};

RepoContents BuildRepo(const std::string& root) {
  RepoContents c;
  InitOptions o;
  o.kdf = kCheapKdf;
  o.pack_size = 4096;  // the format's minimum: several packs from little data
  auto init = Repository::Init(NewLocalBackend(root), "one", o, TestActor());
  REQUIRE(init.ok());
  auto& repo = *init->repo;
  c.recovery_key = init->recovery_key;
  c.slot_one = repo.current_key_id();
  auto add = [&](BlobType type, const Bytes& b) {
    auto added = repo.AddBlob(type, b);
    REQUIRE(added.ok());
    REQUIRE(*added);
    c.blobs.push_back(Sha256(b));
  };
  // Commit 1: small data blobs, random and compressible.
  for (int i = 0; i < 10; ++i) {
    Bytes b = test::RandomBytes(300 + 97 * i, 100 + i);
    if (i % 3 == 1) b.assign(600 + 50 * i, uint8_t('a' + i));
    add(BlobType::kData, b);
  }
  REQUIRE(repo.SaveSnapshot(AsBytes("{\"commit\":1}")).ok());
  auto two = repo.AddKey("two", kCheapKdf, "second", TestActor());
  REQUIRE(two.ok());
  c.slot_two = two->id;
  // Commit 2: one blob bigger than the pack size, and tree blobs.
  add(BlobType::kData, test::RandomBytes(12000, 7));
  for (int i = 0; i < 3; ++i) {
    std::string tree =
        "{\"tree\":" + std::to_string(i) + ",\"nodes\":[" + std::string(400 + 100 * i, ' ') + "]}";
    add(BlobType::kTree, Bytes(tree.begin(), tree.end()));
  }
  REQUIRE(repo.SaveSnapshot(AsBytes("{\"commit\":2}")).ok());
  // Commit 3: a tiny pack, flipped whole.
  add(BlobType::kData, test::RandomBytes(100, 3));
  REQUIRE(repo.SaveSnapshot(AsBytes("{\"commit\":3}")).ok());

  auto keys = repo.ListKeys();
  REQUIRE(keys.ok());
  REQUIRE(keys->slots.size() == 3);
  for (const auto& s : keys->slots) {
    if (s.kind == SlotKind::kRecovery) c.slot_recovery = s.id;
  }
  REQUIRE(!c.slot_recovery.empty());
  auto list = [&](FileType t, std::vector<std::string>& out) {
    REQUIRE(repo.backend()
                .List(t,
                      [&](const FileInfo& fi) -> Status {
                        out.push_back(fi.name);
                        return Status::Ok();
                      })
                .ok());
    std::sort(out.begin(), out.end());
  };
  list(FileType::kPack, c.packs);
  list(FileType::kIndex, c.indexes);
  list(FileType::kSnapshot, c.snapshots);
  REQUIRE(c.packs.size() >= 4);
  REQUIRE(c.indexes.size() == 3);
  REQUIRE(c.snapshots.size() == 3);
  return c;
}

// A private copy of the test repository. The original is built once: Init
// and every save fsync, which costs more than a second here, and copying
// is cheap.
struct TestRepo : RepoContents {
  test::TempDir dir;
  std::string root;

  TestRepo() : root(dir.path() + "/repo") {
    static test::TempDir original_dir;
    static const std::string original = original_dir.path() + "/repo";
    static const RepoContents contents = BuildRepo(original);
    static_cast<RepoContents&>(*this) = contents;
    auto cp = test::Run("cp -a " + test::ShellQuote(original) + " " + test::ShellQuote(root));
    INFO(cp.err);
    REQUIRE(cp.exit_code == 0);
  }

  std::string PackPath(const std::string& name) const {
    return root + "/data/" + name.substr(0, 2) + "/" + name;
  }
  std::string IndexPath(const std::string& name) const { return root + "/index/" + name; }
  std::string KeyPath(const std::string& name) const { return root + "/keys/" + name; }
  std::string SnapshotPath(const std::string& name) const { return root + "/snapshots/" + name; }
  std::string ConfigPath() const { return root + "/config"; }

  std::unique_ptr<Repository> Open(const std::string& secret) const {
    auto r = Repository::Open(NewLocalBackend(root), secret);
    INFO("open: " << r.status().ToString());
    REQUIRE(r.ok());
    return std::move(r).value();
  }
};

Bytes ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, ByteView data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
  REQUIRE(out.good());
}

void PokeByte(int fd, size_t pos, uint8_t v) { REQUIRE(::pwrite(fd, &v, 1, off_t(pos)) == 1); }

// Flips the byte at each position in turn (restoring it after) and calls
// `verify(pos, mask)` while it is flipped.
template <typename F>
void ForEachFlip(const std::string& path, const std::vector<size_t>& positions, F verify) {
  Bytes original = ReadAll(path);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (size_t pos : positions) {
    uint8_t mask = kMasks[pos % sizeof kMasks];
    PokeByte(fd, pos, uint8_t(original[pos] ^ mask));
    verify(pos, mask);
    PokeByte(fd, pos, original[pos]);
  }
  ::close(fd);
  REQUIRE(ReadAll(path) == original);
}

std::vector<size_t> AllPositions(size_t size) {
  std::vector<size_t> v(size);
  for (size_t i = 0; i < size; ++i) v[i] = i;
  return v;
}

// Lengths to truncate a file of `size` bytes to: zero, a few bytes, about
// half, and one byte short (the last byte is a newline or trailer magic).
std::vector<size_t> TruncationLengths(size_t size) {
  std::set<size_t> s = {0, 1, 7, 8, size / 2, size - 12, size - 1};
  std::vector<size_t> out;
  for (size_t n : s) {
    if (n < size) out.push_back(n);
  }
  return out;
}

template <typename F>
void ForEachTruncation(const std::string& path, F verify) {
  Bytes original = ReadAll(path);
  for (size_t n : TruncationLengths(original.size())) {
    REQUIRE(::truncate(path.c_str(), off_t(n)) == 0);
    verify(n);
    WriteAll(path, original);
  }
  REQUIRE(ReadAll(path) == original);
}

CheckReport RunCheck(Repository& repo) {
  CheckOptions o;
  o.read_data = true;
  o.threads = 2;
  auto r = Check(repo, o);
  INFO("check itself failed: " << r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::string Describe(const CheckReport& r) {
  std::string s;
  for (const auto& e : r.errors) {
    s += "\n  error " + e.object + ": " + e.message;
    for (const auto& b : e.blobs) s += "\n    blob " + b;
  }
  for (const auto& w : r.warnings) s += "\n  warning " + w.object + ": " + w.message;
  return s;
}

// Empty when `r` reports damage to exactly `object` (no error blames
// anything else) and names every blob in `hit`; else what is wrong.
std::string Misreport(const CheckReport& r, const std::string& object, const std::set<std::string>& hit) {
  if (r.errors.empty()) return "no error reported";
  std::set<std::string> named;
  for (const auto& e : r.errors) {
    if (e.object != object) return "an error blames " + e.object;
    named.insert(e.blobs.begin(), e.blobs.end());
  }
  for (const auto& b : hit) {
    if (!named.count(b)) return "damaged blob " + b + " is not named";
  }
  return "";
}

// `where` is a std::string saying which damage this was.
#define REQUIRE_REPORTED(report, object, hit, where)                                                        \
  do {                                                                                                      \
    std::string why_ = Misreport(report, object, hit);                                                      \
    if (!why_.empty()) FAIL(where << ": " << why_ << " (expected " << (object) << ")" << Describe(report)); \
  } while (0)

std::string At(const std::string& object, size_t pos, uint8_t mask) {
  return object + " byte " + std::to_string(pos) + " ^ " + std::to_string(mask);
}
std::string Cut(const std::string& object, size_t n) { return object + " truncated to " + std::to_string(n); }

void RequireClean(Repository& repo) {
  CheckReport r = RunCheck(repo);
  INFO(Describe(r));
  REQUIRE(r.ok());
  REQUIRE(r.warnings.empty());
}

struct PackLayout {
  uint64_t size = 0, tail = 0;
  std::vector<PackEntry> entries;
};

PackLayout LayoutOf(const Repository& repo, const Bytes& pack) {
  PackLayout l;
  l.size = pack.size();
  auto tail = PackTailLength(pack, pack.size());
  REQUIRE(tail.ok());
  l.tail = *tail;
  auto entries = ParsePackHeader(repo.keys().data, pack, pack.size());
  REQUIRE(entries.ok());
  l.entries = *entries;
  return l;
}

std::vector<size_t> PackPositions(const PackLayout& l) {
  if (l.size <= kFlipEveryByteUpTo) return AllPositions(l.size);
  std::set<size_t> s;
  for (size_t i = 0; i < kPackMagic.size(); ++i) s.insert(i);
  for (size_t i = l.size - l.tail; i < l.size; ++i) s.insert(i);
  for (const auto& e : l.entries) {
    for (size_t i = 0; i < kBlobEdge && i < e.stored_length; ++i) {
      s.insert(e.offset + i);
      s.insert(e.offset + e.stored_length - 1 - i);
    }
  }
  for (size_t i = 0; i < l.size; i += kStride) s.insert(i);
  return std::vector<size_t>(s.begin(), s.end());
}

// The blobs whose boxes hold byte `pos` (single), or any byte at or after
// `pos` (what truncation to `pos` bytes cuts off).
std::set<std::string> BlobsAt(const PackLayout& l, size_t pos, bool single) {
  std::set<std::string> out;
  for (const auto& e : l.entries) {
    size_t end = size_t(e.offset) + e.stored_length;
    bool hit = single ? (pos >= e.offset && pos < end) : end > pos;
    if (hit) out.insert(e.id.Hex());
  }
  return out;
}

}  // namespace

TEST_CASE("check names a pack with any flipped byte and the blobs hit", "[storage][corruption]") {
  TestRepo t;
  auto repo = t.Open("one");
  RequireClean(*repo);
  size_t flips = 0, blob_flips = 0;
  for (const auto& name : t.packs) {
    std::string path = t.PackPath(name);
    PackLayout layout = LayoutOf(*repo, ReadAll(path));
    auto positions = PackPositions(layout);
    ForEachFlip(path, positions, [&](size_t pos, uint8_t mask) {
      auto hit = BlobsAt(layout, pos, true);
      blob_flips += !hit.empty();
      ++flips;
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "pack " + name, hit, At("pack " + name, pos, mask));
    });
  }
  RequireClean(*repo);
  // Every blob of every pack was hit at least at its edges.
  REQUIRE(blob_flips >= t.blobs.size() * 2 * kBlobEdge);
  // The whole small pack was flipped: the policy covered more than samples.
  REQUIRE(flips > 1000);
}

TEST_CASE("check names an index file with any flipped byte", "[storage][corruption]") {
  TestRepo t;
  auto repo = t.Open("one");
  for (const auto& name : t.indexes) {
    std::string path = t.IndexPath(name);
    size_t size = ReadAll(path).size();
    REQUIRE(size <= kFlipEveryByteUpTo);
    ForEachFlip(path, AllPositions(size), [&](size_t pos, uint8_t mask) {
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "index " + name, {}, At("index " + name, pos, mask));
    });
  }
  RequireClean(*repo);
  // A fresh Open with a damaged index does not fail: it reports the index
  // as not loaded and check names it.
  std::string path = t.IndexPath(t.indexes[0]);
  ForEachFlip(path, {20}, [&](size_t, uint8_t) {
    auto damaged = t.Open("one");
    REQUIRE(damaged->index_load_errors().size() == 1);
    REQUIRE(damaged->index_load_errors()[0].message().find(t.indexes[0]) != std::string::npos);
    CheckReport r = RunCheck(*damaged);
    REQUIRE_REPORTED(r, "index " + t.indexes[0], {}, std::string("fresh open"));
  });
}

TEST_CASE("check names a snapshot file with any flipped byte", "[storage][corruption]") {
  TestRepo t;
  auto repo = t.Open("one");
  for (const auto& name : t.snapshots) {
    std::string path = t.SnapshotPath(name);
    size_t size = ReadAll(path).size();
    REQUIRE(size <= kFlipEveryByteUpTo);
    ForEachFlip(path, AllPositions(size), [&](size_t pos, uint8_t mask) {
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "snapshot " + name, {}, At("snapshot " + name, pos, mask));
      auto id = Id::FromHex(name);
      auto loaded = repo->LoadSnapshot(*id);
      REQUIRE_FALSE(loaded.ok());
      REQUIRE(loaded.status().code() == Code::kIntegrity);
    });
  }
  RequireClean(*repo);
}

TEST_CASE("check names a key slot with any flipped byte and intact slots still open",
          "[storage][corruption][keys]") {
  TestRepo t;
  struct Slot {
    std::string id, secret, other_secret;
  };
  std::vector<Slot> slots = {{t.slot_one, "one", "two"},
                             {t.slot_two, "two", t.recovery_key},
                             {t.slot_recovery, t.recovery_key, "one"}};
  size_t opened_damaged = 0;
  for (const auto& s : slots) {
    // Check runs in a session opened through another, intact slot.
    auto other = t.Open(s.other_secret);
    std::string path = t.KeyPath(s.id);
    size_t size = ReadAll(path).size();
    REQUIRE(size <= kFlipEveryByteUpTo);
    std::string object = "key " + s.id;
    ForEachFlip(path, AllPositions(size), [&](size_t pos, uint8_t mask) {
      std::string where = At(object, pos, mask);
      INFO(where);
      CheckReport r = RunCheck(*other);
      REQUIRE_REPORTED(r, object, {}, where);
      // The damaged slot's own secret: refused cleanly, unless only the MAC
      // line was hit (the MAC needs the master key, so Open cannot check it
      // first); then check, run by that session, names the slot too.
      auto own = Repository::Open(NewLocalBackend(t.root), s.secret);
      if (own.ok()) {
        ++opened_damaged;
        CheckReport r2 = RunCheck(**own);
        REQUIRE_REPORTED(r2, object, {}, where + " (opened by the damaged slot)");
      } else {
        INFO("open with the damaged slot: " << own.status().ToString());
        REQUIRE(own.status().code() == Code::kUnauthenticated);
      }
      // A fresh Open through an intact slot is not disturbed by the damaged
      // one (sampled: each Open runs Argon2id).
      if (pos % 5 == 0) {
        auto fresh = Repository::Open(NewLocalBackend(t.root), s.other_secret);
        INFO("open with an intact slot: " << fresh.status().ToString());
        REQUIRE(fresh.ok());
      }
    });
  }
  // Only flips inside the 64 hex digits of a MAC line leave the slot usable.
  REQUIRE(opened_damaged > 0);
  REQUIRE(opened_damaged <= slots.size() * 64);
  RequireClean(*t.Open("one"));
}

TEST_CASE("truncated and empty files of every type are reported", "[storage][corruption]") {
  TestRepo t;
  auto repo = t.Open("one");
  // Packs.
  for (const auto& name : t.packs) {
    std::string path = t.PackPath(name);
    PackLayout layout = LayoutOf(*repo, ReadAll(path));
    ForEachTruncation(path, [&](size_t n) {
      CheckReport r = RunCheck(*repo);
      // Every blob that lost a byte must be named.
      REQUIRE_REPORTED(r, "pack " + name, BlobsAt(layout, n, false), Cut("pack " + name, n));
    });
  }
  // Index files.
  for (const auto& name : t.indexes) {
    ForEachTruncation(t.IndexPath(name), [&](size_t n) {
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "index " + name, {}, Cut("index " + name, n));
      auto fresh = Repository::Open(NewLocalBackend(t.root), "one");
      REQUIRE(fresh.ok());
      REQUIRE((*fresh)->index_load_errors().size() == 1);
    });
  }
  // Key slots.
  for (const auto& id : {t.slot_one, t.slot_two, t.slot_recovery}) {
    ForEachTruncation(t.KeyPath(id), [&](size_t n) {
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "key " + id, {}, Cut("key " + id, n));
      std::string secret = id == t.slot_one ? "one" : id == t.slot_two ? "two" : t.recovery_key;
      REQUIRE(Repository::Open(NewLocalBackend(t.root), secret).status().code() == Code::kUnauthenticated);
      std::string other = id == t.slot_one ? "two" : "one";
      REQUIRE(Repository::Open(NewLocalBackend(t.root), other).ok());
    });
  }
  // Snapshots.
  for (const auto& name : t.snapshots) {
    ForEachTruncation(t.SnapshotPath(name), [&](size_t n) {
      CheckReport r = RunCheck(*repo);
      REQUIRE_REPORTED(r, "snapshot " + name, {}, Cut("snapshot " + name, n));
    });
  }
  // Config.
  ForEachTruncation(t.ConfigPath(), [&](size_t n) {
    auto r = Repository::Open(NewLocalBackend(t.root), "one");
    INFO("config truncated to " << n << ": " << r.status().ToString());
    REQUIRE(r.status().code() == Code::kCorruption);
  });
  RequireClean(*repo);
}

TEST_CASE("a config with any flipped byte does not open", "[storage][corruption]") {
  TestRepo t;
  std::string path = t.ConfigPath();
  size_t size = ReadAll(path).size();
  REQUIRE(size <= kFlipEveryByteUpTo);
  size_t integrity = 0;
  ForEachFlip(path, AllPositions(size), [&](size_t pos, uint8_t mask) {
    auto r = Repository::Open(NewLocalBackend(t.root), "one");
    INFO("config byte " << pos << " ^ " << int(mask) << ": " << r.status().ToString());
    REQUIRE_FALSE(r.ok());
    REQUIRE((r.status().code() == Code::kCorruption || r.status().code() == Code::kIntegrity));
    integrity += r.status().code() == Code::kIntegrity;
  });
  // Flips inside the MAC's hex digits that keep it lowercase hex parse, and
  // are caught only by the MAC.
  REQUIRE(integrity > 0);
  RequireClean(*t.Open("one"));
}

TEST_CASE("custos check --read-data names a damaged pack and its blobs", "[storage][corruption][cli]") {
  TestRepo t;
  auto repo = t.Open("one");
  // Damage the middle of the first blob of the first pack.
  std::string pack = t.packs[0];
  std::string path = t.PackPath(pack);
  Bytes original = ReadAll(path);
  PackLayout layout = LayoutOf(*repo, original);
  const PackEntry& e = layout.entries[0];
  size_t pos = e.offset + e.stored_length / 2;
  Bytes damaged = original;
  damaged[pos] ^= 0x40;
  WriteAll(path, damaged);
  std::string blob = e.id.Hex();

  std::string args = "-r " + test::ShellQuote(t.root) + " check --read-data";
  std::string env = "CUSTOS_PASSWORD=one";
  auto text = test::Custos(args, env);
  INFO("stdout:\n" << text.out << "stderr:\n" << text.err);
  REQUIRE(text.exit_code == 1);
  REQUIRE(text.err.find("pack " + pack) != std::string::npos);
  REQUIRE(text.err.find(blob) != std::string::npos);

  auto js = test::Custos("--json " + args, env);
  INFO("json stdout:\n" << js.out << "stderr:\n" << js.err);
  REQUIRE(js.exit_code == 1);
  auto j = nlohmann::json::parse(js.out);
  REQUIRE(j.at("ok") == false);
  bool found = false;
  for (const auto& err : j.at("errors")) {
    if (err.at("object") != "pack " + pack) continue;
    for (const auto& b : err.at("blobs")) found = found || b == blob;
  }
  REQUIRE(found);

  WriteAll(path, original);
  REQUIRE(test::Custos(args, env).exit_code == 0);
}
