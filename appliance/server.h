// custosd's core: the agent endpoint (ZeroMQ ROUTER, CURVE server), the ZAP
// handler that admits only enrolled, non-revoked agent keys (and unknown
// keys for ENROL only), the CAP/1 session rules (HELLO first, sequence
// numbers, heartbeats, error replies) and the control socket through which
// the local CLI manages agents and reads status.
//
// Alerts (scheduler/alerts.h): a job that ends failed or partial, a
// scheduled slot that is missed or whose job never started, go to the
// configured webhook and mail recipients from a background thread; the
// control command `alert-test` sends a test alert through each channel.
//
// Jobs: `backup` jobs run on an agent (JOB, HAVE/LACK, BLOB, COMMIT; each
// blob's SHA-256 checked before it is sealed and stored, the snapshot
// stamped with the agent's enrolled name and the appliance's clock).
// A backup survives a dropped connection and a restart of custosd: it
// waits `resume_window_s` for its agent to resume it (cap.md section 7).
// `restore` jobs (appliance/restore_job.h) send an agent the blobs of one
// snapshot path as it asks for them (WANT, BLOB within its CREDIT; any
// other blob is 403) and keep the signed report of its RESULT.
//
// Thread-safety: Run() on one thread; Stop() from any thread or a signal
// handler (it only stores an atomic).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/status.h"
#include "scheduler/alerts.h"
#include "scheduler/scheduler.h"

namespace custos::appliance {

struct ServerOptions {
  std::string data_dir;                       // created 0700; holds keys, registry, control socket
  std::string listen = "tcp://127.0.0.1:7468";
  int heartbeat_ms = 5000;
  // How long a backup whose agent went silent (or that a stopped custosd
  // left running) waits for the agent to reconnect and resume it.
  int resume_window_s = 600;
  // The repository custosd owns (writer lock held while it runs). Empty:
  // DATA_DIR/repository, created on first start with a random passphrase
  // in DATA_DIR/repository.pass (0600) and the recovery key in
  // DATA_DIR/recovery-key.txt (0600: store it offline, then delete it).
  std::string repository;
  std::string password_file;  // empty: DATA_DIR/repository.pass
  // The zone of schedules that name none (default: the system's).
  std::string timezone;
  // Schedules from the config (IDs < 0, stable while the entry is unchanged;
  // see ConfigScheduleId); `custos schedule add` keeps its own in SQLite.
  std::vector<scheduler::Schedule> schedules;
  int per_agent_jobs = 1;  // jobs at once per agent
  // Argon2id cost for a repository created on first start (0: default).
  uint32_t kdf_ops = 0, kdf_mib = 0;
  // Where alerts go ([alerts] in the config; validated by the caller with
  // scheduler::ValidateAlertConfig). No channel: no alerts.
  scheduler::AlertConfig alerts;
  // Evidence ([evidence] in the config): an RFC 3161 time-stamping
  // authority for case checkpoints, and the CA certificate(s) that verify
  // its tokens. Empty: checkpoints are signed, not timestamped.
  std::string tsa_url, tsa_ca_file;
};

// The ID of a schedule from the config: negative, from a hash of what it
// does (agent, paths, calendar, zone, job), so that its last slot survives
// restarts while the entry is unchanged.
int64_t ConfigScheduleId(const scheduler::Schedule& s);

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
