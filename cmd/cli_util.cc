#include "cmd/cli_util.h"

#include <fcntl.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "base/file_util.h"

namespace custos::cli {

int ExitCodeFor(const Status& st) {
  switch (st.code()) {
    case Code::kOk: return kExitOk;
    case Code::kBusy: return kExitLocked;
    case Code::kUnauthenticated: return kExitWrongPassword;
    case Code::kCancelled: return kExitInterrupted;
    default: return kExitError;
  }
}

namespace {
// The terminal state to restore if a signal arrives during a no-echo prompt.
volatile sig_atomic_t g_tty_fd = -1;
termios g_tty_saved;

void OnInterrupt(int) {
  if (g_tty_fd >= 0) ::tcsetattr(g_tty_fd, TCSAFLUSH, &g_tty_saved);
  static const char kMsg[] = "\ncustos: interrupted\n";
  ssize_t n = ::write(2, kMsg, sizeof kMsg - 1);
  (void)n;
  ::_exit(kExitInterrupted);
}
}  // namespace

void InstallInterruptHandler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string DefaultRepository() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return JoinPath(JoinPath(x, "custos"), "repository");
  const char* home = std::getenv("HOME");
  std::string h = home && *home ? home : "/root";
  return h + "/.local/share/custos/repository";
}

Result<std::string> ReadSecretFile(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status().Annotate("password file");
  std::string s(bytes->begin(), bytes->end());
  SecureWipe(bytes->data(), bytes->size());
  auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

bool StdinIsTty() { return ::isatty(0) == 1; }
bool StderrIsTty() { return ::isatty(2) == 1; }

Result<std::string> PromptSecret(const std::string& prompt) {
  Fd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (!tty.valid()) {
    return UnavailableError("no passphrase given: set CUSTOS_PASSWORD or CUSTOS_PASSWORD_FILE, "
                            "use --password-file, or run on a terminal");
  }
  termios old;
  bool have_termios = ::tcgetattr(tty.get(), &old) == 0;
  if (have_termios) {
    g_tty_saved = old;
    g_tty_fd = tty.get();
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(tty.get(), TCSAFLUSH, &quiet);
  }
  std::string p = prompt + ": ";
  (void)WriteAll(tty.get(), AsBytes(p), "tty");
  std::string line;
  char c;
  while (::read(tty.get(), &c, 1) == 1 && c != '\n') line += c;
  if (have_termios) {
    ::tcsetattr(tty.get(), TCSAFLUSH, &old);
    g_tty_fd = -1;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

Result<std::string> GetPassphrase(const std::string& password_file, bool confirm, const std::string& what) {
  // An explicit flag wins over the environment.
  if (!password_file.empty()) return ReadSecretFile(password_file);
  if (const char* p = std::getenv("CUSTOS_PASSWORD"); p && *p) return std::string(p);
  if (const char* f = std::getenv("CUSTOS_PASSWORD_FILE"); f && *f) return ReadSecretFile(f);
  ASSIGN_OR_RETURN(std::string first, PromptSecret("Enter " + what));
  if (confirm) {
    ASSIGN_OR_RETURN(std::string second, PromptSecret("Enter " + what + " again"));
    if (first != second) return InvalidArgumentError("the passphrases do not match");
  }
  return first;
}

Result<std::string> GetNewPassphrase(const std::string& new_password_file) {
  if (!new_password_file.empty()) return ReadSecretFile(new_password_file);
  ASSIGN_OR_RETURN(std::string first, PromptSecret("Enter the new passphrase"));
  ASSIGN_OR_RETURN(std::string second, PromptSecret("Enter the new passphrase again"));
  if (first != second) return InvalidArgumentError("the passphrases do not match");
  return first;
}

void PrintError(const std::string& message) { std::cerr << "custos: " << message << "\n"; }

}  // namespace custos::cli
