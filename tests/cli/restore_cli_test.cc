// End-to-end tests of `custos restore`: a bit-for-bit round trip, the
// verification summary, damaged blobs (exit 3, the affected files named),
// hostile snapshots, SIGKILL mid-restore and the rerun that finishes it,
// the target lock (exit 11), a full disk, read-only targets (exit 1), the
// overwrite policies, --include/--exclude, SNAPSHOT:/path, --before/--host
// and the --json summary. Runs as root (mounts, setpriv, mknod).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/backend.h"
#include "storage/repository.h"
#include "tests/cli/cli_fixture.h"
#include "tests/restore/restore_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using custos::test::RunResult;
using namespace custos::clitest;

namespace {



// `--json restore ARGS`: the summary; the exit code must be `code`.
json JsonRestore(const std::string& repo, const std::string& args, int code = 0) {
  RunResult r = C(repo, "--json restore " + args);
  REQUIRE_EXIT(r, code);
  INFO(Show(r));
  return json::parse(r.out);
}

std::string Slurp(const std::string& path) {
  auto b = ReadFile(path);
  return b.ok() ? std::string(b->begin(), b->end()) : std::string();
}


std::set<std::string> Names(const test::TreeInfo& t) {
  std::set<std::string> s;
  for (const auto& [rel, e] : t) {
    if (!rel.empty()) s.insert(rel);
  }
  return s;
}


// Regular files of distinct random content below `dir` (created):
// "d<i % dirs>/r<i>". Returns rel path -> SHA-256.
std::map<std::string, Id> MakeFiles(const std::string& dir, int n, size_t size, uint64_t seed, int dirs = 1) {
  std::map<std::string, Id> sha;
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  for (int d = 0; d < dirs; ++d) REQUIRE(::mkdir((dir + "/d" + std::to_string(d)).c_str(), 0755) == 0);
  for (int i = 0; i < n; ++i) {
    Bytes data = test::FastRandom(size, seed + uint64_t(i));
    std::string rel = "d" + std::to_string(i % dirs) + "/r" + std::to_string(i);
    test::WriteBytes(dir + "/" + rel, data);
    sha[rel] = Sha256(data);
  }
  return sha;
}

}  // namespace

// ----------------------------------------------------------------------------
// Round trip and verification

TEST_CASE("restore cli: a CLI backup restores bit for bit and the summary counts the verified files",
          "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  auto t = test::MakeAllTypesTree(work.path() + "/src");
  test::WriteString(t.root + "/new\nline", "newline in the name");
  test::TreeInfo src = test::ScanTree(t.root);
  std::string id = CliBackup(repo, Q(t.root));

  std::string target = work.path() + "/restored";
  RunResult r = C(repo, "restore " + Q(id.substr(0, 10) + ":" + t.root) + " --target " + Q(target));
  REQUIRE_EXIT(r, 0);
  test::TreeInfo dst = test::ScanTree(target);
  test::RequireSameTree(src, dst);
  REQUIRE(test::Temporaries(dst).empty());
  // 12 files (one per inode), 1 hard link, 6 specials, 3 directories.
  REQUIRE(Contains(r.out, "restored 12 files ("));
  REQUIRE(Contains(r.out, " 3 dirs, 1 links, 6 special; 0 already correct; 0 failed; in "));
  REQUIRE(Contains(r.out, "verification: 12 files match their recorded SHA-256\n"));
  REQUIRE(r.err.empty());
}

