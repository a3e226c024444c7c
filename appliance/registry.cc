#include "appliance/registry.h"
#include "appliance/retention_control.h"

#include <nlohmann/json.hpp>

#include <sodium.h>

#include <algorithm>
#include <ctime>

#include "base/bytes.h"
#include "base/crypto.h"

namespace custos::appliance {

namespace {

constexpr char kTokenPrefix[] = "CAPT1.";

int64_t Now() { return int64_t(::time(nullptr)); }

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s_, col))) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  Status Error(const std::string& what) const { return IOError("registry: " + what + ": " + sqlite3_errmsg(db_)); }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

// What the agents table keeps of a token (column token_hash): the public
// half of its enrolment key pair, one-way like a hash of the secret, and the
// key the ZAP handler admits for enrolment.
std::string TokenKeyHex(const std::array<uint8_t, 16>& secret) {
  CurveKey pub = EnrolPublicKey(secret);
  return ToHex(ByteView(pub.data(), pub.size()));
}

std::string ToBase64Url(ByteView b) {
  std::string s = Base64Encode(b);
  for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

}  // namespace

bool IsValidAgentName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

void EnrolKeyPair(const std::array<uint8_t, 16>& secret, CurveKey* public_key, CurveKey* secret_key) {
  static constexpr std::string_view kContext = "custos.enrol.v1";
  crypto_generichash(secret_key->data(), secret_key->size(), reinterpret_cast<const uint8_t*>(kContext.data()),
                     kContext.size(), secret.data(), secret.size());
  crypto_scalarmult_base(public_key->data(), secret_key->data());
}

CurveKey EnrolPublicKey(const std::array<uint8_t, 16>& secret) {
  CurveKey pub, sec;
  EnrolKeyPair(secret, &pub, &sec);
  sodium_memzero(sec.data(), sec.size());
  return pub;
}

std::string FormatToken(const CurveKey& appliance_public, const std::array<uint8_t, 16>& secret) {
  Bytes b(appliance_public.begin(), appliance_public.end());
  b.insert(b.end(), secret.begin(), secret.end());
  return kTokenPrefix + ToBase64Url(b);
}

Status ParseToken(const std::string& token, CurveKey* appliance_public, std::array<uint8_t, 16>* secret) {
  std::string_view t = token;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.remove_suffix(1);
  if (t.substr(0, sizeof kTokenPrefix - 1) != kTokenPrefix) {
    return InvalidArgumentError("not an enrolment token (it starts with CAPT1.)");
  }
  std::string b64(t.substr(sizeof kTokenPrefix - 1));
  for (char& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b64.size() % 4) b64.push_back('=');
  auto b = Base64Decode(b64);
  if (!b || b->size() != 48) return InvalidArgumentError("enrolment token is damaged (wrong length)");
  std::copy(b->begin(), b->begin() + 32, appliance_public->begin());
  std::copy(b->begin() + 32, b->end(), secret->begin());
  return Status::Ok();
}

