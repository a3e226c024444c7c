// Atime tables (snapshot/atimes.h): the codec, and that a night which only
// reads files (moving their atimes) stores no new tree while every snapshot
// still gives back its own atimes through browsing and restore.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/file_util.h"
#include "restore/restorer.h"
#include "snapshot/archiver.h"
#include "snapshot/atimes.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::snapshot;
using custos::test::TestRepo;

namespace {

Node FileNode(const std::string& name, Timestamp atime) {
  Node n;
  n.name = name;
  n.type = NodeType::kFile;
  n.atime = atime;
  return n;
}
Node DirNode(const std::string& name) {
  Node n;
  n.name = name;
  n.type = NodeType::kDir;
  return n;
}

Timestamp AtimeOf(const std::string& path) {
  struct stat st = test::Lstat(path);
  return Timestamp{st.st_atim.tv_sec, uint32_t(st.st_atim.tv_nsec)};
}

BackupResult DoBackup(storage::Repository& repo, const std::string& path) {
  BackupOptions o;
  o.paths = {path};
  o.host = "testhost";
  o.program_version = "test";
  auto r = Backup(repo, o);
  if (!r.ok()) FAIL("backup: " << r.status().ToString());
  return std::move(r).value();
}

Timestamp SnapshotAtime(storage::Repository& repo, const Manifest& m, const std::string& path) {
  auto table = LoadAtimes(repo, m);
  if (!table.ok()) FAIL("atime table: " << table.status().ToString());
  auto n = FindPath(repo, m.tree, path, table->get());
  if (!n.ok()) FAIL("find " << path << ": " << n.status().ToString());
  return n->atime;
}

}  // namespace

TEST_CASE("atime table: encode, decode and apply, in any order of trees", "[atimes]") {
  AtimeCollector c;
  Tree a;
  a.nodes = {FileNode("f1", {1700000000, 5}), FileNode("f2", {-5, 999999999}), DirNode("sub")};
  Tree b;
  b.nodes = {FileNode("x", {0, 0}), FileNode("y", {1, 1})};
  Tree zeros;
  zeros.nodes = {DirNode("d"), FileNode("z", {})};
  std::vector<Timestamp> ta, tb, tz;
  Tree a0 = a, b0 = b, z0 = zeros;
  c.Take(&a, &ta);
  c.Take(&b, &tb);
  c.Take(&zeros, &tz);
  REQUIRE(ta.size() == 2);  // directories are not in the table
  REQUIRE(tz.empty());      // nothing to record: no entry at all
  for (const auto& n : a.nodes) REQUIRE(n.atime == Timestamp{});
  Id ida = Sha256(EncodeTree(a)), idb = Sha256(EncodeTree(b)), idz = Sha256(EncodeTree(zeros));
  c.Add(idb, tb);
  c.Add(ida, ta);
  c.Add(idz, tz);
  c.Add(ida, std::vector<Timestamp>{{7, 7}, {8, 8}});  // the first one wins
  Bytes enc = c.Encode();
  auto table = AtimeTable::Decode(enc);
  REQUIRE(table.ok());
  REQUIRE(table->trees() == 2);
  REQUIRE(table->entries() == 4);
  REQUIRE(table->Apply(ida, &a).ok());
  REQUIRE(table->Apply(idb, &b).ok());
  REQUIRE(table->Apply(idz, &zeros).ok());
  REQUIRE(a.nodes == a0.nodes);
  REQUIRE(b.nodes == b0.nodes);
  REQUIRE(zeros.nodes == z0.nodes);

  SECTION("a tree whose non-directory count differs is corruption") {
    Tree wrong;
    wrong.nodes = {FileNode("only", {})};
    Status st = table->Apply(ida, &wrong);
    REQUIRE(st.code() == Code::kCorruption);
  }
  SECTION("every truncation and a trailing byte are refused") {
    for (size_t n = 0; n < enc.size(); ++n) {
      INFO("length " << n);
      REQUIRE_FALSE(AtimeTable::Decode(ByteView(enc.data(), n)).ok());
    }
    Bytes longer = enc;
    longer.push_back(0);
    REQUIRE_FALSE(AtimeTable::Decode(longer).ok());
  }
  SECTION("out-of-range nanoseconds are refused") {
    AtimeCollector bad;
    bad.Add(ida, std::vector<Timestamp>{{1, 1000000000u}});
    REQUIRE(AtimeTable::Decode(bad.Encode()).status().code() == Code::kCorruption);
  }
  SECTION("an empty collector encodes to nothing") {
    AtimeCollector empty;
    REQUIRE(empty.Encode().empty());
  }
}

