// End-to-end tests of `custos backup`, `snapshots`, `ls`, `diff` and
// `stats`: metadata round trips through the snapshot tree (compared via
// `ls --long --json`), hostile trees, permission-denied subtrees (backing
// up as nobody), deduplication, the files cache, interrupted backups
// (SIGKILL and SIGINT), snapshot selection and excludes. Runs as root.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/manifest.h"
#include "tests/cli/cli_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using custos::test::RunResult;
using namespace custos::clitest;

namespace {

namespace fs = std::filesystem;


// `--json backup ARGS`: the summary (last line); exit code must be `code`.
json Backup(const std::string& repo, const std::string& args, int code = 0) {
  RunResult r = C(repo, "--json backup " + args);
  REQUIRE_EXIT(r, code);
  auto lines = JsonLines(r.out);
  REQUIRE(!lines.empty());
  REQUIRE(lines.back()["message_type"] == "summary");
  return lines.back();
}

// A text field that may have been written as "<key>_base64".
std::string TextField(const json& j, const std::string& key) {
  if (j.contains(key)) return j[key].get<std::string>();
  if (j.contains(key + "_base64")) {
    auto b = Base64Decode(j[key + "_base64"].get<std::string>());
    REQUIRE(b);
    return std::string(b->begin(), b->end());
  }
  FAIL("no field " << key << " in " << j.dump());
  return "";
}

// `ls --long --json SPEC [PATH]`, keyed by exact path bytes.
std::map<std::string, json> Ls(const std::string& repo, const std::string& spec, const std::string& path = "") {
  RunResult r = C(repo, "--json ls --long " + Q(spec) + (path.empty() ? "" : " " + Q(path)));
  REQUIRE_EXIT(r, 0);
  std::map<std::string, json> m;
  for (auto& j : JsonLines(r.out)) m[TextField(j, "path")] = j;
  return m;
}

// Paths below `root` (relative, exact bytes) in a listing.
std::set<std::string> Below(const std::map<std::string, json>& ls, const std::string& root) {
  std::set<std::string> out;
  for (const auto& [p, j] : ls) {
    if (p.rfind(root + "/", 0) == 0) out.insert(p.substr(root.size() + 1));
  }
  return out;
}

void RequireCheckReadData(const std::string& repo) {
  RunResult r = C(repo, "--json check --read-data");
  REQUIRE_EXIT(r, 0);
  REQUIRE(json::parse(r.out)["ok"] == true);
}

std::string TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "chardev";
    case S_IFBLK: return "blockdev";
  }
  return "?";
}

std::string Octal(uint32_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

// Bytes of complete pack files in a repository.
uint64_t PackBytes(const std::string& repo) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(repo + "/data", ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_regular_file(ec2) || it->path().filename().string().rfind(kTempPrefix, 0) == 0) continue;
    uint64_t s = it->file_size(ec2);
    if (!ec2) total += s;
  }
  return total;
}

// Starts `custos --repo REPO --json backup ARGS` in the background with
// stdout and stderr to files; returns its pid (exec keeps the pid).
pid_t SpawnBackup(const std::string& repo, const std::string& args, const std::string& out,
                  const std::string& err) {
  std::string cmd = "exec env -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + kEnv + " " + CUSTOS_BINARY +
                    " --repo " + Q(repo) + " --json backup " + args + " </dev/null >" + Q(out) + " 2>" + Q(err);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  REQUIRE(pid > 0);
  return pid;
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Files of distinct random content (incompressible, no dedup between them).
uint64_t MakeRandomFiles(const std::string& dir, int n, size_t size, uint64_t seed,
                         std::map<std::string, Id>* sha = nullptr) {
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  for (int i = 0; i < n; ++i) {
    Bytes d = test::RandomBytes(size, seed + uint64_t(i));
    std::string p = dir + "/r" + std::to_string(i);
    test::WriteBytes(p, d);
    if (sha) (*sha)[p] = Sha256(d);
  }
  return uint64_t(n) * size;
}

// Runs a backup, stops it with `sig` once `fraction` of `total` bytes are
// in packs on disk; returns the exit status and the pack bytes left behind.
struct Interrupted {
  int status = 0;
  uint64_t pack_bytes = 0;
  std::string out, err;
};
Interrupted InterruptBackup(const std::string& repo, const std::string& src, uint64_t total, double fraction,
                            int sig, const std::string& scratch) {
  Interrupted res;
  std::string out = scratch + "/backup.out", err = scratch + "/backup.err";
  pid_t pid = SpawnBackup(repo, Q(src), out, err);
  bool signalled = false, exited = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &res.status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    if (PackBytes(repo) >= uint64_t(double(total) * fraction)) {
      ::kill(pid, sig);
      signalled = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!exited) REQUIRE(::waitpid(pid, &res.status, 0) == pid);
  res.out = Slurp(out);
  res.err = Slurp(err);
  INFO("stdout:\n" << res.out << "\nstderr:\n" << res.err);
  REQUIRE(signalled);  // else the backup finished (or hung) before the point
  res.pack_bytes = PackBytes(repo);
  return res;
}


}  // namespace

// ----------------------------------------------------------------------------
// Round trip of every file type and metadata item

