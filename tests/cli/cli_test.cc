// End-to-end tests of the `custos` binary: exit codes, passphrase sources,
// key management, locking, check and --read-data-subset, help, and that
// secrets never reach stdout or stderr. Every run has no stdin and (where it
// matters) no controlling terminal.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/crypto.h"
#include "base/file_util.h"
#include "storage/check.h"
#include "storage/keys.h"
#include "storage/repository.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using custos::test::RunResult;

namespace {

namespace fs = std::filesystem;

// Cheap Argon2id for every slot a test creates.
const std::string kFastKdf = " --kdf-ops 1 --kdf-memory 1";

std::string Q(const std::string& s) { return test::ShellQuote(s); }
std::string RepoFlag(const std::string& root) { return "--repo " + Q(root); }
std::string PassEnv(const std::string& pass) { return "CUSTOS_PASSWORD=" + Q(pass); }

std::string Show(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

// Evaluates `r` once (it may be the command run itself).
#define REQUIRE_EXIT(r, code)            \
  do {                                   \
    const RunResult& run_result_ = (r);  \
    INFO(Show(run_result_));             \
    REQUIRE(run_result_.exit_code == (code)); \
  } while (0)

bool Contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  REQUIRE(f.good());
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// `custos [--json] init` with a cheap KDF; returns the --json output.
json InitRepo(const std::string& root, const std::string& pass, const std::string& extra = "") {
  auto r = test::Custos(RepoFlag(root) + " --json init" + kFastKdf + " " + extra, PassEnv(pass));
  REQUIRE_EXIT(r, 0);
  return json::parse(r.out);
}

// Runs custos with no controlling terminal (setsid), so a prompt cannot work
// even when the test itself runs on a terminal.
RunResult CustosNoTty(const std::string& args, const std::string& env = "") {
  return test::Run("env -u CUSTOS_PASSWORD -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + env + " setsid -w " +
                   std::string(CUSTOS_BINARY) + " " + args);
}

json KeyList(const std::string& root, const std::string& pass) {
  auto r = test::Custos(RepoFlag(root) + " --json key list", PassEnv(pass));
  REQUIRE_EXIT(r, 0);
  return json::parse(r.out);
}

std::string CurrentSlot(const json& list) {
  for (const auto& k : list["keys"]) {
    if (k["current"].get<bool>()) return k["id"];
  }
  return "";
}

// ---- the whole state of a directory tree, to prove that nothing changed

struct Entry {
  std::string kind;  // "file", "dir", "other"
  std::string sha256;
  uint64_t size = 0;
  unsigned mode = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const Entry&) const = default;
};
using Tree = std::map<std::string, Entry>;

Tree SnapshotTree(const std::string& root) {
  Tree t;
  auto add = [&](const fs::path& p) {
    struct stat sb;
    REQUIRE(::lstat(p.c_str(), &sb) == 0);
    Entry e;
    e.kind = S_ISREG(sb.st_mode) ? "file" : S_ISDIR(sb.st_mode) ? "dir" : "other";
    e.size = S_ISDIR(sb.st_mode) ? 0 : uint64_t(sb.st_size);
    e.mode = unsigned(sb.st_mode);
    e.mtime_ns = int64_t(sb.st_mtim.tv_sec) * 1000000000 + sb.st_mtim.tv_nsec;
    e.inode = uint64_t(sb.st_ino);
    if (S_ISREG(sb.st_mode)) {
      auto bytes = ReadFile(p.string());
      REQUIRE(bytes.ok());
      e.sha256 = Sha256(*bytes).Hex();
    }
    t[fs::relative(p, root).string()] = e;
  };
  add(root);
  for (const auto& de : fs::recursive_directory_iterator(root)) add(de.path());
  return t;
}

std::string DiffTrees(const Tree& a, const Tree& b) {
  std::string out;
  for (const auto& [p, e] : a) {
    auto it = b.find(p);
    if (it == b.end()) out += "removed: " + p + "\n";
    else if (!(it->second == e)) out += "changed: " + p + "\n";
  }
  for (const auto& [p, e] : b) {
    if (!a.count(p)) out += "added: " + p + "\n";
  }
  return out;
}

#define REQUIRE_SAME_TREE(before, after) \
  do {                                   \
    INFO(DiffTrees(before, after));      \
    REQUIRE((before) == (after));        \
  } while (0)

storage::Actor TestActor() { return storage::Actor{"testhost", "tester", "cli-test"}; }

// A repository made by the library with many small packs (each blob is
// larger than the 4 KiB pack size, so every blob closes its own pack).
std::vector<std::string> MakeManyPackRepo(const std::string& root, const std::string& pass, int blobs) {
  storage::InitOptions o;
  o.kdf = Argon2Params{1, 1 << 20};
  o.pack_size = 4096;
  auto init = storage::Repository::Init(storage::NewLocalBackend(root), pass, o, TestActor());
  REQUIRE(init.ok());
  auto& repo = *init->repo;
  for (int i = 0; i < blobs; ++i) {
    auto added = repo.AddBlob(storage::BlobType::kData, test::RandomBytes(5000, 1000 + i));
    REQUIRE(added.ok());
    REQUIRE(*added);
  }
  REQUIRE(repo.Flush().ok());
  std::vector<std::string> packs;
  REQUIRE(repo.backend()
              .List(storage::FileType::kPack,
                    [&](const storage::FileInfo& fi) {
                      packs.push_back(fi.name);
                      return Status::Ok();
                    })
              .ok());
  REQUIRE(packs.size() == size_t(blobs));
  REQUIRE(repo.PackCount() == size_t(blobs));
  return packs;
}

std::string PackPath(const std::string& root, const std::string& pack) {
  return root + "/data/" + pack.substr(0, 2) + "/" + pack;
}

}  // namespace

