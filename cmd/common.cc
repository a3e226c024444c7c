#include "cmd/common.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cmd/cli_util.h"
#include "storage/backend.h"

namespace custos::cli {

std::string RepoPath(const Globals& g) {
  if (!g.repo.empty()) return g.repo;
  if (const char* r = std::getenv("CUSTOS_REPOSITORY"); r && *r) return r;
  return DefaultRepository();
}

int Fail(const Status& st, int code) {
  PrintError(st.message().empty() ? st.ToString() : st.message());
  return code >= 0 ? code : ExitCodeFor(st);
}

Opened OpenRepo(const Globals& g, bool load_index) {
  Opened o;
  std::string path = RepoPath(g);
  auto backend = storage::NewLocalBackend(path);
  if (auto size = backend->Size(storage::FileType::kConfig, ""); !size.ok()) {
    if (size.status().code() == Code::kNotFound) {
      o.exit_code = Fail(NotFoundError("no repository at " + path + " (create one with 'custos init')"),
                         kExitNoRepository);
    } else {
      o.exit_code = Fail(size.status().Annotate("repository " + path));
    }
    return o;
  }
  auto pass = GetPassphrase(g.password_file, false);
  if (!pass.ok()) {
    o.exit_code = Fail(pass.status());
    return o;
  }
  storage::OpenOptions opts;
  opts.load_index = load_index;
  auto repo = storage::Repository::Open(std::move(backend), *pass, opts);
  SecureWipe(pass->data(), pass->size());
  if (!repo.ok()) {
    int code = repo.status().code() == Code::kNotFound ? int(kExitNoRepository) : ExitCodeFor(repo.status());
    o.exit_code = Fail(repo.status(), code);
    return o;
  }
  o.repo = std::move(repo).value();
  return o;
}

std::string HumanDuration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return buf;
}

void TtyProgress(uint64_t fd, uint64_t ft, uint64_t bd, uint64_t bt) {
  std::fprintf(stderr, "\r\033[K%llu/%llu files, %s/%s", (unsigned long long)fd, (unsigned long long)ft,
               HumanBytes(bd).c_str(), HumanBytes(bt).c_str());
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace custos::cli
