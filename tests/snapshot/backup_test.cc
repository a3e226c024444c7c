// Library-level tests of the backup pipeline (snapshot::Backup): what the
// snapshot tree records for every file type and metadata item, multi-chunk
// files, deduplication, the files cache, and races with a tree that changes
// while it is backed up. CLI-level tests are in tests/cli/backup_cli_test.cc.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/check.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::snapshot;
using custos::test::TestRepo;

namespace {

BackupResult DoBackup(storage::Repository& repo, const std::vector<std::string>& paths,
                      const std::function<void(BackupOptions&)>& tweak = nullptr) {
  BackupOptions o;
  o.paths = paths;
  o.host = "testhost";
  o.program_version = "test";
  if (tweak) tweak(o);
  auto r = Backup(repo, o);
  if (!r.ok()) FAIL("backup: " << r.status().ToString());
  return std::move(r).value();
}

Node Find(storage::Repository& repo, const BackupResult& b, const std::string& path) {
  auto atimes = LoadAtimes(repo, b.manifest);
  if (!atimes.ok()) FAIL("atime table: " << atimes.status().ToString());
  auto n = FindPath(repo, b.manifest.tree, path, atimes->get());
  if (!n.ok()) FAIL("find " << path << ": " << n.status().ToString());
  return *n;
}

// Reads a file's content back from the repository, chunk by chunk.
Bytes ReadContent(storage::Repository& repo, const Node& n) {
  Bytes out;
  for (const auto& c : n.content) {
    auto blob = repo.ReadBlob(c.id);
    if (!blob.ok()) FAIL("read chunk: " << blob.status().ToString());
    REQUIRE(blob->size() == c.size);
    REQUIRE(Sha256(*blob) == c.id);
    Append(out, *blob);
  }
  return out;
}

void RequireCheckClean(storage::Repository& repo) {
  storage::CheckOptions co;
  co.read_data = true;
  auto report = storage::Check(repo, co);
  REQUIRE(report.ok());
  for (const auto& e : report->errors) UNSCOPED_INFO(e.object << ": " << e.message);
  REQUIRE(report->errors.empty());
}

// Every snapshot's tree decodes, every file's chunks add up to its size.
void RequireTreesConsistent(storage::Repository& repo) {
  auto all = LoadSnapshots(repo);
  REQUIRE(all.ok());
  for (const auto& s : *all) {
    Status st = WalkTree(repo, s.manifest.tree, "/", [&](const std::string& path, const Node& n) -> Status {
      if (n.type == NodeType::kFile) {
        uint64_t sum = 0;
        for (const auto& c : n.content) {
          sum += c.size;
          if (!repo.KnowsBlob(c.id)) return NotFoundError(path + ": chunk missing");
        }
        if (sum != n.size) return CorruptionError(path + ": sizes do not add up");
      }
      return Status::Ok();
    });
    INFO("snapshot " << s.id.Short() << ": " << st.ToString());
    REQUIRE(st.ok());
  }
}

}  // namespace