TEST_CASE("restore cli: verification is on by default and --verify none turns it off", "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  auto sha = MakeFiles(src, 6, 40000, 3, 2);
  CliBackup(repo, Q(src));

  RunResult on = C(repo, "restore latest:" + Q(src) + " --target " + Q(work.path() + "/a"));
  REQUIRE_EXIT(on, 0);
  REQUIRE(Contains(on.out, "verification: 6 files match their recorded SHA-256\n"));
  json jon = JsonRestore(repo, "latest:" + Q(src) + " --target " + Q(work.path() + "/b"));
  REQUIRE(jon["verified"] == true);
  REQUIRE(jon["files_verified"] == 6);

  RunResult off = C(repo, "restore latest:" + Q(src) + " --verify none --target " + Q(work.path() + "/c"));
  REQUIRE_EXIT(off, 0);
  REQUIRE(Contains(off.out, "restored 6 files"));
  REQUIRE(Contains(off.out, "\nverification: off\n"));
  json joff = JsonRestore(repo, "latest:" + Q(src) + " --verify none --target " + Q(work.path() + "/d"));
  REQUIRE(joff["verified"] == false);
  REQUIRE(joff["files_verified"] == 0);
  REQUIRE(joff["files_restored"] == 6);
  for (const auto& [rel, h] : sha) {
    REQUIRE(test::HashNoAtime(work.path() + "/c/" + rel) == h);
    REQUIRE(test::HashNoAtime(work.path() + "/d/" + rel) == h);
  }
  // A policy that does not exist is a usage error.
  REQUIRE_EXIT(C(repo, "restore latest --verify maybe --target " + Q(work.path() + "/e")), 2);
}

// ----------------------------------------------------------------------------
// Damaged repository, hostile snapshots

TEST_CASE("restore cli: a damaged blob names exactly the affected files, exits 3 and restores the rest",
          "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  auto sha = MakeFiles(src, 10, 120000, 40, 2);
  Bytes shared = test::FastRandom(900000, 41);
  test::WriteBytes(src + "/d0/copy1", shared);
  test::WriteBytes(src + "/d1/copy2", shared);
  std::string id = CliBackup(repo, Q(src));
  std::set<std::string> affected = {src + "/d0/copy1", src + "/d1/copy2"};
  {
    auto lib = OpenLib(repo);
    auto snap = snapshot::FindSnapshot(*lib, id);
    REQUIRE(snap.ok());
    Id chunk = test::FindNode(*lib, snap->manifest.tree, src + "/d0/copy1").content.back().id;
    std::set<std::string> holders;
    REQUIRE(snapshot::WalkTree(*lib, snap->manifest.tree, "/", [&](const std::string& p, const snapshot::Node& n) {
              for (const auto& c : n.content) {
                if (c.id == chunk) holders.insert(p);
              }
              return Status::Ok();
            }).ok());
    REQUIRE(holders == affected);
    test::DamageBlob(*lib, repo, chunk);
  }

  std::string target = work.path() + "/t";
  RunResult r = C(repo, "restore " + id + ":" + Q(src) + " --target " + Q(target));
  REQUIRE_EXIT(r, 3);
  auto errors = ErrorLines(r.err);
  std::set<std::string> named;
  for (const auto& [path, why] : errors) {
    named.insert(path);
    REQUIRE(Contains(why, "blob "));
  }
  REQUIRE(named == affected);
  REQUIRE(Contains(r.out, "restored 10 files"));
  REQUIRE(Contains(r.out, "; 2 failed;"));
  test::TreeInfo dst = test::ScanTree(target);
  REQUIRE(test::Temporaries(dst).empty());
  REQUIRE_FALSE(dst.count("d0/copy1"));
  REQUIRE_FALSE(dst.count("d1/copy2"));
  for (const auto& [rel, h] : sha) REQUIRE(dst[rel].sha256 == h);

  json j = JsonRestore(repo, id + ":" + Q(src) + " --target " + Q(target), 3);
  REQUIRE(j["files_failed"] == 2);
  REQUIRE(j["files_skipped"] == 10);
  REQUIRE(j["failures"].size() == 2);
}