TEST_CASE("backup cli: every file type and metadata item round-trips through ls --long --json", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  auto t = test::MakeAllTypesTree(work.path() + "/src");
  std::map<std::string, struct stat> st;
  for (const auto& e : t.entries) st[e.rel] = test::Lstat(t.root + "/" + e.rel);

  json sum = Backup(repo, Q(t.root));
  REQUIRE(sum["partial"] == false);
  REQUIRE(sum["summary"]["errors"] == 0);
  auto ls = Ls(repo, "latest");

  for (const auto& e : t.entries) {
    INFO("entry " << e.rel);
    std::string path = t.root + "/" + e.rel;
    REQUIRE(ls.count(path));
    const json& j = ls[path];
    INFO(j.dump());
    const struct stat& s = st[e.rel];
    REQUIRE(TextField(j, "name") == e.rel.substr(e.rel.rfind('/') + 1));
    REQUIRE(j["type"] == TypeName(s.st_mode));
    REQUIRE(j["mode"] == Octal(s.st_mode & 07777));
    REQUIRE(j["uid"] == s.st_uid);
    REQUIRE(j["gid"] == s.st_gid);
    REQUIRE(TextField(j, "user") == test::UserName(s.st_uid));
    REQUIRE(TextField(j, "group") == test::GroupName(s.st_gid));
    REQUIRE(j["mtime_ns"] == e.mtime_ns);
    REQUIRE(j["mtime"] == snapshot::FormatTimeNs(e.mtime_ns));
    if (e.check_atime) {
      REQUIRE(j["atime_ns"] == e.atime_ns);
      REQUIRE(j["atime"] == snapshot::FormatTimeNs(e.atime_ns));
    }
    REQUIRE(j["ctime"] == snapshot::FormatTimeNs(test::Ns(s.st_ctim)));
    REQUIRE(j["inode"] == s.st_ino);
    REQUIRE(j["nlink"] == s.st_nlink);
    REQUIRE_FALSE(j.contains("flags"));
    json xattrs = json::object();
    for (const auto& [k, v] : e.xattrs) xattrs[k] = Base64Encode(AsBytes(v));
    REQUIRE(j.value("xattrs", json::object()) == xattrs);
    json holes = json::array();
    for (const auto& [off, len] : e.holes) holes.push_back({off, len});
    REQUIRE(j.value("holes", json::array()) == holes);
    if (S_ISREG(s.st_mode)) {
      REQUIRE(j["size"] == s.st_size);
      REQUIRE(j["sha256"] == e.sha256.Hex());
    } else {
      REQUIRE(j["size"] == 0);
    }
    if (S_ISCHR(s.st_mode) || S_ISBLK(s.st_mode)) REQUIRE(j["rdev"] == s.st_rdev);
    if (S_ISLNK(s.st_mode)) {
      char buf[256];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
      REQUIRE(TextField(j, "link_target") == std::string(buf, size_t(n)));
    }
  }
  // The specific values, spelled out.
  std::string r = t.root + "/";
  REQUIRE(ls[r + "setuid"]["mode"] == "4755");
  REQUIRE(ls[r + "setuid"]["user"] == test::UserName(65534));
  REQUIRE(ls[r + "setuid"]["group"] == test::GroupName(65534));
  REQUIRE(ls[r + "setgid_dir"]["mode"] == "2775");
  REQUIRE(ls[r + "sticky"]["mode"] == "1777");
  REQUIRE(ls[r + "unknown_owner"]["uid"] == 123456);
  REQUIRE(ls[r + "unknown_owner"]["user"] == "");
  REQUIRE(ls[r + "hard1"]["inode"] == ls[r + "hard2"]["inode"]);
  REQUIRE(ls[r + "hard1"]["nlink"] == 2);
  REQUIRE(ls[r + "symlink"]["link_target"] == "file");
  REQUIRE(ls[r + "dangling"]["link_target"] == "does/not/exist");
  REQUIRE(ls[r + "chr"]["rdev"] == makedev(1, 3));
  REQUIRE(ls[r + "blk"]["rdev"] == makedev(7, 200));
  REQUIRE(ls[r + "sock"]["type"] == "socket");
  REQUIRE(ls[r + "fifo"]["type"] == "fifo");
  REQUIRE(ls[r + "xattrs"]["xattrs"]["user.custos"] == Base64Encode(AsBytes("value")));
  REQUIRE(ls[r + "acl"]["xattrs"].contains("system.posix_acl_access"));
  REQUIRE(ls[r + "acl_dir"]["xattrs"].contains("system.posix_acl_default"));
  REQUIRE(ls[r + "big"]["chunks"].get<int>() > 1);
  REQUIRE(ls[r + "empty"]["sha256"] == Sha256(ByteView()).Hex());
  // A name that is not UTF-8 travels as base64, exactly.
  {
    RunResult lr = C(repo, "--json ls latest " + Q(t.root));
    REQUIRE_EXIT(lr, 0);
    bool found = false;
    for (const auto& j : JsonLines(lr.out)) {
      if (!j.contains("name_base64")) continue;
      found = true;
      REQUIRE_FALSE(j.contains("name"));
      REQUIRE_FALSE(j.contains("path"));
      REQUIRE(j["name_base64"] == Base64Encode(AsBytes(t.bad_name)));
      REQUIRE(j["path_base64"] == Base64Encode(AsBytes(t.root + "/" + t.bad_name)));
    }
    REQUIRE(found);
  }
  // Every regular file in the snapshot hashes like its source file.
  int files = 0;
  for (const auto& [p, j] : ls) {
    if (j["type"] != "file" || p.rfind(r, 0) != 0) continue;
    ++files;
    REQUIRE(j["sha256"] == test::FileSha256(p).Hex());
  }
  REQUIRE(files == 12);
  // The text listing shows the same metadata.
  {
    RunResult lr = C(repo, "ls --long latest " + Q(t.root));
    REQUIRE_EXIT(lr, 0);
    REQUIRE(Contains(lr.out, "-rwsr-xr-x " + test::UserName(65534) + "/" + test::GroupName(65534)));
    REQUIRE(Contains(lr.out, "drwxrwsr-x"));
    REQUIRE(Contains(lr.out, "drwxrwxrwt"));
    REQUIRE(Contains(lr.out, "123456/654321"));
    REQUIRE(Contains(lr.out, r + "symlink -> file"));
    REQUIRE(Contains(lr.out, "\ncrw--w---- "));
    REQUIRE(Contains(lr.out, "\nbrw-rw---- "));
    REQUIRE(Contains(lr.out, "\nprw-r----- "));
    REQUIRE(Contains(lr.out, "\nsrwx"));
  }
  RequireCheckReadData(repo);
}

// ----------------------------------------------------------------------------
// Hostile trees

