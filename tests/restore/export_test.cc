// End-to-end tests of `custos export` and `custos dump`: a tree with every
// file type and metadata item is backed up, exported as tar, pax and zip,
// read back with GNU tar, bsdtar and unzip into fresh directories and
// compared with the source (content byte for byte, modes, owners, mtimes,
// symlink targets, hard-link identity, xattrs and ACLs); names with byte
// 0xff and a newline; dump of a file and of a directory; a damaged blob
// (exit 3, the file named, no archive left); bad paths and formats; bounded
// memory for a large file and no leftovers when killed mid-way. Runs as
// root (chown, mknod, unzip -X).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "tests/cli/cli_fixture.h"
#include "tests/restore/restore_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using custos::test::RunResult;

namespace {

// The readers the tests use. A missing one fails the test: the archives
// must be shown to work with the real tools.
void RequireTools() {
  for (const auto& [tool, package] : std::vector<std::pair<std::string, std::string>>{
           {"tar", "tar"}, {"bsdtar", "libarchive-tools"}, {"unzip", "unzip"}}) {
    INFO(tool << " is not installed: run scripts/install-deps.sh (Debian package " << package << ")");
    REQUIRE(test::Run("command -v " + tool).exit_code == 0);
  }
}

// The readers, as run by the tests. GNU tar runs under the C locale (names
// are bytes to it); bsdtar under C.UTF-8, because under C it refuses UTF-8
// names it cannot convert to ASCII (doc/cli.md, "dump and export").
void GnuTarExtract(const std::string& archive, const std::string& dir) {
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  REQUIRE_EXIT(test::Run("LC_ALL=C tar --xattrs --xattrs-include='*' -xpf " + Q(archive) + " -C " + Q(dir)), 0);
}
void BsdTarExtract(const std::string& archive, const std::string& dir) {
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  REQUIRE_EXIT(test::Run("LC_ALL=C.UTF-8 bsdtar -xpf " + Q(archive) + " -C " + Q(dir)), 0);
}
void UnzipExtract(const std::string& archive, const std::string& dir) {
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  // -X: uid/gid; -K: setuid/setgid bits.
  REQUIRE_EXIT(test::Run("cd " + Q(dir) + " && unzip -q -X -K " + Q(archive)), 0);
}

std::string Slurp(const std::string& path) {
  auto b = ReadFile(path);
  return b.ok() ? std::string(b->begin(), b->end()) : std::string();
}

// `custos --repo REPO ARGS | CONSUMER`, run by the shell: the consumer's
// exit code, and custos's in `custos_rc`.
RunResult Piped(const std::string& repo, const std::string& args, const std::string& consumer, int* custos_rc,
                const std::string& work) {
  std::string rc_file = work + "/custos-rc";
  RunResult r = test::Run("{ env -u CUSTOS_PASSWORD_FILE " + kEnv + " " + CUSTOS_BINARY + " --repo " + Q(repo) + " " +
                          args + "; echo $? > " + Q(rc_file) + "; } | " + consumer);
  *custos_rc = std::stoi(Slurp(rc_file));
  return r;
}

void Own(const std::string& path, uid_t uid, gid_t gid) {
  REQUIRE(::lchown(path.c_str(), uid, gid) == 0);
}
void Chmod(const std::string& path, mode_t mode) {
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

constexpr size_t kBigSize = 3u << 20;  // random: several chunks of ~1 MiB
constexpr uint64_t kSparseSize = 6u << 20;

// Builds the export source tree below `root` (created):
//   file (0640, nobody:nogroup), big (3 MiB random), empty, exec (0755),
//   unknown_owner (uid/gid without names), sparse (6 MiB, 4 KiB of data),
//   dir/ (0750) with inner and sub/ (0700) with deep, setgid_dir/ (02755),
//   symlink -> file, dangling -> does/not/exist, hard1 = hard2 =
//   dir/hard3 (one inode), fifo (0640), chr (1,3), sock, xattrs (user.*,
//   binary values), acl (access ACL), acl_dir/ (default ACL, empty).
// Every entry gets odd nanosecond atimes and mtimes.
void MakeExportTree(const std::string& root) {
  auto p = [&](const std::string& rel) { return root + "/" + rel; };
  REQUIRE(::mkdir(root.c_str(), 0755) == 0);
  test::WriteBytes(p("file"), test::FastRandom(100000, 1), 0640);
  Own(p("file"), 65534, 65534);
  Chmod(p("file"), 0640);
  test::WriteBytes(p("big"), test::FastRandom(kBigSize, 2));
  test::WriteBytes(p("empty"), ByteView());
  test::WriteString(p("exec"), "#!/bin/sh\necho hi\n", 0755);
  Chmod(p("exec"), 0755);
  test::WriteString(p("unknown_owner"), "whose?");
  Own(p("unknown_owner"), 123456, 654321);
  {
    Fd fd(::open(p("sparse").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), off_t(kSparseSize)) == 0);
    Bytes data = test::FastRandom(4096, 3);
    REQUIRE(::pwrite(fd.get(), data.data(), data.size(), off_t(kSparseSize / 2)) == ssize_t(data.size()));
  }
  REQUIRE(::mkdir(p("dir").c_str(), 0750) == 0);
  Chmod(p("dir"), 0750);
  test::WriteString(p("dir/inner"), "inner");
  REQUIRE(::mkdir(p("dir/sub").c_str(), 0700) == 0);
  test::WriteString(p("dir/sub/deep"), "deep", 0600);
  REQUIRE(::mkdir(p("setgid_dir").c_str(), 0755) == 0);
  Own(p("setgid_dir"), 0, 65534);
  Chmod(p("setgid_dir"), 02755);
  test::WriteString(p("setgid_dir/f"), "in a setgid directory");
  REQUIRE(::symlink("file", p("symlink").c_str()) == 0);
  REQUIRE(::symlink("does/not/exist", p("dangling").c_str()) == 0);
  test::WriteString(p("hard1"), "three names, one inode");
  REQUIRE(::link(p("hard1").c_str(), p("hard2").c_str()) == 0);
  REQUIRE(::link(p("hard1").c_str(), p("dir/hard3").c_str()) == 0);
  REQUIRE(::mkfifo(p("fifo").c_str(), 0640) == 0);
  Chmod(p("fifo"), 0640);
  REQUIRE(::mknod(p("chr").c_str(), S_IFCHR | 0620, makedev(1, 3)) == 0);
  Chmod(p("chr"), 0620);
  REQUIRE(test::MakeSocketFile(p("sock")) == 0);
  test::WriteString(p("xattrs"), "has xattrs");
  test::SetXattr(p("xattrs"), "user.binary", std::string("a\0b\xff\x01\n", 6));
  test::SetXattr(p("xattrs"), "user.custos", "value");
  // POSIX ACLs as setfacl writes them (user:nobody:r--, group:nogroup:rw-).
  test::WriteString(p("acl"), "has an ACL");
  test::SetXattr(p("acl"), "system.posix_acl_access",
                 test::AclXattr({{test::kAclUserObj, 6, test::kAclUndefinedId},
                                 {test::kAclUser, 4, 65534},
                                 {test::kAclGroupObj, 4, test::kAclUndefinedId},
                                 {test::kAclGroup, 6, 65534},
                                 {test::kAclMask, 6, test::kAclUndefinedId},
                                 {test::kAclOther, 4, test::kAclUndefinedId}}));
  // Empty: files created inside would inherit the default ACL on extraction.
  REQUIRE(::mkdir(p("acl_dir").c_str(), 0755) == 0);
  test::SetXattr(p("acl_dir"), "system.posix_acl_default",
                 test::AclXattr({{test::kAclUserObj, 7, test::kAclUndefinedId},
                                 {test::kAclUser, 5, 65534},
                                 {test::kAclGroupObj, 5, test::kAclUndefinedId},
                                 {test::kAclMask, 5, test::kAclUndefinedId},
                                 {test::kAclOther, 5, test::kAclUndefinedId}}));
  // Times last, children before their directories.
  int i = 0;
  for (const char* rel : {"file", "big", "empty", "exec", "unknown_owner", "sparse", "dir/inner", "dir/sub/deep",
                          "setgid_dir/f", "symlink", "dangling", "hard1", "fifo", "chr", "sock", "xattrs", "acl",
                          "acl_dir", "dir/sub", "dir", "setgid_dir"}) {
    ++i;
    test::SetTimes(p(rel), timespec{1000000000 + i * 1000, 123456789 + i},
                   timespec{1500000000 + i * 1000, 987654321 - i});
  }
}

// What a format and a reader keep; everything else is compared always:
// the set of names, types, owners, permission bits (setgid included),
// mtime seconds, file sizes and SHA-256, symlink targets, device numbers.
struct Expect {
  bool ns_mtime = false;    // mtime to the nanosecond
  bool atime = false;       // atime (files) to the nanosecond
  bool xattrs = false;      // user.* xattrs
  bool acls = false;        // the system.posix_acl_* xattrs
  bool hard_links = true;   // the names of one inode share one after extraction (else: copies)
  bool specials = true;     // fifos and devices
};

void RequireExtracted(const test::TreeInfo& src, const test::TreeInfo& dst, const Expect& x) {
  std::map<ino_t, std::string> first_of_inode;  // source inode -> first name
  for (const auto& [rel, s] : src) {
    if (rel.empty()) continue;  // the exported directory itself is not an entry
    INFO("entry '" << test::Printable(rel) << "'");
    mode_t type = s.st.st_mode & S_IFMT;
    bool special = type == S_IFIFO || type == S_IFCHR || type == S_IFBLK;
    if (type == S_IFSOCK || (special && !x.specials)) {
      REQUIRE(dst.count(rel) == 0);
      continue;
    }
    auto it = dst.find(rel);
    REQUIRE(it != dst.end());
    const test::EntryInfo& d = it->second;
    REQUIRE((d.st.st_mode & S_IFMT) == type);
    REQUIRE(d.st.st_uid == s.st.st_uid);
    REQUIRE(d.st.st_gid == s.st.st_gid);
    if (type == S_IFLNK) {  // no permissions of their own; not every reader sets their times
      REQUIRE(d.link_target == s.link_target);
      continue;
    }
    REQUIRE((d.st.st_mode & 07777) == (s.st.st_mode & 07777));
    REQUIRE(d.st.st_mtim.tv_sec == s.st.st_mtim.tv_sec);
    if (x.ns_mtime) REQUIRE(d.st.st_mtim.tv_nsec == s.st.st_mtim.tv_nsec);
    if (x.atime && type != S_IFDIR) REQUIRE(test::StNs(d.st.st_atim) == test::StNs(s.st.st_atim));
    std::vector<std::pair<std::string, std::string>> want;
    for (const auto& kv : s.xattrs) {
      bool acl = kv.first.rfind("system.posix_acl_", 0) == 0;
      if (acl ? x.acls : x.xattrs) want.push_back(kv);
    }
    REQUIRE(d.xattrs == want);
    if (type == S_IFCHR || type == S_IFBLK) REQUIRE(d.st.st_rdev == s.st.st_rdev);
    if (type == S_IFREG) {
      REQUIRE(d.st.st_size == s.st.st_size);
      REQUIRE(d.sha256 == s.sha256);
      if (s.st.st_nlink > 1) {
        auto [f, inserted] = first_of_inode.emplace(s.st.st_ino, rel);
        if (!inserted) {
          INFO("a hard link of '" << test::Printable(f->second) << "'");
          if (x.hard_links) {
            REQUIRE(dst.at(f->second).st.st_ino == d.st.st_ino);
          } else {
            REQUIRE(dst.at(f->second).st.st_ino != d.st.st_ino);
          }
        }
      }
    }
  }
  for (const auto& [rel, d] : dst) {
    INFO("extracted entry '" << test::Printable(rel) << "' is not in the source");
    REQUIRE(src.count(rel) == 1);
  }
}

// A repository holding one backup of a fresh MakeExportTree.
struct Exported {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  std::string src = work.path() + "/src";
  std::string out = work.path() + "/out";  // archives go here
  std::string id;
  test::TreeInfo src_info;