TEST_CASE("restore cli: a crafted snapshot with '..' or 'a/b' names fails cleanly without writing outside",
          "[restore][cli]") {
  test::TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/payload", "must stay inside");
  auto b = test::BackupLib(*r.repo, {src});
  snapshot::Node file = test::FindNode(*r.repo, b.manifest.tree, src + "/payload");
  snapshot::Node dir = test::FindNode(*r.repo, b.manifest.tree, src);

  struct Case {
    std::string name;
    bool as_dir;
  };
  for (const Case& c : {Case{"..", true}, Case{"..", false}, Case{"a/b", false}, Case{"../../x", true}}) {
    INFO("name " << c.name << (c.as_dir ? " (directory)" : " (file)"));
    snapshot::Node bad = c.as_dir ? dir : file;
    bad.name = c.name;
    snapshot::Node ok = file;
    ok.name = "zz-ok";
    snapshot::Tree tree;
    tree.nodes = {bad, ok};  // ".." and "a/b" sort before "zz-ok"
    REQUIRE(snapshot::DecodeTree(snapshot::EncodeTree(tree)).status().code() == Code::kCorruption);
    Id root = test::AddTree(*r.repo, tree);
    Id snap = test::SaveCraftedSnapshot(*r.repo, root);

    test::TempDir scratch;
    REQUIRE(::mkdir((scratch.path() + "/a").c_str(), 0755) == 0);
    std::string target = scratch.path() + "/a/t";
    RunResult run = C(r.path, "restore " + snap.Hex() + " --target " + Q(target));
    REQUIRE_EXIT(run, 3);
    REQUIRE(Contains(run.err, "error: /: tree unreadable"));
    REQUIRE(Contains(run.err, "unsafe name"));
    REQUIRE(Names(test::ScanTree(scratch.path())) == std::set<std::string>{"a", "a/t"});
    // --json names it too.
    json j = JsonRestore(r.path, snap.Hex() + " --target " + Q(target), 3);
    REQUIRE(j["failures"].size() == 1);
    REQUIRE(Names(test::ScanTree(scratch.path())) == std::set<std::string>{"a", "a/t"});
  }
}

// ----------------------------------------------------------------------------
// Interrupted restore

TEST_CASE("restore cli: a restore killed mid-way leaves no wrong file and a rerun finishes the job",
          "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  const int kFiles = 64;
  auto sha = MakeFiles(src, kFiles, 2u << 20, 1000, 4);  // 128 MiB
  for (int d = 0; d < 4; ++d) {
    std::string p = src + "/d" + std::to_string(d);
    REQUIRE(::chmod(p.c_str(), 0750) == 0);
    test::SetTimes(p, timespec{1300000000, 1}, timespec{1400000000, 2});
  }
  for (const auto& [rel, h] : sha) test::SetTimes(src + "/" + rel, timespec{1000000000, 7}, timespec{1100000000, 9});
  test::TreeInfo source = test::ScanTree(src);
  std::string id = CliBackup(repo, Q(src));

  // Starts the restore into `target` and kills it once a few files are in
  // place under their real names. False if it finished first.
  std::string target;
  auto start_and_kill = [&](const std::string& t) {
    std::string out = work.path() + "/restore.out", err = work.path() + "/restore.err";
    std::string cmd = "exec env -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + kEnv + " " + CUSTOS_BINARY +
                      " --repo " + Q(repo) + " --json restore " + id + ":" + Q(src) + " --target " + Q(t) +
                      " </dev/null >" + Q(out) + " 2>" + Q(err);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    REQUIRE(pid > 0);
    auto real_files = [&] {
      int n = 0;
      for (int d = 0; d < 4; ++d) {
        DIR* dir = ::opendir((t + "/d" + std::to_string(d)).c_str());
        if (!dir) continue;
        while (dirent* de = ::readdir(dir)) {
          if (de->d_name[0] == 'r') ++n;
        }
        ::closedir(dir);
      }
      return n;
    };
    bool killed = false, exited = false;
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      if (real_files() >= 4) {
        ::kill(pid, SIGKILL);
        killed = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    if (!exited) REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("restore stderr: " << test::Printable(Slurp(err)));
    if (killed) REQUIRE(WIFSIGNALED(status));
    if (!killed) REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));  // finished before the kill
    return killed;
  };
  bool killed = false;
  for (int attempt = 0; attempt < 3 && !killed; ++attempt) {
    target = work.path() + "/t" + std::to_string(attempt);
    killed = start_and_kill(target);
  }
  REQUIRE(killed);

  // Every file under its real name is complete and right.
  test::TreeInfo mid = test::ScanTree(target);
  int in_place = 0;
  for (const auto& [rel, e] : mid) {
    std::string base = rel.substr(rel.find_last_of('/') + 1);
    if (!S_ISREG(e.st.st_mode) || base.rfind(test::kRestoreTmpPrefix, 0) == 0) continue;
    INFO(rel);
    REQUIRE(sha.count(rel));
    REQUIRE(e.sha256 == sha[rel]);
    REQUIRE(e.st.st_size == off_t(2u << 20));
    ++in_place;
  }
  INFO("files in place after the kill: " << in_place << ", temporaries: " << test::Temporaries(mid).size());
  REQUIRE(in_place >= 4);
  REQUIRE(in_place < kFiles);

  // The same restore again finishes the job, skipping what is in place.
  json j = JsonRestore(repo, id + ":" + Q(src) + " --target " + Q(target));
  REQUIRE(j["files_skipped"] == in_place);
  REQUIRE(j["files_restored"] == kFiles - in_place);
  REQUIRE(j["files_failed"] == 0);
  test::TreeInfo dst = test::ScanTree(target);
  REQUIRE(test::Temporaries(dst).empty());
  test::RequireSameTree(source, dst);
}

