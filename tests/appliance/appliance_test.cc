// The appliance's first part (issue 5): the agent registry (tokens,
// enrolment, revocation) and the real programs end to end: custosd on
// 127.0.0.1, `custos agent add`, `custos-agent enroll` and `run`, `custos
// status`, revocation refusing the running agent (exit 12), a second
// custosd on the same data directory (exit 11), no daemon (exit 13).
// The protocol itself is driven from Python in cap_client_test.py.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "appliance/registry.h"
#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;


TEST_CASE("registry: tokens enrol once, before they expire, and revocation is final", "[appliance]") {
  test::TempDir dir;
  auto reg = appliance::Registry::Open(dir.path() + "/r.db");
  REQUIRE(reg.ok());
  auto& r = **reg;
  appliance::CurveKey k1{}, k2{};
  k1[0] = 1;
  k2[0] = 2;
  REQUIRE(r.AddAgent("bad name").status().code() == Code::kInvalidArgument);
  REQUIRE(r.AddAgent(std::string(65, 'a')).status().code() == Code::kInvalidArgument);
  // What the ZAP handler admits for enrolment: the key pair derived from a
  // pending, unexpired token's secret, and nothing else.
  auto enrol_key = appliance::EnrolPublicKey;
  auto s1 = r.AddAgent("db01");
  REQUIRE(s1.ok());
  REQUIRE_FALSE(r.Admitted(k1));
  REQUIRE(r.PendingEnrolment(enrol_key(*s1)) == std::optional<std::string>("db01"));
  REQUIRE_FALSE(r.PendingEnrolment(k1));
  REQUIRE_FALSE(r.Admitted(enrol_key(*s1)));  // never an agent's key
  // A new token for a pending agent replaces the old one.
  auto s1b = r.AddAgent("db01");
  REQUIRE(s1b.ok());
  REQUIRE_FALSE(r.PendingEnrolment(enrol_key(*s1)));
  REQUIRE(r.PendingEnrolment(enrol_key(*s1b)) == std::optional<std::string>("db01"));
  REQUIRE(r.Enrol(*s1, k1, "h", "v").status().code() == Code::kUnauthenticated);
  auto name = r.Enrol(*s1b, k1, "h", "v");
  REQUIRE(name.ok());
  REQUIRE(*name == "db01");
  REQUIRE(r.Admitted(k1) == std::optional<std::string>("db01"));
  REQUIRE_FALSE(r.PendingEnrolment(enrol_key(*s1b)));  // used
  REQUIRE(r.Enrol(*s1b, k2, "h", "v").status().code() == Code::kUnauthenticated);  // single use
  REQUIRE(r.AddAgent("db01").status().code() == Code::kAlreadyExists);
  // The same key cannot become a second agent.
  auto s2 = r.AddAgent("web01");
  REQUIRE(s2.ok());
  REQUIRE(r.Enrol(*s2, k1, "h", "v").status().code() == Code::kAlreadyExists);
  // Expired tokens.
  auto s3 = r.AddAgent("old", -1);
  REQUIRE(s3.ok());
  REQUIRE_FALSE(r.PendingEnrolment(enrol_key(*s3)));
  REQUIRE(r.Enrol(*s3, k2, "h", "v").status().code() == Code::kUnauthenticated);
  // A revoked pending token is refused too.
  auto s4 = r.AddAgent("spare");
  REQUIRE(s4.ok());
  REQUIRE(r.Revoke("spare").ok());
  REQUIRE_FALSE(r.PendingEnrolment(enrol_key(*s4)));
  // Revocation.
  REQUIRE(r.Revoke("db01").ok());
  REQUIRE_FALSE(r.Admitted(k1));
  REQUIRE(r.Revoke("db01").code() == Code::kNotFound);
  REQUIRE(r.AddAgent("db01").status().code() == Code::kAlreadyExists);  // names are not reused
  auto list = r.List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 4);
  // The derivation is fixed (cap.md section 4): a known answer, computed
  // independently with Python's hashlib.blake2b and zmq.curve_public.
  std::array<uint8_t, 16> fixed{};
  for (size_t i = 0; i < fixed.size(); ++i) fixed[i] = uint8_t(i);
  appliance::CurveKey fpub = enrol_key(fixed);
  REQUIRE(ToHex(ByteView(fpub.data(), fpub.size())) == "9e52c0ac5d2ecf3e6da6c2463073fdf40e88f052f3b0b9028beb8d335fa99c7c");
  // Tokens: format and parse are inverses; damage is refused.
  appliance::CurveKey pub{};
  pub[5] = 9;
  std::array<uint8_t, 16> secret{};
  secret[3] = 7;
  std::string token = appliance::FormatToken(pub, secret);
  appliance::CurveKey p2;
  std::array<uint8_t, 16> s2r;
  REQUIRE(appliance::ParseToken(token + "\n", &p2, &s2r).ok());
  REQUIRE(p2 == pub);
  REQUIRE(s2r == secret);
  REQUIRE_FALSE(appliance::ParseToken("CAPT2." + token.substr(6), &p2, &s2r).ok());
  REQUIRE_FALSE(appliance::ParseToken(token.substr(0, token.size() - 4), &p2, &s2r).ok());
}