  Exported() {
    RequireTools();
    InitRepo(repo);
    MakeExportTree(src);
    src_info = test::ScanTree(src);
    id = CliBackup(repo, Q(src));
    REQUIRE(::mkdir(out.c_str(), 0700) == 0);
  }
  // `--json export ID:SRC --format F -o FILE`: the summary.
  json Export(const std::string& format, const std::string& file) {
    RunResult r = C(repo, "--json export " + id + ":" + Q(src) + " --format " + format + " -o " + Q(file));
    REQUIRE_EXIT(r, 0);
    return json::parse(r.out);
  }
};

std::set<std::string> DirNames(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& [rel, e] : test::ScanTree(dir)) {
    if (!rel.empty()) names.insert(rel);
  }
  return names;
}

}  // namespace

// ----------------------------------------------------------------------------
// Formats, read back by the real tools

TEST_CASE("export pax: GNU tar and bsdtar extract the tree with ns times, owners, hard links and xattrs",
          "[export]") {
  Exported e;
  std::string archive = e.out + "/tree.pax";
  json j = e.Export("pax", archive);
  // 23 names in the source, the socket skipped.
  REQUIRE(j["entries"] == 22);
  REQUIRE(j["files"] == 12);
  REQUIRE(j["hardlinks"] == 2);
  REQUIRE(j["dirs"] == 4);
  REQUIRE(j["symlinks"] == 2);
  REQUIRE(j["specials"] == 2);
  REQUIRE(j["skipped"] == 1);
  REQUIRE(j["xattrs_dropped"] == 0);
  REQUIRE(j["complete"] == true);
  REQUIRE(j["failures"].empty());
  REQUIRE(j["format"] == "pax");
  REQUIRE(j["snapshot_id"] == e.id);
  // Each file's bytes once (hard links carry none); sparse holes as zeros.
  uint64_t content = 100000 + kBigSize + 0 + 18 + 6 + kSparseSize + 5 + 4 + 21 + 22 + 10 + 10;
  REQUIRE(j["bytes"] == content);
  REQUIRE(j["warnings"].size() == 1);
  REQUIRE(j["warnings"][0]["path"] == e.src + "/sock");
  REQUIRE(j["warnings"][0]["reason"] == "a socket cannot be archived; skipped");
  struct stat st = test::Lstat(archive);
  REQUIRE((st.st_mode & 07777) == 0600);
  REQUIRE(DirNames(e.out) == std::set<std::string>{"tree.pax"});  // no temporaries

  SECTION("GNU tar: everything but atime (GNU tar sets it to now), ACLs included") {
    GnuTarExtract(archive, e.work.path() + "/gnu");
    Expect x;
    x.ns_mtime = x.xattrs = x.acls = true;
    RequireExtracted(e.src_info, test::ScanTree(e.work.path() + "/gnu"), x);
  }
  SECTION("bsdtar: everything but ACLs (bsdtar reads ACLs only from SCHILY.acl records)") {
    BsdTarExtract(archive, e.work.path() + "/bsd");
    Expect x;
    x.ns_mtime = x.atime = x.xattrs = true;
    RequireExtracted(e.src_info, test::ScanTree(e.work.path() + "/bsd"), x);
  }
}

