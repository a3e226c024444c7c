// Test fixtures for the backup tests: building source trees with every
// file type and metadata item, and a local repository with a cheap KDF.
// Header-only; shared by tests/snapshot/backup_test.cc and
// tests/cli/backup_cli_test.cc. Needs root (chown, mknod).
#pragma once

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "storage/backend.h"
#include "storage/repository.h"
#include "tests/test_util.h"

namespace custos::test {

#define FIXTURE_SYS(call)                                                    \
  do {                                                                       \
    if ((call) != 0) FAIL(#call << ": " << std::strerror(errno));            \
  } while (0)

inline void WriteBytes(const std::string& path, ByteView data, mode_t mode = 0644) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) FAIL("create " << path << ": " << std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd.get(), data.data() + off, data.size() - off);
    if (w <= 0) FAIL("write " << path << ": " << std::strerror(errno));
    off += size_t(w);
  }
}
// Leaves a Unix socket file at `path` (bound, then closed): 0 or -1 (errno).
inline int MakeSocketFile(const std::string& path) {
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    ::close(s);
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(s);
  errno = err;
  return rc;
}

inline void WriteString(const std::string& path, const std::string& s, mode_t mode = 0644) {
  WriteBytes(path, AsBytes(s), mode);
}

inline Id FileSha256(const std::string& path) {
  auto data = ReadFile(path);
  if (!data.ok()) FAIL("read " << path << ": " << data.status().ToString());
  return Sha256(*data);
}

inline struct stat Lstat(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) FAIL("lstat " << path << ": " << std::strerror(errno));
  return st;
}

inline int64_t Ns(const timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

// Sets atime and mtime without following symlinks.
inline void SetTimes(const std::string& path, timespec atime, timespec mtime) {
  timespec ts[2] = {atime, mtime};
  FIXTURE_SYS(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW));
}

inline void SetXattr(const std::string& path, const std::string& name, const std::string& value) {
  FIXTURE_SYS(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0));
}

// A POSIX ACL in the kernel's xattr format (version 2; entries of tag u16,
// perm u16, id u32, little-endian), as setfacl would write it.
inline std::string AclXattr(const std::vector<std::tuple<uint16_t, uint16_t, uint32_t>>& entries) {
  Bytes b;
  PutU32(b, 2);
  for (const auto& [tag, perm, id] : entries) {
    PutU16(b, tag);
    PutU16(b, perm);
    PutU32(b, id);
  }
  return std::string(b.begin(), b.end());
}
constexpr uint16_t kAclUserObj = 0x01, kAclUser = 0x02, kAclGroupObj = 0x04, kAclGroup = 0x08, kAclMask = 0x10,
                   kAclOther = 0x20;
constexpr uint32_t kAclUndefinedId = 0xffffffffu;

inline std::string UserName(uid_t uid) {
  passwd* pw = ::getpwuid(uid);
  return pw ? pw->pw_name : "";
}
inline std::string GroupName(gid_t gid) {
  group* gr = ::getgrgid(gid);
  return gr ? gr->gr_name : "";
}

// A local repository with a cheap KDF, opened and locked for writing.
struct TestRepo {
  TempDir dir;
  std::string path;
  std::unique_ptr<storage::Repository> repo;

  explicit TestRepo(uint32_t pack_size = 1u << 20) : path(dir.path() + "/repo") {
    storage::InitOptions o;
    o.pack_size = pack_size;
    o.kdf = Argon2Params{1, 1u << 20};
    o.make_recovery_key = false;
    auto r = storage::Repository::Init(storage::NewLocalBackend(path), "pw", o,
                                       storage::Actor::FromProcess("test"));
    if (!r.ok()) FAIL("init: " << r.status().ToString());
    repo = std::move(r->repo);
    Status st = repo->LockForWrite(storage::Actor::FromProcess("test"));
    if (!st.ok()) FAIL("lock: " << st.ToString());
  }
};

// What a fixture tree expects to find again in the snapshot, by path
// relative to the tree's root (exact bytes).
struct Expected {
  std::string rel;
  Id sha256;                 // regular files
  bool check_atime = true;   // false for directories (readdir may update it)
  int64_t atime_ns = 0, mtime_ns = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted
  std::vector<std::pair<uint64_t, uint64_t>> holes;
};