// ---------------------------------------------------------------- init

TEST_CASE("init with CUSTOS_PASSWORD and --json prints id, location, key id and recovery key", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  auto r = test::Custos(RepoFlag(root) + " --json init" + kFastKdf, PassEnv("init-pass"));
  REQUIRE_EXIT(r, 0);
  json j = json::parse(r.out);
  REQUIRE(j["id"].get<std::string>().size() == 64);
  REQUIRE(j["location"] == root);
  REQUIRE(j["key_id"].get<std::string>().size() == 32);
  REQUIRE(j.contains("created"));
  std::string rk = j["recovery_key"];
  REQUIRE(storage::ParseRecoveryKey(rk).has_value());
  REQUIRE(fs::is_regular_file(root + "/config"));

  // The key id is the slot in use when opening with the passphrase.
  json list = KeyList(root, "init-pass");
  REQUIRE(list["keys"].size() == 2);
  REQUIRE(CurrentSlot(list) == j["key_id"]);
  // The printed recovery key opens the repository.
  json by_rk = KeyList(root, rk);
  REQUIRE(CurrentSlot(by_rk) != j["key_id"]);
  for (const auto& k : by_rk["keys"]) {
    if (k["current"].get<bool>()) REQUIRE(k["kind"] == "recovery");
  }

  // Text mode names the repository and shows the recovery key.
  std::string root2 = dir.path() + "/repo2";
  auto t = test::Custos(RepoFlag(root2) + " init" + kFastKdf, PassEnv("init-pass"));
  REQUIRE_EXIT(t, 0);
  REQUIRE(Contains(t.out, "created repository"));
  REQUIRE(Contains(t.out, "Recovery key"));
  // --quiet still prints the only copy of the recovery key, and nothing else.
  std::string root3 = dir.path() + "/repo3";
  auto q = test::Custos(RepoFlag(root3) + " --quiet init" + kFastKdf, PassEnv("init-pass"));
  REQUIRE_EXIT(q, 0);
  std::string line = q.out.substr(0, q.out.find('\n'));
  REQUIRE(storage::ParseRecoveryKey(line).has_value());
  REQUIRE(q.out == line + "\n");
  REQUIRE(KeyList(root3, line)["keys"].size() == 2);
}

TEST_CASE("init into an existing repository fails and changes nothing", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  InitRepo(root, "first");
  Tree before = SnapshotTree(root);
  std::string rk_file = dir.path() + "/rk.txt";
  auto r = test::Custos(RepoFlag(root) + " --json init" + kFastKdf + " --recovery-key-file " + Q(rk_file),
                        PassEnv("second"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "already exists"));
  REQUIRE(r.out.empty());
  REQUIRE_SAME_TREE(before, SnapshotTree(root));
  REQUIRE_FALSE(fs::exists(rk_file));
  // The old passphrase still opens, the new one does not.
  REQUIRE(test::Custos(RepoFlag(root) + " key list", PassEnv("first")).exit_code == 0);
  REQUIRE(test::Custos(RepoFlag(root) + " key list", PassEnv("second")).exit_code == 12);
}

TEST_CASE("init into a non-empty directory that is not a repository fails", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/stuff";
  fs::create_directories(root);
  WriteText(root + "/precious.txt", "do not touch\n");
  Tree before = SnapshotTree(root);
  auto r = test::Custos(RepoFlag(root) + " init" + kFastKdf, PassEnv("pw"));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "not empty"));
  REQUIRE_SAME_TREE(before, SnapshotTree(root));

  // A path that is a regular file is refused too.
  std::string file = dir.path() + "/a-file";
  WriteText(file, "x");
  REQUIRE(test::Custos(RepoFlag(file) + " init" + kFastKdf, PassEnv("pw")).exit_code == 1);
  REQUIRE(ReadText(file) == "x");

  // An existing empty directory is fine.
  std::string empty = dir.path() + "/empty";
  fs::create_directories(empty);
  REQUIRE(test::Custos(RepoFlag(empty) + " init" + kFastKdf, PassEnv("pw")).exit_code == 0);
}

TEST_CASE("init refuses an empty passphrase and creates nothing", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  std::string empty_file = dir.path() + "/empty-pass";
  WriteText(empty_file, "\n");

  auto r = test::Custos(RepoFlag(root) + " --password-file " + Q(empty_file) + " init" + kFastKdf);
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "empty passphrase"));
  REQUIRE_FALSE(fs::exists(root));

  r = test::Custos(RepoFlag(root) + " init" + kFastKdf, "CUSTOS_PASSWORD_FILE=" + Q(empty_file));
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "empty passphrase"));
  REQUIRE_FALSE(fs::exists(root));

  // An empty CUSTOS_PASSWORD counts as unset: with no terminal that is an error too.
  r = CustosNoTty(RepoFlag(root) + " init" + kFastKdf, "CUSTOS_PASSWORD=");
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, "CUSTOS_PASSWORD"));
  REQUIRE_FALSE(fs::exists(root));
}