TEST_CASE("appliance: custosd, agent add, enroll, run, status, revoke", "[appliance][cli]") {
  test::TempDir work;
  std::string data = work.path() + "/appliance", state = work.path() + "/agent";
  // No daemon yet: exit 13.
  RunResult none = Cli(data, "status");
  REQUIRE_EXIT(none, 13);
  REQUIRE(Contains(none.err, "no custosd is running"));

  Proc daemon(kBin + "/custosd --data-dir " + Q(data) + " --listen tcp://127.0.0.1:0 --heartbeat-ms 300", work.path(),
              "custosd");
  REQUIRE(Eventually([&] { return Contains(Slurp(daemon.out), "listening on"); }));
  std::string endpoint = Slurp(daemon.out);
  endpoint = endpoint.substr(endpoint.rfind(' ') + 1);
  endpoint.erase(endpoint.find_last_not_of("\n") + 1);
  INFO("endpoint " << endpoint);
  // The data directory and the key are private.
  struct stat st;
  REQUIRE(::stat(data.c_str(), &st) == 0);
  REQUIRE((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((data + "/appliance.key").c_str(), &st) == 0);
  REQUIRE((st.st_mode & 0777) == 0600);
  // A second daemon on the same data directory: exit 11.
  RunResult second = test::Run(kBin + "/custosd --data-dir " + Q(data) + " --listen tcp://127.0.0.1:0");
  REQUIRE_EXIT(second, 11);

  RunResult add = Cli(data, "--json agent add db01");
  REQUIRE_EXIT(add, 0);
  json j = json::parse(add.out);
  std::string token = j["token"];
  REQUIRE_EXIT(Cli(data, "agent add 'bad name'"), 1);
  // The daemon never logs the token.
  REQUIRE_FALSE(Contains(Slurp(daemon.err), token));

  // A wrong token: refused, exit 12; nothing written.
  std::string bad = token;
  bad[bad.size() - 3] = bad[bad.size() - 3] == 'A' ? 'B' : 'A';
  auto t0 = std::chrono::steady_clock::now();
  RunResult refused = test::Run(kBin + "/custos-agent --state-dir " + Q(state) + " enroll --appliance " + endpoint +
                                " --token " + Q(bad));
  auto seconds_since = [](auto t) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(); };
  double refused_s = seconds_since(t0);
  REQUIRE_EXIT(refused, 12);
  // Refused at the handshake (the derived key is no pending token's), and
  // told so at once rather than after the 10 s answer timeout.
  REQUIRE(Contains(refused.err, "refused enrolment"));
  REQUIRE(refused_s < 5);
  REQUIRE(::stat((state + "/agent.key").c_str(), &st) != 0);

  RunResult enrol = test::Run(kBin + "/custos-agent --json --state-dir " + Q(state) + " enroll --appliance " +
                              endpoint + " --token " + Q(token));
  REQUIRE_EXIT(enrol, 0);
  REQUIRE(json::parse(enrol.out)["name"] == "db01");
  REQUIRE(::stat((state + "/agent.key").c_str(), &st) == 0);
  REQUIRE((st.st_mode & 0777) == 0600);
  // Enrolling again into the same state directory is refused.
  RunResult again = test::Run(kBin + "/custos-agent --state-dir " + Q(state) + " enroll --appliance " + endpoint +
                              " --token " + Q(token));
  REQUIRE(again.exit_code != 0);

  Proc agent(kBin + "/custos-agent --state-dir " + Q(state) + " run", work.path(), "agent");
  REQUIRE(Eventually([&] {
    RunResult s = Cli(data, "--json status");
    if (s.exit_code != 0) return false;
    json js = json::parse(s.out);
    return js["agents"].size() == 1 && js["agents"][0]["connected"] == true;
  }));
  RunResult status = Cli(data, "status");
  REQUIRE_EXIT(status, 0);
  REQUIRE(Contains(status.out, "db01"));
  REQUIRE(Contains(status.out, "enrolled"));

  // Revocation: the running agent is refused at its next message and exits 12.
  REQUIRE_EXIT(Cli(data, "agent revoke db01"), 0);
  int code = -1;
  REQUIRE(Eventually([&] { return agent.Exited(&code); }));
  REQUIRE(code == 12);
  REQUIRE(Contains(Slurp(agent.err), "refused"));
  RunResult list = Cli(data, "--json agent list");
  REQUIRE_EXIT(list, 0);
  REQUIRE(json::parse(list.out)[0]["state"] == "revoked");
  REQUIRE_EXIT(Cli(data, "agent revoke db01"), 1);
  // Started again, the revoked agent never gets past the handshake: it is
  // told so by the socket monitor and exits 12 at once.
  t0 = std::chrono::steady_clock::now();
  RunResult rerun = test::Run(kBin + "/custos-agent --state-dir " + Q(state) + " run");
  double rerun_s = seconds_since(t0);
  REQUIRE_EXIT(rerun, 12);
  REQUIRE(Contains(rerun.err, "revoked or not enrolled"));
  REQUIRE(rerun_s < 5);
  REQUIRE(Contains(Slurp(daemon.err), "is neither enrolled nor a pending enrolment token's"));

  REQUIRE(daemon.Stop() == 0);
  REQUIRE(::stat((data + "/control.sock").c_str(), &st) != 0);  // removed on a clean stop
}