TEST_CASE("export tar: the GNU format keeps owners, modes, mtime seconds, hard links and specials, not xattrs",
          "[export]") {
  Exported e;
  std::string archive = e.out + "/tree.tar";
  json j = e.Export("tar", archive);
  REQUIRE(j["entries"] == 22);
  REQUIRE(j["hardlinks"] == 2);
  REQUIRE(j["xattrs_dropped"] == 3);  // xattrs, acl, acl_dir
  REQUIRE(j["failures"].empty());
  RunResult text = C(e.repo, "export " + e.id + ":" + Q(e.src) + " --format tar -o " + Q(e.out + "/again.tar"));
  REQUIRE_EXIT(text, 0);
  REQUIRE(Contains(text.out, "exported 22 entries: 12 files"));
  REQUIRE(Contains(text.out, "dropped on 3 entries (use --format pax)"));
  REQUIRE(Contains(text.err, "warning: " + e.src + "/sock: a socket cannot be archived; skipped"));

  Expect x;  // mtime in whole seconds, no xattrs
  SECTION("GNU tar") {
    GnuTarExtract(archive, e.work.path() + "/gnu");
    test::TreeInfo dst = test::ScanTree(e.work.path() + "/gnu");
    RequireExtracted(e.src_info, dst, x);
    REQUIRE(dst.at("file").st.st_mtim.tv_nsec == 0);
  }
  SECTION("bsdtar") {
    BsdTarExtract(archive, e.work.path() + "/bsd");
    RequireExtracted(e.src_info, test::ScanTree(e.work.path() + "/bsd"), x);
  }
}