TEST_CASE("backup lib: a file larger than the chunk maximum becomes several chunks that add up to it",
          "[backup]") {
  TestRepo r;
  test::TempDir src;
  const size_t size = (20u << 20) + 12345;
  Bytes data = test::RandomBytes(size, 42);
  std::string f = src.path() + "/multi";
  test::WriteBytes(f, data);

  auto b = DoBackup(*r.repo, {src.path()});
  Node n = Find(*r.repo, b, f);
  REQUIRE(n.type == NodeType::kFile);
  REQUIRE(n.size == size);
  REQUIRE(n.file_sha256 == Sha256(data));
  REQUIRE(n.content.size() > 1);
  uint64_t sum = 0;
  const auto& cfg = r.repo->config();
  for (size_t i = 0; i < n.content.size(); ++i) {
    sum += n.content[i].size;
    REQUIRE(n.content[i].size <= cfg.chunk_max);
    if (i + 1 < n.content.size()) REQUIRE(n.content[i].size > cfg.chunk_min);
  }
  REQUIRE(sum == size);
  REQUIRE(ReadContent(*r.repo, n) == data);
  REQUIRE(b.manifest.summary.bytes_read == size);
  REQUIRE(b.manifest.summary.data_blobs_added == n.content.size());
  REQUIRE_FALSE(b.manifest.partial);

  SECTION("a small file is one chunk whose ID is the file's SHA-256") {
    std::string s = src.path() + "/small";
    test::WriteString(s, "hello");
    auto b2 = DoBackup(*r.repo, {src.path()});
    Node sn = Find(*r.repo, b2, s);
    REQUIRE(sn.content.size() == 1);
    REQUIRE(sn.file_sha256 == Sha256(AsBytes("hello")));
    REQUIRE(sn.content[0].id == sn.file_sha256);
    Node e = Find(*r.repo, b2, f);  // unchanged: from the files cache, same chunks
    REQUIRE(e.content == n.content);
  }
}

TEST_CASE("backup lib: every file type and metadata item is recorded exactly as lstat shows it", "[backup]") {
  TestRepo r;
  test::TempDir work;
  auto t = test::MakeAllTypesTree(work.path() + "/src");
  // ctime cannot be set: take it (and everything else) from lstat before the backup.
  std::map<std::string, struct stat> before;
  for (const auto& e : t.entries) before[e.rel] = test::Lstat(t.root + "/" + e.rel);

  auto b = DoBackup(*r.repo, {t.root});
  INFO("errors: " << b.errors.size() << (b.errors.empty() ? "" : " first: " + b.errors[0]));
  REQUIRE(b.errors.empty());
  REQUIRE_FALSE(b.manifest.partial);

  for (const auto& e : t.entries) {
    INFO("entry " << e.rel);
    const struct stat& st = before[e.rel];
    Node n = Find(*r.repo, b, t.root + "/" + e.rel);
    REQUIRE(n.name == e.rel.substr(e.rel.rfind('/') + 1));
    REQUIRE(n.mode == (st.st_mode & 07777));
    REQUIRE(n.uid == st.st_uid);
    REQUIRE(n.gid == st.st_gid);
    REQUIRE(n.user == test::UserName(st.st_uid));
    REQUIRE(n.group == test::GroupName(st.st_gid));
    REQUIRE(n.mtime.sec * 1000000000 + n.mtime.nsec == e.mtime_ns);
    REQUIRE(n.mtime == Timestamp{st.st_mtim.tv_sec, uint32_t(st.st_mtim.tv_nsec)});
    REQUIRE(n.ctime == Timestamp{st.st_ctim.tv_sec, uint32_t(st.st_ctim.tv_nsec)});
    if (e.check_atime) REQUIRE(n.atime.sec * 1000000000 + n.atime.nsec == e.atime_ns);
    REQUIRE(n.inode == st.st_ino);
    REQUIRE(n.dev == st.st_dev);
    REQUIRE(n.nlink == st.st_nlink);
    REQUIRE(n.xattrs == e.xattrs);
    REQUIRE(n.holes == e.holes);
    REQUIRE(n.flags == 0);
    switch (st.st_mode & S_IFMT) {
      case S_IFREG: {
        REQUIRE(n.type == NodeType::kFile);
        REQUIRE(n.size == uint64_t(st.st_size));
        REQUIRE(n.file_sha256 == e.sha256);
        REQUIRE(ReadContent(*r.repo, n) == *ReadFile(t.root + "/" + e.rel));
        break;
      }
      case S_IFDIR: REQUIRE(n.type == NodeType::kDir); break;
      case S_IFLNK: {
        REQUIRE(n.type == NodeType::kSymlink);
        char buf[256];
        ssize_t len = ::readlink((t.root + "/" + e.rel).c_str(), buf, sizeof buf);
        REQUIRE(n.link_target == std::string(buf, size_t(len)));
        break;
      }
      case S_IFIFO: REQUIRE(n.type == NodeType::kFifo); break;
      case S_IFSOCK: REQUIRE(n.type == NodeType::kSocket); break;
      case S_IFCHR: REQUIRE(n.type == NodeType::kCharDev); REQUIRE(n.rdev == st.st_rdev); break;
      case S_IFBLK: REQUIRE(n.type == NodeType::kBlockDev); REQUIRE(n.rdev == st.st_rdev); break;
      default: FAIL("unexpected type");
    }
  }
  // Spot checks of the unusual values themselves.
  REQUIRE(Find(*r.repo, b, t.root + "/setuid").mode == 04755);
  REQUIRE(Find(*r.repo, b, t.root + "/setuid").user == test::UserName(65534));
  REQUIRE(Find(*r.repo, b, t.root + "/setgid_dir").mode == 02775);
  REQUIRE(Find(*r.repo, b, t.root + "/sticky").mode == 01777);
  REQUIRE(Find(*r.repo, b, t.root + "/unknown_owner").user.empty());
  REQUIRE(Find(*r.repo, b, t.root + "/unknown_owner").uid == 123456u);
  REQUIRE(Find(*r.repo, b, t.root + "/hard1").inode == Find(*r.repo, b, t.root + "/hard2").inode);
  REQUIRE(Find(*r.repo, b, t.root + "/hard1").nlink == 2);
  REQUIRE(Find(*r.repo, b, t.root + "/chr").rdev == makedev(1, 3));
  REQUIRE(Find(*r.repo, b, t.root + "/big").content.size() > 1);
  REQUIRE(Find(*r.repo, b, t.root + "/symlink").link_target == "file");
  // The listing holds exactly the entries made, in byte order.
  auto dir = Find(*r.repo, b, t.root);
  auto tree = LoadTree(*r.repo, dir.subtree);
  REQUIRE(tree.ok());
  std::set<std::string> want;
  for (const auto& e : t.entries) want.insert(e.rel.substr(0, e.rel.find('/')));
  std::vector<std::string> got;
  for (const auto& n : tree->nodes) got.push_back(n.name);
  REQUIRE(std::set<std::string>(got.begin(), got.end()) == want);
  REQUIRE(std::is_sorted(got.begin(), got.end()));
  RequireCheckClean(*r.repo);
}