// ----------------------------------------------------------------------------
// Target problems: busy, full, read-only

TEST_CASE("restore cli: a target held by another restore exits 11 with a clear message", "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  MakeFiles(src, 3, 1000, 5);
  CliBackup(repo, Q(src));
  std::string target = work.path() + "/t";
  REQUIRE(::mkdir(target.c_str(), 0755) == 0);
  {
    Fd held(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(held.valid());
    REQUIRE(::flock(held.get(), LOCK_EX) == 0);
    RunResult r = C(repo, "restore latest:" + Q(src) + " --target " + Q(target));
    REQUIRE_EXIT(r, 11);
    REQUIRE(Contains(r.err, "restore target " + target + " is in use by another restore"));
    REQUIRE(Names(test::ScanTree(target)).empty());
  }
  REQUIRE_EXIT(C(repo, "restore latest:" + Q(src) + " --target " + Q(target)), 0);
}

TEST_CASE("restore cli: onto a full disk the files that do not fit are named, exit 3, nothing partial remains",
          "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  auto sha = MakeFiles(src, 10, 2u << 20, 300, 2);  // 20 MiB
  CliBackup(repo, Q(src));
  std::string mnt = work.path() + "/small";
  REQUIRE(::mkdir(mnt.c_str(), 0755) == 0);
  MountGuard guard{mnt};
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=8m,mode=0755") != 0) {
    WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): full disk not tested");
    return;
  }
  guard.mounted = true;
  std::string target = mnt + "/t";
  RunResult r = C(repo, "restore latest:" + Q(src) + " --target " + Q(target));
  REQUIRE_EXIT(r, 3);
  auto errors = ErrorLines(r.err);
  REQUIRE_FALSE(errors.empty());
  for (const auto& [path, why] : errors) {
    INFO(path << ": " << why);
    REQUIRE(path.rfind(src + "/d", 0) == 0);
    REQUIRE(sha.count(path.substr(src.size() + 1)));
    REQUIRE(Contains(why, "No space left on device"));
  }
  test::TreeInfo dst = test::ScanTree(target);
  REQUIRE(test::Temporaries(dst).empty());
  size_t in_place = 0;
  for (const auto& [rel, e] : dst) {
    if (!S_ISREG(e.st.st_mode)) continue;
    INFO(rel);
    REQUIRE(e.sha256 == sha.at(rel));
    ++in_place;
  }
  REQUIRE(in_place + errors.size() == sha.size());
  REQUIRE(in_place < sha.size());
}

