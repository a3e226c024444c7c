#include "tests/test_util.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/crypto.h"

namespace custos::test {

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''"; else out += c;
  }
  return out + "'";
}

static std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult Run(const std::string& command) {
  TempDir io;
  std::string out = io.path() + "/out", err = io.path() + "/err";
  std::string full = "(" + command + ") </dev/null >" + out + " 2>" + err;
  int status = std::system(full.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

RunResult Custos(const std::string& args, const std::string& env) {
  return Run("env -u CUSTOS_PASSWORD -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + env + " " +
             std::string(CUSTOS_BINARY) + " " + args);
}

}  // namespace custos::test
