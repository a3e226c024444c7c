// custos-agent's core: enrolment (a fresh CURVE key pair, the appliance key
// pinned from the token) and the session with the appliance (HELLO, then
// heartbeats; reconnects and greets again after a drop). The agent never
// listens on a port: it dials the appliance (DEALER to ROUTER).
//
// Jobs, one at a time (another JOB meanwhile: ERROR 409): backups with the
// archiver and a RemoteTarget (agent/remote_target.h), restores with the
// restorer and a RemoteSource (agent/remote_source.h), each on its own
// thread, which the session thread pumps without ever waiting for it.
//
// State directory (created 0700): agent.key (public and secret key, Z85,
// 0600), appliance.json (endpoint, pinned appliance key, this agent's
// name). Written atomically.
//
// Thread-safety: one Agent per thread; Stop() from anywhere.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "base/status.h"

namespace custos::agent {

// The default state directory: $CUSTOS_AGENT_DIR, else /var/lib/custos-agent
// as root, else ~/.local/state/custos-agent.
std::string DefaultStateDir();

struct EnrolResult {
  std::string name;
  std::string appliance_key;  // Z85
};

// Enrols with the appliance at `endpoint` using `token` (custos agent add).
// AlreadyExists if `state_dir` already holds an enrolment; Unauthenticated
// if the appliance refuses the token; Unavailable if it does not answer
// within `timeout_ms` (which includes a wrong pinned key: CURVE then fails
// silently).
Result<EnrolResult> Enrol(const std::string& endpoint, const std::string& token, const std::string& state_dir,
                          int timeout_ms = 10000);

struct RunOptions {
  std::string state_dir;
  // Called with each state change: "connecting", "connected", "refused: ...".
  std::function<void(const std::string&)> on_state;
};

class Agent {
 public:
  // Serves until Stop(), or until the appliance refuses this agent
  // (revoked: Unauthenticated).
  Status Run(const RunOptions& options);
  void Stop() { stop_.store(true); }

 private:
  std::atomic<bool> stop_{false};
};

}  // namespace custos::agent