TEST_CASE("backup lib: identical content across files and snapshots is stored once", "[backup]") {
  TestRepo r;
  test::TempDir src;
  const size_t kSize = 3u << 20;
  const int kCopies = 6;
  Bytes data = test::RandomBytes(kSize, 7);
  for (int i = 0; i < kCopies; ++i) test::WriteBytes(src.path() + "/copy" + std::to_string(i), data);

  auto b1 = DoBackup(*r.repo, {src.path()});
  const Summary& s1 = b1.manifest.summary;
  size_t chunks = Find(*r.repo, b1, src.path() + "/copy0").content.size();
  INFO("stored " << s1.bytes_added_stored << " for " << kCopies << " copies of " << kSize);
  REQUIRE(s1.total_bytes == kCopies * kSize);
  REQUIRE(s1.data_blobs_added == chunks);
  REQUIRE(s1.bytes_added_stored >= kSize);               // random data does not compress
  REQUIRE(s1.bytes_added_stored < kSize + kSize / 20);   // ... and is stored once
  for (int i = 1; i < kCopies; ++i) {
    REQUIRE(Find(*r.repo, b1, src.path() + "/copy" + std::to_string(i)).content ==
            Find(*r.repo, b1, src.path() + "/copy0").content);
  }

  // Changed tree: one copy rewritten with new data, one new file.
  Bytes other = test::RandomBytes(kSize, 8);
  Bytes extra = test::RandomBytes(1u << 20, 9);
  test::WriteBytes(src.path() + "/copy3", other);
  test::WriteBytes(src.path() + "/new", extra);
  auto b2 = DoBackup(*r.repo, {src.path()});
  const Summary& s2 = b2.manifest.summary;
  INFO("second backup stored " << s2.bytes_added_stored);
  REQUIRE(s2.files_new == 1);
  REQUIRE(s2.files_changed == 1);
  REQUIRE(s2.files_unmodified == kCopies - 1);
  REQUIRE(s2.bytes_read == kSize + extra.size());
  REQUIRE(s2.bytes_added_stored >= kSize + extra.size());
  REQUIRE(s2.bytes_added_stored < (kSize + extra.size()) * 21 / 20);

  // Identical again, even when every file is read: no data blob is added.
  auto b3 = DoBackup(*r.repo, {src.path()}, [](BackupOptions& o) { o.use_parent = false; });
  REQUIRE(b3.manifest.summary.data_blobs_added == 0);
  REQUIRE(b3.manifest.summary.bytes_added_stored < 65536);  // at most a few tree blobs (directory atimes)
  REQUIRE(b3.manifest.summary.bytes_read == kCopies * kSize + extra.size());
  RequireCheckClean(*r.repo);
}

