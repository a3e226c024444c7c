// custosd's core: the agent endpoint (ZeroMQ ROUTER, CURVE server), the ZAP
// handler that admits only enrolled, non-revoked agent keys (and unknown
// keys for ENROL only), the CAP/1 session rules (HELLO first, sequence
// numbers, heartbeats, error replies) and the control socket through which
// the local CLI manages agents and reads status.
//
// What exists so far (issue 5, first part): enrolment, greeting,
// heartbeats, revocation at the next message, status. Backup and restore
// jobs over CAP are not built yet.
//
// Thread-safety: Run() on one thread; Stop() from any thread or a signal
// handler (it only stores an atomic).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/status.h"

namespace custos::appliance {

struct ServerOptions {
  std::string data_dir;                       // created 0700; holds keys, registry, control socket
  std::string listen = "tcp://127.0.0.1:7468";
  int heartbeat_ms = 5000;
};

// Where the CLI finds the daemon: ipc://DATA_DIR/control.sock.
std::string ControlEndpoint(const std::string& data_dir);
// The default data directory: $CUSTOS_DATA_DIR, else
// $XDG_DATA_HOME/custos/appliance or ~/.local/share/custos/appliance.
std::string DefaultDataDir();

class Server {
 public:
  // Creates the data directory and the appliance key pair on first start
  // (appliance.key, 0600), opens the registry, binds the agent endpoint and
  // the control socket. Busy if another custosd serves this data directory.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();
  // Serves until Stop().
  Status Run();
  void Stop() { stop_.store(true); }
  // The endpoint actually bound (tcp://127.0.0.1:PORT when port 0 was asked).
  std::string endpoint() const;
  std::string public_key_z85() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stop_{false};
};

// One request to a running daemon's control socket (a JSON object) and its
// reply. Unavailable when no daemon answers within `timeout_ms`.
Result<std::string> ControlRequest(const std::string& data_dir, const std::string& request_json, int timeout_ms = 5000);

}  // namespace custos::appliance