TEST_CASE("export zip: unzip extracts content, modes, owners and mtimes, hard links as copies, fifos and devices "
          "skipped by name",
          "[export]") {
  Exported e;
  std::string archive = e.out + "/tree.zip";
  RunResult r = C(e.repo, "export " + e.id + ":" + Q(e.src) + " --format zip -o " + Q(archive));
  REQUIRE_EXIT(r, 0);
  for (const char* name : {"fifo", "chr"}) {
    INFO(name);
    REQUIRE(Contains(r.err, "warning: " + e.src + "/" + name + ": zip cannot hold a "));
  }
  REQUIRE(Contains(r.err, "warning: " + e.src + "/sock: a socket cannot be archived"));
  REQUIRE(Contains(r.out, "exported 20 entries: 14 files"));  // the two later hard links carry the data again
  REQUIRE(Contains(r.out, "0 hard links, 0 special; 3 skipped; 0 failed"));

  UnzipExtract(archive, e.work.path() + "/unzip");
  Expect x;
  x.hard_links = false;
  x.specials = false;
  RequireExtracted(e.src_info, test::ScanTree(e.work.path() + "/unzip"), x);
  REQUIRE_EXIT(test::Run("unzip -tq " + Q(archive)), 0);
}

TEST_CASE("export keeps names with byte 0xff, a newline and UTF-8 exact through GNU tar and bsdtar", "[export]") {
  RequireTools();
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/names";
  InitRepo(repo);
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  const std::string bad = "n\xff\nl", utf8 = "caf\xc3\xa9", dir = "d\xfe\x80";
  test::WriteString(src + "/" + bad, "0xff and a newline");
  test::WriteString(src + "/" + utf8, "UTF-8");
  REQUIRE(::mkdir((src + "/" + dir).c_str(), 0755) == 0);
  test::WriteString(src + "/" + dir + "/" + bad, "nested");
  REQUIRE(::symlink(("to-" + bad).c_str(), (src + "/link-" + utf8).c_str()) == 0);
  REQUIRE(::link((src + "/" + bad).c_str(), (src + "/" + dir + "/hard-" + bad).c_str()) == 0);
  test::TreeInfo src_info = test::ScanTree(src);
  std::string id = CliBackup(repo, Q(src));
  std::set<std::string> want = {bad, utf8, dir, dir + "/" + bad, "link-" + utf8, dir + "/hard-" + bad};
  REQUIRE(DirNames(src) == want);

  for (const char* format : {"tar", "pax"}) {
    DYNAMIC_SECTION(format) {
      std::string archive = work.path() + "/names." + format;
      RunResult r = C(repo, "export " + id + ":" + Q(src) + " --format " + format + " -o " + Q(archive));
      REQUIRE_EXIT(r, 0);
      Expect x;
      x.ns_mtime = std::string(format) == "pax";
      GnuTarExtract(archive, work.path() + "/gnu");
      REQUIRE(DirNames(work.path() + "/gnu") == want);
      RequireExtracted(src_info, test::ScanTree(work.path() + "/gnu"), x);
      BsdTarExtract(archive, work.path() + "/bsd");
      REQUIRE(DirNames(work.path() + "/bsd") == want);
      RequireExtracted(src_info, test::ScanTree(work.path() + "/bsd"), x);
    }
  }
  SECTION("zip: bsdtar keeps the bytes (UTF-8 names flagged, others raw); unzip drops control bytes") {
    std::string archive = work.path() + "/names.zip";
    REQUIRE_EXIT(C(repo, "export " + id + ":" + Q(src) + " --format zip -o " + Q(archive)), 0);
    BsdTarExtract(archive, work.path() + "/bsd");
    REQUIRE(DirNames(work.path() + "/bsd") == want);
    UnzipExtract(archive, work.path() + "/unzip");
    REQUIRE(DirNames(work.path() + "/unzip").count(utf8) == 1);
  }
}