TEST_CASE("init --recovery-key-file writes the key with mode 0600 and the key opens the repository", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  std::string rk_file = dir.path() + "/recovery.txt";
  auto r = test::Custos(RepoFlag(root) + " --json init" + kFastKdf + " --recovery-key-file " + Q(rk_file),
                        PassEnv("pw"));
  REQUIRE_EXIT(r, 0);
  json j = json::parse(r.out);
  REQUIRE_FALSE(j.contains("recovery_key"));
  REQUIRE(j["recovery_key_file"] == rk_file);

  struct stat sb;
  REQUIRE(::stat(rk_file.c_str(), &sb) == 0);
  REQUIRE((sb.st_mode & 07777) == 0600);
  std::string content = ReadText(rk_file);
  REQUIRE(content.size() > 1);
  REQUIRE(content.back() == '\n');
  std::string rk = content.substr(0, content.size() - 1);
  REQUIRE(storage::ParseRecoveryKey(rk).has_value());
  // The key went to the file only.
  REQUIRE_FALSE(Contains(r.out, rk));
  REQUIRE_FALSE(Contains(r.err, rk));

  // The recovery key works as CUSTOS_PASSWORD (and as a password file).
  json list = KeyList(root, rk);
  bool current_is_recovery = false;
  for (const auto& k : list["keys"]) {
    if (k["current"].get<bool>()) current_is_recovery = k["kind"] == "recovery";
  }
  REQUIRE(current_is_recovery);
  REQUIRE(test::Custos(RepoFlag(root) + " --password-file " + Q(rk_file) + " check").exit_code == 0);

  // Text mode says where the key went, without printing it.
  std::string root2 = dir.path() + "/repo2";
  std::string rk_file2 = dir.path() + "/recovery2.txt";
  auto t = test::Custos(RepoFlag(root2) + " init" + kFastKdf + " --recovery-key-file " + Q(rk_file2), PassEnv("pw"));
  REQUIRE_EXIT(t, 0);
  REQUIRE(Contains(t.out, "recovery key written to"));
  std::string rk2 = ReadText(rk_file2);
  REQUIRE_FALSE(Contains(t.out, rk2.substr(0, rk2.size() - 1)));

  // --no-recovery-key makes only the passphrase slot.
  std::string root3 = dir.path() + "/repo3";
  json j3 = InitRepo(root3, "pw", "--no-recovery-key");
  REQUIRE_FALSE(j3.contains("recovery_key"));
  REQUIRE(KeyList(root3, "pw")["keys"].size() == 1);
}

// ---------------------------------------------------------------- passphrases

TEST_CASE("a wrong passphrase exits 12 and changes nothing on disk", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  {
    // Give the repository some content besides keys: packs, an index, a snapshot.
    json j = InitRepo(root, "right");
    auto repo = storage::Repository::Open(storage::NewLocalBackend(root), "right");
    REQUIRE(repo.ok());
    REQUIRE((*repo)->LockForWrite(TestActor()).ok());
    REQUIRE((*repo)->AddBlob(storage::BlobType::kData, test::RandomBytes(3000, 7)).ok());
    REQUIRE((*repo)->SaveSnapshot(AsBytes("{}")).ok());
  }
  std::string new_pass = dir.path() + "/new-pass";
  WriteText(new_pass, "brand-new\n");
  Tree before = SnapshotTree(root);
  REQUIRE(before.size() > 260);

  const std::vector<std::string> commands = {
      "check", "check --read-data", "key list", "key add --new-password-file " + Q(new_pass) + kFastKdf,
      "key passwd --new-password-file " + Q(new_pass) + kFastKdf, "key remove zz"};
  // A wrong passphrase, and a well-formed recovery key of some other repository.
  const std::vector<std::string> wrong = {"wrong", storage::MakeRecoveryKey()};
  for (const auto& secret : wrong) {
    for (const auto& cmd : commands) {
      INFO(cmd << (secret == "wrong" ? " (passphrase)" : " (recovery key)"));
      auto r = test::Custos(RepoFlag(root) + " " + cmd, PassEnv(secret));
      REQUIRE_EXIT(r, 12);
      REQUIRE(Contains(r.err, "wrong passphrase"));
      REQUIRE(r.out.empty());
      REQUIRE_SAME_TREE(before, SnapshotTree(root));
    }
  }
  // A wrong passphrase from a file behaves the same.
  std::string wrong_file = dir.path() + "/wrong-pass";
  WriteText(wrong_file, "wrong\n");
  auto r = test::Custos(RepoFlag(root) + " --password-file " + Q(wrong_file) + " key add --new-password-file " +
                        Q(new_pass) + kFastKdf);
  REQUIRE_EXIT(r, 12);
  REQUIRE_SAME_TREE(before, SnapshotTree(root));
  // The new passphrase was never added.
  REQUIRE(test::Custos(RepoFlag(root) + " key list", PassEnv("brand-new")).exit_code == 12);
  REQUIRE(test::Custos(RepoFlag(root) + " check --read-data", PassEnv("right")).exit_code == 0);
}

