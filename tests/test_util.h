// Helpers for tests: temporary directories, deterministic random bytes,
// running the custos binary.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "base/bytes.h"

namespace custos::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/custos-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) std::abort();
    path_ = buf.data();
  }
  ~TempDir() {
    std::string cmd = "chmod -R u+rwX '" + path_ + "' 2>/dev/null; rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0) {
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline Bytes RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(rng());
  return b;
}

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs a shell command line, capturing stdout and stderr.
RunResult Run(const std::string& command);
// Runs the custos binary with `args` (a shell-quoted string).
RunResult Custos(const std::string& args, const std::string& env = "");

std::string ShellQuote(const std::string& s);

}  // namespace custos::test