TEST_CASE("restore cli: a read-only target is a clear error with exit 1", "[restore][cli]") {
  test::TempDir work;
  REQUIRE(::chmod(work.path().c_str(), 0755) == 0);  // nobody must reach the repository
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  MakeFiles(src, 3, 1000, 9);
  CliBackup(repo, Q(src));
  REQUIRE(::system(("chmod -R a+rX " + Q(repo)).c_str()) == 0);

  SECTION("a read-only file system") {
    std::string mnt = work.path() + "/ro";
    REQUIRE(::mkdir(mnt.c_str(), 0755) == 0);
    MountGuard guard{mnt};
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m,mode=0755") != 0) {
      WARN("cannot mount a tmpfs (" << std::strerror(errno) << "): read-only file system not tested");
      return;
    }
    guard.mounted = true;
    REQUIRE(::mkdir((mnt + "/existing").c_str(), 0755) == 0);
    REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=1m,mode=0755") == 0);
    for (const std::string& target : {mnt, mnt + "/existing", mnt + "/new/sub"}) {
      INFO("target " << target);
      RunResult r = C(repo, "restore latest:" + Q(src) + " --target " + Q(target));
      REQUIRE_EXIT(r, 1);
      REQUIRE(Contains(r.err, "Read-only file system"));
      REQUIRE(Contains(r.err, target));
    }
    REQUIRE(Names(test::ScanTree(mnt)) == std::set<std::string>{"existing"});
  }
  SECTION("a directory the user may not write to") {
    std::string bin = work.path() + "/custos";
    REQUIRE(::system(("cp " + Q(CUSTOS_BINARY) + " " + Q(bin)).c_str()) == 0);
    std::string ro = work.path() + "/ro";
    REQUIRE(::mkdir(ro.c_str(), 0755) == 0);
    REQUIRE(::chmod(ro.c_str(), 0555) == 0);
    for (const std::string& target : {ro, ro + "/sub"}) {
      INFO("target " << target);
      RunResult r = test::Run("env -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + kEnv +
                              " setpriv --reuid=nobody --regid=nogroup --clear-groups " + Q(bin) + " --repo " +
                              Q(repo) + " restore latest:" + Q(src) + " --target " + Q(target));
      REQUIRE_EXIT(r, 1);
      REQUIRE(Contains(r.err, "Permission denied"));
      REQUIRE(Contains(r.err, target));
    }
    REQUIRE(Names(test::ScanTree(ro)).empty());
  }
}

// ----------------------------------------------------------------------------
// Options

TEST_CASE("restore cli: --overwrite never, if-changed and always", "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/changed", "snapshot version");
  test::WriteString(src + "/same", "the same in both");
  test::WriteString(src + "/gone", "deleted from the target");
  CliBackup(repo, Q(src));
  std::string spec = "latest:" + Q(src);

  for (const std::string policy : {"never", "if-changed", "always", ""}) {
    INFO("policy " << policy);
    std::string target = work.path() + "/t-" + policy;
    REQUIRE_EXIT(C(repo, "restore " + spec + " --target " + Q(target)), 0);
    test::WriteString(target + "/changed", "LOCAL VERSION!!!");  // same size, other content
    REQUIRE(::unlink((target + "/gone").c_str()) == 0);
    test::WriteString(target + "/local", "not in the snapshot");
    ino_t same_ino = test::Lstat(target + "/same").st_ino;
    json j = JsonRestore(repo, spec + " --target " + Q(target) + (policy.empty() ? "" : " --overwrite " + policy));
    REQUIRE(test::HashNoAtime(target + "/gone") == Sha256(AsBytes("deleted from the target")));
    REQUIRE(test::HashNoAtime(target + "/local") == Sha256(AsBytes("not in the snapshot")));
    Id changed = test::HashNoAtime(target + "/changed");
    ino_t same_after = test::Lstat(target + "/same").st_ino;
    if (policy == "never") {
      REQUIRE(changed == Sha256(AsBytes("LOCAL VERSION!!!")));
      REQUIRE(same_after == same_ino);
      REQUIRE(j["files_restored"] == 1);
      REQUIRE(j["files_skipped"] == 2);
    } else if (policy == "always") {
      REQUIRE(changed == Sha256(AsBytes("snapshot version")));
      REQUIRE(same_after != same_ino);
      REQUIRE(j["files_restored"] == 3);
      REQUIRE(j["files_skipped"] == 0);
    } else {  // if-changed, the default
      REQUIRE(changed == Sha256(AsBytes("snapshot version")));
      REQUIRE(same_after == same_ino);
      REQUIRE(j["files_restored"] == 2);
      REQUIRE(j["files_skipped"] == 1);
    }
  }
  REQUIRE_EXIT(C(repo, "restore " + spec + " --overwrite sometimes --target " + Q(work.path() + "/x")), 2);
}

