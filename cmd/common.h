// What the custos subcommands share: global flags, opening the repository
// with the right exit codes, human-readable sizes. Each command group
// registers itself on the CLI11 app with an Add*Commands function.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "base/version.h"
#include "storage/repository.h"

namespace custos::cli {

struct Globals {
  std::string data_dir;  // the appliance's (--data-dir, $CUSTOS_DATA_DIR)
  std::string repo;
  std::string password_file;
  bool json = false;
  bool quiet = false;
};

constexpr const char* kVersion = kCustosVersion;

// --repo, else $CUSTOS_REPOSITORY, else DefaultRepository().
std::string RepoPath(const Globals& g);

// Prints the error and returns its exit code (`code` overrides the mapping).
int Fail(const Status& st, int code = -1);

struct Opened {
  std::unique_ptr<storage::Repository> repo;
  int exit_code = 0;  // set when repo is null
};
// Opens the repository: exit 10 when there is none, 12 on a wrong passphrase.
Opened OpenRepo(const Globals& g, bool load_index);

using custos::HumanBytes;
// Progress of a restore or drill on stderr: "12/40 files, 3.1 MiB/9.0 MiB".
void TtyProgress(uint64_t files_done, uint64_t files_total, uint64_t bytes_done, uint64_t bytes_total);
// Wall-clock time in Unix nanoseconds.
int64_t NowNs();
std::string HumanDuration(double seconds);

// Backup and browsing: backup, snapshots, ls, diff, stats.
void AddSnapshotCommands(CLI::App& app, Globals& g, int& rc);
// restore
void AddRestoreCommands(CLI::App& app, Globals& g, int& rc);
// agent add|list|revoke, status (through custosd's control socket)
void AddApplianceCommands(CLI::App& app, Globals& g, int& rc);
// `custos backup --agent NAME PATH...`: starts the job on the appliance and
// follows it to the end. Returns the exit code.
int RemoteBackup(const Globals& g, const std::string& agent, const std::vector<std::string>& paths,
                 const std::vector<std::string>& excludes, bool exclude_caches, bool one_file_system);
// `custos restore SNAPSHOT[:PATH] --agent NAME --target DIR`: custosd sends
// the snapshot to the agent, which restores and verifies it; follows the job
// to the end and prints the signed report's summary. Returns the exit code.
struct RemoteRestoreRequest {
  std::string agent, snapshot, subpath, target, overwrite, host;
  bool verify = true;
  std::vector<std::string> includes, excludes;
};
int RemoteRestore(const Globals& g, const RemoteRestoreRequest& r);
// dump, export
void AddExportCommands(CLI::App& app, Globals& g, int& rc);
// reports, drill
void AddReportCommands(CLI::App& app, Globals& g, int& rc);
// forget, prune, hold add|list|release (local or through custosd)
void AddRetentionCommands(CLI::App& app, Globals& g, int& rc);
// evidence verify (standalone: no repository, no daemon)
void AddEvidenceCommands(CLI::App& app, Globals& g, int& rc);
// custosd's data directory: --data-dir, else appliance::DefaultDataDir().
std::string DataDir(const Globals& g);
// One control request to custosd; prints the error and sets rc (13 when
// custosd does not answer) when it fails or is refused.
std::optional<nlohmann::json> Control(const Globals& g, const nlohmann::json& request, int& rc);
// Follows job `job` until it ends (progress on a terminal, status lines with
// --json), riding out a custosd restart; its final record, or nothing with
// rc set.
std::optional<nlohmann::json> WaitForJob(const Globals& g, const std::string& job, int& rc);
// The exit code for a job that ended (its final record): 0 ok, 3 partial,
// else 1 after printing "WHAT job ID STATE: ERROR" (not with --json).
int JobExitCode(const Globals& g, const std::string& what, const std::string& job, const nlohmann::json& done);
// case open|list|show|close|note|collect|hold|release|snapshot|export|checkpoint
void AddCaseCommands(CLI::App& app, Globals& g, int& rc);

}  // namespace custos::cli