TEST_CASE("the passphrase comes from CUSTOS_PASSWORD, --password-file or CUSTOS_PASSWORD_FILE", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  InitRepo(root, "from-source");
  std::string good = dir.path() + "/good";
  WriteText(good, "from-source\nsecond line is ignored\n");
  std::string crlf = dir.path() + "/crlf";
  WriteText(crlf, "from-source\r\n");
  std::string no_newline = dir.path() + "/no-newline";
  WriteText(no_newline, "from-source");
  std::string bad = dir.path() + "/bad";
  WriteText(bad, "not-it\n");

  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("from-source")), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " --password-file " + Q(good) + " key list"), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " -p " + Q(crlf) + " key list"), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", "CUSTOS_PASSWORD_FILE=" + Q(no_newline)), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " --password-file " + Q(bad) + " key list"), 12);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", "CUSTOS_PASSWORD_FILE=" + Q(bad)), 12);

  // Precedence: --password-file, then CUSTOS_PASSWORD, then CUSTOS_PASSWORD_FILE.
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " --password-file " + Q(good) + " key list", PassEnv("not-it")), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " --password-file " + Q(bad) + " key list", PassEnv("from-source")), 12);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("from-source") + " CUSTOS_PASSWORD_FILE=" + Q(bad)),
               0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("not-it") + " CUSTOS_PASSWORD_FILE=" + Q(good)), 12);

  // A password file that does not exist is an error naming the file.
  std::string missing = dir.path() + "/missing-pass";
  auto r = test::Custos(RepoFlag(root) + " --password-file " + Q(missing) + " check");
  REQUIRE_EXIT(r, 1);
  REQUIRE(Contains(r.err, missing));

  // No source and no terminal: a clear error, not a hang.
  for (const std::string cmd : {"check", "key list", "key add", "init"}) {
    std::string where = cmd == "init" ? dir.path() + "/new-repo" : root;
    auto n = CustosNoTty(RepoFlag(where) + " " + cmd);
    INFO(cmd);
    REQUIRE_EXIT(n, 1);
    REQUIRE(Contains(n.err, "CUSTOS_PASSWORD"));
  }
  REQUIRE_FALSE(fs::exists(dir.path() + "/new-repo"));
  // key add / passwd without --new-password-file need a terminal for the new one.
  auto k = CustosNoTty(RepoFlag(root) + " key add", PassEnv("from-source"));
  REQUIRE_EXIT(k, 1);
  REQUIRE(Contains(k.err, "no passphrase given"));
  REQUIRE(KeyList(root, "from-source")["keys"].size() == 2);
}

// ---------------------------------------------------------------- repository selection

TEST_CASE("commands on a missing repository exit 10", "[cli]") {
  test::TempDir dir;
  std::string missing = dir.path() + "/nothing-here";
  std::string new_pass = dir.path() + "/np";
  WriteText(new_pass, "np\n");
  std::string empty_dir = dir.path() + "/empty";
  fs::create_directories(empty_dir);
  for (const std::string& where : {missing, empty_dir}) {
    for (const std::string& cmd : std::vector<std::string>{"check", "check --read-data", "key list", "key add --new-password-file " + Q(new_pass),
          "key passwd --new-password-file " + Q(new_pass), "key remove abc"}) {
      INFO(where + ": " + cmd);
      auto r = test::Custos(RepoFlag(where) + " " + cmd, PassEnv("pw"));
      REQUIRE_EXIT(r, 10);
      REQUIRE(Contains(r.err, where));
      REQUIRE(Contains(r.err, "custos init"));
      // Also without any passphrase: the missing repository is reported first.
      REQUIRE(CustosNoTty(RepoFlag(where) + " " + cmd).exit_code == 10);
    }
  }
  REQUIRE_FALSE(fs::exists(missing));
  REQUIRE(fs::is_empty(empty_dir));
}

TEST_CASE("the repository comes from --repo, else CUSTOS_REPOSITORY, else the default", "[cli]") {
  test::TempDir dir;
  std::string a = dir.path() + "/a";
  std::string missing = dir.path() + "/missing";
  std::string pass = PassEnv("pw");

  // init honours CUSTOS_REPOSITORY.
  auto init = test::Custos("--json init" + kFastKdf, pass + " CUSTOS_REPOSITORY=" + Q(a));
  REQUIRE_EXIT(init, 0);
  REQUIRE(json::parse(init.out)["location"] == a);
  REQUIRE(fs::exists(a + "/config"));

  REQUIRE_EXIT(test::Custos("check", pass + " CUSTOS_REPOSITORY=" + Q(a)), 0);
  auto r = test::Custos("check", pass + " CUSTOS_REPOSITORY=" + Q(missing));
  REQUIRE_EXIT(r, 10);
  REQUIRE(Contains(r.err, missing));
  REQUIRE_EXIT(test::Custos(RepoFlag(a) + " check", pass + " CUSTOS_REPOSITORY=" + Q(missing)), 0);
  REQUIRE_EXIT(test::Custos("-r " + Q(a) + " check", pass + " CUSTOS_REPOSITORY=" + Q(missing)), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(missing) + " check", pass + " CUSTOS_REPOSITORY=" + Q(a)), 10);
  // Without either, the default under XDG_DATA_HOME is used.
  std::string xdg = dir.path() + "/xdg";
  auto d = test::Custos("--json init" + kFastKdf, pass + " XDG_DATA_HOME=" + Q(xdg));
  REQUIRE_EXIT(d, 0);
  REQUIRE(json::parse(d.out)["location"] == xdg + "/custos/repository");
  REQUIRE_EXIT(test::Custos("check", pass + " XDG_DATA_HOME=" + Q(xdg)), 0);
}

// ---------------------------------------------------------------- locking