TEST_CASE("backup lib: the files cache skips unchanged files and re-reads exactly the touched one", "[backup]") {
  TestRepo r;
  test::TempDir src;
  const int kFiles = 8;
  uint64_t total = 0;
  for (int i = 0; i < kFiles; ++i) {
    Bytes d = test::RandomBytes(100000 + i * 1000, 100 + i);
    total += d.size();
    test::WriteBytes(src.path() + "/f" + std::to_string(i), d);
  }
  auto b1 = DoBackup(*r.repo, {src.path()});
  REQUIRE(b1.manifest.summary.bytes_read == total);
  REQUIRE(b1.manifest.summary.files_new == kFiles);
  REQUIRE_FALSE(b1.manifest.parent.has_value());

  auto b2 = DoBackup(*r.repo, {src.path()});
  REQUIRE(b2.manifest.parent == b1.snapshot_id);
  REQUIRE(b2.manifest.summary.bytes_read == 0);
  REQUIRE(b2.manifest.summary.files_unmodified == kFiles);
  REQUIRE(b2.manifest.summary.total_files == kFiles);
  REQUIRE(b2.manifest.summary.data_blobs_added == 0);

  // Touch one file (new mtime, same content).
  std::string touched = src.path() + "/f3";
  test::SetTimes(touched, timespec{1600000000, 1}, timespec{1600000000, 2});
  auto b3 = DoBackup(*r.repo, {src.path()});
  REQUIRE(b3.manifest.summary.bytes_read == uint64_t(test::Lstat(touched).st_size));
  REQUIRE(b3.manifest.summary.files_changed == 1);
  REQUIRE(b3.manifest.summary.files_unmodified == kFiles - 1);
  REQUIRE(b3.manifest.summary.data_blobs_added == 0);
  REQUIRE(Find(*r.repo, b3, touched).mtime == Timestamp{1600000000, 2});

  // A different host or path set finds no parent: everything is read.
  auto other_host = DoBackup(*r.repo, {src.path()}, [](BackupOptions& o) { o.host = "elsewhere"; });
  REQUIRE(other_host.manifest.summary.bytes_read == total);
  REQUIRE_FALSE(other_host.manifest.parent.has_value());

  // use_parent = false (--force) reads everything.
  auto b4 = DoBackup(*r.repo, {src.path()}, [](BackupOptions& o) { o.use_parent = false; });
  REQUIRE(b4.manifest.summary.bytes_read == total);
  REQUIRE(b4.manifest.summary.files_unmodified == 0);

  // An explicit parent is used even for another host.
  auto b5 = DoBackup(*r.repo, {src.path()}, [&](BackupOptions& o) {
    o.host = "third";
    o.parent = b4.snapshot_id;
  });
  REQUIRE(b5.manifest.parent == b4.snapshot_id);
  REQUIRE(b5.manifest.summary.bytes_read == 0);
}

