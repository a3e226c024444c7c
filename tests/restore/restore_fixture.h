// Test helpers for the restore tests: scanning a directory tree into a map
// of everything a restore must reproduce (type, mode, owner, ns times,
// size, allocated blocks, content hash, link target, device numbers,
// xattrs, hard-link identity) and comparing a source tree with a restored
// one. Header-only; shared by tests/restore/restore_test.cc and
// tests/cli/restore_cli_test.cc.
#pragma once

#include <catch2/catch.hpp>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/repository.h"
#include "tests/snapshot/tree_fixture.h"

namespace custos::test {

constexpr char kRestoreTmpPrefix[] = ".custos-restore-";

// Random bytes, 8 at a time (fast enough for hundreds of MiB).
inline Bytes FastRandom(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(b.data() + i, &v, 8);
  }
  for (; i < n; ++i) b[i] = uint8_t(rng());
  return b;
}

// SHA-256 of a file, read with O_NOATIME (root may use it on any file) so
// that reading does not change the atime being compared.
inline Id HashNoAtime(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOATIME | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EPERM) fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) FAIL("open " << path << ": " << std::strerror(errno));
  Fd f(fd);
  Sha256Stream h;
  std::vector<uint8_t> buf(1 << 20);
  ssize_t r;
  while ((r = ::read(f.get(), buf.data(), buf.size())) > 0) h.Update(ByteView(buf.data(), size_t(r)));
  if (r < 0) FAIL("read " << path << ": " << std::strerror(errno));
  return h.Finish();
}

inline std::vector<std::pair<std::string, std::string>> ListXattrs(const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
  if (n <= 0) return out;
  std::string names(size_t(n), '\0');
  n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) FAIL("llistxattr " << path << ": " << std::strerror(errno));
  names.resize(size_t(n));
  for (size_t i = 0; i < names.size();) {
    std::string k(names.c_str() + i);
    i += k.size() + 1;
    ssize_t vn = ::lgetxattr(path.c_str(), k.c_str(), nullptr, 0);
    std::string v(size_t(std::max<ssize_t>(vn, 0)), '\0');
    if (vn > 0) vn = ::lgetxattr(path.c_str(), k.c_str(), v.data(), v.size());
    if (vn < 0) FAIL("lgetxattr " << path << " " << k << ": " << std::strerror(errno));
    v.resize(size_t(vn));
    out.emplace_back(k, v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct EntryInfo {
  struct stat st {};
  std::string link_target;
  std::vector<std::pair<std::string, std::string>> xattrs;
  Id sha256;  // regular files
};
// Relative path (exact bytes; "" is the root itself) -> what is there.
using TreeInfo = std::map<std::string, EntryInfo>;

// Scans `root` recursively. lstat comes first for every entry, content is
// read with O_NOATIME, so scanning changes none of the times it records.
inline void ScanInto(const std::string& root, const std::string& rel, TreeInfo* out) {
  std::string path = rel.empty() ? root : root + "/" + rel;
  EntryInfo e;
  if (::lstat(path.c_str(), &e.st) != 0) FAIL("lstat " << path << ": " << std::strerror(errno));
  e.xattrs = ListXattrs(path);
  if (S_ISLNK(e.st.st_mode)) {
    std::string buf(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) FAIL("readlink " << path << ": " << std::strerror(errno));
    e.link_target = buf.substr(0, size_t(n));
    // readlink moved the link's atime (relatime): put it back.
    timespec ts[2] = {e.st.st_atim, timespec{0, UTIME_OMIT}};
    ::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }
  if (S_ISREG(e.st.st_mode)) e.sha256 = HashNoAtime(path);
  bool is_dir = S_ISDIR(e.st.st_mode);
  (*out)[rel] = e;
  if (!is_dir) return;
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) FAIL("opendir " << path << ": " << std::strerror(errno));
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) ScanInto(root, rel.empty() ? n : rel + "/" + n, out);
}
inline TreeInfo ScanTree(const std::string& root) {
  TreeInfo t;
  ScanInto(root, "", &t);
  return t;
}

// Paths of `restore temporaries` anywhere below root.
inline std::vector<std::string> Temporaries(const TreeInfo& t) {
  std::vector<std::string> out;
  for (const auto& [rel, e] : t) {
    std::string base = rel.substr(rel.find_last_of('/') + 1);
    if (base.rfind(kRestoreTmpPrefix, 0) == 0) out.push_back(rel);
  }
  return out;
}

inline int64_t StNs(const timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

inline std::string Printable(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      o += char(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    }
  }
  return o;
}

struct CompareOptions {
  bool check_root = true;    // the root's own metadata (mode, owner, mtime)
  bool sockets_absent = true;  // sockets are not recreated by a restore
};