TEST_CASE("a locked repository makes key commands exit 11 at once naming the holder", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  InitRepo(root, "pw");
  std::string new_pass = dir.path() + "/np";
  WriteText(new_pass, "second-pass\n");
  std::string add = RepoFlag(root) + " key add --label locked --new-password-file " + Q(new_pass) + kFastKdf;

  // flock is per open file description, so holding the lock here shuts out
  // the custos process exactly as another process would.
  auto holder = storage::Repository::Open(storage::NewLocalBackend(root), "pw");
  REQUIRE(holder.ok());
  storage::Actor actor = storage::Actor::FromProcess("holder-test");
  REQUIRE((*holder)->LockForWrite(actor).ok());
  Tree before = SnapshotTree(root);

  auto start = std::chrono::steady_clock::now();
  auto r = test::Custos(add, PassEnv("pw"));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE_EXIT(r, 11);
  INFO("key add took " << seconds << " s");
  REQUIRE(seconds < 5.0);
  REQUIRE(Contains(r.err, "locked"));
  REQUIRE(Contains(r.err, "holder-test"));
  REQUIRE(Contains(r.err, "pid " + std::to_string(::getpid())));
  REQUIRE(Contains(r.err, actor.user + "@" + actor.host));

  // The other writing commands are refused the same way.
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key passwd --new-password-file " + Q(new_pass) + kFastKdf,
                            PassEnv("pw")),
               11);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key remove zz", PassEnv("pw")), 11);
  // Readers take no lock.
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " check --read-data", PassEnv("pw")), 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("pw")), 0);
  REQUIRE_SAME_TREE(before, SnapshotTree(root));
  REQUIRE(test::Custos(RepoFlag(root) + " key list", PassEnv("second-pass")).exit_code == 12);

  // Once the holder lets go, the same command succeeds.
  holder->reset();
  auto ok = test::Custos(add, PassEnv("pw"));
  REQUIRE_EXIT(ok, 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("second-pass")), 0);
}

// ---------------------------------------------------------------- key management

TEST_CASE("key add, list, remove and passwd manage the key slots", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  json init = InitRepo(root, "first-pass");
  std::string first_id = init["key_id"];
  std::string rk = init["recovery_key"];
  auto write_pass = [&](const std::string& name, const std::string& pass) {
    std::string p = dir.path() + "/" + name;
    WriteText(p, pass + "\n");
    return p;
  };

  // list: the passphrase slot (in use) and the recovery slot.
  json list = KeyList(root, "first-pass");
  REQUIRE(list["keys"].size() == 2);
  REQUIRE(list["problems"].empty());
  for (const auto& k : list["keys"]) {
    REQUIRE(k["current"] == (k["id"] == first_id));
    if (k["id"] == first_id) {
      REQUIRE(k["kind"] == "passphrase");
      REQUIRE(k["label"] == "initial");
      REQUIRE(k["kdf"]["ops"] == 1);
      REQUIRE(k["kdf"]["memory_mib"] == 1);
    } else {
      REQUIRE(k["kind"] == "recovery");
    }
  }
  auto text = test::Custos(RepoFlag(root) + " key list", PassEnv("first-pass"));
  REQUIRE_EXIT(text, 0);
  REQUIRE(Contains(text.out, first_id.substr(0, 8)));
  REQUIRE(Contains(text.out, "recovery"));

  // add
  auto add = test::Custos(RepoFlag(root) + " --json key add --label second --new-password-file " +
                              Q(write_pass("p2", "second-pass")) + kFastKdf,
                          PassEnv("first-pass"));
  REQUIRE_EXIT(add, 0);
  json added = json::parse(add.out);
  std::string second_id = added["id"];
  REQUIRE(second_id.size() == 32);
  REQUIRE(added["label"] == "second");
  REQUIRE(added["current"] == false);
  list = KeyList(root, "second-pass");
  REQUIRE(list["keys"].size() == 3);
  REQUIRE(CurrentSlot(list) == second_id);

  // An empty new passphrase is refused and adds nothing.
  auto empty = test::Custos(RepoFlag(root) + " key add --new-password-file " + Q(write_pass("p-empty", "")) + kFastKdf,
                            PassEnv("first-pass"));
  REQUIRE_EXIT(empty, 1);
  REQUIRE(Contains(empty.err, "empty passphrase"));
  REQUIRE(KeyList(root, "first-pass")["keys"].size() == 3);

  // remove: never the slot in use.
  auto self = test::Custos(RepoFlag(root) + " key remove " + first_id, PassEnv("first-pass"));
  REQUIRE_EXIT(self, 1);
  REQUIRE(Contains(self.err, "in use"));
  REQUIRE(KeyList(root, "first-pass")["keys"].size() == 3);
  // Unknown ids are an error.
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key remove " + std::string(32, 'z'), PassEnv("first-pass")), 1);

  // remove by the shortest prefix unique among the slots.
  std::set<std::string> ids;
  for (const auto& k : list["keys"]) ids.insert(k["id"].get<std::string>());
  size_t len = 1;
  for (;; ++len) {
    size_t hits = 0;
    for (const auto& id : ids) hits += id.compare(0, len, second_id, 0, len) == 0;
    if (hits == 1) break;
  }
  auto rm = test::Custos(RepoFlag(root) + " --json key remove " + second_id.substr(0, len), PassEnv("first-pass"));
  REQUIRE_EXIT(rm, 0);
  // It reports the slot removed (the full id, or at least the prefix given).
  std::string removed = json::parse(rm.out)["removed"];
  REQUIRE(removed.size() >= len);
  REQUIRE(second_id.rfind(removed, 0) == 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("second-pass")), 12);
  REQUIRE(KeyList(root, "first-pass")["keys"].size() == 2);

  // passwd: the old passphrase stops working, the new one opens, the
  // recovery key is untouched and the label is kept.
  auto pw = test::Custos(
      RepoFlag(root) + " --json key passwd --new-password-file " + Q(write_pass("p3", "third-pass")) + kFastKdf,
      PassEnv("first-pass"));
  REQUIRE_EXIT(pw, 0);
  json changed = json::parse(pw.out);
  REQUIRE(changed["current"] == true);
  REQUIRE(changed["label"] == "initial");
  REQUIRE(changed["id"] != first_id);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("first-pass")), 12);
  list = KeyList(root, "third-pass");
  REQUIRE(list["keys"].size() == 2);
  REQUIRE(CurrentSlot(list) == changed["id"]);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " check", PassEnv(rk)), 0);

  // Opened with the recovery key, the passphrase slot can be removed.
  auto rm2 = test::Custos(RepoFlag(root) + " key remove " + changed["id"].get<std::string>(), PassEnv(rk));
  REQUIRE_EXIT(rm2, 0);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " key list", PassEnv("third-pass")), 12);
  REQUIRE(KeyList(root, rk)["keys"].size() == 1);
}