TEST_CASE("restore cli: --include and --exclude choose what is restored", "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  for (const char* d : {"sub", "sub/deeper", "other", "logs"}) REQUIRE(::mkdir((src + "/" + d).c_str(), 0755) == 0);
  for (const char* f : {"keep.txt", "skip.log", "sub/a.txt", "sub/b.log", "sub/deeper/c.txt", "other/d.bin",
                        "logs/e.txt"}) {
    test::WriteString(src + "/" + f, f);
  }
  REQUIRE(::chmod((src + "/sub").c_str(), 0710) == 0);
  CliBackup(repo, Q(src));
  auto restored = [&](const std::string& flags) {
    static int n = 0;
    std::string target = work.path() + "/t" + std::to_string(n++);
    REQUIRE_EXIT(C(repo, "restore latest:" + Q(src) + " " + flags + " --target " + Q(target)), 0);
    test::TreeInfo t = test::ScanTree(target);
    REQUIRE(test::Temporaries(t).empty());
    for (const auto& [rel, e] : t) {
      if (S_ISREG(e.st.st_mode)) REQUIRE(e.sha256 == Sha256(AsBytes(rel)));
    }
    return std::make_pair(Names(t), t);
  };
  using S = std::set<std::string>;
  REQUIRE(restored("--exclude '*.log'").first ==
          S{"keep.txt", "sub", "sub/a.txt", "sub/deeper", "sub/deeper/c.txt", "other", "other/d.bin", "logs",
            "logs/e.txt"});
  REQUIRE(restored("--exclude " + Q(src + "/sub") + " --exclude logs").first ==
          S{"keep.txt", "skip.log", "other", "other/d.bin"});
  {
    // Parents of included files are made, with their recorded metadata.
    auto [names, t] = restored("--include '*.txt'");
    REQUIRE(names == S{"keep.txt", "sub", "sub/a.txt", "sub/deeper", "sub/deeper/c.txt", "logs", "logs/e.txt"});
    REQUIRE((t["sub"].st.st_mode & 07777) == 0710);
  }
  REQUIRE(restored("--include " + Q(src + "/sub") + " --exclude '*.log'").first ==
          S{"sub", "sub/a.txt", "sub/deeper", "sub/deeper/c.txt"});
  REQUIRE(restored("--include " + Q(src + "/sub/deeper") + " --include skip.log").first ==
          S{"skip.log", "sub", "sub/deeper", "sub/deeper/c.txt"});
  REQUIRE(restored("--include nothing-matches").first.empty());
}

TEST_CASE("restore cli: SNAPSHOT:/path restores only that subtree, or the whole snapshot without one",
          "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/sub").c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/sub/deeper").c_str(), 0755) == 0);
  for (const char* f : {"top", "sub/a", "sub/deeper/b"}) test::WriteString(src + "/" + f, f);
  REQUIRE(::chmod((src + "/sub").c_str(), 0750) == 0);
  test::SetTimes(src + "/sub", timespec{1300000000, 5}, timespec{1400000000, 6});
  std::string id = CliBackup(repo, Q(src));
  using S = std::set<std::string>;

  // A directory: its contents land directly in the target, which takes the
  // directory's own metadata.
  std::string t1 = work.path() + "/t1";
  REQUIRE_EXIT(C(repo, "restore " + Q(id + ":" + src + "/sub") + " --target " + Q(t1)), 0);
  test::TreeInfo r1 = test::ScanTree(t1);
  REQUIRE(Names(r1) == S{"a", "deeper", "deeper/b"});
  REQUIRE(r1["a"].sha256 == Sha256(AsBytes("sub/a")));
  REQUIRE((r1[""].st.st_mode & 07777) == 0750);
  REQUIRE(test::StNs(r1[""].st.st_mtim) == 1400000000000000006);
  // A single file.
  std::string t2 = work.path() + "/t2";
  REQUIRE_EXIT(C(repo, "restore " + Q("latest:" + src + "/sub/deeper/b") + " --target " + Q(t2)), 0);
  REQUIRE(Names(test::ScanTree(t2)) == S{"b"});
  // Without a leading slash the path is still inside the snapshot, and
  // --exclude by absolute path applies to it.
  std::string t3 = work.path() + "/t3";
  REQUIRE_EXIT(C(repo, "restore " + Q(id + ":" + src.substr(1) + "/sub") + " --exclude " + Q(src + "/sub/deeper") +
                           " --target " + Q(t3)),
               0);
  REQUIRE(Names(test::ScanTree(t3)) == S{"a"});
  // No path: the whole snapshot, at its absolute paths below the target.
  std::string t4 = work.path() + "/t4";
  REQUIRE_EXIT(C(repo, "restore " + id + " --target " + Q(t4)), 0);
  REQUIRE(test::HashNoAtime(t4 + src + "/sub/deeper/b") == Sha256(AsBytes("sub/deeper/b")));
  REQUIRE(test::HashNoAtime(t4 + src + "/top") == Sha256(AsBytes("top")));
  // A path that is not in the snapshot.
  RunResult missing = C(repo, "restore " + Q(id + ":" + src + "/nope") + " --target " + Q(work.path() + "/t5"));
  REQUIRE_EXIT(missing, 1);
  REQUIRE(Contains(missing.err, "not in the snapshot"));
  // Neither SNAPSHOT nor --before, or both: usage errors.
  REQUIRE_EXIT(C(repo, "restore --target " + Q(work.path() + "/t6")), 2);
  REQUIRE_EXIT(C(repo, "restore latest --before 2030-01-01 --target " + Q(work.path() + "/t6")), 2);
}