TEST_CASE("registry: job history, newest first, filtered by agent and failure", "[appliance]") {
  test::TempDir work;
  auto reg = appliance::Registry::Open(work.path() + "/registry.db");
  REQUIRE(reg.ok());
  appliance::JobRecord j{"j-1", "db01", "backup", "running", 100, 0, "{}", "", "", 0, 0};
  REQUIRE((*reg)->SaveJob(j).ok());
  j.state = "ok";
  j.ended = 105;
  j.snapshot = std::string(64, 'a');
  j.files = 3;
  REQUIRE((*reg)->SaveJob(j).ok());  // an update, not a second row
  REQUIRE((*reg)->SaveJob(appliance::JobRecord{"j-2", "db02", "backup", "running", 200, 0, "{}", "", "", 0, 0}).ok());
  REQUIRE((*reg)->SaveJob(appliance::JobRecord{"j-3", "db02", "backup", "missed", 300, 300, "{}", "",
                                                 "agent db02 is not connected", 0, 0}).ok());
  auto jobs = (*reg)->Jobs();
  REQUIRE(jobs.ok());
  REQUIRE(jobs->size() == 3);
  REQUIRE((*jobs)[0].id == "j-3");  // newest first
  REQUIRE((*jobs)[2].state == "ok");
  REQUIRE((*jobs)[2].files == 3);
  auto failed = (*reg)->Jobs(100, "", true);
  REQUIRE(failed.ok());
  REQUIRE(failed->size() == 1);
  REQUIRE((*failed)[0].error == "agent db02 is not connected");
  auto db01 = (*reg)->Jobs(100, "db01");
  REQUIRE(db01.ok());
  REQUIRE(db01->size() == 1);
  REQUIRE((*db01)[0].id == "j-1");
  // By ID, and what is still running (j-2), whatever the history's length.
  auto one = (*reg)->FindJob("j-3");
  REQUIRE(one.ok());
  REQUIRE(*one);
  REQUIRE((*one)->state == "missed");
  auto none = (*reg)->FindJob("j-nope");
  REQUIRE(none.ok());
  REQUIRE_FALSE(*none);
  auto running = (*reg)->RunningJobs();
  REQUIRE(running.ok());
  REQUIRE(running->size() == 1);
  REQUIRE((*running)[0].id == "j-2");
}