// ---------------------------------------------------------------- check

TEST_CASE("check and check --read-data pass on a fresh repository", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  InitRepo(root, "pw");

  auto r = test::Custos(RepoFlag(root) + " --json check", PassEnv("pw"));
  REQUIRE_EXIT(r, 0);
  json j = json::parse(r.out);
  REQUIRE(j["ok"] == true);
  REQUIRE(j["read_data"] == false);
  REQUIRE(j["key_slots"] == 2);
  REQUIRE(j["packs"] == 0);
  REQUIRE(j["errors"].empty());
  REQUIRE(j["warnings"].empty());

  r = test::Custos(RepoFlag(root) + " --json check --read-data", PassEnv("pw"));
  REQUIRE_EXIT(r, 0);
  j = json::parse(r.out);
  REQUIRE(j["ok"] == true);
  REQUIRE(j["read_data"] == true);
  REQUIRE(j["packs_read"] == 0);

  r = test::Custos(RepoFlag(root) + " check --read-data", PassEnv("pw"));
  REQUIRE_EXIT(r, 0);
  REQUIRE(Contains(r.out, "no errors were found"));
  // Check writes nothing.
  Tree before = SnapshotTree(root);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " check --read-data", PassEnv("pw")), 0);
  REQUIRE_SAME_TREE(before, SnapshotTree(root));
}

TEST_CASE("check --read-data-subset N/M reads every pack exactly once over N = 1..M", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  const int kPacks = 30;
  std::vector<std::string> packs = MakeManyPackRepo(root, "pw", kPacks);
  const uint32_t m = 3;

  // Which subset each pack belongs to, by the library.
  std::vector<std::set<std::string>> expected(m + 1);
  for (const auto& p : packs) {
    auto id = Id::FromHex(p);
    REQUIRE(id);
    int in = 0;
    for (uint32_t n = 1; n <= m; ++n) {
      if (storage::PackInSubset(*id, n, m)) {
        expected[n].insert(p);
        ++in;
      }
    }
    REQUIRE(in == 1);
  }

  auto whole = test::Custos(RepoFlag(root) + " --json check --read-data", PassEnv("pw"));
  REQUIRE_EXIT(whole, 0);
  json w = json::parse(whole.out);
  REQUIRE(w["packs"] == kPacks);
  REQUIRE(w["blobs"] == kPacks);
  REQUIRE(w["packs_read"] == kPacks);
  REQUIRE(w["blobs_read"] == kPacks);
  auto one = test::Custos(RepoFlag(root) + " --json check --read-data-subset 1/1", PassEnv("pw"));
  REQUIRE_EXIT(one, 0);
  REQUIRE(json::parse(one.out)["packs_read"] == kPacks);

  // Intact repository: the counts add up and match the library's selection.
  uint64_t sum = 0;
  for (uint32_t n = 1; n <= m; ++n) {
    std::string subset = std::to_string(n) + "/" + std::to_string(m);
    auto r = test::Custos(RepoFlag(root) + " --json check --read-data-subset " + subset, PassEnv("pw"));
    REQUIRE_EXIT(r, 0);
    json j = json::parse(r.out);
    INFO(subset);
    REQUIRE(j["ok"] == true);
    REQUIRE(j["read_data"] == true);
    REQUIRE(j["subset"] == subset);
    REQUIRE(j["packs"] == kPacks);
    REQUIRE(j["packs_read"] == expected[n].size());
    REQUIRE(j["blobs_read"] == expected[n].size());
    sum += j["packs_read"].get<uint64_t>();

    auto repo = storage::Repository::Open(storage::NewLocalBackend(root), "pw");
    REQUIRE(repo.ok());
    auto report = storage::Check(**repo, storage::CheckOptions{.read_data = true, .subset_n = n, .subset_m = m});
    REQUIRE(report.ok());
    REQUIRE(report->packs_read == expected[n].size());
  }
  REQUIRE(sum == uint64_t(kPacks));

  // Damage one byte inside the first blob of every pack: each run then
  // names exactly the packs it read, which shows which packs those were.
  for (const auto& p : packs) {
    std::string path = PackPath(root, p);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    REQUIRE(f.good());
    f.seekg(9);
    char c = 0;
    f.read(&c, 1);
    c = char(c ^ 0x5a);
    f.seekp(9);
    f.write(&c, 1);
    REQUIRE(f.good());
  }
  std::set<std::string> seen;
  for (uint32_t n = 1; n <= m; ++n) {
    std::string subset = std::to_string(n) + "/" + std::to_string(m);
    auto r = test::Custos(RepoFlag(root) + " --json check --read-data-subset " + subset, PassEnv("pw"));
    INFO(subset);
    REQUIRE_EXIT(r, expected[n].empty() ? 0 : 1);
    json j = json::parse(r.out);
    std::set<std::string> named;
    for (const auto& e : j["errors"]) {
      std::string object = e["object"];
      REQUIRE(object.rfind("pack ", 0) == 0);
      named.insert(object.substr(5));
    }
    REQUIRE(named == expected[n]);
    for (const auto& p : named) REQUIRE(seen.insert(p).second);  // disjoint
  }
  REQUIRE(seen == std::set<std::string>(packs.begin(), packs.end()));
}