TEST_CASE("restore cli: --before TIME with --host picks the newest earlier snapshot and says which", "[restore][cli]") {
  test::TestRepo r;
  test::TempDir work;
  std::string src = work.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  // 2026-11-19T00:00Z alpha "1", 2026-11-20T01:00Z beta "2", 2026-11-20T03:00Z
  // alpha "3", made out of order: selection is by time, not by creation.
  struct Snap {
    int64_t time_ns;
    std::string host, content;
    Id id;
  };
  auto parse = [](const char* t) {
    tm tmv{};
    REQUIRE(strptime(t, "%Y-%m-%dT%H:%M:%S", &tmv) != nullptr);
    return int64_t(timegm(&tmv)) * 1000000000;
  };
  std::vector<Snap> snaps = {{parse("2026-11-20T03:00:00"), "alpha", "3", {}},
                             {parse("2026-11-20T01:00:00"), "beta", "2", {}},
                             {parse("2026-11-19T00:00:00"), "alpha", "1", {}}};
  for (auto& sn : snaps) {
    test::WriteString(src + "/version", sn.content);
    // Distinct mtimes: the files cache must not take one version for another.
    test::SetTimes(src + "/version", timespec{1500000000, 0}, timespec{1500000000 + std::stoi(sn.content), 0});
    sn.id = test::BackupLib(*r.repo, {src}, sn.host, sn.time_ns).snapshot_id;
  }
  auto version_after = [&](const std::string& flags, const std::string& expect_id) {
    static int n = 0;
    std::string target = work.path() + "/t" + std::to_string(n++);
    RunResult run = C(r.path, "restore " + flags + " --target " + Q(target));
    REQUIRE_EXIT(run, 0);
    REQUIRE(Contains(run.out, "picked snapshot " + expect_id.substr(0, 8) + " taken "));
    auto data = ReadFile(target + src + "/version");
    REQUIRE(data.ok());
    return std::make_pair(std::string(data->begin(), data->end()), run.out);
  };
  auto [v1, out1] = version_after("--before 2026-11-20T02:00:00Z", snaps[1].id.Hex());
  REQUIRE(v1 == "2");
  REQUIRE(Contains(out1, " on beta (the newest before 2026-11-20T02:00:00"));
  REQUIRE(Contains(out1, "taken " + snapshot::FormatTimeNs(snaps[1].time_ns)));
  REQUIRE(version_after("--before 2026-11-20T02:00:00Z --host alpha", snaps[2].id.Hex()).first == "1");
  REQUIRE(version_after("--before 2026-11-21", snaps[0].id.Hex()).first == "3");
  REQUIRE(version_after("--before '2026-11-20 03:00:01'", snaps[0].id.Hex()).first == "3");  // local time: TZ=UTC
  // "Before" is strict: 02:00+01:00 is 01:00Z, the beta snapshot's own time.
  REQUIRE(version_after("--before 2026-11-20T02:00:00+01:00", snaps[2].id.Hex()).first == "1");
  // --json names the snapshot it picked.
  {
    json j = JsonRestore(r.path, "--before 2026-11-20T04:00:00Z --host beta --target " + Q(work.path() + "/tj"));
    REQUIRE(j["snapshot_id"] == snaps[1].id.Hex());
    REQUIRE(j["host"] == "beta");
  }
  // Nothing that early, nothing of that host, and unreadable times.
  RunResult none = C(r.path, "restore --before 2026-11-19T00:00:00Z --target " + Q(work.path() + "/tn"));
  REQUIRE_EXIT(none, 1);
  REQUIRE(Contains(none.err, "no snapshot was taken before 2026-11-19T00:00:00"));
  RunResult nohost = C(r.path, "restore --before 2030-01-01 --host gamma --target " + Q(work.path() + "/tn"));
  REQUIRE_EXIT(nohost, 1);
  REQUIRE(Contains(nohost.err, "no snapshot of host gamma was taken before"));
  RunResult bad = C(r.path, "restore --before yesterday --target " + Q(work.path() + "/tn"));
  REQUIRE_EXIT(bad, 2);
  REQUIRE(Contains(bad.err, "cannot read time 'yesterday'"));
  // 'latest' with --host.
  {
    json j = JsonRestore(r.path, "latest --host beta --target " + Q(work.path() + "/tl"));
    REQUIRE(j["snapshot_id"] == snaps[1].id.Hex());
  }
}

