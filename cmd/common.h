// What the custos subcommands share: global flags, opening the repository
// with the right exit codes, human-readable sizes. Each command group
// registers itself on the CLI11 app with an Add*Commands function.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "base/status.h"
#include "storage/repository.h"

namespace custos::cli {

struct Globals {
  std::string repo;
  std::string password_file;
  bool json = false;
  bool quiet = false;
};

constexpr const char* kVersion = "0.1.0";

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

std::string HumanBytes(uint64_t b);
std::string HumanDuration(double seconds);

// Backup and browsing: backup, snapshots, ls, diff, stats.
void AddSnapshotCommands(CLI::App& app, Globals& g, int& rc);
// restore
void AddRestoreCommands(CLI::App& app, Globals& g, int& rc);

}  // namespace custos::cli