TEST_CASE("check rejects malformed --read-data-subset values with exit 2", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  InitRepo(root, "pw");
  for (const std::string bad : {"0/3", "4/3", "abc", "1/0", "0/0", "3", "1/", "/3", "1/3x", "1//3", "1/-3", "-1/3",
                                "+1/3", " 1/3", "1/ 3", "4294967297/4294967298"}) {
    INFO("subset '" << bad << "'");
    auto r = test::Custos(RepoFlag(root) + " check --read-data-subset " + Q(bad), PassEnv("pw"));
    REQUIRE_EXIT(r, 2);
    REQUIRE(Contains(r.err, "--read-data-subset"));
    REQUIRE(r.out.empty());
  }
  // The same values are usage errors even where there is no repository.
  REQUIRE_EXIT(test::Custos(RepoFlag(dir.path() + "/none") + " check --read-data-subset 0/3", PassEnv("pw")), 2);
  REQUIRE_EXIT(test::Custos(RepoFlag(root) + " check --read-data-subset 3/3", PassEnv("pw")), 0);
}

// ---------------------------------------------------------------- usage

namespace {

// The subcommand names listed under "Subcommands:" in `custos [CMD] --help`.
std::vector<std::string> ListedSubcommands(const std::string& help) {
  std::vector<std::string> out;
  std::istringstream in(help);
  std::string line;
  bool in_list = false;
  while (std::getline(in, line)) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    if (line.empty()) break;
    std::istringstream words(line);
    std::string name;
    if (words >> name) out.push_back(name);
  }
  return out;
}

}  // namespace

TEST_CASE("help works for the program and every subcommand", "[cli]") {
  // What each help must mention, beyond its usage line.
  const std::map<std::string, std::vector<std::string>> mentions = {
      {"", {"--repo", "--password-file", "--json", "--quiet", "--version", "init", "key", "check", "EXIT CODES",
            "10", "no repository", "11", "locked", "12", "wrong passphrase", "130", "CUSTOS_REPOSITORY",
            "CUSTOS_PASSWORD", "CUSTOS_PASSWORD_FILE"}},
      {"init", {"--pack-size", "--compression", "--kdf-ops", "--kdf-memory", "--recovery-key-file",
                "--no-recovery-key", "recovery key"}},
      {"key", {"list", "add", "remove", "passwd"}},
      {"key list", {"--help"}},
      {"key add", {"--new-password-file", "--label", "--kdf-ops", "--kdf-memory"}},
      {"key remove", {"ID"}},
      {"key passwd", {"--new-password-file", "--kdf-ops", "--kdf-memory"}},
      {"check", {"--read-data", "--read-data-subset", "N/M"}},
  };
  test::TempDir dir;
  auto help = [&](const std::string& cmd, const std::string& flag) {
    std::string args = (cmd.empty() ? "" : cmd + " ") + flag;
    // No repository and no passphrase are needed for help.
    return CustosNoTty(RepoFlag(dir.path() + "/none") + " " + args);
  };
  // Every command the help lists, recursively, plus the ones named above.
  std::set<std::string> commands;
  std::vector<std::string> todo = {""};
  while (!todo.empty()) {
    std::string cmd = todo.back();
    todo.pop_back();
    if (!commands.insert(cmd).second) continue;
    auto r = help(cmd, "--help");
    for (const auto& sub : ListedSubcommands(r.out)) todo.push_back(cmd.empty() ? sub : cmd + " " + sub);
  }
  for (const auto& [cmd, m] : mentions) REQUIRE(commands.count(cmd));
  REQUIRE(commands.size() >= 8);

  for (const auto& cmd : commands) {
    for (const std::string flag : {"--help", "-h"}) {
      INFO("custos " << cmd << " " << flag);
      auto r = help(cmd, flag);
      REQUIRE_EXIT(r, 0);
      REQUIRE(Contains(r.out, "Usage: custos" + (cmd.empty() ? "" : " " + cmd)));
      REQUIRE(Contains(r.out, "--help"));
      auto it = mentions.find(cmd);
      if (it == mentions.end()) continue;
      for (const auto& want : it->second) {
        INFO("mentions " << want);
        REQUIRE(Contains(r.out, want));
      }
    }
  }
  REQUIRE(fs::is_empty(dir.path()));
}

TEST_CASE("unknown flags and missing arguments exit 2 without side effects", "[cli]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  for (const std::string args :
       {"", "--bogus check", "check --bogus", "key add --bogus", "key", "key frobnicate", "frobnicate", "key remove",
        "init --pack-size 0", "init --pack-size abc", "init --kdf-memory 0", "init --compression 20",
        "init --bogus"}) {
    INFO("custos " << args);
    auto r = test::Custos(RepoFlag(root) + " " + args, PassEnv("pw"));
    REQUIRE_EXIT(r, 2);
    REQUIRE_FALSE(r.err.empty());
    REQUIRE_FALSE(fs::exists(root));
  }
}

