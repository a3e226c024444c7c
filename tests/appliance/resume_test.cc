// Resumption (issue 5, doc/protocols/cap.md section 7): a backup survives a
// dropped connection and a restart of custosd. The agent keeps its job and
// greets again with HELLO {resume}; custosd continues the job where it
// stopped (the same daemon, or one that stopped cleanly and saved the job),
// or asks the agent to walk again when it lost what it had not yet written
// (a crash). Either way the snapshot is complete and verifies.
#include <catch2/catch.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

// A TCP relay between the agent and custosd on 127.0.0.1: it forwards at
// most `rate` bytes per second (so that a backup is surely in flight when
// the test acts) and can drop every connection at once.
class TcpProxy {
 public:
  TcpProxy(int upstream_port, double rate) : upstream_(upstream_port), rate_(rate) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd_, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~TcpProxy() {
    stop_ = true;
    thread_.join();
    for (auto& p : pairs_) CloseFds(p);
    ::close(lfd_);
  }
  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void DropAll() { drop_ = true; }
  uint64_t bytes() const { return bytes_; }
  int drops() const { return drops_; }

 private:
  struct Pair {
    int a, b;
  };
  static void CloseFds(Pair& p) {
    ::close(p.a);
    ::close(p.b);
  }
  static bool WriteAll(int fd, const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w <= 0) return false;
      p += w;
      n -= size_t(w);
    }
    return true;
  }
  void Loop() {
    auto start = std::chrono::steady_clock::now();
    std::vector<char> buf(64 << 10);
    while (!stop_) {
      if (drop_.exchange(false)) {
        for (auto& p : pairs_) CloseFds(p);
        pairs_.clear();
        ++drops_;
      }
      std::vector<pollfd> fds = {{lfd_, POLLIN, 0}};
      for (const auto& p : pairs_) {
        fds.push_back({p.a, POLLIN, 0});
        fds.push_back({p.b, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      const size_t polled = pairs_.size();  // a pair accepted below was not polled
      if (fds[0].revents & POLLIN) {
        int c = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        int u = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(uint16_t(upstream_));
        if (c >= 0 && ::connect(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
          pairs_.push_back({c, u});
        } else {
          if (c >= 0) ::close(c);
          ::close(u);
        }
      }
      std::vector<size_t> dead;
      for (size_t i = 0; i < polled; ++i) {
        for (int side = 0; side < 2; ++side) {
          const pollfd& f = fds[1 + 2 * i + side];
          if (!(f.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          int from = side ? pairs_[i].b : pairs_[i].a, to = side ? pairs_[i].a : pairs_[i].b;
          ssize_t n = ::read(from, buf.data(), buf.size());
          if (n <= 0 || !WriteAll(to, buf.data(), size_t(n))) {
            dead.push_back(i);
            break;
          }
          bytes_ += uint64_t(n);
          // Throttle: never ahead of `rate` bytes per second.
          double ahead = double(bytes_) / rate_ -
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          if (ahead > 0) std::this_thread::sleep_for(std::chrono::duration<double>(ahead));
        }
      }
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
        CloseFds(pairs_[*it]);
        pairs_.erase(pairs_.begin() + long(*it));
      }
    }
  }
  int lfd_ = -1, port_ = 0, upstream_;
  double rate_;
  std::vector<Pair> pairs_;
  std::atomic<bool> stop_{false}, drop_{false};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<int> drops_{0};
  std::thread thread_;
};

int PortOf(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

void MakeSource(const std::string& src, size_t big) {
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/etc").c_str(), 0755) == 0);
  test::WriteBytes(src + "/large.bin", test::RandomBytes(big, 11));
  for (int i = 0; i < 40; ++i) test::WriteString(src + "/etc/f" + std::to_string(i), "setting " + std::to_string(i));
}

// The snapshot restores (verified) and matches the source byte for byte.
json LatestSummary(const Appliance& a) {
  json snaps = json::parse(a.Repo("--json snapshots").out);
  REQUIRE(snaps.size() == 1);
  return snaps[0]["summary"];
}

}  // namespace

TEST_CASE("resume: a dropped connection resumes the same job where it stopped", "[appliance][remote][resume]") {
  test::TempDir work;
  Appliance a(work.path());
  TcpProxy proxy(PortOf(a.endpoint), 48.0 * (1 << 20));
  auto agent = StartAgent(a, work.path(), "db01", proxy.endpoint());
  std::string src = work.path() + "/server";
  MakeSource(src, 96u << 20);
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " backup --agent db01 " + Q(src), work.path(), "job");
  REQUIRE(ReceivedAtLeast(a, 40u << 20));
  uint64_t before = proxy.bytes();
  proxy.DropAll();
  REQUIRE(job.Wait() == 0);
  INFO("agent: " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err));
  REQUIRE(proxy.drops() == 1);
  REQUIRE(Contains(Slurp(a.daemon->err), "reconnected, the job continues"));
  REQUIRE(Contains(Slurp(agent->err), "continues"));
  // Resumed, not started over: after the drop crossed what had not arrived
  // (at most 56 MiB of the 96 MiB of random data) plus what was in flight
  // (the credit, 16 MiB), never the whole file again.
  uint64_t after = proxy.bytes() - before;
  CHECK(after < (96u << 20) - (8u << 20));
  json summary = LatestSummary(a);
  CHECK(summary["bytes_added"].get<uint64_t>() >= (96u << 20));
  REQUIRE_EXIT(a.Repo("check --read-data"), 0);
  RequireRestoresLike(a, src, work.path() + "/out");
}

// Runs a backup of 96 MiB through one agent and restarts custosd (stopped
// with `sig`, down `down_ms`) once 16 MiB arrived, with the agent held
// still meanwhile; `check` then looks at the logs. The job must end ok and
// its snapshot verify and restore.
static void RestartMidBackup(int sig, int down_ms,
                      const std::function<void(const Appliance&, const std::string& first_log, const Proc& agent,
                                               const Proc& job)>& check) {
  test::TempDir work;
  Appliance a(work.path());
  auto agent = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  MakeSource(src, 96u << 20);
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " backup --agent db01 " + Q(src), work.path(), "job");
  REQUIRE(ReceivedAtLeast(a, 16u << 20));
  ::kill(agent->pid, SIGSTOP);  // hold it mid-job while the appliance restarts
  std::string first_log = a.daemon->err;
  a.Restart(sig, down_ms);
  ::kill(agent->pid, SIGCONT);
  REQUIRE(job.Wait() == 0);
  INFO("agent: " << Slurp(agent->err) << "\ncustosd (first): " << Slurp(first_log)
                 << "\ncustosd (second): " << Slurp(a.daemon->err) << "\njob: " << Slurp(job.err));
  check(a, first_log, *agent, job);
  REQUIRE_EXIT(a.Repo("check --read-data"), 0);
  RequireRestoresLike(a, src, work.path() + "/out");
  // The job's history row is the one job, ended ok.
  json jobs = json::parse(Cli(a.data, "--json jobs").out);
  REQUIRE(jobs.size() == 1);
  REQUIRE(jobs[0]["state"] == "ok");
}

TEST_CASE("resume: custosd stopped cleanly mid-backup, the agent reconnects and the job continues",
          "[appliance][remote][resume]") {
  // Down long enough for the CLI to notice.
  RestartMidBackup(SIGTERM, 1500, [](const Appliance& a, const std::string& first_log, const Proc&, const Proc& job) {
    REQUIRE(Contains(Slurp(first_log), "state saved"));
    REQUIRE(Contains(Slurp(a.daemon->err), "reconnected, the job continues"));
    REQUIRE(Contains(Slurp(job.err), "waiting up to"));  // the CLI waited for custosd
    // The counts span both daemons: the whole file was added once.
    json summary = LatestSummary(a);
    CHECK(summary["bytes_added"].get<uint64_t>() >= (96u << 20));
    CHECK(summary["bytes_added"].get<uint64_t>() < (96u << 20) + (1u << 20));
  });
}

TEST_CASE("resume: custosd killed mid-backup, the agent walks again in the same job and it completes",
          "[appliance][remote][resume]") {
  // No chance to flush or save anything.
  RestartMidBackup(SIGKILL, 0, [](const Appliance& a, const std::string&, const Proc& agent, const Proc&) {
    REQUIRE(Contains(Slurp(a.daemon->err), "the agent walks again"));
    REQUIRE(Contains(Slurp(agent.err), "restarts"));
  });
}

TEST_CASE("resume: a restore whose connection drops continues where it stopped", "[appliance][remote][resume]") {
  test::TempDir work;
  Appliance a(work.path());
  std::string src = work.path() + "/server";
  MakeSource(src, 96u << 20);
  {
    // The snapshot, taken over a direct connection.
    auto direct = StartAgent(a, work.path(), "db00");
    REQUIRE_EXIT(Cli(a.data, "backup --agent db00 " + Q(src)), 0);
  }
  // The restore goes to another agent through a slow relay, dropped midway.
  TcpProxy proxy(PortOf(a.endpoint), 48.0 * (1 << 20));
  auto agent = StartAgent(a, work.path(), "db01", proxy.endpoint());
  std::string target = work.path() + "/restored";
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " restore latest --host db00 --agent db01 --target " + Q(target),
           work.path(), "job");
  REQUIRE(RunningJobAt(a, "bytes", 32u << 20));
  uint64_t before = proxy.bytes();
  proxy.DropAll();
  int rc = job.Wait();
  INFO("agent: " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err) << "\njob: " << Slurp(job.err));
  REQUIRE(rc == 0);
  REQUIRE(proxy.drops() == 1);
  CHECK(Contains(Slurp(a.daemon->err), "reconnected, the job continues"));
  CHECK(Contains(Slurp(agent->err), "restore job"));
  CHECK(Contains(Slurp(agent->err), "continues"));
  // Continued, not started over: less than the whole file crossed again.
  CHECK(proxy.bytes() - before < (96u << 20) - (8u << 20));
  RunResult diff = test::Run("diff -r " + Q(src) + " " + Q(target + src));
  INFO(diff.out << diff.err);
  CHECK(diff.exit_code == 0);
}