Result<std::unique_ptr<Registry>> Registry::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return IOError("registry " + path + ": " + msg);
  }
  std::unique_ptr<Registry> r(new Registry(db));
  sqlite3_busy_timeout(db, 5000);
  RETURN_IF_ERROR(r->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(r->Exec("PRAGMA synchronous=FULL"));
  RETURN_IF_ERROR(r->Exec(
      "CREATE TABLE IF NOT EXISTS agents ("
      " name TEXT PRIMARY KEY,"
      " public_key TEXT UNIQUE,"
      " state TEXT NOT NULL,"
      " token_hash TEXT,"
      " token_expires INTEGER,"
      " created INTEGER NOT NULL,"
      " enrolled INTEGER NOT NULL DEFAULT 0,"
      " last_seen INTEGER NOT NULL DEFAULT 0,"
      " version TEXT NOT NULL DEFAULT '',"
      " host TEXT NOT NULL DEFAULT '')"));
  // The ZAP handler looks a pending token up by its enrolment key at every
  // connection attempt of an unenrolled key.
  RETURN_IF_ERROR(r->Exec("CREATE INDEX IF NOT EXISTS agents_token_key ON agents (token_hash)"));
  RETURN_IF_ERROR(r->Exec(
      "CREATE TABLE IF NOT EXISTS jobs ("
      " id TEXT PRIMARY KEY,"
      " agent TEXT NOT NULL,"
      " kind TEXT NOT NULL,"
      " state TEXT NOT NULL,"
      " started INTEGER NOT NULL,"
      " ended INTEGER NOT NULL DEFAULT 0,"
      " params TEXT NOT NULL DEFAULT '{}',"
      " snapshot TEXT NOT NULL DEFAULT '',"
      " error TEXT NOT NULL DEFAULT '',"
      " files INTEGER NOT NULL DEFAULT 0,"
      " bytes INTEGER NOT NULL DEFAULT 0)"));
  // Schema 2 (restore jobs): the signed report a restore job left. A
  // registry of schema 1 gains the column in place; its rows get ''.
  bool has_report = false;
  {
    Stmt q(db, "PRAGMA table_info(jobs)");
    while (q.Step() == SQLITE_ROW) has_report = has_report || q.Text(1) == "report";
  }
  if (!has_report) RETURN_IF_ERROR(r->Exec("ALTER TABLE jobs ADD COLUMN report TEXT NOT NULL DEFAULT ''"));
  // Schema 3 (scheduler): schedules and the last slot each one handled.
  RETURN_IF_ERROR(r->Exec(
      "CREATE TABLE IF NOT EXISTS schedules ("
      " id INTEGER PRIMARY KEY AUTOINCREMENT,"
      " agent TEXT NOT NULL,"
      " paths TEXT NOT NULL,"
      " calendar TEXT NOT NULL,"
      " zone TEXT NOT NULL,"
      " jitter_s INTEGER NOT NULL DEFAULT 0,"
      " job TEXT NOT NULL,"
      " max_retries INTEGER NOT NULL DEFAULT 3,"
      " options TEXT NOT NULL DEFAULT '{}',"  // per job kind: scrub_parts, drill_sample
      " created INTEGER NOT NULL)"));
  RETURN_IF_ERROR(r->Exec(
      "CREATE TABLE IF NOT EXISTS schedule_slots (schedule INTEGER PRIMARY KEY, last_slot INTEGER NOT NULL)"));
  RETURN_IF_ERROR(r->Exec("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
  RETURN_IF_ERROR(r->Exec("PRAGMA user_version = 3"));
  return r;
}

Registry::~Registry() { sqlite3_close(db_); }

Status Registry::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "error";
    sqlite3_free(err);
    return IOError(std::string("registry: ") + msg);
  }
  return Status::Ok();
}

Result<std::array<uint8_t, 16>> Registry::AddAgent(const std::string& name, int64_t ttl_s) {
  if (!IsValidAgentName(name)) {
    return InvalidArgumentError("agent name '" + EscapeForDisplay(name) + "': use 1 to 64 of A-Z a-z 0-9 . _ -");
  }
  {
    Stmt q(db_, "SELECT state FROM agents WHERE name = ?");
    q.Bind(1, name);
    if (q.Step() == SQLITE_ROW && q.Text(0) != "pending") {
      return AlreadyExistsError("agent " + name + " exists (" + q.Text(0) + "); revoked names are not reused");
    }
  }
  std::array<uint8_t, 16> secret;
  randombytes_buf(secret.data(), secret.size());
  Stmt s(db_,
         "INSERT INTO agents (name, state, token_hash, token_expires, created) VALUES (?, 'pending', ?, ?, ?)"
         " ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash, token_expires = excluded.token_expires");
  s.Bind(1, name).Bind(2, TokenKeyHex(secret)).Bind(3, Now() + ttl_s).Bind(4, Now());
  if (s.Step() != SQLITE_DONE) return s.Error("add agent");
  return secret;
}

Result<std::string> Registry::Enrol(const std::array<uint8_t, 16>& secret, const CurveKey& key,
                                    const std::string& host, const std::string& version) {
  std::string key_hex = ToHex(ByteView(key.data(), key.size()));
  Stmt q(db_, "SELECT name, token_expires FROM agents WHERE state = 'pending' AND token_hash = ?");
  q.Bind(1, TokenKeyHex(secret));
  if (q.Step() != SQLITE_ROW) return UnauthenticatedError("unknown or already used enrolment token");
  std::string name = q.Text(0);
  if (q.Int(1) < Now()) return UnauthenticatedError("enrolment token for " + name + " has expired");
  Stmt u(db_,
         "UPDATE agents SET state = 'enrolled', public_key = ?, token_hash = NULL, enrolled = ?, last_seen = ?,"
         " host = ?, version = ? WHERE name = ? AND state = 'pending'");
  u.Bind(1, key_hex).Bind(2, Now()).Bind(3, Now()).Bind(4, host).Bind(5, version).Bind(6, name);
  int rc = u.Step();
  if (rc == SQLITE_CONSTRAINT) return AlreadyExistsError("this key is already enrolled as another agent");
  if (rc != SQLITE_DONE) return u.Error("enrol");
  return name;
}