TEST_CASE("the version flag prints the version", "[cli]") {
  auto r = test::Custos("--version");
  REQUIRE_EXIT(r, 0);
  REQUIRE(r.out.rfind("custos ", 0) == 0);
  std::string v = r.out.substr(7);
  while (!v.empty() && v.back() == '\n') v.pop_back();
  REQUIRE_FALSE(v.empty());
  REQUIRE(v.find_first_not_of("0123456789.") == std::string::npos);
  REQUIRE(std::count(v.begin(), v.end(), '.') == 2);
}

// ---------------------------------------------------------------- secrets

TEST_CASE("passphrases and recovery keys never appear in any output", "[cli]") {
  const std::string pass = "Canary-Pass-q8Zr1";
  const std::string wrong = "Canary-Wrong-k7Vx3";
  const std::string fresh = "Canary-New-m2Jw5";
  const std::string fresh2 = "Canary-Newer-t4Hd9";
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  std::string missing = dir.path() + "/missing";
  std::string rk_file = dir.path() + "/rk";
  auto file = [&](const std::string& name, const std::string& content) {
    std::string p = dir.path() + "/" + name;
    WriteText(p, content);
    return p;
  };
  std::string pass_file = file("pass", pass + "\n");
  std::string wrong_file = file("wrong", wrong + "\n");
  std::string fresh_file = file("fresh", fresh + "\n");
  std::string fresh2_file = file("fresh2", fresh2 + "\n");
  std::string empty_file = file("empty", "");

  std::vector<std::pair<std::string, RunResult>> runs;
  auto run = [&](const std::string& args, const std::string& env) {
    runs.emplace_back(args + " [" + env + "]", test::Custos(args, env));
    return runs.back().second;
  };
  const std::string R = RepoFlag(root) + " ";
  const std::string P = PassEnv(pass);

  REQUIRE_EXIT(run(R + "init" + kFastKdf + " --recovery-key-file " + Q(rk_file), P), 0);
  std::string rk = ReadText(rk_file);
  rk.pop_back();
  REQUIRE(storage::ParseRecoveryKey(rk).has_value());

  REQUIRE_EXIT(run(R + "--json init" + kFastKdf, P), 1);  // exists
  REQUIRE_EXIT(run(RepoFlag(dir.path() + "/other") + " init" + kFastKdf, P), 0);
  REQUIRE_EXIT(run(RepoFlag(dir.path() + "/other2") + " --json init" + kFastKdf, "CUSTOS_PASSWORD_FILE=" + Q(pass_file)),
               0);
  REQUIRE_EXIT(run(R + "key list", P), 0);
  REQUIRE_EXIT(run(R + "--json key list", "CUSTOS_PASSWORD_FILE=" + Q(pass_file)), 0);
  REQUIRE_EXIT(run(R + "check", P), 0);
  REQUIRE_EXIT(run(R + "--json check --read-data", P), 0);
  REQUIRE_EXIT(run(R + "check --read-data-subset 1/2", P), 0);
  for (const std::string& cmd : std::vector<std::string>{"check", "key list", "key add --new-password-file " + Q(fresh_file) + kFastKdf,
                                "key passwd --new-password-file " + Q(fresh_file) + kFastKdf, "key remove zz"}) {
    REQUIRE_EXIT(run(R + cmd, PassEnv(wrong)), 12);
    REQUIRE_EXIT(run(R + "--json " + cmd, "CUSTOS_PASSWORD_FILE=" + Q(wrong_file)), 12);
    REQUIRE_EXIT(run(R + "--password-file " + Q(wrong_file) + " " + cmd, ""), 12);
    REQUIRE_EXIT(run(RepoFlag(missing) + " " + cmd, P), 10);
  }
  REQUIRE_EXIT(run(R + "check --read-data-subset 9/2", P), 2);
  REQUIRE_EXIT(run(R + "check --bogus", P), 2);
  REQUIRE_EXIT(run(R + "key --bogus", P), 2);
  REQUIRE_EXIT(run(R + "--help", P), 0);
  REQUIRE_EXIT(run(R + "key add --help", P), 0);
  REQUIRE_EXIT(run(R + "key add --new-password-file " + Q(empty_file) + kFastKdf, P), 1);
  REQUIRE_EXIT(run(R + "key add --new-password-file " + Q(dir.path() + "/nope") + kFastKdf, P), 1);
  REQUIRE_EXIT(run(R + "--json key add --new-password-file " + Q(fresh_file) + kFastKdf, P), 0);
  {
    auto holder = storage::Repository::Open(storage::NewLocalBackend(root), pass);
    REQUIRE(holder.ok());
    REQUIRE((*holder)->LockForWrite(TestActor()).ok());
    REQUIRE_EXIT(run(R + "key add --new-password-file " + Q(fresh2_file) + kFastKdf, P), 11);
  }
  REQUIRE_EXIT(run(R + "key passwd --new-password-file " + Q(fresh2_file) + kFastKdf, PassEnv(fresh)), 0);
  REQUIRE_EXIT(run(R + "--json key list", PassEnv(rk)), 0);
  REQUIRE_EXIT(run(R + "check --read-data", PassEnv(rk)), 0);
  REQUIRE_EXIT(run(R + "key remove zz", PassEnv(rk)), 1);
  REQUIRE_EXIT(run(R + "key list", PassEnv(fresh)), 12);

  for (const auto& [what, r] : runs) {
    INFO(what << "\n" << Show(r));
    for (const std::string& secret : {pass, wrong, fresh, fresh2, rk}) {
      REQUIRE_FALSE(Contains(r.out, secret));
      REQUIRE_FALSE(Contains(r.err, secret));
    }
  }
}
