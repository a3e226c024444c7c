// Shared by the appliance tests: programs started in the background, and
// a running custosd with enrolled, running agents.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "tests/cli/cli_fixture.h"
#include "tests/test_util.h"

namespace custos::appliancetest {

using clitest::Contains;
using clitest::Q;
using custos::test::RunResult;

inline const std::string kBin = std::string(CUSTOS_BINARY).substr(0, std::string(CUSTOS_BINARY).rfind('/'));

// A program started in the background with its stdout and stderr in files.
struct Proc {
  pid_t pid = -1;
  std::string out, err;
  Proc(const std::string& cmd, const std::string& dir, const std::string& tag)
      : out(dir + "/" + tag + ".out"), err(dir + "/" + tag + ".err") {
    pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >" + out + " 2>" + err).c_str(), nullptr);
      ::_exit(127);
    }
  }
  int Stop(int sig = SIGTERM) {
    if (pid <= 0) return -1;
    ::kill(pid, sig);
    return Wait();
  }
  int Wait() {
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  bool Exited(int* code) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) != pid) return false;
    pid = -1;
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return true;
  }
  ~Proc() {
    if (pid > 0) Stop(SIGKILL);
  }
};

inline std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Waits until `pred` holds (up to 10 s).
template <typename F>
inline bool Eventually(F pred) {
  for (int i = 0; i < 200; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

inline RunResult Cli(const std::string& data, const std::string& args) {
  return test::Run("env -u CUSTOS_DATA_DIR " + kBin + "/custos --data-dir " + Q(data) + " " + args);
}


// custosd on 127.0.0.1 (any free port) with data in DIR/appliance.
struct Appliance {
  std::string dir, data, endpoint;
  int heartbeat_ms, resume_window_s;
  std::string config;  // custosd --config FILE, if set
  std::unique_ptr<Proc> daemon;
  int starts = 0;
  Appliance(const std::string& dir_, int heartbeat = 300, int resume_window = 600, const std::string& config_ = "")
      : dir(dir_), data(dir_ + "/appliance"), heartbeat_ms(heartbeat), resume_window_s(resume_window), config(config_) {
    Start("tcp://127.0.0.1:0");
  }
  void Start(const std::string& listen) {
    std::string tag = "custosd" + (starts++ ? std::to_string(starts) : std::string());
    daemon = std::make_unique<Proc>(kBin + "/custosd --data-dir " + Q(data) + " --listen " + listen +
                                        " --heartbeat-ms " + std::to_string(heartbeat_ms) + " --resume-window " +
                                        std::to_string(resume_window_s) + (config.empty() ? "" : " --config " + Q(config)),
                                    dir, tag);
    bool up = false;
    for (int i = 0; i < 400 && !up; ++i) {  // up to 20 s (the port may be slow to free)
      up = Contains(Slurp(daemon->out), "listening on");
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    INFO(Slurp(daemon->err));
    REQUIRE(up);
    endpoint = Slurp(daemon->out);
    endpoint = endpoint.substr(endpoint.rfind(' ') + 1);
    endpoint.erase(endpoint.find_last_not_of("\n") + 1);
  }
  // Stops custosd with `sig` and starts it again on the same endpoint
  // after `down_ms`.
  void Restart(int sig, int down_ms = 0) {
    daemon->Stop(sig);
    std::this_thread::sleep_for(std::chrono::milliseconds(down_ms));
    Start(endpoint);
  }
  // The appliance's repository through the local CLI (custosd holds the
  // writer lock; reading needs none).
  RunResult Repo(const std::string& args) const {
    return test::Run("env -u CUSTOS_PASSWORD_FILE -u CUSTOS_REPOSITORY " + kBin + "/custos --repo " +
                     Q(data + "/repository") + " --password-file " + Q(data + "/repository.pass") + " " + args);
  }
};

// Adds agent NAME, enrols a state directory DIR/NAME for it and runs it.
// `endpoint`: where the agent dials (default: the appliance's own).
inline std::unique_ptr<Proc> StartAgent(const Appliance& a, const std::string& dir, const std::string& name,
                                        const std::string& endpoint = "") {
  RunResult add = Cli(a.data, "--json agent add " + name);
  REQUIRE(add.exit_code == 0);
  std::string token = nlohmann::json::parse(add.out)["token"];
  std::string state = dir + "/" + name;
  RunResult enrol =
      test::Run(kBin + "/custos-agent --state-dir " + Q(state) + " enroll --appliance " + (endpoint.empty() ? a.endpoint : endpoint) + " --token " + Q(token));
  INFO(enrol.err);
  REQUIRE(enrol.exit_code == 0);
  auto agent = std::make_unique<Proc>(kBin + "/custos-agent --state-dir " + Q(state) + " run", dir, "agent-" + name);
  std::string last;
  bool connected = Eventually([&] {
    RunResult s = Cli(a.data, "--json status");
    last = std::to_string(s.exit_code) + " " + s.out + s.err;
    if (s.exit_code != 0) return false;
    nlohmann::json js = nlohmann::json::parse(s.out);
    for (const auto& ag : js["agents"]) {
      if (ag["name"] == name && ag["connected"] == true) return true;
    }
    return false;
  });
  INFO("agent " << name << ": " << Slurp(agent->err) << "\ncustosd: " << Slurp(a.daemon->err) << "\nstatus: " << last);
  REQUIRE(connected);
  return agent;
}

// A running custosd with one enrolled, running agent and an empty source
// directory (WORK/server) on "its server".
struct AgentSite {
  test::TempDir work;
  Appliance a;
  std::unique_ptr<Proc> agent;
  std::string src;
  // `config`: custosd's config file text (none when empty).
  explicit AgentSite(const std::string& name = "db01", const std::string& config = "")
      : a(work.path(), 300, 600, ConfigFile(work.path(), config)),
        agent(StartAgent(a, work.path(), name)),
        src(work.path() + "/server") {
    REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  }
  static std::string ConfigFile(const std::string& dir, const std::string& text) {
    if (text.empty()) return "";
    std::ofstream(dir + "/custosd.toml") << text;
    return dir + "/custosd.toml";
  }
};


// The running job's JSON (from custos status), or null.
inline nlohmann::json RunningJob(const Appliance& a) {
  RunResult s = Cli(a.data, "--json status");
  if (s.exit_code != 0) return nullptr;
  nlohmann::json jobs = nlohmann::json::parse(s.out)["jobs"];
  return jobs.empty() ? nlohmann::json(nullptr) : jobs[0];
}

// Waits (up to `seconds`) until the running job's `key` reaches `bytes`:
// "bytes_received" (a backup's bytes on the appliance) or "bytes" (the
// progress a restore or collection reports).
inline bool RunningJobAt(const Appliance& a, const char* key, uint64_t bytes, int seconds = 60) {
  for (int i = 0; i < seconds * 20; ++i) {
    nlohmann::json j = RunningJob(a);
    if (j.is_object() && j.value(key, uint64_t(0)) >= bytes) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}
// Waits until the running backup has `bytes` on the appliance.
inline bool ReceivedAtLeast(const Appliance& a, uint64_t bytes, int seconds = 60) {
  return RunningJobAt(a, "bytes_received", bytes, seconds);
}

// The latest snapshot restores to exactly `src` (under OUT/<src path>).
inline void RequireRestoresLike(const Appliance& a, const std::string& src, const std::string& out) {
  RunResult r = a.Repo("restore latest --target " + Q(out));
  INFO(r.out << r.err);
  REQUIRE_EXIT(r, 0);
  RunResult diff = test::Run("diff -r " + Q(src) + " " + Q(out + src));
  INFO(diff.out << diff.err);
  REQUIRE(diff.exit_code == 0);
}

}  // namespace custos::appliancetest