std::optional<std::string> Registry::PendingEnrolment(const CurveKey& key) {
  Stmt q(db_, "SELECT name FROM agents WHERE state = 'pending' AND token_hash = ? AND token_expires >= ?");
  q.Bind(1, ToHex(ByteView(key.data(), key.size()))).Bind(2, Now());
  if (q.Step() != SQLITE_ROW) return std::nullopt;
  return q.Text(0);
}

std::optional<std::string> Registry::Admitted(const CurveKey& key) {
  Stmt q(db_, "SELECT name FROM agents WHERE state = 'enrolled' AND public_key = ?");
  q.Bind(1, ToHex(ByteView(key.data(), key.size())));
  if (q.Step() != SQLITE_ROW) return std::nullopt;
  return q.Text(0);
}

Status Registry::Revoke(const std::string& name) {
  Stmt u(db_, "UPDATE agents SET state = 'revoked', token_hash = NULL WHERE name = ? AND state != 'revoked'");
  u.Bind(1, name);
  if (u.Step() != SQLITE_DONE) return u.Error("revoke");
  if (sqlite3_changes(db_) == 0) return NotFoundError("no agent named " + EscapeForDisplay(name) + " (or already revoked)");
  return Status::Ok();
}

Status Registry::Seen(const std::string& name, const std::string& version, const std::string& host) {
  Stmt u(db_, "UPDATE agents SET last_seen = ?, version = ?, host = ? WHERE name = ?");
  u.Bind(1, Now()).Bind(2, version).Bind(3, host).Bind(4, name);
  if (u.Step() != SQLITE_DONE) return u.Error("seen");
  return Status::Ok();
}

Result<std::vector<AgentInfo>> Registry::List() {
  Stmt q(db_,
         "SELECT name, COALESCE(public_key, ''), state, created, enrolled, last_seen, version, host FROM agents"
         " ORDER BY name");
  std::vector<AgentInfo> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back(AgentInfo{q.Text(0), q.Text(1), q.Text(2), q.Int(3), q.Int(4), q.Int(5), q.Text(6), q.Text(7)});
  }
  if (rc != SQLITE_DONE) return q.Error("list");
  return out;
}

Status Registry::SaveJob(const JobRecord& j) {
  Stmt q(db_,
         "INSERT INTO jobs (id, agent, kind, state, started, ended, params, snapshot, error, files, bytes, report)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
         " ON CONFLICT(id) DO UPDATE SET state = ?4, ended = ?6, snapshot = ?8, error = ?9, files = ?10,"
         " bytes = ?11, report = ?12");
  q.Bind(1, j.id).Bind(2, j.agent).Bind(3, j.kind).Bind(4, j.state).Bind(5, j.started).Bind(6, j.ended);
  q.Bind(7, j.params).Bind(8, j.snapshot).Bind(9, j.error).Bind(10, int64_t(j.files)).Bind(11, int64_t(j.bytes));
  q.Bind(12, j.report);
  if (q.Step() != SQLITE_DONE) return q.Error("save job");
  return Status::Ok();
}

namespace {

constexpr const char* kJobColumns =
    "SELECT id, agent, kind, state, started, ended, params, snapshot, error, files, bytes, report FROM jobs";

// The rows of a query on kJobColumns.
Result<std::vector<JobRecord>> JobRows(Stmt& q) {
  std::vector<JobRecord> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    out.push_back(JobRecord{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4), q.Int(5), q.Text(6), q.Text(7),
                            q.Text(8), uint64_t(q.Int(9)), uint64_t(q.Int(10)), q.Text(11)});
  }
  if (rc != SQLITE_DONE) return q.Error("jobs");
  return out;
}

}  // namespace

Result<std::vector<JobRecord>> Registry::Jobs(int limit, const std::string& agent, bool failed_only) {
  Stmt q(db_, (std::string(kJobColumns) +
               " WHERE (?2 = '' OR agent = ?2) AND (?3 = 0 OR state IN ('failed', 'missed'))"
               " ORDER BY started DESC, rowid DESC LIMIT ?1")
                  .c_str());
  q.Bind(1, int64_t(limit)).Bind(2, agent).Bind(3, int64_t(failed_only ? 1 : 0));
  return JobRows(q);
}

Result<std::optional<JobRecord>> Registry::FindJob(const std::string& id) {
  Stmt q(db_, (std::string(kJobColumns) + " WHERE id = ?1").c_str());
  q.Bind(1, id);
  ASSIGN_OR_RETURN(auto rows, JobRows(q));
  if (rows.empty()) return std::optional<JobRecord>();
  return std::optional<JobRecord>(std::move(rows[0]));
}