TEST_CASE("resume: an evidence collection whose connection drops continues, each item recorded once",
          "[appliance][evidence][resume]") {
  test::TempDir work;
  Appliance a(work.path());
  TcpProxy proxy(PortOf(a.endpoint), 48.0 * (1 << 20));
  auto agent = StartAgent(a, work.path(), "db01", proxy.endpoint());
  std::string src = work.path() + "/server";
  MakeSource(src, 96u << 20);
  RunResult open = Cli(a.data, "--json case open --title drop");
  REQUIRE_EXIT(open, 0);
  std::string id = json::parse(open.out)["id"];
  Proc job(kBin + "/custos --data-dir " + Q(a.data) + " case collect " + id + " --agent db01 --path " + Q(src),
           work.path(), "job");
  REQUIRE(RunningJobAt(a, "bytes", 32u << 20));
  uint64_t before = proxy.bytes();
  proxy.DropAll();
  int rc = job.Wait();
  INFO("agent: " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err) << "\njob: " << Slurp(job.err));
  REQUIRE(rc == 0);
  CHECK(Contains(Slurp(a.daemon->err), "reconnected, the job continues"));
  CHECK(proxy.bytes() - before < (96u << 20) - (8u << 20));
  std::ifstream f(a.data + "/evidence/cases/" + id + "/ledger.jsonl");
  std::map<std::string, int> seen;
  std::string big_sha;
  for (std::string line; std::getline(f, line);) {
    json r = json::parse(line);
    if (r["type"] != "item") continue;
    ++seen[r["body"]["path"].get<std::string>()];
    if (r["body"]["path"] == src + "/large.bin") big_sha = r["body"]["appliance_sha256"];
  }
  CHECK(seen.size() == 41);  // large.bin and 40 files in etc/
  for (const auto& [path, n] : seen) CHECK(n == 1);
  CHECK(big_sha == test::Run("sha256sum " + Q(src + "/large.bin")).out.substr(0, 64));
}