// ----------------------------------------------------------------------------
// Paths, stdout

TEST_CASE("export: names are relative to SNAPSHOT:PATH, a single file is one entry, -o - writes to stdout",
          "[export]") {
  Exported e;
  SECTION("a subdirectory, replacing an existing archive") {
    std::string archive = e.out + "/dir.tar";
    REQUIRE(e.Export("pax", archive)["entries"] == 22);
    // dir/hard3 is the only name of its inode below dir/: it carries the data.
    RunResult r = C(e.repo, "export " + e.id + ":" + Q(e.src + "/dir") + " --format pax -o " + Q(archive));
    REQUIRE_EXIT(r, 0);
    RunResult list = test::Run("TZ=UTC tar -tvf " + Q(archive) + " | sort -k6");
    REQUIRE_EXIT(list, 0);
    INFO(list.out);
    REQUIRE(std::count(list.out.begin(), list.out.end(), '\n') == 4);
    REQUIRE(Contains(list.out, " 22 2017-07-14 06:00 hard3\n"));  // hard1's size and mtime
    REQUIRE(Contains(list.out, " inner\n"));
    REQUIRE(Contains(list.out, " sub/\n"));
    REQUIRE(Contains(list.out, " sub/deep\n"));
    REQUIRE(DirNames(e.out) == std::set<std::string>{"dir.tar"});
  }
  SECTION("a file") {
    std::string archive = e.out + "/one.tar";
    REQUIRE_EXIT(C(e.repo, "export " + e.id + ":" + Q(e.src + "/big") + " --format tar -o " + Q(archive)), 0);
    RunResult list = test::Run("tar -tvf " + Q(archive));
    REQUIRE_EXIT(list, 0);
    REQUIRE(Contains(list.out, " " + std::to_string(kBigSize) + " "));
    REQUIRE(Contains(list.out, " big\n"));
    REQUIRE(std::count(list.out.begin(), list.out.end(), '\n') == 1);
  }
  SECTION("-o - with --json: the archive on stdout, the summary on stderr") {
    std::string dst = e.work.path() + "/piped";
    REQUIRE(::mkdir(dst.c_str(), 0700) == 0);
    int rc = -1;
    RunResult r = Piped(e.repo, "--json export " + e.id + ":" + Q(e.src) + " -o - 2>" + Q(e.out + "/summary"),
                        "LC_ALL=C tar --xattrs --xattrs-include='*' -xpf - -C " + Q(dst), &rc, e.work.path());
    REQUIRE_EXIT(r, 0);
    REQUIRE(rc == 0);
    json j = json::parse(Slurp(e.out + "/summary"));
    REQUIRE(j["entries"] == 22);
    REQUIRE(j["output"] == "-");
    REQUIRE(DirNames(e.out) == std::set<std::string>{"summary"});
    Expect x;
    x.ns_mtime = x.xattrs = x.acls = true;
    RequireExtracted(e.src_info, test::ScanTree(dst), x);
  }
}