TEST_CASE("backup lib: a file rewritten and truncated while it is read is flagged, never torn", "[backup]") {
  TestRepo r;
  test::TempDir src;
  const size_t kSize = 24u << 20;
  std::string f = src.path() + "/busy";
  Bytes content = test::RandomBytes(kSize, 11);
  test::WriteBytes(f, content);
  test::WriteString(src.path() + "/calm", "stays the same");

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rounds{0};
  std::thread mutator([&] {
    Fd fd(::open(f.c_str(), O_WRONLY | O_CLOEXEC));
    std::mt19937_64 rng(5);
    while (!stop) {
      // Truncate to a random length, then write the rest back in pieces.
      off_t cut = off_t(rng() % kSize);
      if (::ftruncate(fd.get(), cut) != 0) break;
      for (off_t off = cut; off < off_t(kSize) && !stop; off += 1 << 20) {
        size_t len = std::min<size_t>(1 << 20, kSize - size_t(off));
        if (::pwrite(fd.get(), content.data() + off, len, off) != ssize_t(len)) break;
      }
      ++rounds;
    }
  });
  int flagged = 0;
  for (int i = 0; i < 4; ++i) {
    auto b = DoBackup(*r.repo, {src.path()}, [](BackupOptions& o) { o.use_parent = false; });
    Node n = Find(*r.repo, b, f);
    uint64_t sum = 0;
    for (const auto& c : n.content) sum += c.size;
    REQUIRE(sum == n.size);
    REQUIRE(n.size <= kSize);
    REQUIRE((n.flags & kFlagReadError) == 0);
    REQUIRE(Sha256(ReadContent(*r.repo, n)) == n.file_sha256);
    if (n.flags & kFlagChangedWhileRead) {
      ++flagged;
      REQUIRE(b.manifest.summary.files_changed_during_read == 1);
      REQUIRE_FALSE(b.warnings.empty());
    }
    REQUIRE_FALSE(b.manifest.partial);  // a change while reading is a warning, not an error
    REQUIRE(Find(*r.repo, b, src.path() + "/calm").flags == 0);
  }
  stop = true;
  mutator.join();
  INFO("mutator rounds: " << rounds << ", backups flagged: " << flagged);
  REQUIRE(rounds > 0);
  REQUIRE(flagged >= 1);

  // Quiet again: the next backup reads it whole (a flagged file is never
  // taken from the files cache) and matches the source.
  test::WriteBytes(f, content);
  auto b = DoBackup(*r.repo, {src.path()});
  Node n = Find(*r.repo, b, f);
  REQUIRE(n.flags == 0);
  REQUIRE(n.size == kSize);
  REQUIRE(n.file_sha256 == Sha256(content));
  RequireCheckClean(*r.repo);
  RequireTreesConsistent(*r.repo);
}

TEST_CASE("backup lib: directories and files swapped during the walk never break a backup", "[backup]") {
  TestRepo r;
  test::TempDir src;
  std::string a = src.path() + "/a", bfile = src.path() + "/b";
  REQUIRE(::mkdir(a.c_str(), 0755) == 0);
  for (int i = 0; i < 150; ++i) test::WriteBytes(a + "/f" + std::to_string(i), test::RandomBytes(3000, uint64_t(i)));
  REQUIRE(::mkdir((a + "/nested").c_str(), 0755) == 0);
  test::WriteString(a + "/nested/deep", "deep");
  test::WriteBytes(bfile, test::RandomBytes(200000, 99));
  for (int i = 0; i < 20; ++i) test::WriteString(src.path() + "/stable" + std::to_string(i), "s" + std::to_string(i));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> swaps{0};
  std::thread swapper([&] {
    std::string tmp = src.path() + "/swap.tmp";
    while (!stop) {
      // Atomic exchange (the name is always there, its type flips) ...
      if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, bfile.c_str(), RENAME_EXCHANGE) == 0) ++swaps;
      // ... and a three-step swap (the names briefly vanish).
      if (::rename(a.c_str(), tmp.c_str()) == 0) {
        ::rename(bfile.c_str(), a.c_str());
        ::rename(tmp.c_str(), bfile.c_str());
        ++swaps;
      }
    }
  });
  int with_errors = 0, runs = 0;
  while (runs < 15) {
    BackupOptions o;
    o.paths = {src.path()};
    o.host = "testhost";
    o.use_parent = runs % 2 == 0;
    auto b = Backup(*r.repo, o);
    INFO("run " << runs << ": " << (b.ok() ? "ok" : b.status().ToString()));
    REQUIRE(b.ok());
    ++runs;
    if (!b->errors.empty()) {
      ++with_errors;
      REQUIRE(b->manifest.partial);
    }
    // The stable part is always complete.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(FindPath(*r.repo, b->manifest.tree, src.path() + "/stable" + std::to_string(i)).ok());
    }
  }
  stop = true;
  swapper.join();
  INFO("runs " << runs << ", swaps " << swaps << ", runs with errors " << with_errors);
  REQUIRE(swaps > 0);
  RequireTreesConsistent(*r.repo);
  RequireCheckClean(*r.repo);
  // Settled: a clean, complete backup.
  auto b = DoBackup(*r.repo, {src.path()});
  REQUIRE(b.errors.empty());
}

