// The agent registry: enrolment tokens, enrolled agents and their CURVE
// public keys, revocation, last-seen times. Kept in SQLite in the
// appliance's data directory (ARCHITECTURE.md: operational state in
// SQLite; the repository is the source of truth for data).
//
// Tokens (doc/protocols/cap.md, section 4): `AddAgent` makes a one-time
// secret and stores, with the agent's name and an expiry, only the public
// half of the enrolment key pair derived from it (EnrolKeyPair); the
// printable token also carries the appliance's public key, so that the agent
// can pin it. The agent dials with that derived pair, which the ZAP handler
// admits for enrolment only while the token is pending and unexpired
// (`PendingEnrolment`); `Enrol` then binds the name to the long-term public
// key the agent sends.
//
// Thread-safety: one Registry per thread (SQLite connection); SQLite's
// locking makes several of them on one file safe (WAL mode).
#pragma once

#include <sqlite3.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "scheduler/scheduler.h"

namespace custos::appliance {

using CurveKey = std::array<uint8_t, 32>;

struct AgentInfo {
  std::string name;
  std::string public_key;  // hex (64 digits), empty until enrolled
  std::string state;       // "pending" (token issued), "enrolled", "revoked"
  int64_t created = 0, enrolled = 0, last_seen = 0;  // Unix seconds, 0 = never
  std::string version, host;
};

// One job in the history (jobs table; schema 2 added `report`, and a
// registry of schema 1 is upgraded in place when opened).
struct JobRecord {
  std::string id, agent, kind;  // kind: "backup", "restore", "verify", "drill", "forget"
  std::string state;            // "running", "ok", "partial", "failed", "missed" (a scheduled slot that did not run)
  int64_t started = 0, ended = 0;  // Unix seconds, 0 = not yet
  std::string params;           // JSON
  std::string snapshot, error;  // snapshot: made (backup) or restored (restore)
  uint64_t files = 0, bytes = 0;
  std::string report;           // restore: the signed report's ID (hex), once saved
};

// The printable enrolment token: "CAPT1." + base64url(appliance key || secret).
std::string FormatToken(const CurveKey& appliance_public, const std::array<uint8_t, 16>& secret);
// The CURVE key pair a token's holder enrols with: secret key = BLAKE2b-256
// keyed with the token secret over "custos.enrol.v1", public key = X25519
// of it with the base point (cap.md section 4).
void EnrolKeyPair(const std::array<uint8_t, 16>& secret, CurveKey* public_key, CurveKey* secret_key);
// Its public half alone (what the registry stores and ZAP admits).
CurveKey EnrolPublicKey(const std::array<uint8_t, 16>& secret);
// InvalidArgument if malformed.
Status ParseToken(const std::string& token, CurveKey* appliance_public, std::array<uint8_t, 16>* secret);

class Registry {
 public:
  // Opens (creating) the database at `path`.
  static Result<std::unique_ptr<Registry>> Open(const std::string& path);
  ~Registry();

  // A new agent NAME with a fresh one-time token valid for `ttl_s` seconds.
  // AlreadyExists if NAME is enrolled; a pending NAME gets a new token (the
  // old one stops working). Names: 1..64 of [A-Za-z0-9._-].
  Result<std::array<uint8_t, 16>> AddAgent(const std::string& name, int64_t ttl_s = 24 * 3600);
  // Binds the agent whose token secret this is to `key` (the agent's
  // long-term public key, sent in ENROL). Unauthenticated for
  // an unknown, used or expired secret; AlreadyExists if the key belongs to
  // another agent. Returns the agent's name.
  Result<std::string> Enrol(const std::array<uint8_t, 16>& secret, const CurveKey& key, const std::string& host,
                            const std::string& version);
  // The agent whose pending, unexpired token has `key` as its enrolment
  // key (EnrolKeyPair), if any: what the ZAP handler admits for ENROL.
  std::optional<std::string> PendingEnrolment(const CurveKey& key);
  // The enrolled, non-revoked agent holding `key`, if any.
  std::optional<std::string> Admitted(const CurveKey& key);
  // NotFound if there is no such agent.
  Status Revoke(const std::string& name);
  Status Seen(const std::string& name, const std::string& version, const std::string& host);
  Result<std::vector<AgentInfo>> List();

  // Inserts or updates a job (by id).
  Status SaveJob(const JobRecord& job);
  // The newest `limit` jobs, newest first; only `agent`'s when not empty,
  // only failed and missed ones when `failed_only`.
  Result<std::vector<JobRecord>> Jobs(int limit = 100, const std::string& agent = "", bool failed_only = false);
  // One job by ID (none if there is no such row), and every job still
  // "running" (what a stopped custosd left), oldest first.
  Result<std::optional<JobRecord>> FindJob(const std::string& id);
  Result<std::vector<JobRecord>> RunningJobs();

  // Schedules added with `custos schedule add` (schema 3). AddSchedule
  // assigns the ID; RemoveSchedule is NotFound for an unknown one.
  Result<int64_t> AddSchedule(const scheduler::Schedule& s);
  Result<std::vector<scheduler::Schedule>> Schedules();
  Status RemoveSchedule(int64_t id);
  // The scheduler's memory across restarts: the last slot handled per
  // schedule (Unix seconds).
  std::optional<int64_t> LastSlot(int64_t schedule);
  Status SetLastSlot(int64_t schedule, int64_t slot);
  // Small named values that must survive restarts (the scrub's position).
  std::optional<std::string> Value(const std::string& key);
  Status SetValue(const std::string& key, const std::string& value);

 private:
  explicit Registry(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  sqlite3* db_;
};

bool IsValidAgentName(const std::string& name);

}  // namespace custos::appliance