// ----------------------------------------------------------------------------
// dump

TEST_CASE("dump: a file is its exact bytes, a directory is a tar stream that tar lists and extracts", "[export]") {
  Exported e;
  SECTION("files") {
    for (const char* name : {"big", "empty", "sparse", "file"}) {
      INFO(name);
      std::string out = e.out + "/" + name;
      RunResult r = C(e.repo, "dump " + e.id + " " + Q(e.src + "/" + name) + " > " + Q(out));
      REQUIRE_EXIT(r, 0);
      REQUIRE(r.err.empty());
      REQUIRE(test::HashNoAtime(out) == e.src_info.at(name).sha256);
      REQUIRE(test::Lstat(out).st_size == e.src_info.at(name).st.st_size);
    }
  }
  SECTION("a directory, listed") {
    int rc = -1;
    RunResult r = Piped(e.repo, "dump latest " + Q(e.src + "/dir"), "tar -tf - | sort", &rc, e.work.path());
    REQUIRE_EXIT(r, 0);
    REQUIRE(rc == 0);
    REQUIRE(r.out == "hard3\ninner\nsub/\nsub/deep\n");
  }
  SECTION("the whole tree, extracted") {
    std::string dst = e.work.path() + "/dumped";
    REQUIRE(::mkdir(dst.c_str(), 0700) == 0);
    int rc = -1;
    RunResult r = Piped(e.repo, "dump " + e.id + " " + Q(e.src),
                        "LC_ALL=C tar --xattrs --xattrs-include='*' -xpf - -C " + Q(dst), &rc, e.work.path());
    REQUIRE_EXIT(r, 0);
    REQUIRE(rc == 0);
    Expect x;
    x.ns_mtime = x.xattrs = x.acls = true;
    RequireExtracted(e.src_info, test::ScanTree(dst), x);
  }
}