TEST_CASE("backup lib: symlink loops are recorded, not followed, and odd names work", "[backup]") {
  TestRepo r;
  test::TempDir src;
  std::string s = src.path();
  REQUIRE(::symlink("b", (s + "/a").c_str()) == 0);
  REQUIRE(::symlink("a", (s + "/b").c_str()) == 0);
  REQUIRE(::mkdir((s + "/d").c_str(), 0755) == 0);
  REQUIRE(::symlink("..", (s + "/d/up").c_str()) == 0);
  REQUIRE(::symlink(".", (s + "/d/self").c_str()) == 0);
  std::string nl = "new\nline", bad = "\xc3\x28\xa0\xa1";
  test::WriteString(s + "/" + nl, "nl");
  test::WriteString(s + "/" + bad, "bad");
  auto b = DoBackup(*r.repo, {s});
  REQUIRE(b.errors.empty());
  REQUIRE(Find(*r.repo, b, s + "/a").link_target == "b");
  REQUIRE(Find(*r.repo, b, s + "/b").link_target == "a");
  REQUIRE(Find(*r.repo, b, s + "/d/up").type == NodeType::kSymlink);
  REQUIRE(Find(*r.repo, b, s + "/d/up").link_target == "..");
  REQUIRE(Find(*r.repo, b, s + "/d/self").link_target == ".");
  REQUIRE(Find(*r.repo, b, s + "/" + nl).file_sha256 == Sha256(AsBytes("nl")));
  REQUIRE(Find(*r.repo, b, s + "/" + bad).name == bad);
  size_t nodes = 0;
  REQUIRE(WalkTree(*r.repo, Find(*r.repo, b, s).subtree, s, [&](const std::string&, const Node&) {
            ++nodes;
            return Status::Ok();
          }).ok());
  REQUIRE(nodes == 7);  // a, b, d, d/self, d/up, and the two files
}

TEST_CASE("backup lib: errors for paths that cannot be backed up", "[backup]") {
  TestRepo r;
  test::TempDir src;
  test::WriteString(src.path() + "/x", "x");

  SECTION("no path can be read: no snapshot") {
    BackupOptions o;
    o.paths = {src.path() + "/missing"};
    auto b = Backup(*r.repo, o);
    REQUIRE_FALSE(b.ok());
    REQUIRE(b.status().code() == Code::kNotFound);
    auto all = LoadSnapshots(*r.repo);
    REQUIRE(all.ok());
    REQUIRE(all->empty());
  }
  SECTION("one of two paths missing: a partial snapshot of the other") {
    auto b = DoBackup(*r.repo, {src.path() + "/missing", src.path() + "/x"});
    REQUIRE(b.manifest.partial);
    REQUIRE(b.errors.size() == 1);
    REQUIRE(b.manifest.error_samples.size() == 1);
    REQUIRE(b.errors[0].find("does not exist") != std::string::npos);
    REQUIRE(Find(*r.repo, b, src.path() + "/x").file_sha256 == Sha256(AsBytes("x")));
  }
  SECTION("no paths") {
    BackupOptions o;
    REQUIRE(Backup(*r.repo, o).status().code() == Code::kInvalidArgument);
  }
  SECTION("paths are normalised and nested paths folded into their parent") {
    auto b = DoBackup(*r.repo, {src.path() + "/./x", src.path() + "/", src.path() + "/sub/../x"});
    REQUIRE(b.manifest.paths == std::vector<std::string>{src.path()});
  }
}

