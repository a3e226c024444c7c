// Shared helpers of the command-line programs: exit codes, secrets from
// the environment, files or a no-echo prompt, output in text or JSON.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"

namespace custos::cli {

// Documented exit codes (doc/cli.md, `custos --help`).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitPartial = 3,
  kExitNotVerified = 4,  // evidence verify: the bundle does not verify
  kExitNoRepository = 10,
  kExitLocked = 11,
  kExitWrongPassword = 12,
  kExitNoDaemon = 13,
  kExitInterrupted = 130,
};

// Maps a Status to the exit code its code implies (Busy -> 11,
// Unauthenticated -> 12, Cancelled -> 130, other errors -> 1).
int ExitCodeFor(const Status& st);

// Makes SIGINT/SIGTERM end the process with exit code 130 and a short
// message. Safe at any point: every repository write is atomic.
void InstallInterruptHandler();

// The default repository path: $XDG_DATA_HOME/custos/repository or
// ~/.local/share/custos/repository.
std::string DefaultRepository();

// Reads a secret's first line from a file ('-' is not accepted: stdin may be data).
Result<std::string> ReadSecretFile(const std::string& path);
// Prompts on the controlling terminal without echo; Unavailable if there is
// no terminal.
Result<std::string> PromptSecret(const std::string& prompt);
bool StdinIsTty();
bool StderrIsTty();

// The passphrase for opening: CUSTOS_PASSWORD, then the password file
// (flag or CUSTOS_PASSWORD_FILE), then a prompt. `confirm` asks twice.
Result<std::string> GetPassphrase(const std::string& password_file, bool confirm,
                                  const std::string& what = "repository passphrase");
// A new passphrase for key add/passwd: --new-password-file or a prompt (twice).
Result<std::string> GetNewPassphrase(const std::string& new_password_file);

// Prints "custos: <message>" to stderr.
void PrintError(const std::string& message);

}  // namespace custos::cli