// ----------------------------------------------------------------------------
// Failures

TEST_CASE("export: a damaged blob exits 3 naming the file and leaves no archive (an old one stays as it was)",
          "[export]") {
  Exported e;
  {
    auto lib = OpenLib(e.repo);
    auto snap = snapshot::FindSnapshot(*lib, e.id);
    REQUIRE(snap.ok());
    snapshot::Node big = test::FindNode(*lib, snap->manifest.tree, e.src + "/big");
    REQUIRE(big.content.size() > 1);  // the damage is in the middle of a streamed file
    test::DamageBlob(*lib, e.repo, big.content[1].id);
  }
  std::string archive = e.out + "/tree";
  test::WriteString(archive, "an older archive");
  for (const char* format : {"tar", "pax", "zip"}) {
    DYNAMIC_SECTION(format) {
      RunResult r = C(e.repo, "export " + e.id + ":" + Q(e.src) + " --format " + format + " -o " + Q(archive));
      REQUIRE_EXIT(r, 3);
      auto errors = ErrorLines(r.err);
      REQUIRE(errors.size() == 1);
      REQUIRE(errors.count(e.src + "/big") == 1);
      REQUIRE(Contains(errors[e.src + "/big"], "blob "));
      REQUIRE(Contains(r.out, "nothing was written to " + archive));
      REQUIRE(Slurp(archive) == "an older archive");
      REQUIRE(DirNames(e.out) == std::set<std::string>{"tree"});

      RunResult jr = C(e.repo, "--json export " + e.id + ":" + Q(e.src) + " --format " + format + " -o " +
                                   Q(e.out + "/new"));
      REQUIRE_EXIT(jr, 3);
      json j = json::parse(jr.out);
      REQUIRE(j["complete"] == false);
      REQUIRE(j["failures"].size() == 1);
      REQUIRE(j["failures"][0]["path"] == e.src + "/big");
      REQUIRE(Contains(j["failures"][0]["reason"].get<std::string>(), "blob "));
      REQUIRE(DirNames(e.out) == std::set<std::string>{"tree"});
    }
  }
  SECTION("dump of the file and of its directory") {
    RunResult r = C(e.repo, "dump " + e.id + " " + Q(e.src + "/big") + " > /dev/null");
    REQUIRE_EXIT(r, 3);
    REQUIRE(ErrorLines(r.err).count(e.src + "/big") == 1);
    RunResult d = C(e.repo, "dump " + e.id + " " + Q(e.src) + " > /dev/null");
    REQUIRE_EXIT(d, 3);
    REQUIRE(ErrorLines(d.err).count(e.src + "/big") == 1);
  }
  SECTION("the other files still export") {
    REQUIRE_EXIT(C(e.repo, "export " + e.id + ":" + Q(e.src + "/dir") + " -o " + Q(e.out + "/dir.pax")), 0);
  }
}

TEST_CASE("export and dump: a path not in the snapshot exits 1, a bad --format exits 2, nothing is written",
          "[export]") {
  RequireTools();
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src", out = work.path() + "/out";
  InitRepo(repo);
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir(out.c_str(), 0700) == 0);
  test::WriteString(src + "/a", "a");
  std::string id = CliBackup(repo, Q(src));

  RunResult r = C(repo, "export " + id + ":" + Q(src + "/missing") + " -o " + Q(out + "/x.tar"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, src + "/missing: not in the snapshot"));
  r = C(repo, "dump " + id + " " + Q(src + "/missing"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, src + "/missing: not in the snapshot"));
  REQUIRE(r.out.empty());
  r = C(repo, "dump " + id + " " + Q(src + "/a/below"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "not a directory in the snapshot"));
  r = C(repo, "export " + id + " --format rar -o " + Q(out + "/x.rar"));
  REQUIRE_EXIT(r, 2);
  REQUIRE(Contains(r.err, "--format"));
  r = C(repo, "export " + id);
  REQUIRE_EXIT(r, 2);
  r = C(repo, "export feedface -o " + Q(out + "/x.tar"));
  REQUIRE_EXIT(r, 1);
  r = C(repo, "export " + id + " -o " + Q(work.path() + "/no/such/dir/x.tar"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "no/such/dir/x.tar"));
  REQUIRE(DirNames(out).empty());
}

