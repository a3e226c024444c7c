// Library-level tests of the restorer (restore::Restore): bit-for-bit round
// trips of every file type and metadata item, verification, damaged blobs,
// symlinks planted in the target, hostile tree blobs, the target lock and
// the overwrite policies. CLI-level tests are in tests/cli/restore_cli_test.cc.
// Runs as root (chown, mknod, O_NOATIME).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "restore/restorer.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "tests/restore/restore_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using namespace custos;
using custos::restore::OverwritePolicy;
using custos::restore::RestoreOptions;
using custos::restore::RestoreResult;
using custos::snapshot::Node;
using custos::snapshot::NodeType;
using custos::test::TestRepo;

namespace {

std::string Failures(const RestoreResult& r) {
  std::string s;
  for (const auto& f : r.failures) s += "  " + test::Printable(f.Describe()) + "\n";
  return s;
}

// `what`: a snapshot's manifest (its atime table is used), or a tree ID
// (hand-built trees hold their atimes).
template <typename What>
RestoreResult DoRestore(storage::Repository& repo, const What& what, const std::string& target,
                        const std::string& subpath = "/",
                        const std::function<void(RestoreOptions&)>& tweak = nullptr) {
  RestoreOptions o;
  o.target = target;
  o.subpath = subpath;
  if (tweak) tweak(o);
  auto r = restore::Restore(repo, what, o);
  if (!r.ok()) FAIL("restore: " << r.status().ToString());
  return std::move(r).value();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool HasFailure(const RestoreResult& r, const std::string& path, const std::string& why) {
  for (const auto& f : r.failures) {
    if (f.path == path && f.reason.find(why) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

// ----------------------------------------------------------------------------
// Round trip

TEST_CASE("restore lib: a restored backup reproduces every file type and metadata item bit for bit",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  auto t = test::MakeAllTypesTree(work.path() + "/src");
  const std::string& root = t.root;
  // More of what a restore must get right: a newline in a name, a directory
  // with a non-UTF-8 name, nesting, a file whose zeros are data (not holes)
  // and that holds the same 8 MiB chunk twice, a file that is one hole.
  test::WriteString(root + "/new\nline", "a name with a newline");
  std::string bad_dir = root + "/dir-\xff\xfe";
  REQUIRE(::mkdir(bad_dir.c_str(), 0750) == 0);
  test::WriteString(bad_dir + "/inside-\x80", "in a non-UTF-8 directory", 0640);
  REQUIRE(::mkdir((root + "/deep").c_str(), 0711) == 0);
  REQUIRE(::mkdir((root + "/deep/er").c_str(), 0700) == 0);
  test::WriteBytes(root + "/deep/er/leaf", test::FastRandom(70000, 5), 0400);
  REQUIRE(::chmod((root + "/deep/er/leaf").c_str(), 0400) == 0);
  test::WriteBytes(root + "/zeros", Bytes((16u << 20) + 4096, 0));
  {
    Fd fd(::open((root + "/allhole").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), 3 << 20) == 0);
  }
  // Extended attributes on a symlink and on special files (trusted.*: user.*
  // is not allowed there); setting them keeps atime and mtime.
  test::SetXattr(root + "/symlink", "trusted.custos", std::string("on a\0link", 9));
  test::SetXattr(root + "/fifo", "trusted.custos", "on a fifo");
  test::SetXattr(root + "/chr", "trusted.custos", "on a device");
  test::SetTimes(root + "/deep/er", timespec{1111111111, 111}, timespec{1222222222, 222});
  test::SetTimes(root + "/deep", timespec{1111111111, 333}, timespec{1222222222, 444});
  test::TreeInfo src = test::ScanTree(root);
  REQUIRE(test::Lstat(root + "/sparse").st_blocks * 512 < off_t(test::kSparseSize));

  auto b = test::BackupLib(*r.repo, {root});
  REQUIRE(test::FindNode(*r.repo, b.manifest.tree, root + "/big").content.size() > 1);
  REQUIRE(test::FindNode(*r.repo, b.manifest.tree, root + "/zeros").content.size() > 2);

  std::string target = work.path() + "/restored";
  RestoreResult res = DoRestore(*r.repo, b.manifest, target, root);
  INFO("failures:\n" << Failures(res));
  REQUIRE(res.ok());
  REQUIRE(res.files_failed == 0);

  test::TreeInfo dst = test::ScanTree(target);
  test::RequireSameTree(src, dst);
  REQUIRE(test::Temporaries(dst).empty());

  // The counts: one file per inode, one hard link, six specials (the socket
  // is counted but made by whoever listens on it), every directory.
  std::set<ino_t> inodes;
  uint64_t dirs = 0, bytes = 0;
  for (const auto& [rel, e] : src) {
    if (S_ISREG(e.st.st_mode) && inodes.insert(e.st.st_ino).second) bytes += uint64_t(e.st.st_size);
    if (S_ISDIR(e.st.st_mode) && !rel.empty()) ++dirs;
  }
  REQUIRE(res.files_restored == inodes.size());
  REQUIRE(res.files_verified == inodes.size());
  REQUIRE(res.files_skipped == 0);
  REQUIRE(res.links == 1);
  REQUIRE(res.specials == 6);
  REQUIRE(res.dirs == dirs);
  REQUIRE(res.bytes_written == bytes);

  // The unusual values, spelled out.
  REQUIRE((dst["setuid"].st.st_mode & 07777) == 04755);
  REQUIRE(dst["setuid"].st.st_uid == 65534u);
  REQUIRE(dst["setuid"].st.st_gid == 65534u);
  REQUIRE((dst["setgid_dir"].st.st_mode & 07777) == 02775);
  REQUIRE((dst["sticky"].st.st_mode & 07777) == 01777);
  REQUIRE(dst["unknown_owner"].st.st_uid == 123456u);
  REQUIRE(dst["unknown_owner"].st.st_gid == 654321u);
  REQUIRE(dst["hard1"].st.st_ino == dst["hard2"].st.st_ino);
  REQUIRE(dst["hard1"].st.st_nlink == 2);
  REQUIRE(S_ISFIFO(dst["fifo"].st.st_mode));
  REQUIRE(S_ISCHR(dst["chr"].st.st_mode));
  REQUIRE(dst["chr"].st.st_rdev == makedev(1, 3));
  REQUIRE(S_ISBLK(dst["blk"].st.st_mode));
  REQUIRE(dst["blk"].st.st_rdev == makedev(7, 200));
  REQUIRE(dst["symlink"].link_target == "file");
  REQUIRE(dst["dangling"].link_target == "does/not/exist");
  REQUIRE(dst.count(t.bad_name));
  REQUIRE(dst.count("new\nline"));
  REQUIRE(dst.count("dir-\xff\xfe/inside-\x80"));
  REQUIRE(dst["xattrs"].xattrs == t.Get("xattrs").xattrs);
  REQUIRE(dst["acl"].xattrs == t.Get("acl").xattrs);
  REQUIRE(dst["acl_dir"].xattrs == t.Get("acl_dir").xattrs);
  REQUIRE(dst["symlink"].xattrs == decltype(dst["symlink"].xattrs){{"trusted.custos", std::string("on a\0link", 9)}});
  REQUIRE(dst["fifo"].xattrs == decltype(dst["fifo"].xattrs){{"trusted.custos", "on a fifo"}});
  REQUIRE(dst["chr"].xattrs == decltype(dst["chr"].xattrs){{"trusted.custos", "on a device"}});
  REQUIRE(dst["sparse"].st.st_blocks * 512 < 1 << 20);
  REQUIRE(dst["allhole"].st.st_blocks == 0);
  REQUIRE(dst["zeros"].st.st_blocks * 512 >= (16 << 20));
  for (const auto& e : t.entries) {
    INFO("fixture entry " << test::Printable(e.rel));
    if (e.rel == "sock") {
      REQUIRE(dst.count("sock") == 0);  // made by whoever listens on it, not by a restore
      continue;
    }
    REQUIRE(test::StNs(dst[e.rel].st.st_mtim) == e.mtime_ns);
    if (e.check_atime) REQUIRE(test::StNs(dst[e.rel].st.st_atim) == e.atime_ns);
    if (!(e.sha256 == Id())) REQUIRE(dst[e.rel].sha256 == e.sha256);
  }
}

// ----------------------------------------------------------------------------
// Verification

TEST_CASE("restore lib: verification reads every file back by default and catches a wrong recorded SHA-256",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  for (int i = 0; i < 5; ++i) test::WriteBytes(src + "/f" + std::to_string(i), test::FastRandom(50000 + i, 20 + i));
  test::WriteString(src + "/victim", "content the snapshot lies about");
  auto b = test::BackupLib(*r.repo, {src});

  SECTION("on by default: every restored file is verified") {
    RestoreResult res = DoRestore(*r.repo, b.manifest, work.path() + "/t", src);
    REQUIRE(res.ok());
    REQUIRE(res.files_restored == 6);
    REQUIRE(res.files_verified == 6);
  }
  SECTION("off: nothing is verified") {
    RestoreResult res =
        DoRestore(*r.repo, b.manifest, work.path() + "/t", src, [](RestoreOptions& o) { o.verify = false; });
    REQUIRE(res.ok());
    REQUIRE(res.files_restored == 6);
    REQUIRE(res.files_verified == 0);
    REQUIRE(test::HashNoAtime(work.path() + "/t/victim") == test::FileSha256(src + "/victim"));
  }
  SECTION("a file whose content does not hash to the recorded SHA-256 fails and is not left under its name") {
    // The source directory's listing, with one recorded hash altered, as
    // the root of a new snapshot.
    Node dir = test::FindNode(*r.repo, b.manifest.tree, src);
    auto tree = snapshot::LoadTree(*r.repo, dir.subtree);
    REQUIRE(tree.ok());
    for (auto& n : tree->nodes) {
      if (n.name == "victim") n.file_sha256.bytes[0] ^= 1;
    }
    Id root = test::AddTree(*r.repo, *tree);
    test::SaveCraftedSnapshot(*r.repo, root);
    std::string target = work.path() + "/t";
    RestoreResult res = DoRestore(*r.repo, root, target);
    INFO("failures:\n" << Failures(res));
    REQUIRE(res.files_failed == 1);
    REQUIRE(res.files_restored == 5);
    REQUIRE(res.files_verified == 5);
    REQUIRE(HasFailure(res, "/victim", "verification failed"));
    REQUIRE_FALSE(Exists(target + "/victim"));
    REQUIRE(test::Temporaries(test::ScanTree(target)).empty());
    for (int i = 0; i < 5; ++i) {
      std::string f = "/f" + std::to_string(i);
      REQUIRE(test::HashNoAtime(target + f) == test::FileSha256(src + f));
    }
    // Without verification the same restore writes it (the chunks are intact).
    RestoreResult off = DoRestore(*r.repo, root, work.path() + "/t2", "/", [](RestoreOptions& o) { o.verify = false; });
    REQUIRE(off.ok());
    REQUIRE(off.files_restored == 6);
    REQUIRE(test::HashNoAtime(work.path() + "/t2/victim") == test::FileSha256(src + "/victim"));
  }
}

// ----------------------------------------------------------------------------
// Damaged repository

TEST_CASE("restore lib: a damaged data blob fails exactly the files that share it and restores the rest",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/sub").c_str(), 0755) == 0);
  Bytes shared = test::FastRandom(1500000, 1);
  test::WriteBytes(src + "/dupA", shared);
  test::WriteBytes(src + "/sub/dupB", shared);
  test::WriteBytes(src + "/sub/dupC", shared);
  for (int i = 0; i < 12; ++i) test::WriteBytes(src + "/o" + std::to_string(i), test::FastRandom(150000, 100 + i));
  test::WriteBytes(src + "/big", test::FastRandom(10u << 20, 7));
  auto b = test::BackupLib(*r.repo, {src});
  test::TreeInfo source = test::ScanTree(src);

  Id chunk = test::FindNode(*r.repo, b.manifest.tree, src + "/dupA").content[0].id;
  // Every file that holds the chunk, by walking the snapshot.
  std::set<std::string> affected;
  REQUIRE(snapshot::WalkTree(*r.repo, b.manifest.tree, "/", [&](const std::string& p, const Node& n) {
            for (const auto& c : n.content) {
              if (c.id == chunk) affected.insert(p);
            }
            return Status::Ok();
          }).ok());
  REQUIRE(affected == std::set<std::string>{src + "/dupA", src + "/sub/dupB", src + "/sub/dupC"});
  test::DamageBlob(*r.repo, r.path, chunk);

  std::string target = work.path() + "/t";
  for (int round = 0; round < 2; ++round) {  // the second run finds the good files in place
    INFO("round " << round);
    RestoreResult res = DoRestore(*r.repo, b.manifest, target, src);
    INFO("failures:\n" << Failures(res));
    REQUIRE_FALSE(res.ok());
    REQUIRE(res.files_failed == affected.size());
    REQUIRE(res.failures.size() == affected.size());
    for (const auto& p : affected) {
      REQUIRE(HasFailure(res, p, "blob " + chunk.Short()));
      REQUIRE_FALSE(Exists(target + p.substr(src.size())));
    }
    REQUIRE(res.files_restored + res.files_skipped == 13);
    REQUIRE(res.files_skipped == (round == 0 ? 0u : 13u));
    test::TreeInfo dst = test::ScanTree(target);
    REQUIRE(test::Temporaries(dst).empty());
    for (const auto& [rel, e] : source) {
      INFO(rel);
      if (affected.count(src + "/" + rel)) continue;
      REQUIRE(dst.count(rel));
      if (S_ISREG(e.st.st_mode)) REQUIRE(dst[rel].sha256 == e.sha256);
    }
  }
}

// ----------------------------------------------------------------------------
// Never writing outside the target

TEST_CASE("restore lib: a symlink planted where the snapshot has a directory is refused, never followed",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src", outside = work.path() + "/outside";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/dir").c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/dir/sub").c_str(), 0755) == 0);
  test::WriteString(src + "/dir/f1", "one");
  test::WriteString(src + "/dir/sub/f2", "two");
  test::WriteString(src + "/top", "top");
  auto b = test::BackupLib(*r.repo, {src});
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  REQUIRE(::mkdir((outside + "/sub").c_str(), 0755) == 0);  // what "dir/sub" would resolve to

  std::string target = work.path() + "/t";
  REQUIRE(::mkdir(target.c_str(), 0755) == 0);
  REQUIRE(::symlink(outside.c_str(), (target + "/dir").c_str()) == 0);
  for (auto policy : {OverwritePolicy::kIfChanged, OverwritePolicy::kAlways, OverwritePolicy::kNever}) {
    INFO("policy " << int(policy));
    RestoreResult res = DoRestore(*r.repo, b.manifest, target, src, [&](RestoreOptions& o) { o.overwrite = policy; });
    INFO("failures:\n" << Failures(res));
    REQUIRE_FALSE(res.ok());
    REQUIRE(HasFailure(res, src + "/dir", "refusing to follow"));
    REQUIRE(test::ScanTree(outside).size() == 2);  // itself and sub/, nothing added
    REQUIRE(test::Lstat(outside).st_mode == (S_IFDIR | 0755));
    REQUIRE(S_ISLNK(test::Lstat(target + "/dir").st_mode));
    REQUIRE(test::HashNoAtime(target + "/top") == Sha256(AsBytes("top")));
  }
}

TEST_CASE("restore lib: a symlink planted where the snapshot has a file is replaced and its target left alone",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src", outside = work.path() + "/outside";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/victim", "restored content");
  test::WriteString(src + "/hard1", "linked");
  REQUIRE(::link((src + "/hard1").c_str(), (src + "/hard2").c_str()) == 0);
  REQUIRE(::symlink("victim", (src + "/link").c_str()) == 0);
  REQUIRE(::mkfifo((src + "/fifo").c_str(), 0600) == 0);
  test::WriteString(src + "/empty", "");
  test::TreeInfo source = test::ScanTree(src);  // before the backup reads the link (and moves its atime)
  auto b = test::BackupLib(*r.repo, {src});

  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  const std::vector<std::string> names = {"victim", "hard2", "link", "fifo", "empty"};
  for (const auto& n : names) test::WriteString(outside + "/" + n, "precious " + n, 0600);
  test::TreeInfo before = test::ScanTree(outside);

  for (auto policy : {OverwritePolicy::kIfChanged, OverwritePolicy::kAlways, OverwritePolicy::kNever}) {
    INFO("policy " << int(policy));
    test::TempDir tdir;
    std::string target = tdir.path();
    for (const auto& n : names) REQUIRE(::symlink((outside + "/" + n).c_str(), (target + "/" + n).c_str()) == 0);
    RestoreResult res = DoRestore(*r.repo, b.manifest, target, src, [&](RestoreOptions& o) { o.overwrite = policy; });
    INFO("failures:\n" << Failures(res));
    REQUIRE(res.ok());
    // Whatever the policy, nothing outside changed (content, mode, times).
    test::RequireSameTree(before, test::ScanTree(outside));
    test::TreeInfo dst = test::ScanTree(target);
    REQUIRE(test::Temporaries(dst).empty());
    if (policy == OverwritePolicy::kNever) {
      // Existing names are kept as they are: still the planted symlinks.
      for (const auto& n : names) {
        INFO(n);
        REQUIRE(S_ISLNK(dst[n].st.st_mode));
      }
      continue;
    }
    test::RequireSameTree(source, dst, test::CompareOptions{false});
  }
}

TEST_CASE("restore lib: a later restore never writes through a symlink that an earlier restore made",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src", outside = work.path() + "/outside";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  REQUIRE(::mkdir((outside + "/rel").c_str(), 0755) == 0);
  // Snapshot A: an absolute and a relative symlink that point outside the target.
  REQUIRE(::symlink(outside.c_str(), (src + "/abs").c_str()) == 0);
  REQUIRE(::symlink("../../outside/rel", (src + "/rel").c_str()) == 0);
  REQUIRE(::symlink("/etc/passwd", (src + "/passwd").c_str()) == 0);
  test::WriteString(src + "/plain", "plain");
  auto a = test::BackupLib(*r.repo, {src});
  // Snapshot B: the same names are now a directory with a file, and a file.
  REQUIRE(::unlink((src + "/abs").c_str()) == 0);
  REQUIRE(::mkdir((src + "/abs").c_str(), 0755) == 0);
  test::WriteString(src + "/abs/x", "would land outside");
  REQUIRE(::unlink((src + "/rel").c_str()) == 0);
  REQUIRE(::mkdir((src + "/rel").c_str(), 0755) == 0);
  test::WriteString(src + "/rel/y", "would land outside too");
  REQUIRE(::unlink((src + "/passwd").c_str()) == 0);
  test::WriteString(src + "/passwd", "not the system's passwd");
  auto b = test::BackupLib(*r.repo, {src});
  Id passwd_sha = test::HashNoAtime("/etc/passwd");
  struct stat passwd_st = test::Lstat("/etc/passwd");

  test::TempDir tdir;
  std::string target = tdir.path() + "/t";
  // A: the symlinks are restored as symlinks, targets exact, none followed.
  RestoreResult ra = DoRestore(*r.repo, a.manifest, target, src);
  INFO("failures:\n" << Failures(ra));
  REQUIRE(ra.ok());
  test::TreeInfo dst = test::ScanTree(target);
  REQUIRE(S_ISLNK(dst["abs"].st.st_mode));
  REQUIRE(dst["abs"].link_target == outside);
  REQUIRE(dst["rel"].link_target == "../../outside/rel");
  REQUIRE(dst["passwd"].link_target == "/etc/passwd");
  // Again with "always": the symlinks are replaced, not written through.
  REQUIRE(DoRestore(*r.repo, a.manifest, target, src, [](RestoreOptions& o) {
            o.overwrite = OverwritePolicy::kAlways;
          }).ok());
  // B into the same target: the directories are refused (the symlinks are
  // not followed), the file replaces the symlink instead of writing through it.
  RestoreResult rb = DoRestore(*r.repo, b.manifest, target, src);
  INFO("failures:\n" << Failures(rb));
  REQUIRE(HasFailure(rb, src + "/abs", "refusing to follow"));
  REQUIRE(HasFailure(rb, src + "/rel", "refusing to follow"));
  REQUIRE(rb.failures.size() == 2);
  REQUIRE(test::ScanTree(outside).size() == 2);  // outside/ and outside/rel/, nothing new
  REQUIRE(test::HashNoAtime("/etc/passwd") == passwd_sha);
  REQUIRE(test::Lstat("/etc/passwd").st_ino == passwd_st.st_ino);
  REQUIRE(test::StNs(test::Lstat("/etc/passwd").st_mtim) == test::StNs(passwd_st.st_mtim));
  dst = test::ScanTree(target);
  REQUIRE(S_ISREG(dst["passwd"].st.st_mode));
  REQUIRE(dst["passwd"].sha256 == Sha256(AsBytes("not the system's passwd")));
  REQUIRE(S_ISLNK(dst["abs"].st.st_mode));
}

TEST_CASE("restore lib: tree blobs with unsafe names are rejected and nothing is written outside the target",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/payload", "escaped");
  auto b = test::BackupLib(*r.repo, {src});
  Node file = test::FindNode(*r.repo, b.manifest.tree, src + "/payload");
  Node dir = test::FindNode(*r.repo, b.manifest.tree, src);  // a directory holding "payload"

  for (const std::string& bad : {std::string(".."), std::string("."), std::string("a/b"), std::string("../escaped"),
                                 std::string("x\0y", 3), std::string()}) {
    INFO("name '" << test::Printable(bad) << "'");
    for (bool as_dir : {false, true}) {
      INFO((as_dir ? "as a directory" : "as a file"));
      // /ok, and /sub whose listing holds the bad name.
      Node bad_node = as_dir ? dir : file;
      bad_node.name = bad;
      snapshot::Tree sub;
      sub.nodes = {bad_node};
      Bytes sub_blob = snapshot::EncodeTree(sub);
      auto decoded = snapshot::DecodeTree(sub_blob);
      REQUIRE_FALSE(decoded.ok());
      REQUIRE(decoded.status().code() == Code::kCorruption);
      Node sub_node = dir;
      sub_node.name = "sub";
      sub_node.subtree = test::AddTree(*r.repo, sub);
      Node ok = file;
      ok.name = "ok";
      snapshot::Tree root_tree;
      root_tree.nodes = {ok, sub_node};
      Id root = test::AddTree(*r.repo, root_tree);

      test::TempDir scratch;  // target is scratch/a/t: ".." twice still lands in scratch
      std::string target = scratch.path() + "/a/t";
      RestoreResult res = DoRestore(*r.repo, root, target);
      INFO("failures:\n" << Failures(res));
      REQUIRE(res.failures.size() == 1);
      REQUIRE(HasFailure(res, "/sub", "unsafe name"));
      REQUIRE(test::HashNoAtime(target + "/ok") == Sha256(AsBytes("escaped")));
      test::TreeInfo all = test::ScanTree(scratch.path());
      std::set<std::string> names;
      for (const auto& [rel, e] : all) names.insert(rel);
      REQUIRE(names == std::set<std::string>{"", "a", "a/t", "a/t/ok", "a/t/sub"});

      // The bad listing at the root: nothing at all is restored.
      Id bad_root = test::AddTree(*r.repo, sub);
      test::TempDir scratch2;
      RestoreResult res2 = DoRestore(*r.repo, bad_root, scratch2.path() + "/a/t");
      REQUIRE(res2.failures.size() == 1);
      REQUIRE(HasFailure(res2, "/", "unsafe name"));
      REQUIRE(test::ScanTree(scratch2.path()).size() == 3);  // "", a, a/t
    }
  }
}

// ----------------------------------------------------------------------------
// Target lock, overwrite policies, hard links in an existing target

TEST_CASE("restore lib: a target held by another restore is refused as busy and left untouched", "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src", target = work.path() + "/t";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/f", "f");
  auto b = test::BackupLib(*r.repo, {src});
  REQUIRE(::mkdir(target.c_str(), 0755) == 0);
  {
    Fd held(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(held.valid());
    REQUIRE(::flock(held.get(), LOCK_EX | LOCK_NB) == 0);
    RestoreOptions o;
    o.target = target;
    o.subpath = src;
    auto res = restore::Restore(*r.repo, b.manifest, o);
    REQUIRE_FALSE(res.ok());
    REQUIRE(res.status().code() == Code::kBusy);
    REQUIRE(res.status().message().find("in use by another restore") != std::string::npos);
    REQUIRE(test::ScanTree(target).size() == 1);
  }
  REQUIRE(DoRestore(*r.repo, b.manifest, target, src).files_restored == 1);
}

TEST_CASE("restore lib: overwrite policies never, if-changed and always for files that already exist",
          "[restore]") {
  TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/changed", "snapshot version");
  test::WriteString(src + "/same", "identical in both");
  test::WriteString(src + "/chmodded", "content right, mode wrong");
  test::WriteString(src + "/missing", "not in the target");
  test::WriteString(src + "/hard1", "one inode, two names");
  REQUIRE(::link((src + "/hard1").c_str(), (src + "/hard2").c_str()) == 0);
  test::SetTimes(src + "/same", timespec{1000000000, 1}, timespec{1200000000, 2});
  test::SetTimes(src + "/chmodded", timespec{1000000000, 3}, timespec{1200000000, 4});
  test::TreeInfo source = test::ScanTree(src);
  auto b = test::BackupLib(*r.repo, {src});

  // A target restored once, then changed: "changed" has other content of the
  // same size, "chmodded" another mode, "missing" is gone, "extra" is new,
  // hard1 and hard2 are two separate local files.
  auto prepare = [&](const std::string& target) {
    REQUIRE(DoRestore(*r.repo, b.manifest, target, src).ok());
    test::WriteString(target + "/changed", "SNAPSHOT VERSION");
    REQUIRE(::chmod((target + "/chmodded").c_str(), 0600) == 0);
    REQUIRE(::unlink((target + "/missing").c_str()) == 0);
    test::WriteString(target + "/extra", "local file");
    REQUIRE(::unlink((target + "/hard2").c_str()) == 0);
    test::WriteString(target + "/hard2", "local, unrelated");
    return test::ScanTree(target);
  };

  SECTION("never: existing names are kept whatever they hold, missing ones restored") {
    test::TempDir t;
    test::TreeInfo before = prepare(t.path());
    RestoreResult res = DoRestore(*r.repo, b.manifest, t.path(), src,
                                  [](RestoreOptions& o) { o.overwrite = OverwritePolicy::kNever; });
    INFO("failures:\n" << Failures(res));
    REQUIRE(res.ok());
    test::TreeInfo after = test::ScanTree(t.path());
    REQUIRE(res.files_restored == 1);  // "missing"
    REQUIRE(after["missing"].sha256 == source["missing"].sha256);
    for (const auto& n : {"changed", "same", "chmodded", "extra", "hard1", "hard2"}) {
      INFO(n);
      REQUIRE(after[n].sha256 == before[n].sha256);
      REQUIRE(after[n].st.st_ino == before[n].st.st_ino);
      REQUIRE(after[n].st.st_mode == before[n].st.st_mode);
    }
  }
  SECTION("if-changed: only files whose content differs are rewritten, metadata is put right") {
    test::TempDir t;
    test::TreeInfo before = prepare(t.path());
    RestoreResult res = DoRestore(*r.repo, b.manifest, t.path(), src);
    INFO("failures:\n" << Failures(res));
    REQUIRE(res.ok());
    test::TreeInfo after = test::ScanTree(t.path());
    REQUIRE(after["same"].st.st_ino == before["same"].st.st_ino);          // skipped
    REQUIRE(after["chmodded"].st.st_ino == before["chmodded"].st.st_ino);  // skipped
    REQUIRE(after["changed"].st.st_ino != before["changed"].st.st_ino);    // rewritten
    REQUIRE(after["extra"].sha256 == before["extra"].sha256);               // not in the snapshot: untouched
    after.erase("extra");
    test::RequireSameTree(source, after, test::CompareOptions{false});
    REQUIRE(res.files_skipped >= 2);
  }
  SECTION("always: every file is rewritten") {
    test::TempDir t;
    test::TreeInfo before = prepare(t.path());
    RestoreResult res = DoRestore(*r.repo, b.manifest, t.path(), src,
                                  [](RestoreOptions& o) { o.overwrite = OverwritePolicy::kAlways; });
    INFO("failures:\n" << Failures(res));
    REQUIRE(res.ok());
    REQUIRE(res.files_skipped == 0);
    test::TreeInfo after = test::ScanTree(t.path());
    for (const auto& n : {"changed", "same", "chmodded", "hard1"}) REQUIRE(after[n].st.st_ino != before[n].st.st_ino);
    after.erase("extra");
    test::RequireSameTree(source, after, test::CompareOptions{false});
  }
}
