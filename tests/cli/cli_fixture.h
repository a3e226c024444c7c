// Helpers shared by the end-to-end CLI tests (tests/cli/*, tests/restore/*
// CLI cases): running the real `custos` binary against a repository with
// the passphrase in the environment, exit-code assertions that print the
// whole output on failure, JSON output parsing, and the library view of a
// CLI-made repository. Header-only.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/mount.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "storage/backend.h"
#include "storage/repository.h"
#include "tests/test_util.h"

namespace custos::clitest {

using nlohmann::json;
using test::RunResult;

inline const std::string kEnv = "CUSTOS_PASSWORD=pw TZ=UTC";

inline std::string Q(const std::string& s) { return test::ShellQuote(s); }

inline std::string Show(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout:\n" + r.out.substr(0, 4000) + "\n--- stderr:\n" +
         r.err.substr(0, 4000);
}

#define REQUIRE_EXIT(r, code)                 \
  do {                                        \
    const ::custos::test::RunResult& run_result_ = (r); \
    INFO(::custos::clitest::Show(run_result_));         \
    REQUIRE(run_result_.exit_code == (code)); \
  } while (0)

inline bool Contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// custos --repo REPO ARGS, with the passphrase in the environment.
inline RunResult C(const std::string& repo, const std::string& args) {
  return test::Custos("--repo " + Q(repo) + " " + args, kEnv);
}

// A fast-KDF repository (tests only).
inline void InitRepo(const std::string& repo, const std::string& extra = "") {
  REQUIRE_EXIT(C(repo, "init --kdf-ops 1 --kdf-memory 1 --no-recovery-key " + extra), 0);
}

// Each non-empty line of `out` as JSON.
inline std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) v.push_back(json::parse(line));
  }
  return v;
}

// `--json backup ARGS`: the snapshot ID from the summary line.
inline std::string CliBackup(const std::string& repo, const std::string& args) {
  RunResult r = C(repo, "--json backup " + args);
  REQUIRE_EXIT(r, 0);
  auto lines = JsonLines(r.out);
  REQUIRE(!lines.empty());
  REQUIRE(lines.back()["message_type"] == "summary");
  return lines.back()["snapshot_id"].get<std::string>();
}

// "error: PATH: reason" lines of stderr: path -> reason.
inline std::map<std::string, std::string> ErrorLines(const std::string& err) {
  std::map<std::string, std::string> m;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("error: ", 0) != 0) continue;
    std::string rest = line.substr(7);
    size_t sep = rest.find(": ");
    if (sep == std::string::npos) continue;
    m[rest.substr(0, sep)] = rest.substr(sep + 2);
  }
  return m;
}

// Opens a CLI-made repository through the library, locked for writing.
inline std::unique_ptr<storage::Repository> OpenLib(const std::string& repo) {
  auto r = storage::Repository::Open(storage::NewLocalBackend(repo), "pw");
  if (!r.ok()) FAIL("open: " << r.status().ToString());
  Status st = (*r)->LockForWrite(storage::Actor::FromProcess("test"));
  if (!st.ok()) FAIL("lock: " << st.ToString());
  return std::move(r).value();
}

// Unmounts on scope exit (before the TempDir holding the mount point goes).
struct MountGuard {
  std::string path;
  bool mounted = false;
  ~MountGuard() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

}  // namespace custos::clitest