TEST_CASE("backup lib: a backup path that is not valid UTF-8 round-trips through the manifest", "[backup]") {
  // The manifest is JSON: the path must come back byte for byte, or the
  // next backup finds no parent (and reads everything again).
  TestRepo r;
  test::TempDir work;
  for (const std::string& name : {std::string("surrogate-\xed\xa0\x80"), std::string("latin1-\xe9t\xe9"),
                                  std::string("overlong-\xc0\xaf"), std::string("plain-\xc3\xa9")}) {
    INFO("name " << name);
    std::string root = work.path() + "/" + name;
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    test::WriteString(root + "/f", name);
    auto b1 = DoBackup(*r.repo, {root});
    REQUIRE(b1.manifest.paths == std::vector<std::string>{root});
    auto loaded = FindSnapshot(*r.repo, b1.snapshot_id.Hex());
    REQUIRE(loaded.ok());
    REQUIRE(loaded->manifest.paths == std::vector<std::string>{root});
    auto b2 = DoBackup(*r.repo, {root});
    REQUIRE(b2.manifest.parent == b1.snapshot_id);
    REQUIRE(b2.manifest.summary.bytes_read == 0);
    REQUIRE(Find(*r.repo, b2, root + "/f").file_sha256 == Sha256(AsBytes(name)));
  }
  REQUIRE(IsValidUtf8("plain \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"));
  REQUIRE(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  REQUIRE(IsValidUtf8("\xed\x9f\xbf"));       // U+D7FF
  REQUIRE_FALSE(IsValidUtf8("\xed\xa0\x80"));  // a surrogate
  REQUIRE_FALSE(IsValidUtf8("\xc0\xaf"));      // overlong '/'
  REQUIRE_FALSE(IsValidUtf8("\xe0\x80\xaf"));  // overlong '/'
  REQUIRE_FALSE(IsValidUtf8("\xf0\x80\x80\xaf"));
  REQUIRE_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  REQUIRE_FALSE(IsValidUtf8("\xf5\x80\x80\x80"));
  REQUIRE_FALSE(IsValidUtf8("\xe2\x82"));  // truncated
  REQUIRE_FALSE(IsValidUtf8("\x80"));
}

TEST_CASE("backup lib: NormalizePath and MatchesExclude", "[backup]") {
  REQUIRE(NormalizePath("/a/./b/../c/") == "/a/c");
  REQUIRE(NormalizePath("/") == "/");
  REQUIRE(NormalizePath("/..") == "/");
  REQUIRE(NormalizePath("//a//b") == "/a/b");
  REQUIRE(NormalizePath("rel").front() == '/');
  REQUIRE(MatchesExclude({"*.tmp"}, "/x/y/z.tmp", "z.tmp"));
  REQUIRE_FALSE(MatchesExclude({"*.tmp"}, "/x/y.tmp/z", "z"));
  REQUIRE(MatchesExclude({"/x/y"}, "/x/y", "y"));
  REQUIRE_FALSE(MatchesExclude({"/x/y"}, "/x/yz", "yz"));
  REQUIRE(MatchesExclude({"/x/*/c"}, "/x/b/c", "c"));
  REQUIRE_FALSE(MatchesExclude({""}, "/x", "x"));
}