// ----------------------------------------------------------------------------
// Large files: memory, interruption

// Bytes that process `pid` has written to an unnamed (O_TMPFILE) file in
// `dir`, which /proc shows as "DIR/#INODE (deleted)"; -1 while it has none.
long long UnnamedFileBytes(pid_t pid, const std::string& dir) {
  std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(fds.c_str());
  if (!d) return -1;
  long long pos = -1;
  while (dirent* de = ::readdir(d)) {
    char target[4096];
    ssize_t n = ::readlink((fds + "/" + de->d_name).c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    std::string t(target, size_t(n));
    if (t.rfind(dir + "/#", 0) != 0) continue;
    std::ifstream in("/proc/" + std::to_string(pid) + "/fdinfo/" + de->d_name);  // size 0 to stat: stream it
    std::string info((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto at = info.find("pos:"); at != std::string::npos) pos = std::atoll(info.c_str() + at + 4);
  }
  ::closedir(d);
  return pos;
}

TEST_CASE("export streams a large file in bounded memory, and killed mid-way leaves nothing behind", "[export]") {
  RequireTools();
  test::TempDir work;
  std::string repo = work.path() + "/repo", src = work.path() + "/src", out = work.path() + "/out";
  InitRepo(repo);
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir(out.c_str(), 0700) == 0);
  constexpr size_t kSize = 160u << 20;
  test::WriteBytes(src + "/large", test::FastRandom(kSize, 9));
  std::string id = CliBackup(repo, Q(src));
  std::string cmd_prefix = "exec env -u CUSTOS_PASSWORD_FILE " + kEnv + " " + CUSTOS_BINARY + " --repo " + Q(repo) +
                           " export " + id + ":" + Q(src);

  SECTION("peak memory does not grow with the file") {
    // Peak RSS of the export alone: measured in a fresh child whose only
    // grandchild is custos.
    int pipefd[2];
    REQUIRE(::pipe(pipefd) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(pipefd[0]);
      std::string cmd = cmd_prefix + " --format pax -o " + Q(out + "/large.pax") + " >/dev/null";
      int status = std::system(cmd.c_str());
      rusage ru{};
      ::getrusage(RUSAGE_CHILDREN, &ru);
      long v[2] = {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ru.ru_maxrss};
      ssize_t n = ::write(pipefd[1], v, sizeof v);
      ::_exit(n == ssize_t(sizeof v) ? 0 : 1);
    }
    ::close(pipefd[1]);
    long v[2] = {-1, 0};
    REQUIRE(::read(pipefd[0], v, sizeof v) == ssize_t(sizeof v));
    ::close(pipefd[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(v[0] == 0);
    long peak_kib = v[1];
    INFO("peak RSS " << peak_kib << " KiB for a " << (kSize >> 20) << " MiB file");
#if defined(__SANITIZE_ADDRESS__)
    WARN("AddressSanitizer build: its quarantine keeps freed memory; the bound is not checked");
#else
    REQUIRE(peak_kib < 64 * 1024);  // chunks are at most 8 MiB; two are in flight
#endif
    REQUIRE(test::Lstat(out + "/large.pax").st_size > off_t(kSize));
  }

  for (int sig : {SIGINT, SIGKILL}) {
    DYNAMIC_SECTION("killed by signal " << sig << " after 4 MiB: the old FILE stays, no temporary remains") {
      std::string file = out + "/large.zip";
      test::WriteString(file, "an older archive");
      pid_t pid = ::fork();
      if (pid == 0) {
        std::string cmd = cmd_prefix + " --format zip -o " + Q(file) + " >/dev/null 2>&1";
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
      }
      REQUIRE(pid > 0);
      bool killed = false;
      int status = 0;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) break;
        if (UnnamedFileBytes(pid, out) >= (4 << 20)) {
          ::kill(pid, sig);
          killed = true;
          REQUIRE(::waitpid(pid, &status, 0) == pid);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      REQUIRE(killed);
      if (sig == SIGINT) {
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 130);
      } else {
        REQUIRE(WIFSIGNALED(status));
      }
      REQUIRE(DirNames(out) == std::set<std::string>{"large.zip"});
      REQUIRE(Slurp(file) == "an older archive");
    }
  }
}