TEST_CASE("atime table: a night that only reads files stores no tree, and each snapshot keeps its atimes",
          "[atimes][backup][restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/sub").c_str(), 0755) == 0);
  test::WriteString(src + "/sub/read-me", "content that a scanner reads");
  test::WriteString(src + "/untouched", "left alone");
  // An atime two days old: under relatime the next read moves it.
  timespec old[2] = {{::time(nullptr) - 2 * 86400, 123}, {0, UTIME_OMIT}};
  REQUIRE(::utimensat(AT_FDCWD, (src + "/sub/read-me").c_str(), old, 0) == 0);
  Timestamp before = AtimeOf(src + "/sub/read-me");

  BackupResult b1 = DoBackup(*r.repo, src);
  REQUIRE(b1.manifest.version == 2);
  REQUIRE_FALSE(b1.manifest.atimes.empty());
  REQUIRE(AtimeOf(src + "/sub/read-me") == before);  // the backup read it with O_NOATIME

  // Something reads the file: only its atime moves.
  {
    int fd = ::open((src + "/sub/read-me").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    char buf[64];
    REQUIRE(::read(fd, buf, sizeof buf) > 0);
    ::close(fd);
  }
  Timestamp after = AtimeOf(src + "/sub/read-me");
  INFO("a read did not move the atime: is the file system mounted noatime?");
  REQUIRE(after != before);

  BackupResult b2 = DoBackup(*r.repo, src);
  REQUIRE(b2.manifest.summary.files_unmodified == 2);
  // The backed-up trees are as last night. (Trees above the backup path,
  // /tmp and the like, hold their real metadata and may have changed
  // meanwhile: other tests create directories there.)
  auto subtree = [&](const BackupResult& b, const std::string& path) {
    auto n = FindPath(*r.repo, b.manifest.tree, path);
    REQUIRE(n.ok());
    return n->subtree;
  };
  REQUIRE(subtree(b2, src) == subtree(b1, src));
  REQUIRE(subtree(b2, src + "/sub") == subtree(b1, src + "/sub"));
  size_t ancestors = size_t(std::count(src.begin(), src.end(), '/'));  // "/", "/tmp", "/tmp/custos-test-X"
  REQUIRE(b2.manifest.summary.tree_blobs_added <= ancestors);
  REQUIRE(b2.manifest.summary.data_blobs_added == 0);
  REQUIRE(b2.manifest.summary.atime_blobs_added == 1);
  REQUIRE(b2.manifest.atimes != b1.manifest.atimes);

  REQUIRE(SnapshotAtime(*r.repo, b1.manifest, src + "/sub/read-me") == before);
  REQUIRE(SnapshotAtime(*r.repo, b2.manifest, src + "/sub/read-me") == after);
  Timestamp untouched = AtimeOf(src + "/untouched");
  REQUIRE(SnapshotAtime(*r.repo, b2.manifest, src + "/untouched") == untouched);

  // A third night with nothing read: the table deduplicates too.
  BackupResult b3 = DoBackup(*r.repo, src);
  REQUIRE(b3.manifest.summary.atime_blobs_added == 0);
  REQUIRE(b3.manifest.atimes == b2.manifest.atimes);

  // Each snapshot restores its own atimes.
  for (const auto* b : {&b1, &b2}) {
    std::string target = work.path() + (b == &b1 ? "/t1" : "/t2");
    REQUIRE(::mkdir(target.c_str(), 0755) == 0);
    restore::RestoreOptions o;
    o.target = target;
    o.subpath = src;
    o.verify = false;  // verification reads the file back (with O_NOATIME as root, but not as a user)
    auto res = restore::Restore(*r.repo, b->manifest, o);
    REQUIRE(res.ok());
    REQUIRE(res->ok());
    REQUIRE(AtimeOf(target + "/sub/read-me") == (b == &b1 ? before : after));
  }

  SECTION("a damaged atime table: the restore still brings back every file and reports it") {
    // Point the manifest at a blob that is not an atime table.
    Manifest m = b2.manifest;
    m.atimes = {b2.manifest.tree};
    std::string target = work.path() + "/t3";
    REQUIRE(::mkdir(target.c_str(), 0755) == 0);
    restore::RestoreOptions o;
    o.target = target;
    o.subpath = src;
    auto res = restore::Restore(*r.repo, m, o);
    REQUIRE(res.ok());
    REQUIRE(res->files_restored == 2);
    REQUIRE(res->files_failed == 0);
    REQUIRE(res->failures.size() == 1);
    REQUIRE(res->failures[0].path == "/");
    REQUIRE(res->failures[0].reason.find("access times not restored") != std::string::npos);
    REQUIRE_FALSE(res->ok());
    REQUIRE(test::FileSha256(target + "/sub/read-me") == Sha256(AsBytes("content that a scanner reads")));
  }
}
