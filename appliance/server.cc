#include "appliance/server.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <map>
#include <set>
#include <unordered_set>

#include "appliance/case_control.h"
#include "appliance/collect_job.h"
#include "appliance/job_state.h"
#include "appliance/local_job.h"
#include "appliance/registry.h"
#include "appliance/restore_job.h"
#include "appliance/retention_control.h"
#include "base/bytes.h"
#include "base/crypto.h"
#include "base/file_util.h"
#include "base/version.h"
#include "evidence/case_store.h"
#include "evidence/checkpoint.h"
#include "evidence/recipe.h"
#include "protocol/message.h"
#include "scheduler/scheduler.h"
#include "restore/report.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/backend.h"
#include "storage/blob.h"
#include "storage/repository.h"

namespace custos::appliance {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

constexpr uint64_t kInitialCredit = 16u << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Log(const std::string& line) { std::fprintf(stderr, "custosd: %s\n", EscapeForDisplay(line).c_str()); }

std::optional<CurveKey> KeyFromHex(std::string_view hex) {
  auto b = FromHex(std::string(hex));
  if (!b || b->size() != 32) return std::nullopt;
  CurveKey k;
  std::copy(b->begin(), b->end(), k.begin());
  return k;
}

struct Peer {
  cap::SeqCheck in;
  uint64_t out_seq = 0;
  bool greeted = false;
  std::string agent;
  std::string agent_key;  // "sha256:<hex>" of its CURVE public key (the ledger's actor key)
  std::string version;
  int64_t last_seen_ms = 0;
  uint64_t credit = kInitialCredit;  // payload bytes the agent may still send
};

// A job in progress (the history row lives in the registry).
struct Job {
  JobRecord rec;
  std::string peer;      // routing id of the agent's session
  uint64_t job_seq = 0;  // our JOB message (ERROR refs point to it)
  std::vector<std::string> paths;
  // What "which do you lack?" may be answered from: blobs this agent's host
  // already references, and what arrived in this job. Nothing else, so no
  // agent learns what other servers hold.
  std::unordered_set<Id, IdHash> host_blobs;
  bool host_blobs_loaded = false;
  // What arrived in this job (`got.received`) and its counts: saved as it
  // is when custosd stops cleanly (appliance/job_state.h).
  JobState got;
  // Resumption (cap.md section 7). A job whose agent went silent, or that a
  // previous custosd left running, waits `resume_window_s` for the agent to
  // say HELLO {resume: [job]} (detached_ms: when it started waiting; 0 while
  // an agent session serves it).
  int64_t detached_ms = 0;
  // Adopted from a daemon that stopped without saving the job's state (a
  // crash): what it received may have been lost with its open pack, so the
  // agent must walk again (WELCOME action "restart").
  bool needs_restart = false;
  std::unique_ptr<RestoreJob> restore;  // kind "restore" (appliance/restore_job.h)
  std::unique_ptr<LocalJob> local;      // kinds "verify" and "drill": run by custosd itself
  std::unique_ptr<CollectJob> collect;  // kind "collect" (appliance/collect_job.h)
  // A backup started by `custos case snapshot`: held for this case when it
  // commits, with this label, by this operator.
  std::string hold_case, hold_label;
  evidence::Actor hold_by;
  std::string scrub_part;               // verify: "n/m"
};

int64_t NowS() { return int64_t(::time(nullptr)); }

// A new job's history row: a fresh ID ("j-" and 12 hex digits), running
// since now.
JobRecord NewJobRecord(const std::string& kind, const std::string& agent) {
  JobRecord r;
  uint8_t rnd[6];
  RandomBytes(rnd, sizeof rnd);
  r.id = "j-" + ToHex(ByteView(rnd, sizeof rnd));
  r.kind = kind;
  r.agent = agent;
  r.state = "running";
  r.started = NowS();
  return r;
}

// What a job started by the scheduler records of its slot.
json SlotParams(const scheduler::RunSpec& run) {
  return json{{"schedule", run.schedule}, {"slot", scheduler::FormatUtc(run.slot)}, {"catch_up", run.catch_up},
              {"attempt", run.attempt}};
}

// A running backup's state saved by a custosd that stops cleanly (after
// flushing the repository, so every received blob is in a pack):
// DATA_DIR/jobs/JOB.resume (appliance/job_state.h).
std::string ResumePath(const std::string& data_dir, const std::string& job) {
  return data_dir + "/jobs/" + job + ".resume";
}

// Blobs an agent sent in jobs that failed (DATA_DIR/hosts/AGENT.sent): they
// are its own data, so HAVE may count them as its host's, and its next
// backup does not send them again. Dropped when the host's next backup is
// committed.
std::string SentPath(const std::string& data_dir, const std::string& agent) {
  return data_dir + "/hosts/" + agent + ".sent";
}

// The passphrase in `path`, without its line end.
Result<std::string> ReadPassphrase(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::string pass(text->begin(), text->end());
  SecureWipe(text->data(), text->size());
  while (!pass.empty() && (pass.back() == '\n' || pass.back() == '\r')) pass.pop_back();
  return pass;
}

// Opens the appliance's repository, creating it (and its passphrase file)
// on first start, and takes its writer lock for as long as custosd runs.
Result<std::unique_ptr<storage::Repository>> OpenRepository(const ServerOptions& o) {
  std::string path = o.repository.empty() ? o.data_dir + "/repository" : o.repository;
  std::string pass_path = o.password_file.empty() ? o.data_dir + "/repository.pass" : o.password_file;
  auto backend = storage::NewLocalBackend(path);
  auto size = backend->Size(storage::FileType::kConfig, "");
  std::unique_ptr<storage::Repository> repo;
  if (!size.ok() && size.status().code() == Code::kNotFound) {
    // First start: a random passphrase, written before the repository
    // exists so that it can never be lost in between.
    auto read = ReadPassphrase(pass_path);
    std::string pass;
    if (read.ok()) {
      pass = std::move(read).value();
    } else {
      uint8_t rnd[32];
      RandomBytes(rnd, sizeof rnd);
      pass = ToHex(ByteView(rnd, sizeof rnd));
      RETURN_IF_ERROR(WriteFileAtomic(pass_path, AsBytes(pass + "\n"), 0600, Overwrite::kNo));
    }
    storage::InitOptions io;
    if (o.kdf_ops) io.kdf.ops = o.kdf_ops;
    if (o.kdf_mib) io.kdf.mem_bytes = uint64_t(o.kdf_mib) << 20;
    auto init = storage::Repository::Init(std::move(backend), pass, io, storage::Actor::FromProcess("custosd"));
    SecureWipe(pass.data(), pass.size());
    if (!init.ok()) return init.status().Annotate("repository " + path);
    if (!init->recovery_key.empty()) {
      std::string rk_path = o.data_dir + "/recovery-key.txt";
      Status st = WriteFileAtomic(rk_path, AsBytes(init->recovery_key + "\n"), 0600, Overwrite::kNo);
      if (st.ok()) {
        Log("created repository " + path + "; its recovery key is in " + rk_path +
            ": store it offline, then delete the file");
      } else {
        Log("created repository " + path + "; could not write the recovery key (" + st.ToString() + ")");
      }
    }
    repo = std::move(init->repo);
  } else {
    auto read = ReadPassphrase(pass_path);
    if (!read.ok()) return read.status().Annotate("repository passphrase file");
    std::string pass = std::move(read).value();
    auto opened = storage::Repository::Open(std::move(backend), pass);
    SecureWipe(pass.data(), pass.size());
    if (!opened.ok()) return opened.status().Annotate("repository " + path);
    repo = std::move(opened).value();
  }
  RETURN_IF_ERROR(repo->LockForWrite(storage::Actor::FromProcess("custosd")).Annotate("repository " + path));
  return repo;
}

}  // namespace

int64_t ConfigScheduleId(const scheduler::Schedule& s) {
  json key = {s.agent, s.paths, s.calendar, s.zone, s.job};
  Id h = Sha256(AsBytes(key.dump()));
  uint64_t v = 0;
  for (int i = 0; i < 7; ++i) v = v << 8 | h.bytes[size_t(i)];
  return -int64_t(v) - 1;
}

std::string ControlEndpoint(const std::string& data_dir) { return "ipc://" + data_dir + "/control.sock"; }

