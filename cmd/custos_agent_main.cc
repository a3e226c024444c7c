// custos-agent: enrol with the appliance, then serve it (agent/agent.h).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "agent/agent.h"
#include "base/crypto.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"

using namespace custos;

namespace {

agent::Agent* g_agent = nullptr;
void OnSignal(int) {
  if (g_agent) g_agent->Stop();
}

}  // namespace

int main(int argc, char** argv) {
  CryptoInit();
  CLI::App app{"custos-agent: the Custos agent that runs on each office server"};
  app.footer(R"(
The agent dials the appliance (it listens on no port), authenticates with its
own CURVE key and checks the appliance's pinned key. It can add backups for
its own host and nothing else. To enrol it dials with a key pair derived from
the token, the only unenrolled key the appliance lets through its handshake;
a token works once, within 24 hours.

  custos-agent enroll --appliance tcp://APPLIANCE:7468 --token TOKEN
  custos-agent run              (also as a systemd service)

State: --state-dir, else $CUSTOS_AGENT_DIR, else /var/lib/custos-agent (root)
or ~/.local/state/custos-agent.

Exit codes: 0 ok, 1 error, 2 usage, 12 the appliance refused the token
(unknown there, used, expired or withdrawn) or this agent (revoked, or not
enrolled there), 13 the appliance did not answer.)");
  app.require_subcommand(1);
  std::string state_dir;
  bool json_out = false;
  app.add_option("--state-dir", state_dir, "Agent state directory");
  app.add_flag("--json", json_out, "Machine-readable output");
  app.set_version_flag("--version", std::string("custos-agent ") + cli::kVersion);
  auto* enroll = app.add_subcommand("enroll", "Enrol with the appliance using a token from 'custos agent add'");
  std::string endpoint, token;
  enroll->add_option("--appliance", endpoint, "The appliance's endpoint, tcp://HOST:PORT")->required();
  enroll->add_option("--token", token, "The one-time token")->required();
  auto* run = app.add_subcommand("run", "Serve the appliance until stopped");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  }
  if (state_dir.empty()) state_dir = agent::DefaultStateDir();
  auto code_for = [](const Status& st) {
    if (st.code() == Code::kUnauthenticated) return int(cli::kExitWrongPassword);
    if (st.code() == Code::kUnavailable) return int(cli::kExitNoDaemon);
    return cli::ExitCodeFor(st);
  };
  if (enroll->parsed()) {
    auto r = agent::Enrol(endpoint, token, state_dir);
    if (!r.ok()) {
      std::fprintf(stderr, "custos-agent: %s\n", r.status().ToString().c_str());
      return code_for(r.status());
    }
    if (json_out) {
      std::cout << nlohmann::json{{"name", r->name}, {"appliance_key", r->appliance_key}, {"state_dir", state_dir}}.dump()
                << "\n";
    } else {
      std::printf("enrolled as %s (appliance key %s); state in %s\n", r->name.c_str(), r->appliance_key.c_str(),
                  state_dir.c_str());
    }
    return 0;
  }
  if (run->parsed()) {
    agent::Agent a;
    g_agent = &a;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    agent::RunOptions o;
    o.state_dir = state_dir;
    o.on_state = [](const std::string& s) {
      std::fprintf(stderr, "custos-agent: %s\n", s.c_str());
    };
    Status st = a.Run(o);
    if (!st.ok()) {
      std::fprintf(stderr, "custos-agent: %s\n", st.ToString().c_str());
      return code_for(st);
    }
  }
  return 0;
}