struct FixtureTree {
  std::string root;  // absolute
  std::vector<Expected> entries;
  std::string bad_name;  // a name that is not valid UTF-8
  const Expected& Get(const std::string& rel) const {
    for (const auto& e : entries) {
      if (e.rel == rel) return e;
    }
    FAIL("no fixture entry " << rel);
    std::abort();
  }
};

constexpr uint64_t kSparseSize = 10u << 20;
constexpr uint64_t kSparseDataAt = 5u << 20;
constexpr uint64_t kSparseDataLen = 4096;
constexpr size_t kBigSize = 12u << 20;  // above the 8 MiB chunk maximum: several chunks

// Builds, below `root` (created), one of every file type with every
// metadata item set to unusual values:
//   file, empty, big (12 MiB random), setuid (nobody:nogroup, 04755),
//   unknown_owner (uid/gid without names), setgid_dir/ (02775) with inner,
//   sticky/ (01777), symlink -> file, dangling -> does/not/exist,
//   hard1 + hard2 (one inode), fifo, sock, chr (1,3), blk (7,200),
//   xattrs (user.* with binary values), acl (access ACL), acl_dir/ (default
//   ACL), sparse (10 MiB, 4 KiB of data at 5 MiB), and a non-UTF-8 name.
// atime and mtime are set to odd nanosecond values on every entry.
inline FixtureTree MakeAllTypesTree(const std::string& root) {
  FixtureTree t;
  t.root = root;
  t.bad_name = std::string("bad-\xff\xfe-\x80name");
  FIXTURE_SYS(::mkdir(root.c_str(), 0755));
  auto p = [&](const std::string& rel) { return root + "/" + rel; };
  std::vector<std::string> files, dirs, others;

  WriteBytes(p("file"), RandomBytes(100000, 1));
  WriteBytes(p("empty"), ByteView());
  WriteBytes(p("big"), RandomBytes(kBigSize, 2));
  WriteString(p("setuid"), "#!/bin/sh\necho hi\n");
  FIXTURE_SYS(::chown(p("setuid").c_str(), 65534, 65534));
  FIXTURE_SYS(::chmod(p("setuid").c_str(), 04755));  // after chown: chown clears setuid
  WriteString(p("unknown_owner"), "whose?");
  FIXTURE_SYS(::chown(p("unknown_owner").c_str(), 123456, 654321));
  FIXTURE_SYS(::chmod(p("unknown_owner").c_str(), 0600));
  WriteString(p(t.bad_name), "bytes, not text");
  files = {"file", "empty", "big", "setuid", "unknown_owner", t.bad_name};

  FIXTURE_SYS(::mkdir(p("setgid_dir").c_str(), 0755));
  WriteString(p("setgid_dir/inner"), "inner");
  files.push_back("setgid_dir/inner");
  FIXTURE_SYS(::chown(p("setgid_dir").c_str(), 0, 65534));
  FIXTURE_SYS(::chmod(p("setgid_dir").c_str(), 02775));
  FIXTURE_SYS(::mkdir(p("sticky").c_str(), 0755));
  FIXTURE_SYS(::chmod(p("sticky").c_str(), 01777));
  dirs = {"setgid_dir", "sticky"};

  FIXTURE_SYS(::symlink("file", p("symlink").c_str()));
  FIXTURE_SYS(::symlink("does/not/exist", p("dangling").c_str()));
  WriteString(p("hard1"), "two names, one inode");
  FIXTURE_SYS(::link(p("hard1").c_str(), p("hard2").c_str()));
  files.push_back("hard1");
  files.push_back("hard2");
  FIXTURE_SYS(::mkfifo(p("fifo").c_str(), 0640));
  FIXTURE_SYS(MakeSocketFile(p("sock")));
  FIXTURE_SYS(::mknod(p("chr").c_str(), S_IFCHR | 0620, makedev(1, 3)));
  FIXTURE_SYS(::mknod(p("blk").c_str(), S_IFBLK | 0660, makedev(7, 200)));
  // Exact modes whatever the umask.
  FIXTURE_SYS(::chmod(p("fifo").c_str(), 0640));
  FIXTURE_SYS(::chmod(p("chr").c_str(), 0620));
  FIXTURE_SYS(::chmod(p("blk").c_str(), 0660));
  others = {"symlink", "dangling", "fifo", "sock", "chr", "blk"};

  // Extended attributes: binary values, an empty value.
  std::vector<std::pair<std::string, std::string>> xa = {
      {"user.binary", std::string("a\0b\xff\x01", 5)}, {"user.custos", "value"}, {"user.empty", ""}};
  WriteString(p("xattrs"), "has xattrs");
  for (const auto& [k, v] : xa) SetXattr(p("xattrs"), k, v);
  files.push_back("xattrs");

  // POSIX ACLs as setfacl writes them: user:nobody:r-- and group:nogroup:rw-.
  std::string acl = AclXattr({{kAclUserObj, 6, kAclUndefinedId},
                              {kAclUser, 4, 65534},
                              {kAclGroupObj, 4, kAclUndefinedId},
                              {kAclGroup, 6, 65534},
                              {kAclMask, 6, kAclUndefinedId},
                              {kAclOther, 4, kAclUndefinedId}});
  WriteString(p("acl"), "has an ACL");
  SetXattr(p("acl"), "system.posix_acl_access", acl);
  files.push_back("acl");
  std::string dacl = AclXattr({{kAclUserObj, 7, kAclUndefinedId},
                               {kAclUser, 5, 65534},
                               {kAclGroupObj, 5, kAclUndefinedId},
                               {kAclMask, 5, kAclUndefinedId},
                               {kAclOther, 5, kAclUndefinedId}});
  FIXTURE_SYS(::mkdir(p("acl_dir").c_str(), 0755));
  SetXattr(p("acl_dir"), "system.posix_acl_default", dacl);
  dirs.push_back("acl_dir");

  // Sparse: a hole, 4 KiB of data, a hole.
  {
    Fd fd(::open(p("sparse").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    FIXTURE_SYS(::ftruncate(fd.get(), off_t(kSparseSize)));
    Bytes data = RandomBytes(kSparseDataLen, 3);
    REQUIRE(::pwrite(fd.get(), data.data(), data.size(), off_t(kSparseDataAt)) == ssize_t(data.size()));
  }
  files.push_back("sparse");

  // Read every file's content before any atime is set (reading may update atime).
  std::map<std::string, Id> sha;
  for (const auto& f : files) sha[f] = FileSha256(p(f));

  int i = 0;
  auto add = [&](const std::string& rel, bool is_dir) {
    Expected e;
    e.rel = rel;
    e.check_atime = !is_dir;
    ++i;
    timespec at{1000000000 + i * 1000, 123456789 + i};
    timespec mt{1500000000 + i * 1000, 987654321 - i};
    SetTimes(p(rel), at, mt);
    e.atime_ns = Ns(at);
    e.mtime_ns = Ns(mt);
    if (sha.count(rel)) e.sha256 = sha[rel];
    t.entries.push_back(std::move(e));
  };
  for (const auto& f : files) {
    if (f != "hard2") add(f, false);  // hard2 shares hard1's inode (and times)
  }
  for (const auto& o : others) add(o, false);
  for (const auto& d : dirs) add(d, true);
  {
    Expected h2 = t.Get("hard1");
    h2.rel = "hard2";
    t.entries.push_back(h2);
  }
  auto* x = const_cast<Expected*>(&t.Get("xattrs"));
  x->xattrs = xa;
  auto* a = const_cast<Expected*>(&t.Get("acl"));
  a->xattrs = {{"system.posix_acl_access", acl}};
  auto* ad = const_cast<Expected*>(&t.Get("acl_dir"));
  ad->xattrs = {{"system.posix_acl_default", dacl}};
  auto* s = const_cast<Expected*>(&t.Get("sparse"));
  s->holes = {{0, kSparseDataAt}, {kSparseDataAt + kSparseDataLen, kSparseSize - kSparseDataAt - kSparseDataLen}};
  return t;
}

}  // namespace custos::test