TEST_CASE("restore cli: --json prints one summary object with every count", "[restore][cli]") {
  test::TempDir work;
  std::string repo = work.path() + "/repo";
  InitRepo(repo);
  std::string src = work.path() + "/src";
  auto sha = MakeFiles(src, 4, 30000, 70, 2);
  REQUIRE(::symlink("d0/r0", (src + "/link").c_str()) == 0);
  REQUIRE(::link((src + "/d0/r0").c_str(), (src + "/hard").c_str()) == 0);
  REQUIRE(::mkfifo((src + "/fifo").c_str(), 0644) == 0);
  std::string id = CliBackup(repo, Q(src));
  std::string target = work.path() + "/t";

  RunResult r = C(repo, "--json restore " + id.substr(0, 12) + ":" + Q(src) + " --target " + Q(target));
  REQUIRE_EXIT(r, 0);
  REQUIRE(std::count(r.out.begin(), r.out.end(), '\n') == 1);
  json j = json::parse(r.out);
  INFO(j.dump());
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  REQUIRE(keys == std::set<std::string>{"snapshot_id", "host", "target", "files_restored", "files_skipped",
                                        "files_verified", "files_failed", "dirs", "links", "specials",
                                        "bytes_written", "duration_s", "verified", "failures", "report_id"});
  REQUIRE(j["snapshot_id"] == id);
  REQUIRE(j["report_id"].is_string());
  REQUIRE(j["target"] == target);
  REQUIRE(j["files_restored"] == 4);
  REQUIRE(j["files_verified"] == 4);
  REQUIRE(j["files_skipped"] == 0);
  REQUIRE(j["files_failed"] == 0);
  REQUIRE(j["dirs"] == 2);
  REQUIRE(j["links"] == 1);
  REQUIRE(j["specials"] == 2);
  REQUIRE(j["bytes_written"] == 4 * 30000);
  REQUIRE(j["duration_s"].is_number());
  REQUIRE(j["verified"] == true);
  REQUIRE(j["failures"] == json::array());
  REQUIRE(r.err.empty());
  // Run again: everything is already there.
  json again = JsonRestore(repo, id + ":" + Q(src) + " --target " + Q(target));
  REQUIRE(again["files_restored"] == 0);
  REQUIRE(again["files_skipped"] == 5);  // four files and the hard link
  REQUIRE(again["bytes_written"] == 0);
  // --quiet prints nothing on success.
  RunResult q = C(repo, "--quiet restore " + id + ":" + Q(src) + " --target " + Q(target));
  REQUIRE_EXIT(q, 0);
  REQUIRE(q.out.empty());
}