std::string DefaultDataDir() {
  if (const char* d = std::getenv("CUSTOS_DATA_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/custos/appliance";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.local/share/custos/appliance";
}

struct Server::Impl {
  ServerOptions opts;
  zmq::context_t ctx{1};
  zmq::socket_t zap{ctx, zmq::socket_type::rep};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  zmq::socket_t control{ctx, zmq::socket_type::rep};
  std::unique_ptr<Registry> reg;
  std::unique_ptr<storage::Repository> repo;
  std::unique_ptr<evidence::CaseStore> cases;  // DATA/evidence
  std::string public_z85, secret_z85, bound;
  Fd lock;
  std::map<std::string, Peer> peers;  // by ROUTER routing id
  struct Refusals {  // keys the ZAP handler refused in the current minute (LogRefusedKey)
    int64_t window_start = 0;
    std::unordered_set<std::string> keys;
    uint64_t unlogged = 0;
  } refusals;
  std::map<std::string, Job> jobs;    // running, by job id

  // The scheduler's view of this daemon: jobs start as `custos backup
  // --agent` would start them; its memory and missed slots go to SQLite.
  struct SchedRunner : scheduler::Runner {
    Impl& d;
    explicit SchedRunner(Impl& impl) : d(impl) {}
    Result<std::string> Start(const scheduler::RunSpec& run) override {
      if (run.job == "verify" || run.job == "drill") return d.StartLocal(run);
      if (run.job == "forget") return d.RunForget(run);
      if (run.job == "prune") {
        json reply = d.RunPrune(SlotParams(run), PruneRequest{});
        if (reply.value("ok", false)) return reply["job"].get<std::string>();
        if (reply.value("code", "") == "busy") return BusyError(reply.value("error", std::string("busy")));
        return reply.contains("job") ? Result<std::string>(reply["job"].get<std::string>())
                                     : Result<std::string>(InvalidArgumentError(reply.value("error", std::string("refused"))));
      }
      json req = SlotParams(run);
      req["agent"] = run.agent;
      req["paths"] = run.paths;
      json reply = d.StartBackup(req);
      if (reply.value("ok", false)) return reply["job"].get<std::string>();
      std::string code = reply.value("code", "");
      std::string error = reply.value("error", std::string("refused"));
      if (code == "busy") return BusyError(error);
      if (code == "not-connected") return UnavailableError(error);
      return InvalidArgumentError(error);
    }
    std::string State(const std::string& job, std::string* error) override {
      if (d.jobs.count(job)) return "running";
      auto r = d.reg->FindJob(job);
      if (r.ok() && *r) {
        *error = (*r)->error;
        return (*r)->state == "running" ? "failed" : (*r)->state;  // not in memory: it cannot still run
      }
      *error = "job " + job + " is gone from the history";
      return "failed";
    }
  };
  struct SchedStore : scheduler::Store {
    Impl& d;
    explicit SchedStore(Impl& impl) : d(impl) {}
    std::optional<scheduler::Seconds> LastSlot(int64_t schedule) override {
      auto t = d.reg->LastSlot(schedule);
      if (!t) return std::nullopt;
      return scheduler::Seconds{std::chrono::seconds(*t)};
    }
    void SetLastSlot(int64_t schedule, scheduler::Seconds slot) override {
      Status st = d.reg->SetLastSlot(schedule, slot.time_since_epoch().count());
      if (!st.ok()) Log(st.ToString());
    }
    void RecordMissed(const scheduler::Schedule& sc, scheduler::Seconds slot, const std::string& why) override {
      JobRecord r = NewJobRecord(sc.job, sc.agent);
      r.state = "missed";
      r.started = slot.time_since_epoch().count();
      r.ended = NowS();
      r.params = json{{"paths", sc.paths}, {"schedule", sc.id}, {"slot", scheduler::FormatUtc(slot)}}.dump();
      r.error = why;
      Status st = d.reg->SaveJob(r);
      if (!st.ok()) Log(st.ToString());
    }
  };
  // Alerts go out from the Alerter's thread; `alert-test` runs on its own
  // thread and its control reply waits (the REP socket is not read meanwhile).
  std::unique_ptr<scheduler::Alerter> alerter;
  std::future<json> alert_test;

  void PostAlert(scheduler::AlertKind kind, const std::string& agent, const std::string& job,
                 const std::string& summary, const std::string& detail) {
    if (!alerter) return;
    scheduler::Alert a;
    a.kind = kind;
    a.agent = agent;
    a.job = job;
    a.summary = summary;
    a.detail = detail;
    a.endpoint = bound;
    alerter->Post(std::move(a));
  }

  // The one place a job's failure becomes an alert (design D37): every job
  // that ran ends here, whether started by hand, by a schedule (each failed
  // attempt: a retry that then succeeds is still worth knowing), or
  // adopted after a restart; the scheduler's kFailed for such a job is the
  // same failure and sends nothing.
  void AlertJobEnd(const JobRecord& r) {
    if (r.state != "failed" && r.state != "partial") return;
    bool failed = r.state == "failed";
    std::string summary = r.kind + " of " + r.agent + (failed ? " failed" : " is partial") +
                          (r.error.empty() ? (failed ? "" : ": some items could not be read") : ": " + r.error);
    std::string detail = "Job " + r.id + " (" + r.kind + " on agent " + r.agent + ") ended " + r.state + ".\n";
    auto at = [](int64_t t) { return scheduler::FormatUtc(scheduler::Seconds{std::chrono::seconds(t)}); };
    detail += "Started: " + at(r.started) + "\nEnded:   " + at(r.ended ? r.ended : NowS()) + "\n";
    json params = json::parse(r.params, nullptr, false);
    if (params.is_object()) {
      if (params["paths"].is_array()) {
        std::string paths;
        for (const auto& p : params["paths"]) {
          if (p.is_string()) paths += (paths.empty() ? "" : ", ") + p.get<std::string>();
        }
        detail += "Paths:   " + paths + "\n";
      }
      if (params.contains("schedule")) {
        detail += "Schedule " + params["schedule"].dump() + ", slot " + params.value("slot", std::string()) +
                  ", attempt " + std::to_string(params.value("attempt", 0) + 1) + "\n";
      }
    }
    if (!r.snapshot.empty()) detail += "Snapshot: " + r.snapshot + "\n";
    detail += "Files: " + std::to_string(r.files) + ", bytes: " + std::to_string(r.bytes) + "\n";
    if (!r.error.empty()) detail += "Error:   " + r.error + "\n";
    detail += "\nSee: custos jobs --agent " + r.agent;
    // A scrub that found damage and a drill that failed have their own kinds.
    scheduler::AlertKind kind = failed ? scheduler::AlertKind::kJobFailed : scheduler::AlertKind::kJobPartial;
    if (failed && r.kind == "verify" && r.error.find("DAMAGE") != std::string::npos) {
      kind = scheduler::AlertKind::kScrubDamage;
    }
    if (failed && r.kind == "drill") kind = scheduler::AlertKind::kDrillFailed;
    PostAlert(kind, r.agent, r.id, summary, detail);
  }

  // `alert-test`: a test alert through every configured channel, one try
  // each, reported per channel.
  json AlertTest() {
    scheduler::AlertConfig c = alerter ? alerter->config() : opts.alerts;
    scheduler::Alert a;
    a.kind = scheduler::AlertKind::kTest;
    a.summary = "test alert from custosd (custos alerts test)";
    a.detail = "If you read this, alerts from this appliance reach you.";
    a.endpoint = bound;
    scheduler::DeliveryPolicy once;
    once.tries = 1;
    json channels = json::array();
    for (const auto& r : scheduler::Deliver(c, a, once)) {
      channels.push_back(json{{"channel", r.channel}, {"ok", r.status.ok()}, {"error", r.status.ok() ? "" : r.status.message()}});
      Log("alert-test: " + r.channel + (r.status.ok() ? " delivered" : " failed: " + r.status.message()));
    }
    return json{{"ok", true}, {"channels", channels}};
  }

  SchedRunner sched_runner{*this};
  SchedStore sched_store{*this};
  std::unique_ptr<scheduler::Scheduler> sched;

  // The schedules of the config and of `custos schedule add`, to the scheduler.
  Status LoadSchedules() {
    std::vector<scheduler::Schedule> all = opts.schedules;
    auto added = reg->Schedules();
    if (!added.ok()) return added.status();
    all.insert(all.end(), added->begin(), added->end());
    return sched->SetSchedules(all, scheduler::Now());
  }

  void OnSchedulerEvent(const scheduler::Event& e) {
    std::string what = "schedule " + std::to_string(e.schedule) + " (" + e.agent + ", slot " +
                       scheduler::FormatUtc(e.slot) + "): ";
    switch (e.kind) {
      case scheduler::Event::kStarted:
        Log(what + "job " + e.job + " started" + (e.catch_up ? " (catching up a slot missed while off)" : "") +
            (e.attempt ? ", attempt " + std::to_string(e.attempt + 1) : ""));
        break;
      case scheduler::Event::kRetry: Log(what + e.detail); break;
      case scheduler::Event::kMissed:
        Log(what + "MISSED: " + e.detail);
        PostAlert(scheduler::AlertKind::kSlotMissed, e.agent, "",
                  "scheduled backup of " + e.agent + " missed its slot " + scheduler::FormatUtc(e.slot) + ": " + e.detail,
                  "Schedule " + std::to_string(e.schedule) + ", slot " + scheduler::FormatUtc(e.slot) +
                      " did not run: " + e.detail + ".\n\nSee: custos jobs --failed --agent " + e.agent);
        break;
      case scheduler::Event::kFinished: Log(what + "job " + e.job + " " + e.detail); break;
      case scheduler::Event::kFailed:
        Log(what + "job " + e.job + " FAILED: " + e.detail);
        // A job that ran has had its alert from EndJob; here only a slot
        // whose job could never be started (refused after its retries).
        if (e.job.empty()) {
          PostAlert(scheduler::AlertKind::kJobFailed, e.agent, "",
                    "scheduled backup of " + e.agent + " could not start: " + e.detail,
                    "Schedule " + std::to_string(e.schedule) + ", slot " + scheduler::FormatUtc(e.slot) +
                        ": the job was refused after " + std::to_string(e.attempt + 1) + " attempt(s): " + e.detail +
                        ".\n\nSee: custos jobs --failed --agent " + e.agent);
        }
        break;
    }
  }

  // A verify or drill job, on custosd's own repository; one at a time.
  Result<std::string> StartLocal(const scheduler::RunSpec& run) {
    for (const auto& [jid, other] : jobs) {
      if (other.local) return BusyError("the appliance is busy with job " + jid);
    }
    Job j;
    j.rec = NewJobRecord(run.job, run.job == "verify" ? "appliance" : run.agent);
    json params = SlotParams(run);
    if (run.job == "verify") {
      // The rolling scrub's position survives restarts; a new number of
      // parts starts it again at 1.
      uint32_t m = uint32_t(run.scrub_parts), n = 1;
      if (auto pos = reg->Value("scrub.next")) {
        unsigned a = 0, b = 0;
        if (std::sscanf(pos->c_str(), "%u/%u", &a, &b) == 2 && b == m && a >= 1 && a <= m) n = a;
      }
      j.scrub_part = std::to_string(n) + "/" + std::to_string(m);
      params["part"] = j.scrub_part;
      j.local = LocalJob::StartVerify(*repo, n, m);
    } else {
      params["sample"] = run.drill_sample;
      Status flushed = repo->Flush();  // what arrived so far is readable
      if (flushed.ok()) flushed = MakeDirs(opts.data_dir + "/drills", 0700);
      if (!flushed.ok()) return flushed;
      j.local = LocalJob::StartDrill(*repo, run.agent, run.drill_sample, opts.data_dir + "/drills");
    }
    j.rec.params = params.dump();
    SaveJob(j);
    Log("job " + j.rec.id + ": " + run.job + (run.job == "verify" ? " (scrub part " + j.scrub_part + ")" : " of " + run.agent) +
        " started");
    std::string jid = j.rec.id;
    jobs.emplace(jid, std::move(j));
    return jid;
  }

  // A scheduled forget: the schedule's policy applied to its agent's
  // snapshots, at once (it removes manifests only; held ones stay).
  Result<std::string> RunForget(const scheduler::RunSpec& run) {
    Job j;
    j.rec = NewJobRecord("forget", run.agent);
    json params = SlotParams(run);
    params["policy"] = run.retention.ToString();
    params["timezone"] = run.zone;
    j.rec.params = params.dump();
    ForgetRequest fr;
    fr.policy = run.retention;
    fr.hosts = {run.agent};  // custosd stamps an agent's snapshots with its name
    fr.zone = run.zone;
    Status flushed = repo->Flush();
    json reply = flushed.ok() ? json::parse(HandleRetentionRequest(*repo, ForgetRequestJson(fr),
                                                                   storage::Actor::FromProcess("custosd")),
                                            nullptr, false)
                              : json{{"ok", false}, {"error", flushed.ToString()}};
    std::string jid = j.rec.id;
    if (reply.is_object() && reply.value("ok", false)) {
      j.rec.files = reply.value("removed", uint64_t(0));
      Log("job " + jid + ": forget for " + run.agent + " (" + run.retention.ToString() + "): " +
          std::to_string(reply.value("removed", 0)) + " snapshot(s) removed, " +
          std::to_string(reply.value("kept", 0)) + " kept");
      j.rec.state = "ok";
    } else {
      j.rec.state = "failed";
      j.rec.error = reply.is_object() ? reply.value("error", std::string("forget failed")) : "forget failed";
    }
    j.rec.ended = NowS();
    SaveJob(j);
    if (j.rec.state == "failed") AlertJobEnd(j.rec);
    return jid;
  }

  // What running jobs rely on that no snapshot references yet (D38): a
  // backup's received blobs and the host set it answers HAVE from (a
  // snapshot forgotten during the job may have been its only reference), a
  // restore's allowance. A prune never sweeps them.
  storage::BlobSet ProtectedBlobs() const {
    storage::BlobSet out;
    for (const auto& [jid, j] : jobs) {
      out.insert(j.got.received.begin(), j.got.received.end());
      out.insert(j.host_blobs.begin(), j.host_blobs.end());
      if (j.restore) out.insert(j.restore->allowed().begin(), j.restore->allowed().end());
    }
    return out;
  }

  // A prune of custosd's repository, by hand (control socket) or scheduled,
  // recorded in the job history with the bytes it freed. It runs here, on
  // the event loop, beside the backups and with no lock of its own: no blob
  // arrives while it runs, and what running jobs rely on is protected.
  // Refused (busy) while a verify or drill reads the repository on its own
  // thread. Replies as the retention handler, with "job" when one ran.
  json RunPrune(const json& slot, const PruneRequest& request) {
    for (const auto& [jid, other] : jobs) {
      if (other.local) {
        return json{{"ok", false}, {"error", "the appliance is busy with job " + jid}, {"code", "busy"}};
      }
    }
    Job j;
    j.rec = NewJobRecord("prune", "appliance");
    json params = slot;
    params["grace_s"] = request.grace_s;
    params["max_waste"] = int(request.max_waste * 100 + 0.5);
    params["dry_run"] = request.dry_run;
    j.rec.params = params.dump();
    SaveJob(j);
    RetentionContext ctx;
    ctx.protected_blobs = ProtectedBlobs();
    ctx.progress = [](const std::string& line) { Log(line); };
    json reply = json::parse(HandleRetentionRequest(*repo, PruneRequestJson(request),
                                                    storage::Actor::FromProcess("custosd"), ctx),
                             nullptr, false);
    if (!reply.is_object()) reply = json{{"ok", false}, {"error", "prune: malformed reply"}};
    // The loop did not read agents' messages meanwhile: that time is not their silence.
    for (auto& [pid, p] : peers) p.last_seen_ms = NowMs();
    bool ok = reply.value("ok", false);
    if (ok) {
      j.rec.files = reply.value("swept", uint64_t(0));
      j.rec.bytes = reply.value("bytes_freed", uint64_t(0));
      Log("job " + j.rec.id + ": prune swept " + std::to_string(j.rec.files) + " blob(s), freed " +
          std::to_string(j.rec.bytes) + " bytes; " + std::to_string(reply.value("pending", uint64_t(0))) +
          " marked blob(s) wait for the grace period");
    }
    j.rec.state = ok ? "ok" : "failed";
    j.rec.error = ok ? "" : reply.value("error", std::string("prune failed"));
    j.rec.ended = NowS();
    SaveJob(j);
    if (!ok) AlertJobEnd(j.rec);
    reply["job"] = j.rec.id;
    return reply;
  }

  void PollLocalJobs() {
    for (auto it = jobs.begin(); it != jobs.end();) {
      Job& j = (it++)->second;  // EndJob erases it
      if (!j.local || !j.local->finished()) continue;
      const LocalOutcome& o = j.local->outcome();
      j.rec.files = o.files;
      j.rec.bytes = o.bytes;
      j.rec.report = o.report;
      if (j.rec.kind == "verify" && o.completed) {
        unsigned n = 0, m = 0;
        std::sscanf(j.scrub_part.c_str(), "%u/%u", &n, &m);
        Status st = reg->SetValue("scrub.next", std::to_string(n % m + 1) + "/" + std::to_string(m));
        if (!st.ok()) Log(st.ToString());
      }
      EndJob(j, o.state, o.error);
    }
  }

  json ScheduleJson(const scheduler::Schedule& sc) const {
    auto next = sched ? sched->NextRun(sc.id) : std::nullopt;
    auto last = reg->LastSlot(sc.id);
    return json{{"id", sc.id},
                {"agent", sc.agent},
                {"paths", sc.paths},
                {"calendar", sc.calendar},
                {"timezone", sc.zone},
                {"jitter_s", sc.jitter_s},
                {"job", sc.job},
                {"retries", sc.max_retries},
                {"scrub_parts", sc.scrub_parts},
                {"drill_sample", sc.drill_sample},
                {"policy", sc.retention.empty() ? "" : sc.retention.ToString()},
                {"source", sc.id < 0 ? "config" : "cli"},
                {"next_run", next ? scheduler::FormatUtc(*next) : ""},
                {"last_slot", last ? scheduler::FormatUtc(scheduler::Seconds{std::chrono::seconds(*last)}) : ""}};
  }

  json HandleScheduleRequest(const std::string& cmd, const json& req) {
    if (cmd == "schedule-list") {
      json out = json::array();
      for (const auto& sc : opts.schedules) out.push_back(ScheduleJson(sc));
      auto added = reg->Schedules();
      if (!added.ok()) return json{{"ok", false}, {"error", added.status().message()}};
      for (const auto& sc : *added) out.push_back(ScheduleJson(sc));
      return json{{"ok", true}, {"schedules", out}};
    }
    if (cmd == "schedule-run") {
      int64_t id = req.value("id", int64_t(0));
      size_t before = jobs.size();
      Status st = sched->RunNow(id, scheduler::Now());
      if (!st.ok()) return json{{"ok", false}, {"error", st.message()}};
      // The newest job, if the slot started at once (else it waits: see custos jobs).
      std::string started;
      if (jobs.size() > before) {
        for (const auto& [jid, j] : jobs) {
          json params = json::parse(j.rec.params, nullptr, false);
          if (params.is_object() && params.value("schedule", int64_t(0)) == id) started = jid;
        }
      }
      return json{{"ok", true}, {"job", started}};
    }
    if (cmd == "schedule-remove") {
      Status st = reg->RemoveSchedule(req.value("id", int64_t(0)));
      if (st.ok()) st = LoadSchedules();
      if (!st.ok()) return json{{"ok", false}, {"error", st.message()}};
      Log("schedule " + std::to_string(req.value("id", int64_t(0))) + " removed");
      return json{{"ok", true}};
    }
    // schedule-add
    scheduler::Schedule sc;
    try {
      sc.agent = req.at("agent").get<std::string>();
      sc.paths = req.at("paths").get<std::vector<std::string>>();
      sc.calendar = req.at("calendar").get<std::string>();
      sc.zone = req.value("timezone", std::string());
      if (sc.zone.empty()) sc.zone = opts.timezone;
      sc.jitter_s = req.value("jitter_s", 0);
      sc.job = req.value("job", std::string("backup"));
      sc.max_retries = req.value("retries", 3);
      sc.scrub_parts = req.value("scrub_parts", 30);
      sc.drill_sample = req.value("drill_sample", uint64_t(1000));
      if (req.contains("retention")) {
        auto policy = ParsePolicyJson(req["retention"].dump());
        if (!policy.ok()) return json{{"ok", false}, {"error", policy.status().message()}};
        sc.retention = *policy;
      }
    } catch (const json::exception& e) {
      return json{{"ok", false}, {"error", std::string("schedule-add: ") + e.what()}};
    }
    if (Status st = scheduler::ValidateSchedule(sc); !st.ok()) return json{{"ok", false}, {"error", st.message()}};
    auto id = reg->AddSchedule(sc);
    if (!id.ok()) return json{{"ok", false}, {"error", id.status().message()}};
    sc.id = *id;
    if (Status st = LoadSchedules(); !st.ok()) return json{{"ok", false}, {"error", st.message()}};
    Log("schedule " + std::to_string(sc.id) + " added: " + sc.job + " of " + sc.agent + " at \"" + sc.calendar +
        "\" (" + sc.zone + ")");
    return json{{"ok", true}, {"schedule", ScheduleJson(sc)}};
  }

  void SaveJob(const Job& j) {
    Status st = reg->SaveJob(j.rec);
    if (!st.ok()) Log(st.ToString());
  }

  void EndJob(Job& j, const std::string& state, const std::string& error) {
    if (j.restore && j.rec.report.empty()) {  // every restore leaves a signed report, a failed one too
      auto o = j.restore->Fail(j.rec.agent, error);
      j.rec.report = o.report;
    }
    if (j.collect) {  // the task's end goes into the case's ledger, however it ended
      Status st = j.collect->End(state, error);
      if (!st.ok()) Log("job " + j.rec.id + ": recording the task's end in the case failed: " + st.ToString());
      j.rec.files = j.collect->items();
      j.rec.bytes = j.collect->bytes();
    }
    j.rec.state = state;
    j.rec.error = error;
    j.rec.ended = NowS();
    SaveJob(j);
    Log("job " + j.rec.id + " (" + j.rec.kind + " on " + j.rec.agent + ") " + state +
        (error.empty() ? "" : ": " + error) + (j.rec.snapshot.empty() ? "" : ", snapshot " + j.rec.snapshot));
    ::unlink(ResumePath(opts.data_dir, j.rec.id).c_str());
    if (state == "failed") KeepSentBlobs(j);
    else if (j.rec.kind == "backup") ::unlink(SentPath(opts.data_dir, j.rec.agent).c_str());
    AlertJobEnd(j.rec);
    jobs.erase(j.rec.id);
  }

  // The host's blob set (what HAVE may be answered from): every blob its
  // snapshots reference.
  void LoadHostBlobs(Job& j) {
    if (j.host_blobs_loaded) return;
    j.host_blobs_loaded = true;
    auto snaps = snapshot::LoadSnapshots(*repo);
    if (!snaps.ok()) {
      Log("host blob set of " + j.rec.agent + ": " + snaps.status().ToString());
      return;
    }
    std::unordered_map<Id, uint64_t, IdHash> blobs;
    for (const auto& s : *snaps) {
      if (s.manifest.host != j.rec.agent) continue;
      Status st = snapshot::CollectSnapshotBlobs(*repo, s.manifest, &blobs);
      if (!st.ok()) Log("host blob set of " + j.rec.agent + ": " + st.ToString());
    }
    for (const auto& [bid, size] : blobs) j.host_blobs.insert(bid);
    if (auto sent = LoadJobState(SentPath(opts.data_dir, j.rec.agent)); sent.ok()) {
      for (const Id& id : sent->received) {
        if (repo->HasBlob(id)) j.host_blobs.insert(id);  // not pruned since
      }
    }
  }

  // What a failed backup delivered stays this host's (see SentPath).
  void KeepSentBlobs(Job& j) {
    if (j.rec.kind != "backup" || j.got.received.empty()) return;
    Status st = repo->Flush();  // they must be in packs before HAVE counts them
    JobState sent;
    if (auto old = LoadJobState(SentPath(opts.data_dir, j.rec.agent)); old.ok()) sent = std::move(old).value();
    sent.received.insert(j.got.received.begin(), j.got.received.end());
    if (st.ok()) st = SaveJobState(SentPath(opts.data_dir, j.rec.agent), sent);
    if (!st.ok()) Log("job " + j.rec.id + ": keeping what arrived for the next run failed: " + st.ToString());
  }

  // The agent of `j` is gone: a backup waits for it to resume; other jobs fail.
  void DetachJob(Job& j, const std::string& why) {
    if (j.rec.kind != "backup" && j.rec.kind != "collect" && j.rec.kind != "restore") return EndJob(j, "failed", why);
    j.peer.clear();
    j.detached_ms = NowMs();
    Log("job " + j.rec.id + ": " + why + "; waiting up to " + std::to_string(opts.resume_window_s) +
        " s for the agent to resume it");
  }

  // What WELCOME says about each job a HELLO asks to resume (cap.md
  // section 7): "continue" (state kept: send what was in flight),
  // "restart" (walk again, same job), "done" (with the snapshot: the DONE
  // was lost), "gone" (failed or unknown: give it up).
  json ResumeJobs(const std::string& id, Peer& p, const cap::Message& hello) {
    json out = json::object();
    // A job of this agent it does not ask for: the agent restarted and
    // forgot it, so it cannot finish.
    std::set<std::string> asked;
    for (const auto& v : hello.header["resume"]) asked.insert(v.get<std::string>());
    for (auto it = jobs.begin(); it != jobs.end();) {
      Job& j = (it++)->second;  // EndJob erases it
      if (j.rec.agent == p.agent && !j.local && !asked.count(j.rec.id)) {
        EndJob(j, "failed", "the agent restarted and no longer runs the job");
      }
    }
    for (const auto& v : hello.header["resume"]) {
      std::string jid = v.get<std::string>();
      if (jid.size() > 64 || out.size() >= 8) continue;
      auto it = jobs.find(jid);
      if (it != jobs.end() && it->second.rec.agent == p.agent) {
        Job& j = it->second;
        if (!j.peer.empty() && j.peer != id) peers.erase(j.peer);  // the old session is over
        j.peer = id;
        j.detached_ms = 0;
        j.job_seq = hello.seq;  // the agent's ERROR about this job now refers to this HELLO
        if (j.rec.kind == "backup") LoadHostBlobs(j);
        if (j.restore) j.restore->Resume();
        if (j.needs_restart) {
          j.needs_restart = false;
          out[jid] = json{{"action", "restart"}};
          Log("job " + jid + ": agent " + p.agent + " reconnected; the appliance lost its state, the agent walks again");
        } else {
          out[jid] = json{{"action", "continue"}};
          Log("job " + jid + ": agent " + p.agent + " reconnected, the job continues");
        }
        continue;
      }
      json result = {{"action", "gone"}};
      auto r = reg->FindJob(jid);
      if (r.ok() && *r && (*r)->agent == p.agent && !(*r)->snapshot.empty() &&
          ((*r)->state == "ok" || (*r)->state == "partial")) {
        result = json{{"action", "done"}, {"snapshot", (*r)->snapshot}};
      }
      out[jid] = result;
    }
    return out;
  }

  // A clean stop: every running backup's received blobs are flushed and
  // its state saved, so that the next custosd lets the agents continue.
  void SaveJobsForResume() {
    if (jobs.empty()) return;
    Status st = repo->Flush();
    for (auto& [jid, j] : jobs) {
      if (j.rec.kind != "backup") {
        j.rec.state = "failed";
        j.rec.error = "the appliance stopped during the job";
        j.rec.ended = NowS();
        if (j.collect) {
          Status ended = j.collect->End("failed", j.rec.error);
          if (!ended.ok()) Log("job " + jid + ": " + ended.ToString());
        }
        SaveJob(j);
        continue;
      }
      if (!st.ok() || j.needs_restart) continue;  // the next daemon asks the agent to walk again
      Status saved = SaveJobState(ResumePath(opts.data_dir, j.rec.id), j.got);
      if (!saved.ok()) Log("job " + jid + ": saving its state failed: " + saved.ToString());
      else Log("job " + jid + ": state saved; the agent continues when custosd is back");
    }
    if (!st.ok()) Log("flushing the repository at stop failed: " + st.ToString());
  }

  // At start: backups a previous custosd left running wait for their agents.
  void AdoptJobs() {
    auto running = reg->RunningJobs();
    if (!running.ok()) {
      Log("jobs left running: " + running.status().ToString());
      return;
    }
    for (const auto& r : *running) {
      if (r.kind != "backup") {
        JobRecord f = r;
        f.state = "failed";
        f.error = "the appliance stopped during the job; run it again";
        f.ended = NowS();
        if (r.kind == "collect") RecordLostTask(r, f.error);
        Status st = reg->SaveJob(f);
        if (!st.ok()) Log(st.ToString());
        continue;
      }
      Job j;
      j.rec = r;
      json params = json::parse(r.params, nullptr, false);
      if (params.is_object() && params["paths"].is_array()) {
        for (const auto& x : params["paths"]) {
          if (x.is_string()) j.paths.push_back(x.get<std::string>());
        }
      }
      auto saved = LoadJobState(ResumePath(opts.data_dir, j.rec.id));
      if (saved.ok()) {
        j.got = std::move(saved).value();
      } else if (saved.status().code() != Code::kNotFound) {
        Log("job " + r.id + ": its saved state is unusable (" + saved.status().ToString() + ")");
      }
      j.needs_restart = !saved.ok();
      ::unlink(ResumePath(opts.data_dir, j.rec.id).c_str());  // used once
      j.detached_ms = NowMs();
      Log("job " + r.id + " (backup on " + r.agent + ") was running when the appliance stopped; waiting up to " +
          std::to_string(opts.resume_window_s) + " s for the agent" + (j.needs_restart ? " (it will walk again)" : ""));
      jobs.emplace(r.id, std::move(j));
    }
  }

  // Jobs whose agent did not come back in time.
  void ExpireDetachedJobs() {
    int64_t now = NowMs();
    for (auto it = jobs.begin(); it != jobs.end();) {
      Job& j = (it++)->second;  // EndJob erases it
      if (j.detached_ms && now - j.detached_ms > int64_t(opts.resume_window_s) * 1000) {
        EndJob(j, "failed", "the agent did not come back within " + std::to_string(opts.resume_window_s) + " s");
      }
    }
  }

  // The job `m` names, if it is running and belongs to this session.
  Job* JobFor(const std::string& id, Peer& p, const cap::Message& m) {
    std::string name = m.header["job"];
    auto it = jobs.find(name);
    if (it == jobs.end() || it->second.peer != id || it->second.rec.agent != p.agent) {
      SendError(id, p, cap::ErrorCode::kUnknownJob, "no running job " + name + " for this agent", m.seq);
      return nullptr;
    }
    return &it->second;
  }

  void HandleJobMessage(const std::string& id, Peer& p, const cap::Message& m) {
    Job* j = JobFor(id, p, m);
    if (!j) return;
    if (m.type == "ACCEPT") return;
    if (m.type == "PROGRESS") {
      j->rec.files = m.header["files"];
      j->rec.bytes = m.header["bytes"];
      return;
    }
    if (j->restore) return HandleRestoreMessage(id, p, *j, m);
    if (j->collect) return HandleCollectMessage(id, p, *j, m);
    if (m.type == "HAVE") {
      json lack = json::array();
      for (const auto& s : m.header["ids"]) {
        Id bid = *Id::FromHex(s.get<std::string>());  // the codec checked the form
        if (!j->host_blobs.count(bid) && !j->got.received.count(bid)) lack.push_back(s);
      }
      Send(id, p, cap::Make("LACK", 0, {{"job", j->rec.id}, {"ids", std::move(lack)}}));
      return;
    }
    if (m.type == "BLOB") return HandleBlob(id, p, *j, m);
    if (m.type == "COMMIT") return HandleCommit(id, p, *j, m);
  }

  // One entry of a BLOB message: verified, then sealed and stored. The
  // reason it was rejected, or empty; a storage failure goes to `*fatal`.
  std::string IngestBlob(Job& j, const json& e, ByteView raw, Status* fatal) {
    Id bid = *Id::FromHex(e["id"].get<std::string>());  // the codec checked the form
    uint64_t size = e["size"];
    size_t declared = size_t(std::min<uint64_t>(size, SIZE_MAX));
    bool tree = e["kind"] == "tree";
    bool zstd = e["compression"] == "zstd";
    // The reason, built only for a blob that is rejected (this runs per blob).
    auto rejected = [&](const std::string& why) { return "blob " + bid.Hex() + " rejected: " + why; };
    Result<Bytes> plain = Bytes();
    ByteView content = raw;  // a plain blob is checked where it lies (no copy)
    if (zstd && !tree) {
      // Most of the appliance's work: decompressed into a reused buffer and
      // hashed there, since only the frame is kept.
      Status v = storage::VerifyFrame(raw, declared, bid);
      if (!v.ok()) return rejected(v.message());
    } else {
      if (zstd) {
        plain = storage::ZstdDecompress(raw, declared);
        if (plain.ok()) content = *plain;
      } else if (size != raw.size()) {
        plain = CorruptionError("size " + std::to_string(size) + " differs from the payload's");
      }
      if (!plain.ok()) return rejected(plain.status().message());
      if (Sha256(content) != bid) return rejected("content does not hash to its ID");
      if (tree && !snapshot::DecodeTree(content).ok()) return rejected("not a valid tree");
    }
    // A verified zstd frame is sealed as it came (no second compression);
    // a plain blob is sealed plain: the agent compressed with the
    // repository's level and policy and found it not worth it (an agent
    // that lies only wastes its own space). One already stored (for
    // another host) is not sealed again.
    if (!repo->KnowsBlob(bid)) {
      auto type = tree ? storage::BlobType::kTree : storage::BlobType::kData;
      Result<bool> added = repo->AddEncodedBlob(
          zstd ? storage::EncodeCompressedBlob(repo->keys().data, type, raw, uint32_t(size), bid)
               : storage::EncodeBlob(repo->keys().data, type, content, bid, /*zstd_level=*/0));
      if (!added.ok()) {
        *fatal = added.status();
        return "";
      }
    }
    // A blob sent again after a resume (its CREDIT was lost) counts once.
    if (j.got.received.insert(bid).second) {
      ++(tree ? j.got.tree_blobs : j.got.data_blobs);
      j.got.bytes_stored += size;
    }
    return "";
  }

  void HandleBlob(const std::string& id, Peer& p, Job& j, const cap::Message& m) {
    const std::string& payload = m.payloads[0];
    if (payload.size() > p.credit) {
      SendError(id, p, cap::ErrorCode::kCreditExceeded,
                "BLOB of " + std::to_string(payload.size()) + " bytes exceeds the credit left (" +
                    std::to_string(p.credit) + ")",
                m.seq);
      EndJob(j, "failed", "the agent exceeded its credit");
      return;
    }
    p.credit -= payload.size();
    // The codec checked that the entries' lengths cut the payload exactly.
    size_t offset = 0, rejected = 0;
    std::string first_bad;
    for (const auto& e : m.header["blobs"]) {
      size_t n = e["length"].get<uint64_t>();
      ByteView raw(reinterpret_cast<const uint8_t*>(payload.data()) + offset, n);
      offset += n;
      Status fatal;
      std::string bad = IngestBlob(j, e, raw, &fatal);
      if (!fatal.ok()) {
        SendError(id, p, cap::ErrorCode::kInternal, "storing a blob failed: " + fatal.message(), m.seq);
        EndJob(j, "failed", "storing a blob failed: " + fatal.ToString());
        return;
      }
      if (!bad.empty()) {
        // Logged with the agent's name; the blob never enters the store.
        Log("agent " + p.agent + ", job " + j.rec.id + ": " + bad);
        ++j.got.rejected;
        if (rejected++ == 0) first_bad = bad;
      }
    }
    if (rejected) {
      // One ERROR per BLOB message, so that replies stay one or two per
      // message whatever the agent sends.
      SendError(id, p, cap::ErrorCode::kBadBlob,
                rejected == 1 ? first_bad
                              : std::to_string(rejected) + " blobs rejected, the first: " + first_bad,
                m.seq);
    }
    // The bytes are out of the agent's way: grant them again.
    p.credit += payload.size();
    Send(id, p, cap::Make("CREDIT", 0, {{"job", j.rec.id}, {"bytes", uint64_t(payload.size())}}));
  }

  // WANT, CREDIT and RESULT of a restore job (cap.md section 5.2).
  void HandleRestoreMessage(const std::string& id, Peer& p, Job& j, const cap::Message& m) {
    RestoreJob& r = *j.restore;
    if (m.type == "WANT") {
      Status st = r.OnWant(m.header["ids"]);
      if (!st.ok()) {
        bool forbidden = st.code() == Code::kPermissionDenied;
        SendError(id, p, forbidden ? cap::ErrorCode::kForbidden : cap::ErrorCode::kCreditExceeded, st.message(), m.seq);
        EndJob(j, "failed", "agent " + j.rec.agent + ": " + st.message());
        return;
      }
    } else if (m.type == "CREDIT") {
      r.OnCredit(m.header["bytes"]);
    } else if (m.type == "RESULT") {
      auto o = r.Finish(j.rec.agent, m.header["counts"], m.header["failures"]);
      j.rec.report = o.report;
      j.rec.files = o.files;
      j.rec.bytes = o.bytes;
      EndJob(j, o.state, o.error);
      return;
    } else {
      SendError(id, p, cap::ErrorCode::kOutOfOrder, m.type + " is not part of a restore job", m.seq);
      return;
    }
    r.Pump(j.rec.id, [&](cap::Message out) { Send(id, p, std::move(out)); });
  }

  // The session of `agent` that may take a job now (connected, greeted,
  // with no job running or waiting to resume), or the control reply that
  // says why not.
  json ReadyAgent(const std::string& agent, std::string* peer_id) {
    int64_t now = NowMs();
    for (auto& [pid, p] : peers) {
      if (p.agent == agent && p.greeted && now - p.last_seen_ms < 3 * opts.heartbeat_ms) *peer_id = pid;
    }
    if (peer_id->empty()) {
      return json{{"ok", false}, {"error", "agent " + agent + " is not connected"}, {"code", "not-connected"}};
    }
    for (const auto& [jid, j] : jobs) {
      if (j.rec.agent == agent && !j.local) {  // a drill reads the repository, not the agent
        return json{{"ok", false}, {"error", "agent " + agent + " is busy with job " + jid}, {"code", "busy"}};
      }
    }
    return nullptr;
  }

  json StartRestore(const json& req) {
    std::string agent = req.value("agent", "");
    std::string peer_id;
    if (json refused = ReadyAgent(agent, &peer_id); !refused.is_null()) return refused;
    Status flushed = repo->Flush();  // what custosd wrote is readable through the index
    auto plan = flushed.ok() ? RestoreJob::Plan(*repo, agent, req) : Result<std::unique_ptr<RestoreJob>>(flushed);
    if (!plan.ok()) return json{{"ok", false}, {"error", plan.status().message()}};
    Job j;
    j.rec = NewJobRecord("restore", agent);
    j.rec.snapshot = (*plan)->snapshot().id.Hex();
    j.peer = peer_id;
    j.restore = std::move(plan).value();
    json params = j.restore->Params();
    j.rec.params = params.dump(-1, ' ', false, json::error_handler_t::replace);
    Peer& p = peers[peer_id];
    Send(peer_id, p, cap::Make("JOB", 0, {{"job", j.rec.id}, {"kind", "restore"}, {"params", params}}));
    j.job_seq = p.out_seq;
    SaveJob(j);
    Log("job " + j.rec.id + ": restore of snapshot " + j.rec.snapshot.substr(0, 8) + " to " + agent + ":" +
        params["target"].get<std::string>() + " started (" + std::to_string(j.restore->allowance()) + " blobs allowed)");
    std::string jid = j.rec.id;
    jobs.emplace(jid, std::move(j));
    return json{{"ok", true}, {"job", jid}, {"snapshot", params["snapshot"]}};
  }

  // A saved report's body, for the CLI (which talks to custosd only).
  json ReportJson(const json& req) {
    auto id = Id::FromHex(req.value("report", ""));
    if (!id) return json{{"ok", false}, {"error", "report: not a report ID"}};
    auto r = restore::LoadReport(*repo, *id);
    if (!r.ok()) return json{{"ok", false}, {"error", r.status().message()}};
    return json{{"ok", true}, {"id", r->id.Hex()}, {"body", r->body}};
  }

  void HandleCommit(const std::string& id, Peer& p, Job& j, const cap::Message& m) {
    snapshot::Manifest man;
    man.tree = *Id::FromHex(m.header["tree"].get<std::string>());
    for (const auto& a : m.header["atimes"]) man.atimes.push_back(*Id::FromHex(a.get<std::string>()));
    for (const auto& s : m.header["paths"]) man.paths.push_back(s.get<std::string>());
    if (man.paths != j.paths) {
      SendError(id, p, cap::ErrorCode::kForbidden, "COMMIT paths differ from the job's", m.seq);
      EndJob(j, "failed", "the agent committed other paths than the job's");
      return;
    }
    // Every blob the snapshot references must be here: walk it.
    Status st = repo->Flush();
    std::unordered_map<Id, uint64_t, IdHash> blobs;
    if (st.ok()) st = snapshot::CollectSnapshotBlobs(*repo, man, &blobs);
    size_t missing = 0;
    if (st.ok()) {
      for (const auto& [bid, size] : blobs) missing += repo->HasBlob(bid) ? 0 : 1;
    }
    if (!st.ok() || missing) {
      std::string why = !st.ok() ? "the snapshot's trees cannot be read: " + st.ToString()
                                 : std::to_string(missing) + " blobs the snapshot references are not here";
      SendError(id, p, cap::ErrorCode::kBadBlob, why, m.seq);
      EndJob(j, "failed", why);
      return;
    }
    const json& s = m.header["summary"];
    man.time_ns = snapshot::NowNs();  // the appliance's clock, not the agent's
    man.time = snapshot::FormatTimeNs(man.time_ns);
    man.host = j.rec.agent;            // the enrolled name, never a claim of the agent
    man.user = "custos-agent";
    man.program_version = p.version;
    man.partial = s.contains("partial") && s["partial"].is_boolean() && s["partial"].get<bool>();
    if (s.contains("error_samples") && s["error_samples"].is_array()) {
      for (const auto& e : s["error_samples"]) {
        if (e.is_string() && man.error_samples.size() < 20) man.error_samples.push_back(e.get<std::string>());
      }
    }
    auto summary = snapshot::SummaryFromJson(s);
    if (!summary.ok()) {
      SendError(id, p, cap::ErrorCode::kMalformed, summary.status().message(), m.seq);
      EndJob(j, "failed", "the agent sent a malformed summary");
      return;
    }
    snapshot::Summary& o = man.summary;
    o = *summary;
    o.bytes_added_stored = 0;  // the agent's view; what was stored is counted below
    // What arrived is the appliance's own count (atime table pieces travel
    // as data blobs: told apart here).
    o.atime_blobs_added = 0;
    for (const Id& a : man.atimes) o.atime_blobs_added += j.got.received.count(a);
    o.data_blobs_added = j.got.data_blobs - std::min(j.got.data_blobs, o.atime_blobs_added);
    o.tree_blobs_added = j.got.tree_blobs;
    o.bytes_added = j.got.bytes_stored;
    o.duration_s = double(NowS() - j.rec.started);
    auto sid = repo->SaveSnapshot(snapshot::EncodeManifest(man));
    if (!sid.ok()) {
      SendError(id, p, cap::ErrorCode::kInternal, "saving the snapshot failed: " + sid.status().message(), m.seq);
      EndJob(j, "failed", "saving the snapshot failed: " + sid.status().ToString());
      return;
    }
    j.rec.snapshot = sid->Hex();
    j.rec.files = o.total_files;
    j.rec.bytes = o.total_bytes;
    Send(id, p, cap::Make("DONE", 0, {{"job", j.rec.id}, {"snapshot", sid->Hex()}}));
    if (!j.hold_case.empty()) {  // `custos case snapshot`: held at once
      auto held = HoldForCase(*cases, *repo, j.hold_case, sid->Hex(), "case " + j.hold_case + ": " + j.hold_label,
                              j.hold_by);
      if (!held.ok()) {
        EndJob(j, "failed", "snapshot " + sid->Hex().substr(0, 8) + " saved but not held: " + held.status().message());
        return;
      }
      Log("job " + j.rec.id + ": snapshot " + sid->Hex().substr(0, 8) + " held for case " + j.hold_case);
    }
    EndJob(j, man.partial ? "partial" : "ok",
           j.got.rejected ? std::to_string(j.got.rejected) + " blobs rejected" : "");
  }

  // EVIDENCE of a collection job (cap.md section 5.3): recorded, then
  // REDO for items that arrived damaged, then one CREDIT.
  void HandleCollectMessage(const std::string& id, Peer& p, Job& j, const cap::Message& m) {
    if (m.type != "EVIDENCE") {
      SendError(id, p, cap::ErrorCode::kOutOfOrder, m.type + " is not part of a collection job", m.seq);
      return;
    }
    const std::string& payload = m.payloads[0];
    if (payload.size() > p.credit) {
      SendError(id, p, cap::ErrorCode::kCreditExceeded, "EVIDENCE exceeds the credit left", m.seq);
      EndJob(j, "failed", "the agent exceeded its credit");
      return;
    }
    auto out = j.collect->OnEvidence(m.header["n"], m.header["events"], payload);
    if (!out.error.ok()) {
      SendError(id, p, cap::ErrorCode::kMalformed, out.error.message(), m.seq);
      EndJob(j, "failed", "agent " + j.rec.agent + ": " + out.error.message());
      return;
    }
    j.rec.files = j.collect->items();
    j.rec.bytes = j.collect->bytes();
    if (!out.redo.empty()) Send(id, p, cap::Make("REDO", 0, {{"job", j.rec.id}, {"items", out.redo}}));
    Send(id, p, cap::Make("CREDIT", 0, {{"job", j.rec.id}, {"bytes", uint64_t(payload.size())}}));
    if (out.finished) {
      Log("job " + j.rec.id + ": collection for case " + json::parse(j.rec.params)["case"].get<std::string>() +
          " done: " + j.collect->Summary());
      EndJob(j, j.collect->state(), "");
    }
  }

  // A collection a previous daemon left running: its task ends failed in
  // the case's ledger (the agent's stream cannot be resumed across a
  // restart; cap.md section 7).
  void RecordLostTask(const JobRecord& r, const std::string& why) {
    json params = json::parse(r.params, nullptr, false);
    if (!params.is_object() || !params["case"].is_string() || !params["task"].is_number_unsigned()) return;
    json body = {{"task", params["task"]}, {"host", r.agent}, {"state", "failed"}, {"error", why},
                 {"planned", 0}, {"collected", r.files}, {"failed", 0}};
    auto st = cases->Append(params["case"].get<std::string>(), "task.end", body,
                            evidence::Actor{"appliance", "custosd", cases->KeyFingerprint()});
    if (!st.ok()) Log("job " + r.id + ": " + st.status().ToString());
  }

  // `custos case collect`: a recipe (built-in profile, the operator's own
  // text, or --path) run by the agent for the case.
  json StartCollect(const json& req) {
    std::string agent = req.value("agent", "");
    std::string case_id = req.value("case", "");
    Result<evidence::Recipe> recipe = InvalidArgumentError("case collect: give --profile, --recipe or --path");
    if (req.contains("profile") && req["profile"].is_string()) {
      recipe = evidence::BuiltinProfile(req["profile"].get<std::string>());
    } else if (req.contains("recipe") && req["recipe"].is_string()) {
      recipe = evidence::ParseRecipe(req["recipe"].get<std::string>());
    } else if (req.contains("paths") && req["paths"].is_array()) {
      std::vector<std::string> paths;
      for (const auto& x : req["paths"]) {
        if (x.is_string()) paths.push_back(x.get<std::string>());
      }
      recipe = evidence::PathsRecipe(paths);
    }
    if (!recipe.ok()) return json{{"ok", false}, {"error", recipe.status().message()}};
    auto info = cases->Show(case_id);
    if (!info.ok()) return json{{"ok", false}, {"error", info.status().message()}, {"code", "not-found"}};
    if (info->state != "open") return json{{"ok", false}, {"error", "case " + case_id + " is closed"}};
    std::string peer_id;
    if (json refused = ReadyAgent(agent, &peer_id); !refused.is_null()) return refused;
    Peer& p = peers[peer_id];
    CollectJob::Request cr;
    cr.case_id = case_id;
    cr.agent = agent;
    cr.agent_key = p.agent_key;
    cr.recipe = std::move(recipe).value();
    try {
      cr.excludes = req.value("excludes", std::vector<std::string>{});
      cr.max_file_bytes = req.value("max_file_bytes", uint64_t(0));
      cr.cmd_timeout_s = req.value("cmd_timeout_s", 300);
    } catch (const json::exception& e) {
      return json{{"ok", false}, {"error", std::string("case collect: ") + e.what()}};
    }
    auto job = CollectJob::Start(*cases, cr, OperatorActor(req));
    if (!job.ok()) return json{{"ok", false}, {"error", job.status().message()}};
    Job j;
    j.rec = NewJobRecord("collect", agent);
    j.peer = peer_id;
    j.collect = std::move(job).value();
    json params = j.collect->Params();
    json logged = params;
    logged.erase("recipe");  // the text is in the case (plan record); the history names it
    logged["recipe_name"] = cr.recipe.name;
    logged["recipe_sha256"] = cr.recipe.sha256;
    j.rec.params = logged.dump(-1, ' ', false, json::error_handler_t::replace);
    Send(peer_id, p, cap::Make("JOB", 0, {{"job", j.rec.id}, {"kind", "collect"}, {"params", params}}));
    j.job_seq = p.out_seq;
    SaveJob(j);
    Log("job " + j.rec.id + ": collection " + cr.recipe.name + " from " + agent + " for case " + case_id + " started");
    std::string jid = j.rec.id;
    uint64_t task = j.collect->task();
    jobs.emplace(jid, std::move(j));
    return json{{"ok", true}, {"job", jid}, {"case", case_id}, {"task", task}, {"recipe", cr.recipe.name},
                {"recipe_sha256", cr.recipe.sha256}};
  }

  // `custos case snapshot`: a fresh backup of the agent, held for the case
  // as soon as it commits ("before remediation", "after remediation").
  json StartCaseSnapshot(const json& req) {
    std::string case_id = req.value("case", "");
    auto info = cases->Show(case_id);
    if (!info.ok()) return json{{"ok", false}, {"error", info.status().message()}, {"code", "not-found"}};
    std::string label = req.value("label", "");
    if (label.empty()) return json{{"ok", false}, {"error", "case snapshot: give a --label (e.g. before-remediation)"}};
    json breq = req;
    if (!breq.contains("paths") || !breq["paths"].is_array() || breq["paths"].empty()) {
      // The paths of the agent's latest snapshot: "the server as we back it up".
      auto snaps = snapshot::LoadSnapshots(*repo);
      std::vector<std::string> paths;
      if (snaps.ok()) {
        for (const auto& s : *snaps) {
          if (s.manifest.host == req.value("agent", "")) paths = s.manifest.paths;
        }
      }
      if (paths.empty()) {
        return json{{"ok", false}, {"error", "case snapshot: the agent has no snapshot yet; give --paths"}};
      }
      breq["paths"] = paths;
    }
    json reply = StartBackup(breq);
    if (!reply.value("ok", false)) return reply;
    Job& j = jobs.at(reply["job"].get<std::string>());
    j.hold_case = case_id;
    j.hold_label = label;
    j.hold_by = OperatorActor(req);
    json logged = json::parse(j.rec.params, nullptr, false);
    if (logged.is_object()) {
      logged["case"] = case_id;
      logged["label"] = label;
      j.rec.params = logged.dump(-1, ' ', false, json::error_handler_t::replace);
      SaveJob(j);
    }
    reply["case"] = case_id;
    return reply;
  }

  json StartBackup(const json& req) {
    std::string agent = req.value("agent", "");
    if (!req.contains("paths") || !req["paths"].is_array() || req["paths"].empty()) {
      return json{{"ok", false}, {"error", "backup: no paths"}};
    }
    std::vector<std::string> given;
    for (const auto& x : req["paths"]) {
      if (!x.is_string() || x.get<std::string>().empty() || x.get<std::string>()[0] != '/') {
        return json{{"ok", false}, {"error", "backup: paths must be absolute"}};
      }
      given.push_back(x.get<std::string>());
    }
    // As the archiver will record them, so that COMMIT can be checked.
    std::vector<std::string> paths = snapshot::BackupRoots(given);
    std::string peer_id;
    if (json refused = ReadyAgent(agent, &peer_id); !refused.is_null()) return refused;
    Job j;
    j.rec = NewJobRecord("backup", agent);
    j.peer = peer_id;
    j.paths = paths;
    LoadHostBlobs(j);
    const auto& c = repo->config();
    json params = {{"paths", paths},
                   {"excludes", req.value("excludes", std::vector<std::string>{})},
                   {"one_file_system", req.value("one_file_system", false)},
                   {"exclude_caches", req.value("exclude_caches", false)},
                   {"chunker",
                    {{"key", ToHex(ByteView(repo->keys().chunker.data(), repo->keys().chunker.size()))},
                     {"min", c.chunk_min},
                     {"avg", c.chunk_avg},
                     {"max", c.chunk_max}}},
                   {"zstd_level", c.zstd_level}};
    json logged = params;
    logged["chunker"].erase("key");  // a secret: never in the history or the logs
    for (const char* k : {"schedule", "slot", "catch_up", "attempt"}) {
      if (req.contains(k)) logged[k] = req[k];  // started by the scheduler
    }
    j.rec.params = logged.dump();
    Peer& p = peers[peer_id];
    cap::Message msg = cap::Make("JOB", 0, {{"job", j.rec.id}, {"kind", "backup"}, {"params", params}});
    Send(peer_id, p, msg);
    j.job_seq = p.out_seq;
    SaveJob(j);
    Log("job " + j.rec.id + ": backup of " + agent + " started");
    std::string jid = j.rec.id;
    jobs.emplace(jid, std::move(j));
    return json{{"ok", true}, {"job", jid}};
  }

  static json JobJson(const JobRecord& r) {
    return json{{"id", r.id},       {"agent", r.agent},     {"kind", r.kind},   {"state", r.state},
                {"started", r.started}, {"ended", r.ended}, {"snapshot", r.snapshot}, {"error", r.error},
                {"files", r.files}, {"bytes", r.bytes},     {"params", json::parse(r.params, nullptr, false)},
                {"report", r.report}};
  }

  // A running job: its record, and whether it waits for its agent.
  json LiveJobJson(const Job& j) const {
    json out = JobJson(j.rec);
    out["waiting_for_agent"] = j.detached_ms != 0;
    out["blobs_received"] = j.got.received.size();
    out["bytes_received"] = j.got.bytes_stored;
    if (j.detached_ms) out["waiting_s"] = (NowMs() - j.detached_ms) / 1000;
    return out;
  }

  void Send(const std::string& id, Peer& p, cap::Message m) {
    m.seq = ++p.out_seq;
    auto frames = cap::Encode(m);
    std::vector<zmq::const_buffer> out;
    out.push_back(zmq::buffer(id));
    for (const auto& f : frames) out.push_back(zmq::buffer(f));
    try {
      if (!zmq::send_multipart(router, out, zmq::send_flags::dontwait)) {
        // The agent's queue is full (it sends more than the protocol lets
        // it): this message is lost, so its session is out of step.
        Log("send to " + (p.agent.empty() ? std::string("a peer") : p.agent) + " failed: its queue is full");
      }
    } catch (const zmq::error_t& e) {
      Log("send to " + (p.agent.empty() ? std::string("a peer") : p.agent) + " failed: " + e.what());
    }
  }

  void SendError(const std::string& id, Peer& p, cap::ErrorCode code, const std::string& reason, uint64_t ref) {
    Log("error " + std::to_string(int(code)) + " to " + (p.agent.empty() ? "unenrolled peer" : "agent " + p.agent) +
        ": " + reason);
    Send(id, p, cap::MakeError(0, code, reason, ref));
  }

  void HandleZap() {
    std::vector<zmq::message_t> req;
    if (!zmq::recv_multipart(zap, std::back_inserter(req), zmq::recv_flags::dontwait)) return;
    auto str = [&](size_t i) { return i < req.size() ? req[i].to_string() : std::string(); };
    std::string status = "400", text = "refused", user;
    if (req.size() >= 7 && str(0) == "1.0" && str(5) == "CURVE" && req[6].size() == 32) {
      CurveKey key;
      std::memcpy(key.data(), req[6].data(), 32);
      std::string hex = ToHex(ByteView(key.data(), key.size()));
      // Enrolled agents, and the enrolment key of a pending token (which may
      // send ENROL and nothing else, checked per message). Any other key
      // never completes the handshake: not one of its bytes is parsed.
      if (reg->Admitted(key)) {
        user = "agent:" + hex;
      } else if (reg->PendingEnrolment(key)) {
        user = "enrol:" + hex;
      } else {
        text = "unknown key";
        LogRefusedKey(hex, str(3));
      }
      if (!user.empty()) status = "200", text = "OK";
    }
    std::string request_id = str(1);  // the buffers below point into these strings: keep them alive
    std::vector<zmq::const_buffer> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(status),
                                            zmq::buffer(text),        zmq::buffer(user),        zmq::str_buffer("")};
    zmq::send_multipart(zap, reply);
  }

  // Refused keys are logged once per key and minute (a client dialling with
  // one retries every few seconds), and at most kRefusalsLogged keys a minute
  // (one trying fresh keys would flood the log): the rest are counted and
  // the count logged with the next refusal after the minute.
  void LogRefusedKey(const std::string& hex, const std::string& address) {
    constexpr size_t kRefusalsLogged = 10;
    int64_t now = NowMs();
    if (now - refusals.window_start >= 60000) {
      if (refusals.unlogged > 0) {
        Log(std::to_string(refusals.unlogged) + " more connections were refused at the handshake in the minute before");
      }
      refusals = Refusals{now, {}, 0};
    }
    if (!refusals.keys.insert(hex).second) return;
    if (refusals.keys.size() > kRefusalsLogged) {
      ++refusals.unlogged;
      return;
    }
    Log("refused a connection from " + (address.empty() ? std::string("an unknown address") : address) +
        ": key " + hex.substr(0, 16) + "... is neither enrolled nor a pending enrolment token's");
  }

  void HandleAgent() {
    std::vector<zmq::message_t> msg;
    if (!zmq::recv_multipart(router, std::back_inserter(msg), zmq::recv_flags::dontwait)) return;
    if (msg.size() < 2) return;
    std::string id = msg[0].to_string();
    Peer& p = peers[id];
    p.last_seen_ms = NowMs();
    const char* uid = msg[1].gets("User-Id");
    std::string user = uid ? uid : "";
    std::vector<std::string_view> frames;
    for (size_t i = 1; i < msg.size(); ++i) frames.emplace_back(static_cast<const char*>(msg[i].data()), msg[i].size());
    cap::DecodeResult r = cap::Decode(frames, cap::Direction::kAgentToAppliance);
    if (!r.ok) {
      SendError(id, p, r.code, r.reason, 0);
      if (r.close) peers.erase(id);
      return;
    }
    const cap::Message& m = r.message;
    if (!p.in.Accept(m.seq)) {
      SendError(id, p, cap::ErrorCode::kMalformed,
                "seq " + std::to_string(m.seq) + " out of order (expected " + std::to_string(p.in.last() + 1) + ")",
                m.seq);
      return;
    }
    if (user.rfind("enrol:", 0) == 0) return HandleEnrol(id, p, m, user.substr(6));
    auto key = user.rfind("agent:", 0) == 0 ? KeyFromHex(user.substr(6)) : std::nullopt;
    std::optional<std::string> name = key ? reg->Admitted(*key) : std::nullopt;
    if (!name) {  // revoked since it connected: refused at this very message
      SendError(id, p, cap::ErrorCode::kUnauthorized, "this agent is not enrolled or has been revoked", m.seq);
      peers.erase(id);
      return;
    }
    p.agent = *name;
    if (p.agent_key.empty()) p.agent_key = evidence::KeyFingerprint(ByteView(key->data(), key->size()));
    if (m.type == "ENROL") return SendError(id, p, cap::ErrorCode::kOutOfOrder, "already enrolled", m.seq);
    if (!p.greeted && m.type != "HELLO") {
      return SendError(id, p, cap::ErrorCode::kOutOfOrder, m.type + " before HELLO", m.seq);
    }
    if (m.type == "HELLO") {
      if (m.header["protocol"] != 1) {
        return SendError(id, p, cap::ErrorCode::kMalformed, "protocol version not supported (this appliance speaks 1)",
                         m.seq);
      }
      p.greeted = true;
      p.version = m.header["version"];
      Status st = reg->Seen(p.agent, m.header["version"], m.header["host"]);
      if (!st.ok()) Log(st.ToString());
      Log("agent " + p.agent + " connected (" + m.header["host"].get<std::string>() + ", " +
          m.header["version"].get<std::string>() + ")");
      json resumed = ResumeJobs(id, p, m);
      Send(id, p, cap::Make("WELCOME", 0, {{"heartbeat_ms", opts.heartbeat_ms}, {"credit", kInitialCredit},
                                           {"time", scheduler::FormatUtc(scheduler::Now())}, {"jobs", std::move(resumed)}}));
      return;
    }
    if (m.type == "PING") return Send(id, p, cap::Make("PONG", 0));
    if (m.type == "PONG") return;
    if (m.type == "ERROR") {
      // An agent reporting that a job of ours failed (ref = our JOB message).
      uint64_t ref = m.header["ref"];
      for (auto& [jid, j] : jobs) {
        if (j.peer == id && j.job_seq == ref) {
          EndJob(j, "failed", "agent: " + m.header["reason"].get<std::string>());
          return;
        }
      }
      Log("agent " + p.agent + " reports error " + m.header["code"].dump() + ": " + m.header["reason"].get<std::string>());
      return;
    }
    if (m.header.contains("job")) return HandleJobMessage(id, p, m);
    SendError(id, p, cap::ErrorCode::kOutOfOrder, m.type + " is not expected now", m.seq);
  }

  void HandleEnrol(const std::string& id, Peer& p, const cap::Message& m, const std::string& key_hex) {
    if (m.type != "ENROL") {
      SendError(id, p, cap::ErrorCode::kUnauthorized, "not enrolled: only ENROL is accepted from this key", m.seq);
      return;
    }
    auto conn_key = KeyFromHex(key_hex);
    auto agent_key = KeyFromHex(m.header["key"].get<std::string>());  // the codec checked the form
    auto secret_bytes = FromHex(m.header["secret"].get<std::string>());
    if (!conn_key || !agent_key || !secret_bytes || secret_bytes->size() != 16) {
      SendError(id, p, cap::ErrorCode::kUnauthorized, "bad enrolment secret", m.seq);
      return;
    }
    std::array<uint8_t, 16> secret;
    std::copy(secret_bytes->begin(), secret_bytes->end(), secret.begin());
    CurveKey token_pub = appliance::EnrolPublicKey(secret);
    // The secret must be the one whose key this connection was admitted
    // with, and the key to enrol must be another (the token's is public
    // knowledge to anyone who saw the token).
    if (token_pub != *conn_key || *agent_key == *conn_key) {
      SendError(id, p, cap::ErrorCode::kUnauthorized,
                token_pub != *conn_key ? "the secret does not belong to the key this connection was made with"
                                       : "the key to enrol must not be the token's enrolment key",
                m.seq);
      return;
    }
    auto name = reg->Enrol(secret, *agent_key, m.header["host"], m.header["version"]);
    if (!name.ok()) {
      SendError(id, p, cap::ErrorCode::kUnauthorized, name.status().message(), m.seq);
      return;
    }
    Log("agent " + *name + " enrolled from host " + m.header["host"].get<std::string>());
    Send(id, p, cap::Make("ENROLLED", 0, {{"name", *name}}));
    // The next connection, with the now-enrolled key, starts a fresh session.
    peers.erase(id);
  }

  json StatusJson() {
    json agents = json::array();
    auto list = reg->List();
    int64_t now = NowMs();
    if (list.ok()) {
      for (const auto& a : *list) {
        bool connected = false;
        for (const auto& [pid, p] : peers) {
          if (p.agent == a.name && p.greeted && now - p.last_seen_ms < 3 * opts.heartbeat_ms) connected = true;
        }
        agents.push_back(json{{"name", a.name},
                              {"state", a.state},
                              {"connected", connected},
                              {"last_seen", a.last_seen},
                              {"version", a.version},
                              {"host", a.host},
                              {"public_key", a.public_key}});
      }
    }
    json running = json::array();
    for (const auto& [jid, j] : jobs) running.push_back(LiveJobJson(j));
    return json{{"ok", true}, {"version", kCustosVersion}, {"endpoint", bound}, {"appliance_key", public_z85},
                {"agents", agents}, {"jobs", running}};
  }

  json HandleControlRequest(const std::string& text) {
    json req = json::parse(text, nullptr, false);
    if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
      return json{{"ok", false}, {"error", "control request is not a JSON object with \"cmd\""}};
    }
    std::string cmd = req["cmd"];
    std::string name = req.value("name", "");
    if (cmd == "status") return StatusJson();
    if (cmd == "backup") return StartBackup(req);
    if (cmd == "restore") return StartRestore(req);
    if (cmd == "report") return ReportJson(req);
    if (cmd == "job") {
      std::string jid = req.value("job", "");
      if (auto it = jobs.find(jid); it != jobs.end()) return json{{"ok", true}, {"job", LiveJobJson(it->second)}};
      auto r = reg->FindJob(jid);
      if (!r.ok()) return json{{"ok", false}, {"error", r.status().message()}};
      if (*r) return json{{"ok", true}, {"job", JobJson(**r)}};
      return json{{"ok", false}, {"error", "no job " + jid}};
    }
    if (cmd == "case-close") {  // a running collection would find its case closed under it
      for (const auto& [jid, j] : jobs) {
        if (j.collect && j.collect->case_id() == req.value("case", "")) {
          return json{{"ok", false}, {"error", "case " + j.collect->case_id() + " has a collection running (job " + jid +
                                                   "); close it when the job has ended"},
                      {"code", "busy"}};
        }
      }
    }
    if (IsCaseCommand(cmd)) return HandleCaseRequest(*cases, *repo, req);
    if (cmd == "case-collect") return StartCollect(req);
    if (cmd == "case-snapshot") return StartCaseSnapshot(req);
    if (cmd == "prune" || (cmd == "forget" && req.value("prune", false))) {
      for (const auto& [jid, other] : jobs) {
        if (other.local) return json{{"ok", false}, {"error", "the appliance is busy with job " + jid}, {"code", "busy"}};
      }
    }
    if (cmd == "prune") {  // recorded in the job history, like a scheduled one
      auto pr = ParsePruneRequest(text);
      if (!pr.ok()) return json{{"ok", false}, {"error", pr.status().message()}, {"code", "usage"}};
      return RunPrune(json::object(), *pr);
    }
    if (IsRetentionCommand(cmd)) {  // forget, prune and holds: the same handler as `custos forget --repo`
      RetentionContext ctx;
      ctx.protected_blobs = ProtectedBlobs();
      ctx.progress = [](const std::string& line) { Log(line); };
      return json::parse(HandleRetentionRequest(*repo, text, storage::Actor::FromProcess("custosd"), ctx));
    }
    if (cmd == "schedule-add" || cmd == "schedule-list" || cmd == "schedule-remove" || cmd == "schedule-run") {
      return HandleScheduleRequest(cmd, req);
    }
    if (cmd == "jobs") {
      auto hist = reg->Jobs(req.value("limit", 100), req.value("agent", std::string()), req.value("failed", false));
      if (!hist.ok()) return json{{"ok", false}, {"error", hist.status().message()}};
      json out = json::array();
      for (const auto& r : *hist) out.push_back(JobJson(r));
      return json{{"ok", true}, {"jobs", out}};
    }
    if (cmd == "agent-add") {
      auto secret = reg->AddAgent(name);
      if (!secret.ok()) return json{{"ok", false}, {"error", secret.status().message()}};
      CurveKey pub;
      zmq_z85_decode(pub.data(), public_z85.c_str());
      Log("enrolment token issued for agent " + name);  // never the token itself
      return json{{"ok", true}, {"name", name}, {"token", FormatToken(pub, *secret)},
                  {"appliance_key", public_z85}, {"endpoint", bound}};
    }
    if (cmd == "agent-list") {
      json s = StatusJson();
      return json{{"ok", true}, {"agents", s["agents"]}};
    }
    if (cmd == "agent-revoke") {
      Status st = reg->Revoke(name);
      if (!st.ok()) return json{{"ok", false}, {"error", st.message()}};
      Log("agent " + name + " revoked");
      return json{{"ok", true}, {"name", name}};
    }
    return json{{"ok", false}, {"error", "unknown control command \"" + cmd + "\""}};
  }

  void HandleControl() {
    if (alert_test.valid()) return;  // the REP socket owes its reply first
    zmq::message_t req;
    if (!control.recv(req, zmq::recv_flags::dontwait)) return;
    json parsed = json::parse(req.to_string(), nullptr, false);
    if (parsed.is_object() && parsed.value("cmd", "") == "alert-test") {
      alert_test = std::async(std::launch::async, [this] { return AlertTest(); });
      return;
    }
    ReplyControl(HandleControlRequest(req.to_string()));
  }

  void ReplyControl(const json& reply) {
    control.send(zmq::buffer(reply.dump(-1, ' ', false, json::error_handler_t::replace)), zmq::send_flags::none);
  }

  // The reply to a finished `alert-test`.
  void FinishAlertTest() {
    if (alert_test.valid() && alert_test.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      ReplyControl(alert_test.get());
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::string Server::endpoint() const { return impl_->bound; }
std::string Server::public_key_z85() const { return impl_->public_z85; }

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  if (impl->opts.timezone.empty()) impl->opts.timezone = scheduler::SystemZone();
  const std::string& dir = options.data_dir;
  RETURN_IF_ERROR(MakeDirs(dir, 0700).Annotate("data directory"));
  ::chmod(dir.c_str(), 0700);  // the control socket is guarded by this directory's mode
  impl->lock = Fd(::open((dir + "/custosd.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!impl->lock.valid()) return ErrnoStatus(dir + "/custosd.lock", errno);
  if (::flock(impl->lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return BusyError("another custosd is serving " + dir);
  }
  // The appliance's long-term CURVE key pair.
  std::string key_path = dir + "/appliance.key";
  auto existing = ReadFile(key_path);
  if (existing.ok()) {
    std::string text(existing->begin(), existing->end());
    size_t nl = text.find('\n');
    if (nl != 40 || text.size() < 81) return CorruptionError(key_path + ": not a CURVE key pair");
    impl->public_z85 = text.substr(0, 40);
    impl->secret_z85 = text.substr(41, 40);
  } else {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) return UnavailableError("libzmq has no CURVE support");
    impl->public_z85 = pub;
    impl->secret_z85 = sec;
    std::string text = impl->public_z85 + "\n" + impl->secret_z85 + "\n";
    RETURN_IF_ERROR(WriteFileAtomic(key_path, AsBytes(text), 0600, Overwrite::kNo));
  }
  ASSIGN_OR_RETURN(impl->reg, Registry::Open(dir + "/registry.db"));
  ASSIGN_OR_RETURN(impl->repo, OpenRepository(options));
  {
    evidence::StoreOptions so;
    so.tsa_url = options.tsa_url;
    so.tsa_ca_file = options.tsa_ca_file;
    auto cs = evidence::CaseStore::Open(dir + "/evidence", impl->repo->signing_key(), so);
    if (!cs.ok()) return cs.status().Annotate("evidence store");
    impl->cases = std::move(cs).value();
  }
  // Before anything that may alert (slots missed while custosd was off are
  // recorded as the schedules load).
  if (options.alerts.any()) {
    impl->alerter = std::make_unique<scheduler::Alerter>(options.alerts, [](const std::string& line) { Log(line); });
  }
  // Backups a previous daemon left running wait for their agents to resume them.
  impl->AdoptJobs();
  Impl* raw = impl.get();
  impl->sched = std::make_unique<scheduler::Scheduler>(
      impl->sched_runner, impl->sched_store, [raw](const scheduler::Event& e) { raw->OnSchedulerEvent(e); },
      options.per_agent_jobs, std::chrono::seconds(20));  // agents reconnect within a few seconds of a restart
  RETURN_IF_ERROR(impl->LoadSchedules().Annotate("schedules"));
  try {
    impl->zap.bind("inproc://zeromq.zap.01");
    impl->router.set(zmq::sockopt::curve_server, 1);
    impl->router.set(zmq::sockopt::curve_secretkey, impl->secret_z85);
    impl->router.set(zmq::sockopt::zap_domain, "custos");
    impl->router.set(zmq::sockopt::router_mandatory, 1);
    impl->router.set(zmq::sockopt::maxmsgsize, int64_t(32) << 20);
    impl->router.set(zmq::sockopt::linger, 0);
    impl->router.set(zmq::sockopt::heartbeat_ivl, options.heartbeat_ms);
    impl->router.set(zmq::sockopt::heartbeat_timeout, options.heartbeat_ms * 3);
    impl->router.bind(options.listen);
    impl->bound = impl->router.get(zmq::sockopt::last_endpoint);
    ::unlink((dir + "/control.sock").c_str());  // a stale socket file of a crashed daemon (we hold the lock)
    impl->control.set(zmq::sockopt::linger, 0);
    impl->control.bind(ControlEndpoint(dir));
  } catch (const zmq::error_t& e) {
    return UnavailableError("cannot listen on " + options.listen + ": " + e.what());
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Run() {
  auto& s = *impl_;
  Log("serving agents on " + s.bound + ", appliance key " + s.public_z85);
  while (!stop_.load()) {
    zmq::pollitem_t items[] = {{s.zap.handle(), 0, ZMQ_POLLIN, 0},
                               {s.router.handle(), 0, ZMQ_POLLIN, 0},
                               // not read while an alert-test reply is owed
                               {s.control.handle(), 0, short(s.alert_test.valid() ? 0 : ZMQ_POLLIN), 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(200));
      if (items[0].revents & ZMQ_POLLIN) s.HandleZap();
      if (items[1].revents & ZMQ_POLLIN) s.HandleAgent();
      if (items[2].revents & ZMQ_POLLIN) s.HandleControl();
      s.FinishAlertTest();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return IOError(std::string("zmq: ") + e.what());
    }
    // Sessions silent for three heartbeats are gone (the agent reconnects
    // and greets again).
    int64_t now = NowMs();
    for (auto it = s.peers.begin(); it != s.peers.end();) {
      if (now - it->second.last_seen_ms > 3 * s.opts.heartbeat_ms) {
        for (auto jt = s.jobs.begin(); jt != s.jobs.end();) {
          Job& j = (jt++)->second;  // EndJob erases it
          if (j.peer == it->first) s.DetachJob(j, "the agent went silent");
        }
        it = s.peers.erase(it);
      } else {
        ++it;
      }
    }
    s.ExpireDetachedJobs();
    s.PollLocalJobs();
    s.sched->Tick(scheduler::Now());
  }
  s.SaveJobsForResume();
  if (s.alert_test.valid()) s.ReplyControl(s.alert_test.get());
  // Alerts still queued get a few seconds (a systemd stop waits 90 s in all).
  if (s.alerter) s.alerter->Stop(std::chrono::seconds(10));
  ::unlink((s.opts.data_dir + "/control.sock").c_str());
  Log("stopped");
  return Status::Ok();
}

Result<std::string> ControlRequest(const std::string& data_dir, const std::string& request_json, int timeout_ms) {
  struct stat st;
  if (::stat((data_dir + "/control.sock").c_str(), &st) != 0) {
    return UnavailableError("no custosd is running for " + data_dir + " (no control socket)");
  }
  try {
    zmq::context_t ctx(1);
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.set(zmq::sockopt::linger, 0);
    req.connect(ControlEndpoint(data_dir));
    req.send(zmq::buffer(request_json), zmq::send_flags::none);
    zmq::pollitem_t items[] = {{req.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(timeout_ms));
    if (!(items[0].revents & ZMQ_POLLIN)) {
      return UnavailableError("custosd at " + data_dir + " did not answer within " + std::to_string(timeout_ms) + " ms");
    }
    zmq::message_t reply;
    if (!req.recv(reply, zmq::recv_flags::none)) return UnavailableError("no reply from custosd");
    return reply.to_string();
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("control socket: ") + e.what());
  }
}

}  // namespace custos::appliance