// Requires that `dst` reproduces `src` exactly: the same set of entries
// (sockets aside), the same type, permission bits (setuid/setgid/sticky
// included; not for symlinks), uid/gid, mtime in ns, atime in ns for all
// but directories, size and SHA-256 of files, link targets, device
// numbers, xattrs (ACLs included), hard links (entries sharing an inode in
// src share one in dst), and sparse files about as sparse as the source
// while non-sparse files are fully allocated.
inline void RequireSameTree(const TreeInfo& src, const TreeInfo& dst, const CompareOptions& o = {}) {
  std::map<ino_t, std::string> first_of_inode;  // src inode -> first rel
  for (const auto& [rel, s] : src) {
    INFO("entry '" << Printable(rel) << "'");
    if (S_ISSOCK(s.st.st_mode) && o.sockets_absent) {
      REQUIRE(dst.count(rel) == 0);
      continue;
    }
    auto it = dst.find(rel);
    REQUIRE(it != dst.end());
    const EntryInfo& d = it->second;
    REQUIRE((d.st.st_mode & S_IFMT) == (s.st.st_mode & S_IFMT));
    if (rel.empty() && !o.check_root) continue;
    if (!S_ISLNK(s.st.st_mode)) REQUIRE((d.st.st_mode & 07777) == (s.st.st_mode & 07777));
    REQUIRE(d.st.st_uid == s.st.st_uid);
    REQUIRE(d.st.st_gid == s.st.st_gid);
    REQUIRE(StNs(d.st.st_mtim) == StNs(s.st.st_mtim));
    if (!S_ISDIR(s.st.st_mode)) REQUIRE(StNs(d.st.st_atim) == StNs(s.st.st_atim));
    REQUIRE(d.xattrs == s.xattrs);
    if (S_ISLNK(s.st.st_mode)) REQUIRE(d.link_target == s.link_target);
    if (S_ISCHR(s.st.st_mode) || S_ISBLK(s.st.st_mode)) REQUIRE(d.st.st_rdev == s.st.st_rdev);
    if (S_ISREG(s.st.st_mode)) {
      REQUIRE(d.st.st_size == s.st.st_size);
      REQUIRE(d.sha256 == s.sha256);
      REQUIRE(d.st.st_nlink == s.st.st_nlink);
      INFO("blocks: source " << s.st.st_blocks << ", restored " << d.st.st_blocks);
      bool sparse = s.st.st_blocks * 512 < s.st.st_size;
      if (sparse) {
        // Holes stay holes: within 64 KiB of the source's allocation.
        REQUIRE(d.st.st_blocks <= s.st.st_blocks + 128);
        REQUIRE(d.st.st_blocks * 512 < d.st.st_size);
      } else if (s.st.st_size >= 65536) {
        REQUIRE(d.st.st_blocks * 512 >= d.st.st_size);  // zeros that were data stay data
      }
      if (s.st.st_nlink > 1) {
        auto [f, inserted] = first_of_inode.emplace(s.st.st_ino, rel);
        if (!inserted) {
          INFO("hard link of '" << Printable(f->second) << "'");
          REQUIRE(dst.at(f->second).st.st_ino == d.st.st_ino);
        }
      }
    }
  }
  for (const auto& [rel, d] : dst) {
    INFO("restored entry '" << Printable(rel) << "' is not in the source");
    REQUIRE(src.count(rel) == 1);
  }
}

inline snapshot::BackupResult BackupLib(storage::Repository& repo, const std::vector<std::string>& paths,
                                        const std::string& host = "testhost", int64_t time_ns = 0) {
  snapshot::BackupOptions o;
  o.paths = paths;
  o.host = host;
  o.time_ns = time_ns;
  o.program_version = "test";
  auto r = snapshot::Backup(repo, o);
  if (!r.ok()) FAIL("backup: " << r.status().ToString());
  if (!r->errors.empty()) FAIL("backup errors, first: " << r->errors[0]);
  return std::move(r).value();
}

inline snapshot::Node FindNode(storage::Repository& repo, const Id& tree, const std::string& path) {
  auto n = snapshot::FindPath(repo, tree, path);
  if (!n.ok()) FAIL("find " << path << ": " << n.status().ToString());
  return *n;
}

// Stores a tree blob exactly as given (EncodeTree checks only the order of
// names, not whether they are safe) and returns its ID.
inline Id AddTree(storage::Repository& repo, const snapshot::Tree& tree) {
  Bytes blob = snapshot::EncodeTree(tree);
  auto added = repo.AddBlob(storage::BlobType::kTree, blob);
  if (!added.ok()) FAIL("add tree: " << added.status().ToString());
  Status st = repo.Flush();  // readable (indexed) from now on
  if (!st.ok()) FAIL("flush: " << st.ToString());
  return Sha256(blob);
}

// Saves a snapshot whose root is `root_tree`; returns the snapshot ID.
inline Id SaveCraftedSnapshot(storage::Repository& repo, const Id& root_tree, const std::string& host = "crafted",
                              int64_t time_ns = 0) {
  snapshot::Manifest m;
  m.time_ns = time_ns ? time_ns : snapshot::NowNs();
  m.time = snapshot::FormatTimeNs(m.time_ns);
  m.host = host;
  m.user = "root";
  m.paths = {"/"};
  m.tree = root_tree;
  m.program_version = "test";
  auto id = repo.SaveSnapshot(snapshot::EncodeManifest(m));
  if (!id.ok()) FAIL("save snapshot: " << id.status().ToString());
  return *id;
}

// Flips one byte in the middle of a blob's box inside its pack file.
inline void DamageBlob(storage::Repository& repo, const std::string& repo_path, const Id& blob) {
  auto loc = repo.FindBlob(blob);
  if (!loc) FAIL("blob " << blob.Hex() << " is not in the index");
  std::string hex = loc->pack.Hex();
  std::string pack = repo_path + "/data/" + hex.substr(0, 2) + "/" + hex;
  Fd fd(::open(pack.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) FAIL("open " << pack << ": " << std::strerror(errno));
  off_t at = off_t(loc->entry.offset + loc->entry.stored_length / 2);
  uint8_t b = 0;
  REQUIRE(::pread(fd.get(), &b, 1, at) == 1);
  b ^= 0x20;
  REQUIRE(::pwrite(fd.get(), &b, 1, at) == 1);
}

}  // namespace custos::test