TEST_CASE("backup cli: hostile names, 4096-byte paths and symlink loops are backed up exactly", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  std::vector<std::string> names = {
      "new\nline",          "two\n\nnewlines\n",  "tab\there",          std::string("\x01\x1b[31mred", 9),
      "bad\xff\xfe",        "\xc3\x28",           "\xed\xa0\x80",       "back\\slash",
      "quote\"'",           "*?[glob]",           " leading space",     "trailing space ",
      "-dash",              "h\xc3\xa9llo \xe2\x9c\x93", std::string(255, 'x'), "percent%s%n",
      "overlong\xc0\xafslash", "\xf4\x90\x80\x80" "big",   "\xef\xbf\xbd",     "trunc\xe2\x82",
  };
  for (size_t i = 0; i < names.size(); ++i) test::WriteString(src + "/" + names[i], "content " + std::to_string(i));
  // Symlink loops, and a directory symlink to its parent.
  REQUIRE(::symlink("b", (src + "/a").c_str()) == 0);
  REQUIRE(::symlink("a", (src + "/b").c_str()) == 0);
  REQUIRE(::symlink("self", (src + "/self").c_str()) == 0);
  REQUIRE(::mkdir((src + "/loopdir").c_str(), 0755) == 0);
  REQUIRE(::symlink("..", (src + "/loopdir/parent").c_str()) == 0);
  REQUIRE(::symlink(src.c_str(), (src + "/loopdir/abs").c_str()) == 0);
  // Deep nesting of 255-byte names: the path passes 4096 bytes (PATH_MAX),
  // so the tree is built with *at() calls.
  std::string deep_rel;
  {
    Fd dir(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int level = 0; deep_rel.size() < 4200; ++level) {
      std::string name(255, char('a' + level % 26));
      REQUIRE(::mkdirat(dir.get(), name.c_str(), 0755) == 0);
      dir = Fd(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      REQUIRE(dir.valid());
      deep_rel += (deep_rel.empty() ? "" : "/") + name;
    }
    Fd f(::openat(dir.get(), "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    REQUIRE(f.valid());
    REQUIRE(::write(f.get(), "at the bottom", 13) == 13);
  }
  std::string deep_leaf = src + "/" + deep_rel + "/leaf";
  REQUIRE(deep_leaf.size() > 4096);

  auto start = std::chrono::steady_clock::now();
  json sum = Backup(repo, Q(src));
  REQUIRE(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // terminates
  REQUIRE(sum["partial"] == false);
  auto ls = Ls(repo, "latest");
  for (size_t i = 0; i < names.size(); ++i) {
    INFO("name #" << i);
    std::string p = src + "/" + names[i];
    REQUIRE(ls.count(p));
    REQUIRE(TextField(ls[p], "name") == names[i]);
    REQUIRE(ls[p]["sha256"] == Sha256(AsBytes("content " + std::to_string(i))).Hex());
    // Invalid UTF-8 travels as base64; valid names as text.
    REQUIRE(ls[p].contains("name") == IsValidUtf8(names[i]));
  }
  REQUIRE(ls[src + "/a"]["link_target"] == "b");
  REQUIRE(ls[src + "/b"]["link_target"] == "a");
  REQUIRE(ls[src + "/self"]["link_target"] == "self");
  REQUIRE(ls[src + "/loopdir/parent"]["type"] == "symlink");
  REQUIRE(ls[src + "/loopdir/parent"]["link_target"] == "..");
  REQUIRE(ls[src + "/loopdir/abs"]["link_target"] == src);
  REQUIRE(ls.count(deep_leaf));
  REQUIRE(ls[deep_leaf]["sha256"] == Sha256(AsBytes("at the bottom")).Hex());
  // Nothing was followed: exactly the entries made.
  size_t levels = std::count(deep_rel.begin(), deep_rel.end(), '/') + 1;
  REQUIRE(Below(ls, src).size() == names.size() + 6 + levels + 1);
  // The text listing prints one line per entry: newlines and control bytes are escaped.
  RunResult text = C(repo, "ls latest " + Q(src));
  REQUIRE_EXIT(text, 0);
  REQUIRE(size_t(std::count(text.out.begin(), text.out.end(), '\n')) == Below(ls, src).size() + 1);
  REQUIRE(Contains(text.out, src + "/new\\x0aline\n"));
  REQUIRE_FALSE(Contains(text.out, "\x1b"));
  // A backup path that is not UTF-8: base64 in `snapshots --json`, and
  // exact in the manifest (the next backup finds it as its parent).
  {
    std::string bad = src + "/" + names[4];
    Backup(repo, Q(bad));
    RunResult r = C(repo, "--json snapshots");
    REQUIRE_EXIT(r, 0);
    json last = json::parse(r.out).back();
    REQUIRE(last["paths"] == json::array({json{{"base64", Base64Encode(AsBytes(bad))}}}));
    json again = Backup(repo, Q(bad));
    REQUIRE(again["parent"] == last["id"]);
    REQUIRE(again["summary"]["bytes_read"] == 0);
  }
  RequireCheckReadData(repo);
}

TEST_CASE("backup cli: a tree nested deeper than the walker's limit gives a partial snapshot, not a crash",
          "[backup][cli]") {
  // The walker recurses once per directory level; without a limit a deep
  // enough tree (a few thousand levels) overflows the stack.
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  // On a tmpfs when possible: deleting thousands of nested directories from
  // a disk file system takes seconds.
  MountGuard guard{src};
  guard.mounted = ::mount("tmpfs", src.c_str(), "tmpfs", 0, "size=64m,mode=0755") == 0;
  {
    Fd dir(::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int level = 0; level < 2100; ++level) {
      REQUIRE(::mkdirat(dir.get(), "d", 0755) == 0);
      dir = Fd(::openat(dir.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      REQUIRE(dir.valid());
    }
  }
  test::WriteString(src + "/shallow", "still backed up");
  json sum = Backup(repo, Q(src), 3);
  REQUIRE(sum["partial"] == true);
  REQUIRE(sum["summary"]["errors"] == 1);
  RunResult r = C(repo, "--json ls latest");
  REQUIRE_EXIT(r, 0);
  int flagged = 0;
  size_t deepest = 0;
  for (const auto& j : JsonLines(r.out)) {
    std::string p = TextField(j, "path");
    size_t depth = size_t(std::count(p.begin(), p.end(), '/'));
    deepest = std::max(deepest, depth);
    if (j.contains("flags")) {
      ++flagged;
      REQUIRE(j["flags"] == json::array({"read_error"}));
      REQUIRE(j["type"] == "dir");
      REQUIRE(depth == 2049);
    }
    if (p == src + "/shallow") REQUIRE(j["sha256"] == Sha256(AsBytes("still backed up")).Hex());
  }
  REQUIRE(flagged == 1);
  REQUIRE(deepest == 2049);
  RunResult snaps = C(repo, "--json snapshots");
  REQUIRE(Contains(json::parse(snaps.out)[0]["summary"].dump(), "\"errors\":1"));
  RequireCheckReadData(repo);
}

TEST_CASE("backup cli: unreadable files and directories give warnings, a partial snapshot and exit 3",
          "[backup][cli]") {
  test::TempDir work;
  REQUIRE(::chmod(work.path().c_str(), 0755) == 0);  // nobody must reach the repo and the tree
  // A copy of the binary where nobody can surely run it.
  std::string bin = work.path() + "/custos";
  REQUIRE(::system(("cp " + Q(CUSTOS_BINARY) + " " + Q(bin)).c_str()) == 0);
  std::string repo = work.path() + "/repo";
  REQUIRE(::mkdir(repo.c_str(), 0755) == 0);
  REQUIRE(::chown(repo.c_str(), 65534, 65534) == 0);
  auto as_nobody = [&](const std::string& args) {
    return test::Run("env -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + kEnv +
                     " setpriv --reuid=65534 --regid=65534 --clear-groups " + bin + " --repo " + Q(repo) + " " +
                     args);
  };
  REQUIRE_EXIT(as_nobody("init --kdf-ops 1 --kdf-memory 1 --no-recovery-key"), 0);

  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/readable", "anyone may read this");
  test::WriteString(src + "/secret.txt", "root only", 0600);
  REQUIRE(::chmod((src + "/secret.txt").c_str(), 0600) == 0);
  REQUIRE(::mkdir((src + "/private").c_str(), 0700) == 0);
  test::WriteString(src + "/private/inside", "hidden");
  REQUIRE(::mkdir((src + "/open").c_str(), 0755) == 0);
  test::WriteString(src + "/open/after", "read after the failures");
  REQUIRE(::mkdir((src + "/listonly").c_str(), 0711) == 0);  // searchable, not listable
  test::WriteString(src + "/listonly/x", "x");

  SECTION("text output") {
    RunResult r = as_nobody("backup " + Q(src));
    REQUIRE_EXIT(r, 3);
    REQUIRE(Contains(r.err, "warning: " + src + "/secret.txt: open: Permission denied"));
    REQUIRE(Contains(r.err, "warning: " + src + "/private: open directory: Permission denied"));
    REQUIRE(Contains(r.err, "warning: " + src + "/listonly: open directory: Permission denied"));
    REQUIRE(Contains(r.out, "partial"));
  }
  SECTION("json output") {
    RunResult r = as_nobody("--json backup " + Q(src));
    REQUIRE_EXIT(r, 3);
    auto lines = JsonLines(r.out);
    int errors = 0;
    for (const auto& j : lines) {
      if (j["message_type"] == "error") {
        ++errors;
        REQUIRE(Contains(j["message"].get<std::string>(), "Permission denied"));
      }
    }
    REQUIRE(errors == 3);
    REQUIRE(lines.back()["partial"] == true);
    REQUIRE(lines.back()["summary"]["errors"] == 3);
  }
  RunResult snaps = C(repo, "--json snapshots");
  REQUIRE_EXIT(snaps, 0);
  json arr = json::parse(snaps.out);
  REQUIRE(arr.size() == 1);
  REQUIRE(arr[0]["partial"] == true);
  REQUIRE(arr[0]["user"] == "nobody");
  auto ls = Ls(repo, "latest");
  REQUIRE(Below(ls, src) == std::set<std::string>{"readable", "private", "open", "open/after", "listonly"});
  REQUIRE(ls[src + "/readable"]["sha256"] == test::FileSha256(src + "/readable").Hex());
  REQUIRE(ls[src + "/open/after"]["sha256"] == test::FileSha256(src + "/open/after").Hex());
  REQUIRE(ls[src + "/private"]["flags"] == json::array({"read_error"}));
  REQUIRE(ls[src + "/private"]["mode"] == "0700");
  RequireCheckReadData(repo);
}

TEST_CASE("backup cli: a tree that changes during many backups never breaks one, and check passes",
          "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo, "--pack-size 1");
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  std::string d = src + "/d", f = src + "/f", big = src + "/big";
  REQUIRE(::mkdir(d.c_str(), 0755) == 0);
  for (int i = 0; i < 50; ++i) test::WriteBytes(d + "/x" + std::to_string(i), test::RandomBytes(5000, uint64_t(i)));
  test::WriteString(f, "a file");
  Bytes content = test::RandomBytes(6u << 20, 77);
  test::WriteBytes(big, content);

  std::atomic<bool> stop{false};
  std::thread churn([&] {
    Fd fd(::open(big.c_str(), O_WRONLY | O_CLOEXEC));
    uint64_t i = 0;
    while (!stop) {
      ::renameat2(AT_FDCWD, d.c_str(), AT_FDCWD, f.c_str(), RENAME_EXCHANGE);
      // Truncate and regrow the big file.
      off_t cut = off_t((i++ * 7919 * 4096) % content.size());
      if (::ftruncate(fd.get(), cut) != 0) break;
      if (::pwrite(fd.get(), content.data() + cut, content.size() - size_t(cut), cut) < 0) break;
    }
  });
  int runs = 0, flagged = 0;
  for (; runs < 8; ++runs) {
    RunResult r = C(repo, "--json backup --force " + Q(src));
    INFO(Show(r));
    REQUIRE((r.exit_code == 0 || r.exit_code == 3));
    json sum = JsonLines(r.out).back();
    REQUIRE(sum["message_type"] == "summary");
    REQUIRE(sum["partial"] == (r.exit_code == 3));
    auto ls = Ls(repo, sum["snapshot_id"].get<std::string>());
    if (ls.count(big)) {
      const json& j = ls[big];
      REQUIRE(j["size"].get<uint64_t>() <= content.size());
      if (j.contains("flags")) {
        REQUIRE(j["flags"] == json::array({"changed_while_read"}));
        ++flagged;
      } else {
        // Not flagged: what was recorded is a consistent prefix of the content.
        REQUIRE(j["sha256"] == Sha256(ByteView(content.data(), j["size"].get<size_t>())).Hex());
      }
    }
  }
  stop = true;
  churn.join();
  INFO("runs " << runs << ", flagged " << flagged);
  REQUIRE(flagged >= 1);
  RequireCheckReadData(repo);
}

// ----------------------------------------------------------------------------
// Deduplication and the files cache

TEST_CASE("backup cli: identical content is stored once, across files and snapshots", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  const uint64_t kSize = 3u << 20;
  const int kCopies = 5;
  Bytes data = test::RandomBytes(kSize, 1234);
  for (int i = 0; i < kCopies; ++i) test::WriteBytes(src + "/copy" + std::to_string(i), data);

  json s1 = Backup(repo, Q(src))["summary"];
  INFO(s1.dump());
  REQUIRE(s1["total_bytes"] == kCopies * kSize);
  REQUIRE(s1["bytes_read"] == kCopies * kSize);
  REQUIRE(s1["bytes_added_stored"].get<uint64_t>() >= kSize);
  REQUIRE(s1["bytes_added_stored"].get<uint64_t>() < kSize * 21 / 20);
  auto ls = Ls(repo, "latest");
  REQUIRE(s1["data_blobs_added"] == ls[src + "/copy0"]["chunks"]);

  // Changed: one copy rewritten, one new file; only those bytes are added.
  Bytes changed = test::RandomBytes(kSize, 4321);
  Bytes added = test::RandomBytes(1u << 20, 999);
  test::WriteBytes(src + "/copy2", changed);
  test::WriteBytes(src + "/added", added);
  json s2 = Backup(repo, Q(src))["summary"];
  INFO(s2.dump());
  REQUIRE(s2["files_new"] == 1);
  REQUIRE(s2["files_changed"] == 1);
  REQUIRE(s2["files_unmodified"] == kCopies - 1);
  uint64_t delta = kSize + added.size();
  REQUIRE(s2["bytes_added_stored"].get<uint64_t>() >= delta);
  REQUIRE(s2["bytes_added_stored"].get<uint64_t>() < delta * 21 / 20);

  // Identical again (and read again with --force): nothing added.
  json s3 = Backup(repo, "--force " + Q(src))["summary"];
  INFO(s3.dump());
  REQUIRE(s3["data_blobs_added"] == 0);
  REQUIRE(s3["bytes_added_stored"].get<uint64_t>() < 65536);  // tree blobs at most
  REQUIRE(s3["bytes_read"] == kCopies * kSize + added.size());

  // stats agrees: the unique data is one copy of each distinct content.
  RunResult st = C(repo, "--json stats");
  REQUIRE_EXIT(st, 0);
  json stats = json::parse(st.out);
  REQUIRE(stats["snapshots"] == 3);
  REQUIRE(stats["unique_bytes"].get<uint64_t>() >= 2 * kSize + added.size());
  REQUIRE(stats["unique_bytes"].get<uint64_t>() < 2 * kSize + added.size() + 65536);
  REQUIRE(stats["dedup_ratio"].get<double>() > 5.0);
  RequireCheckReadData(repo);
}

TEST_CASE("backup cli: the files cache reads nothing for an unchanged tree, only a touched file, all with --force",
          "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  std::map<std::string, Id> sha;
  uint64_t total = MakeRandomFiles(src, 10, 200000, 50, &sha);
  REQUIRE(::mkdir((src + "/sub").c_str(), 0755) == 0);
  test::WriteBytes(src + "/sub/deeper", test::RandomBytes(50000, 3));
  total += 50000;

  json s1 = Backup(repo, Q(src))["summary"];
  REQUIRE(s1["bytes_read"] == total);
  REQUIRE(s1["files_new"] == 11);

  json b2 = Backup(repo, Q(src));
  json s2 = b2["summary"];
  INFO(s2.dump());
  REQUIRE(s2["bytes_read"] == 0);
  REQUIRE(s2["files_unmodified"] == 11);
  REQUIRE(s2["total_files"] == 11);
  REQUIRE(s2["data_blobs_added"] == 0);
  REQUIRE(b2["parent"].is_string());

  std::string touched = src + "/r4";
  test::SetTimes(touched, timespec{1700000000, 5}, timespec{1700000000, 6});
  json s3 = Backup(repo, Q(src))["summary"];
  INFO(s3.dump());
  REQUIRE(s3["bytes_read"] == 200000);
  REQUIRE(s3["files_changed"] == 1);
  REQUIRE(s3["files_unmodified"] == 10);
  REQUIRE(s3["data_blobs_added"] == 0);
  REQUIRE(Ls(repo, "latest")[touched]["mtime_ns"] == int64_t(1700000000) * 1000000000 + 6);

  // Content changed with size and mtime kept: ctime still gives it away.
  {
    struct stat before = test::Lstat(src + "/r7");
    Bytes other = test::RandomBytes(200000, 4242);
    test::WriteBytes(src + "/r7", other);
    test::SetTimes(src + "/r7", before.st_atim, before.st_mtim);
    json s = Backup(repo, Q(src))["summary"];
    REQUIRE(s["bytes_read"] == 200000);
    REQUIRE(Ls(repo, "latest")[src + "/r7"]["sha256"] == Sha256(other).Hex());
  }

  json s4 = Backup(repo, "--force " + Q(src))["summary"];
  INFO(s4.dump());
  REQUIRE(s4["bytes_read"] == total);
  REQUIRE(s4["files_unmodified"] == 0);
  REQUIRE(s4["files_new"].get<int>() + s4["files_changed"].get<int>() == 11);
}

// ----------------------------------------------------------------------------
// Interrupted backups

TEST_CASE("backup cli: a backup killed half way is resumed by the next one, which writes only the rest",
          "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo, "--pack-size 1");
  std::string src = work.path() + "/src";
  std::map<std::string, Id> sha;
  const uint64_t total = MakeRandomFiles(src, 16, 8u << 20, 1000, &sha);  // 128 MiB, incompressible

  Interrupted k = InterruptBackup(repo, src, total, 0.45, SIGKILL, work.path());
  REQUIRE(WIFSIGNALED(k.status));
  REQUIRE(WTERMSIG(k.status) == SIGKILL);
  INFO("pack bytes at the kill: " << k.pack_bytes << " of " << total);
  REQUIRE(k.pack_bytes >= total * 45 / 100);
  REQUIRE(k.pack_bytes < total);
  // The JSON progress lines on stdout were being printed.
  for (const auto& j : JsonLines(k.out)) REQUIRE(j["message_type"] == "status");
  // No snapshot, and the repository is consistent (the orphan packs are only warnings).
  RunResult snaps = C(repo, "--json snapshots");
  REQUIRE_EXIT(snaps, 0);
  REQUIRE(json::parse(snaps.out).empty());
  REQUIRE_EXIT(C(repo, "check"), 0);

  json rerun = Backup(repo, Q(src));
  json s = rerun["summary"];
  INFO(s.dump());
  uint64_t stored = s["bytes_added_stored"].get<uint64_t>();
  REQUIRE(s["bytes_read"] == total);  // no parent snapshot: every file is read ...
  REQUIRE(stored < total * 60 / 100);  // ... but what the killed run stored is not stored again
  REQUIRE(stored + k.pack_bytes >= total);
  REQUIRE(PackBytes(repo) < total + total / 20);  // nothing stored twice
  RequireCheckReadData(repo);
  auto ls = Ls(repo, "latest");
  for (const auto& [p, id] : sha) REQUIRE(ls[p]["sha256"] == id.Hex());
}

TEST_CASE("backup cli: Ctrl-C (SIGINT) stops a backup with exit 130 and a consistent repository",
          "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo, "--pack-size 1");
  std::string src = work.path() + "/src";
  const uint64_t total = MakeRandomFiles(src, 6, 8u << 20, 2000);

  Interrupted k = InterruptBackup(repo, src, total, 0.25, SIGINT, work.path());
  INFO("stderr: " << k.err);
  REQUIRE(WIFEXITED(k.status));
  REQUIRE(WEXITSTATUS(k.status) == 130);
  REQUIRE(Contains(k.err, "interrupted"));
  RunResult snaps = C(repo, "--json snapshots");
  REQUIRE_EXIT(snaps, 0);
  REQUIRE(json::parse(snaps.out).empty());
  RequireCheckReadData(repo);
  // The lock went with the process: the next backup runs and reuses the packs.
  json s = Backup(repo, Q(src))["summary"];
  REQUIRE(s["bytes_added_stored"].get<uint64_t>() + k.pack_bytes >= total);
  REQUIRE(s["bytes_added_stored"].get<uint64_t>() < total * 80 / 100);
  RequireCheckReadData(repo);
}

// ----------------------------------------------------------------------------
// Browsing: snapshots, ls, diff, stats

TEST_CASE("backup cli: snapshots filters by host and tag, and IDs, prefixes and latest select snapshots",
          "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/one", "1");
  std::string id1 = Backup(repo, "--host alpha --tag daily " + Q(src))["snapshot_id"];
  test::WriteString(src + "/two", "2");
  std::string id2 = Backup(repo, "--host beta --tag weekly --tag x " + Q(src))["snapshot_id"];
  test::WriteString(src + "/three", "3");
  std::string id3 = Backup(repo, "--host alpha --tag weekly " + Q(src))["snapshot_id"];

  auto ids = [&](const std::string& flags) {
    RunResult r = C(repo, "--json snapshots " + flags);
    REQUIRE_EXIT(r, 0);
    std::vector<std::string> v;
    for (const auto& j : json::parse(r.out)) v.push_back(j["id"]);
    return v;
  };
  using V = std::vector<std::string>;
  REQUIRE(ids("") == V{id1, id2, id3});  // oldest first
  REQUIRE(ids("--host alpha") == V{id1, id3});
  REQUIRE(ids("--host beta") == V{id2});
  REQUIRE(ids("--tag weekly") == V{id2, id3});
  REQUIRE(ids("--tag weekly --tag x") == V{id2});
  REQUIRE(ids("--host alpha --tag weekly") == V{id3});
  REQUIRE(ids("--host nobody-here").empty());
  {
    RunResult r = C(repo, "--json snapshots --host beta");
    json j = json::parse(r.out)[0];
    REQUIRE(j["host"] == "beta");
    REQUIRE(j["tags"] == json::array({"weekly", "x"}));
    REQUIRE(j["short_id"] == id2.substr(0, 8));
    REQUIRE(j["paths"] == json::array({src}));
    REQUIRE(j["partial"] == false);
    REQUIRE(j["summary"]["files_new"] == 2);
  }
  {
    RunResult r = C(repo, "snapshots --tag daily");
    REQUIRE_EXIT(r, 0);
    REQUIRE(Contains(r.out, id1.substr(0, 8)));
    REQUIRE_FALSE(Contains(r.out, id2.substr(0, 8)));
    REQUIRE(Contains(r.out, "1 snapshot(s)"));
  }

  // ls: latest, latest per host, full ID, prefix (any case).
  REQUIRE(Below(Ls(repo, "latest"), src) == std::set<std::string>{"one", "two", "three"});
  {
    RunResult r = C(repo, "--json ls latest --host beta");
    REQUIRE_EXIT(r, 0);
    std::set<std::string> got;
    for (const auto& j : JsonLines(r.out)) got.insert(TextField(j, "path"));
    REQUIRE(got.count(src + "/two"));
    REQUIRE_FALSE(got.count(src + "/three"));
  }
  REQUIRE(Below(Ls(repo, id1), src) == std::set<std::string>{"one"});
  REQUIRE(Below(Ls(repo, id2.substr(0, 10)), src) == std::set<std::string>{"one", "two"});
  std::string upper = id2.substr(0, 8);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  REQUIRE(Below(Ls(repo, upper), src) == std::set<std::string>{"one", "two"});
  // ls of a subpath.
  {
    auto sub = Ls(repo, id1.substr(0, 8), src + "/one");
    REQUIRE(sub.size() == 1);
    REQUIRE(sub.count(src + "/one"));
  }
  // diff and stats take the same specs.
  {
    RunResult r = C(repo, "--json diff " + id1.substr(0, 8) + " latest");
    REQUIRE_EXIT(r, 0);
    std::set<std::string> added;
    for (const auto& j : JsonLines(r.out)) {
      if (j["change"] == "+") added.insert(TextField(j, "path"));
    }
    REQUIRE(added == std::set<std::string>{src + "/two", src + "/three"});
  }
  {
    RunResult r = C(repo, "--json stats " + id2.substr(0, 12));
    REQUIRE_EXIT(r, 0);
    REQUIRE(json::parse(r.out)["snapshots"] == 1);
    REQUIRE(json::parse(r.out)["files"] == 2);
    RunResult l = C(repo, "--json stats latest");
    REQUIRE_EXIT(l, 0);
    REQUIRE(json::parse(l.out)["files"] == 3);
  }

  // Unknown and malformed specs.
  std::string unknown;
  for (int i = 0; i < 256 && unknown.empty(); ++i) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%02x", i);
    if (id1.rfind(buf, 0) != 0 && id2.rfind(buf, 0) != 0 && id3.rfind(buf, 0) != 0) unknown = buf;
  }
  for (const std::string& cmd : std::vector<std::string>{"ls " + unknown, "diff " + unknown + " latest", "stats " + unknown}) {
    RunResult r = C(repo, cmd);
    INFO(cmd);
    REQUIRE_EXIT(r, 1);
    REQUIRE(Contains(r.err, "no snapshot with ID " + unknown));
  }
  for (const std::string& spec : std::vector<std::string>{"not-hex", "xyz", "latest2", std::string(65, 'a')}) {
    RunResult r = C(repo, "ls " + Q(spec));
    INFO(spec);
    REQUIRE(r.exit_code != 0);
    REQUIRE(Contains(r.err, "is not a snapshot ID"));
  }
  {
    RunResult r = C(repo, "ls latest --host nobody-here");
    REQUIRE(r.exit_code != 0);
    REQUIRE(Contains(r.err, "no snapshot matches 'latest'"));
  }

  // Ambiguous prefixes: back up until two IDs share their first hex digit.
  std::map<char, std::vector<std::string>> by_first;
  for (const auto& id : {id1, id2, id3}) by_first[id[0]].push_back(id);
  for (int i = 0; i < 20 && std::none_of(by_first.begin(), by_first.end(), [](auto& kv) { return kv.second.size() > 1; });
       ++i) {
    test::WriteString(src + "/more" + std::to_string(i), std::to_string(i));
    std::string id = Backup(repo, "--host gamma " + Q(src))["snapshot_id"];
    by_first[id[0]].push_back(id);
  }
  auto amb = std::find_if(by_first.begin(), by_first.end(), [](auto& kv) { return kv.second.size() > 1; });
  REQUIRE(amb != by_first.end());
  std::string prefix(1, amb->first);
  for (const std::string& cmd : std::vector<std::string>{"ls " + prefix, "diff " + prefix + " latest", "stats " + prefix}) {
    RunResult r = C(repo, cmd);
    INFO(cmd);
    REQUIRE_EXIT(r, 1);
    REQUIRE(Contains(r.err, "ambiguous"));
  }
  // A longer prefix of one of them resolves.
  REQUIRE_EXIT(C(repo, "ls " + amb->second[0].substr(0, 16)), 0);
}

TEST_CASE("backup cli: diff shows +, -, M, U and T for a scripted change set", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/same", "unchanged");
  test::WriteString(src + "/modify", "old content");
  test::WriteString(src + "/chmod", "mode changes");
  test::WriteString(src + "/remove", "goes away");
  test::WriteString(src + "/typechg", "becomes a directory");
  REQUIRE(::mkdir((src + "/dir").c_str(), 0755) == 0);
  test::WriteString(src + "/dir/x", "x");
  test::WriteString(src + "/dir/keep", "keep");
  REQUIRE(::mkdir((src + "/gone").c_str(), 0755) == 0);
  test::WriteString(src + "/gone/y", "y");
  REQUIRE(::symlink("old-target", (src + "/link").c_str()) == 0);
  std::string a = Backup(repo, Q(src))["snapshot_id"];

  test::WriteString(src + "/modify", "new content, longer");
  REQUIRE(::chmod((src + "/chmod").c_str(), 0600) == 0);
  REQUIRE(::unlink((src + "/remove").c_str()) == 0);
  REQUIRE(::unlink((src + "/typechg").c_str()) == 0);
  REQUIRE(::mkdir((src + "/typechg").c_str(), 0755) == 0);
  REQUIRE(::unlink((src + "/dir/x").c_str()) == 0);
  REQUIRE(::system(("rm -r " + Q(src + "/gone")).c_str()) == 0);
  test::WriteString(src + "/added", "new file");
  REQUIRE(::mkdir((src + "/newdir").c_str(), 0755) == 0);
  test::WriteString(src + "/newdir/z", "z");
  REQUIRE(::unlink((src + "/link").c_str()) == 0);
  REQUIRE(::symlink("new-target", (src + "/link").c_str()) == 0);
  std::string b = Backup(repo, Q(src))["snapshot_id"];

  RunResult r = C(repo, "--json diff " + a.substr(0, 8) + " " + b);
  REQUIRE_EXIT(r, 0);
  std::set<std::string> got;
  for (const auto& j : JsonLines(r.out)) {
    std::string p = TextField(j, "path");
    if (p.rfind(src, 0) == 0) got.insert(j["change"].get<std::string>() + " " + p.substr(src.size()));
  }
  std::set<std::string> want = {
      "U ",              // the directory itself: its mtime changed
      "+ /added",        "+ /newdir", "+ /newdir/z", "- /remove", "- /gone", "- /gone/y", "- /dir/x",
      "U /dir",          // listing changed: mtime
      "M /modify",       "U /chmod",  "T /typechg", "U /link",
  };
  REQUIRE(got == want);
  // The text form, with the counts.
  RunResult t = C(repo, "diff " + a + " latest");
  REQUIRE_EXIT(t, 0);
  REQUIRE(Contains(t.out, "M    " + src + "/modify\n"));
  REQUIRE(Contains(t.out, "T    " + src + "/typechg\n"));
  REQUIRE(Contains(t.out, "added: 3, removed: 4, content changed: 1"));
  // Reversed, additions become removals.
  RunResult rev = C(repo, "--json diff " + b + " " + a);
  REQUIRE_EXIT(rev, 0);
  std::set<std::string> removed;
  for (const auto& j : JsonLines(rev.out)) {
    if (j["change"] == "-") removed.insert(TextField(j, "path"));
  }
  REQUIRE(removed == std::set<std::string>{src + "/added", src + "/newdir", src + "/newdir/z"});
  // A snapshot against itself: no changes.
  RunResult self = C(repo, "--json diff " + b + " " + b);
  REQUIRE_EXIT(self, 0);
  REQUIRE(self.out.empty());
}

TEST_CASE("backup cli: stats reports a dedup ratio above 1 for two identical snapshots", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  uint64_t total = MakeRandomFiles(src, 4, 300000, 77);
  Backup(repo, Q(src));
  RunResult one = C(repo, "--json stats latest");
  REQUIRE_EXIT(one, 0);
  json j1 = json::parse(one.out);
  REQUIRE(j1["logical_bytes"] == total);
  REQUIRE(j1["dedup_ratio"].get<double>() == Approx(1.0).epsilon(0.01));
  REQUIRE(j1["missing_blobs"] == 0);

  Backup(repo, "--force " + Q(src));
  RunResult all = C(repo, "--json stats");
  REQUIRE_EXIT(all, 0);
  json j = json::parse(all.out);
  INFO(j.dump());
  REQUIRE(j["snapshots"] == 2);
  REQUIRE(j["files"] == 8);
  REQUIRE(j["logical_bytes"] == 2 * total);
  REQUIRE(j["dedup_ratio"].get<double>() > 1.9);
  REQUIRE(j["dedup_ratio"].get<double>() <= 2.0);
  REQUIRE(j["stored_bytes"].get<uint64_t>() < total + total / 10);
  REQUIRE(j["repository_pack_bytes"].get<uint64_t>() >= j["stored_bytes"].get<uint64_t>());
  RunResult text = C(repo, "stats");
  REQUIRE_EXIT(text, 0);
  REQUIRE(Contains(text.out, "dedup ratio:"));
}

// ----------------------------------------------------------------------------
// Excludes

namespace {

const char kCacheTag[] = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n";

}  // namespace

TEST_CASE("backup cli: --exclude, --exclude-file and --exclude-caches", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  auto mk = [&](const std::string& rel) {
    if (rel.back() == '/') {
      REQUIRE(::mkdir((src + "/" + rel).c_str(), 0755) == 0);
    } else {
      test::WriteString(src + "/" + rel, rel);
    }
  };
  for (const char* p : {"keep.txt", "a.tmp", "sub/", "sub/b.tmp", "sub/keep2", "dir.tmp/", "dir.tmp/inside",
                        "skipdir/", "skipdir/x", "other/", "other/skipme", "other/keepme", "other/skipme.not",
                        "x.log", "sub/y.log", "cache/", "cache/data", "cache/sub/", "cache/sub/z",
                        "badcache/", "badcache/data", "nested/", "nested/cache/", "nested/cache/w"}) {
    mk(p);
  }
  test::WriteString(src + "/cache/CACHEDIR.TAG", kCacheTag);
  test::WriteString(src + "/nested/cache/CACHEDIR.TAG", kCacheTag);
  test::WriteString(src + "/badcache/CACHEDIR.TAG", "Signature: not the right one\n");
  std::string exfile = work.path() + "/excludes";
  test::WriteString(exfile, "# comment line\n\n*.log\r\n" + src + "/other/skipme   \n");

  SECTION("all together") {
    Backup(repo, "--exclude '*.tmp' --exclude " + Q(src + "/skipdir") + " --exclude-file " + Q(exfile) +
                     " --exclude-caches " + Q(src));
    auto ls = Ls(repo, "latest");
    REQUIRE(Below(ls, src) == std::set<std::string>{"keep.txt", "sub", "sub/keep2", "other", "other/keepme",
                                                    "other/skipme.not", "cache", "cache/CACHEDIR.TAG", "badcache",
                                                    "badcache/data", "badcache/CACHEDIR.TAG", "nested",
                                                    "nested/cache", "nested/cache/CACHEDIR.TAG"});
    REQUIRE(ls[src + "/cache/CACHEDIR.TAG"]["sha256"] == Sha256(AsBytes(std::string(kCacheTag))).Hex());
    REQUIRE(ls[src + "/cache"]["flags"] == json::array({"contents_excluded"}));
    REQUIRE(ls[src + "/nested/cache"]["flags"] == json::array({"contents_excluded"}));
    REQUIRE_FALSE(ls[src + "/badcache"].contains("flags"));
  }
  SECTION("a name pattern alone") {
    Backup(repo, "-e '*.tmp' " + Q(src));
    auto got = Below(Ls(repo, "latest"), src);
    REQUIRE_FALSE(got.count("a.tmp"));
    REQUIRE_FALSE(got.count("sub/b.tmp"));
    REQUIRE_FALSE(got.count("dir.tmp"));
    REQUIRE_FALSE(got.count("dir.tmp/inside"));
    REQUIRE(got.count("x.log"));
    REQUIRE(got.count("cache/sub/z"));
    REQUIRE(got.count("skipdir/x"));
    REQUIRE(got.size() == 27 - 4);
  }
  SECTION("a path pattern with a glob") {
    Backup(repo, "--exclude " + Q(src + "/*/skip*") + " " + Q(src));
    auto got = Below(Ls(repo, "latest"), src);
    REQUIRE_FALSE(got.count("other/skipme"));
    REQUIRE_FALSE(got.count("other/skipme.not"));
    REQUIRE(got.count("skipdir"));  // one level only: '*' does not match '/'
    REQUIRE(got.count("other/keepme"));
  }
  SECTION("a missing exclude file is an error") {
    RunResult r = C(repo, "backup --exclude-file " + Q(work.path() + "/nope") + " " + Q(src));
    REQUIRE(r.exit_code != 0);
    REQUIRE(Contains(r.err, "exclude file"));
    RunResult s = C(repo, "--json snapshots");
    REQUIRE(json::parse(s.out).empty());
  }
}

TEST_CASE("backup cli: --one-file-system keeps a mount point but not its contents", "[backup][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/here", "on the source file system");
  REQUIRE(::mkdir((src + "/mnt").c_str(), 0755) == 0);
  MountGuard guard{src + "/mnt"};
  if (::mount("tmpfs", guard.path.c_str(), "tmpfs", 0, "size=8m,mode=0750") != 0) {
    WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): --one-file-system not tested");
    SUCCEED();
    return;
  }
  guard.mounted = true;
  REQUIRE(::mkdir((src + "/mnt/sub").c_str(), 0755) == 0);
  test::WriteString(src + "/mnt/sub/there", "on the tmpfs");
  test::WriteString(src + "/mnt/top", "on the tmpfs too");

  Backup(repo, Q(src));
  REQUIRE(Below(Ls(repo, "latest"), src) ==
          std::set<std::string>{"here", "mnt", "mnt/sub", "mnt/sub/there", "mnt/top"});

  Backup(repo, "--one-file-system " + Q(src));
  auto ls = Ls(repo, "latest");
  REQUIRE(Below(ls, src) == std::set<std::string>{"here", "mnt"});
  REQUIRE(ls[src + "/mnt"]["flags"] == json::array({"contents_excluded"}));
  REQUIRE(ls[src + "/mnt"]["mode"] == "0750");  // the mount point as seen: the tmpfs root

  // A path given explicitly is backed up even when it is another file system.
  Backup(repo, "-x " + Q(src + "/mnt"));
  REQUIRE(Below(Ls(repo, "latest"), src + "/mnt") == std::set<std::string>{"sub", "sub/there", "top"});
  REQUIRE(::umount2(guard.path.c_str(), 0) == 0);
  guard.mounted = false;
}