Result<std::vector<JobRecord>> Registry::RunningJobs() {
  Stmt q(db_, (std::string(kJobColumns) + " WHERE state = 'running' ORDER BY started, rowid").c_str());
  return JobRows(q);
}

Result<int64_t> Registry::AddSchedule(const scheduler::Schedule& s) {
  Stmt q(db_,
         "INSERT INTO schedules (agent, paths, calendar, zone, jitter_s, job, max_retries, created, options)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  q.Bind(1, s.agent).Bind(2, nlohmann::json(s.paths).dump()).Bind(3, s.calendar).Bind(4, s.zone);
  q.Bind(5, int64_t(s.jitter_s)).Bind(6, s.job).Bind(7, int64_t(s.max_retries)).Bind(8, Now());
  q.Bind(9, nlohmann::json{{"scrub_parts", s.scrub_parts},
                            {"drill_sample", s.drill_sample},
                            {"retention", nlohmann::json::parse(PolicyJson(s.retention))}}
               .dump());
  if (q.Step() != SQLITE_DONE) return q.Error("add schedule");
  return int64_t(sqlite3_last_insert_rowid(db_));
}

Result<std::vector<scheduler::Schedule>> Registry::Schedules() {
  Stmt q(db_,
         "SELECT id, agent, paths, calendar, zone, jitter_s, job, max_retries, options FROM schedules ORDER BY id");
  std::vector<scheduler::Schedule> out;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    scheduler::Schedule s;
    s.id = q.Int(0);
    s.agent = q.Text(1);
    nlohmann::json paths = nlohmann::json::parse(q.Text(2), nullptr, false);
    if (paths.is_array()) {
      for (const auto& p : paths) {
        if (p.is_string()) s.paths.push_back(p.get<std::string>());
      }
    }
    s.calendar = q.Text(3);
    s.zone = q.Text(4);
    s.jitter_s = int(q.Int(5));
    s.job = q.Text(6);
    s.max_retries = int(q.Int(7));
    nlohmann::json opt = nlohmann::json::parse(q.Text(8), nullptr, false);
    if (opt.is_object()) {
      s.scrub_parts = opt.value("scrub_parts", s.scrub_parts);
      s.drill_sample = opt.value("drill_sample", s.drill_sample);
      if (opt.contains("retention")) {
        auto policy = ParsePolicyJson(opt["retention"].dump());
        if (policy.ok()) s.retention = *policy;
      }
    }
    out.push_back(std::move(s));
  }
  if (rc != SQLITE_DONE) return q.Error("schedules");
  return out;
}

Status Registry::RemoveSchedule(int64_t id) {
  Stmt q(db_, "DELETE FROM schedules WHERE id = ?1");
  q.Bind(1, id);
  if (q.Step() != SQLITE_DONE) return q.Error("remove schedule");
  if (sqlite3_changes(db_) == 0) return NotFoundError("no schedule " + std::to_string(id));
  Stmt slots(db_, "DELETE FROM schedule_slots WHERE schedule = ?1");
  slots.Bind(1, id);
  if (slots.Step() != SQLITE_DONE) return slots.Error("remove schedule");
  return Status::Ok();
}

std::optional<std::string> Registry::Value(const std::string& key) {
  Stmt q(db_, "SELECT value FROM state WHERE key = ?1");
  q.Bind(1, key);
  if (q.Step() != SQLITE_ROW) return std::nullopt;
  return q.Text(0);
}

Status Registry::SetValue(const std::string& key, const std::string& value) {
  Stmt q(db_, "INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2");
  q.Bind(1, key).Bind(2, value);
  if (q.Step() != SQLITE_DONE) return q.Error("set " + key);
  return Status::Ok();
}

std::optional<int64_t> Registry::LastSlot(int64_t schedule) {
  Stmt q(db_, "SELECT last_slot FROM schedule_slots WHERE schedule = ?1");
  q.Bind(1, schedule);
  if (q.Step() != SQLITE_ROW) return std::nullopt;
  return q.Int(0);
}

Status Registry::SetLastSlot(int64_t schedule, int64_t slot) {
  Stmt q(db_,
         "INSERT INTO schedule_slots (schedule, last_slot) VALUES (?1, ?2)"
         " ON CONFLICT(schedule) DO UPDATE SET last_slot = ?2");
  q.Bind(1, schedule).Bind(2, slot);
  if (q.Step() != SQLITE_DONE) return q.Error("set last slot");
  return Status::Ok();
}

}  // namespace custos::appliance
