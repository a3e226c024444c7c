#include "agent/agent.h"

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "agent/remote_collect.h"
#include "agent/remote_source.h"
#include "agent/remote_target.h"
#include "appliance/registry.h"
#include "base/bytes.h"
#include "base/file_util.h"
#include "base/version.h"
#include "protocol/message.h"
#include "snapshot/archiver.h"

namespace custos::agent {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

struct State {
  std::string endpoint, appliance_key, name, public_key, secret_key;
};

std::string HostName() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

Status SaveState(const std::string& dir, const State& s) {
  RETURN_IF_ERROR(MakeDirs(dir, 0700));
  std::string keys = s.public_key + "\n" + s.secret_key + "\n";
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/agent.key", AsBytes(keys), 0600, Overwrite::kYes));
  std::string info =
      json{{"endpoint", s.endpoint}, {"appliance_key", s.appliance_key}, {"name", s.name}}.dump(2) + "\n";
  return WriteFileAtomic(dir + "/appliance.json", AsBytes(info), 0600, Overwrite::kYes);
}

Result<State> LoadState(const std::string& dir) {
  auto keys = ReadFile(dir + "/agent.key");
  auto info = ReadFile(dir + "/appliance.json");
  if (!keys.ok() || !info.ok()) {
    return NotFoundError(dir + ": not enrolled (run custos-agent enroll --appliance ENDPOINT --token TOKEN)");
  }
  State s;
  std::string k(keys->begin(), keys->end());
  if (k.size() < 82 || k[40] != '\n') return CorruptionError(dir + "/agent.key: damaged");
  s.public_key = k.substr(0, 40);
  s.secret_key = k.substr(41, 40);
  json j = json::parse(info->begin(), info->end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j["endpoint"].is_string() || !j["appliance_key"].is_string() ||
      !j["name"].is_string() || j["appliance_key"].get<std::string>().size() != 40) {
    return CorruptionError(dir + "/appliance.json: damaged");
  }
  s.endpoint = j["endpoint"];
  s.appliance_key = j["appliance_key"];
  s.name = j["name"];
  return s;
}

// A connection to the appliance: the DEALER socket, and a monitor of it that
// reports the appliance refusing our key during the CURVE handshake (its
// ZAP handler answers 400 for a key that is neither enrolled nor a pending
// token's: revoked, or a used, expired or mistyped token). Without it such
// a refusal looks like silence: libzmq just dials again.
struct Link {
  std::unique_ptr<zmq::socket_t> monitor;  // declared first: closed last
  std::unique_ptr<zmq::socket_t> sock;
};

Link Dial(zmq::context_t& ctx, const State& s) {
  static std::atomic<unsigned> serial{0};
  Link l;
  l.sock = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
  l.sock->set(zmq::sockopt::curve_serverkey, s.appliance_key);
  l.sock->set(zmq::sockopt::curve_publickey, s.public_key);
  l.sock->set(zmq::sockopt::curve_secretkey, s.secret_key);
  l.sock->set(zmq::sockopt::linger, 0);
  l.sock->set(zmq::sockopt::maxmsgsize, int64_t(32) << 20);
  std::string addr = "inproc://custos-agent-monitor-" + std::to_string(serial++);
  if (zmq_socket_monitor(l.sock->handle(), addr.c_str(), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
    l.monitor = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::pair);
    l.monitor->set(zmq::sockopt::linger, 0);
    l.monitor->connect(addr);
  }
  l.sock->connect(s.endpoint);  // after the monitor, so that no event is missed
  return l;
}

// BLOBs in flight (see RemoteTarget::Pump).
constexpr int kBlobSlots = 64;

// False when the message could not be queued (the queue to the appliance
// is full): it was not sent, and the session's numbering is broken.
bool SendMsg(zmq::socket_t& sock, const cap::Message& m) {
  auto frames = cap::Encode(m);
  std::vector<zmq::const_buffer> out;
  for (const auto& f : frames) out.push_back(zmq::buffer(f));
  return zmq::send_multipart(sock, out, zmq::send_flags::dontwait).has_value();
}

// Waits up to `ms` for one message; an empty result on timeout or when the
// appliance refused our key at the handshake (then *refused is set), a
// message with ok=false on a malformed one.
std::optional<cap::DecodeResult> Receive(Link& link, int ms, bool* refused) {
  zmq::pollitem_t items[] = {{link.sock->handle(), 0, ZMQ_POLLIN, 0},
                             {link.monitor ? link.monitor->handle() : nullptr, 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, link.monitor ? 2 : 1, std::chrono::milliseconds(ms));
  if (link.monitor && (items[1].revents & ZMQ_POLLIN)) {
    std::vector<zmq::message_t> ev;  // frame 1: u16 event, u32 value; frame 2: the endpoint
    if (zmq::recv_multipart(*link.monitor, std::back_inserter(ev), zmq::recv_flags::dontwait) && !ev.empty() &&
        ev[0].size() >= 2) {
      uint16_t event;
      std::memcpy(&event, ev[0].data(), 2);
      if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) *refused = true;
    }
  }
  if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  std::vector<zmq::message_t> msg;
  if (!zmq::recv_multipart(*link.sock, std::back_inserter(msg), zmq::recv_flags::dontwait)) return std::nullopt;
  std::vector<std::string_view> frames;
  for (auto& f : msg) frames.emplace_back(static_cast<const char*>(f.data()), f.size());
  return cap::Decode(frames, cap::Direction::kApplianceToAgent);
}

// One backup job: the archiver on its own thread, feeding a RemoteTarget
// that the session thread drains.
struct BackupJob {
  std::string id;
  uint64_t job_seq = 0;  // the appliance's JOB message, for ERROR refs
  std::unique_ptr<RemoteTarget> target;
  std::thread thread;
  std::atomic<bool> finished{false};
  Status status;  // set before finished
  std::atomic<uint64_t> files{0}, bytes{0};
  std::chrono::steady_clock::time_point last_progress;

  // What starts (and restarts) the archiver.
  snapshot::BackupOptions options;
  Key32 chunker_key{};
  snapshot::ChunkerParams chunker;
  int zstd_level = 0;
  std::string cache_dir;
  // Sessions that broke since the job last made progress (a CREDIT, LACK
  // or DONE): a job that cannot get through is given up after a few.
  int breaks = 0;

  // Runs the archiver on its own thread, into a fresh target.
  void Start() {
    target = std::make_unique<RemoteTarget>(id, chunker_key, chunker, zstd_level, cache_dir);
    finished = false;
    options.progress = [this](const snapshot::BackupProgress& p) {
      files = p.files_done;
      bytes = p.bytes_done;
    };
    thread = std::thread([this] {
      auto res = snapshot::Backup(*target, options);
      status = res.ok() ? Status::Ok() : res.status();
      finished = true;
    });
  }

  // Ends the job from the session's side: whatever the archiver waits on
  // returns `why`, and its thread is joined.
  void Abandon(const std::string& why, bool drop_cache = false) {
    target->Fail(why, drop_cache);
    if (thread.joinable()) thread.join();
  }
};

// Sessions a job may lose in a row (without progress) before the agent
// gives it up.
constexpr int kMaxBreaks = 5;

// What WELCOME.jobs says about job `id` (cap.md section 7): its "action", or
// "gone" when it is missing or malformed.
std::string ResumeAction(const json& jobs, const std::string& id) {
  if (!jobs.is_object() || !jobs.contains(id) || !jobs[id].is_object()) return "gone";
  const json& a = jobs[id].value("action", json());
  return a.is_string() ? a.get<std::string>() : "gone";
}

// Parses JOB params for a backup; InvalidArgument names what is wrong.
Status ParseBackupParams(const json& p, snapshot::BackupOptions* o, Key32* chunker_key,
                         snapshot::ChunkerParams* cp, int* zstd_level) {
  try {
    for (const auto& x : p.at("paths")) o->paths.push_back(x.get<std::string>());
    if (o->paths.empty()) return InvalidArgumentError("no paths");
    if (p.contains("excludes")) o->excludes = p.at("excludes").get<std::vector<std::string>>();
    o->one_file_system = p.value("one_file_system", false);
    o->exclude_caches = p.value("exclude_caches", false);
    const json& c = p.at("chunker");
    auto key = FromHex(c.at("key").get<std::string>());
    if (!key || key->size() != chunker_key->size()) return InvalidArgumentError("bad chunker key");
    std::copy(key->begin(), key->end(), chunker_key->begin());
    cp->min = c.at("min").get<uint32_t>();
    cp->avg = c.at("avg").get<uint32_t>();
    cp->max = c.at("max").get<uint32_t>();
    if (cp->min == 0 || cp->min > cp->avg || cp->avg > cp->max || cp->max > (8u << 20)) {
      return InvalidArgumentError("bad chunker parameters");
    }
    *zstd_level = p.at("zstd_level").get<int>();
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("bad backup parameters: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace

std::string DefaultStateDir() {
  if (const char* d = std::getenv("CUSTOS_AGENT_DIR"); d && *d) return d;
  if (::geteuid() == 0) return "/var/lib/custos-agent";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.local/state/custos-agent";
}

Result<EnrolResult> Enrol(const std::string& endpoint, const std::string& token, const std::string& state_dir,
                          int timeout_ms) {
  struct stat st;
  if (::stat((state_dir + "/agent.key").c_str(), &st) == 0) {
    return AlreadyExistsError(state_dir + " already holds an enrolment (remove it to enrol again)");
  }
  appliance::CurveKey appliance_pub;
  std::array<uint8_t, 16> secret;
  RETURN_IF_ERROR(appliance::ParseToken(token, &appliance_pub, &secret));
  char z85[41];
  zmq_z85_encode(z85, appliance_pub.data(), appliance_pub.size());
  State s;
  s.endpoint = endpoint;
  s.appliance_key = z85;
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) return UnavailableError("libzmq has no CURVE support");
  s.public_key = pub;
  s.secret_key = sec;
  // The appliance admits only enrolled keys and the enrolment key pair of
  // a pending token (cap.md section 4): dial with that pair, and send the
  // new long-term public key in ENROL.
  appliance::CurveKey token_pub, token_sec;
  appliance::EnrolKeyPair(secret, &token_pub, &token_sec);
  State dial = s;
  char tpub[41], tsec[41];
  zmq_z85_encode(tpub, token_pub.data(), token_pub.size());
  zmq_z85_encode(tsec, token_sec.data(), token_sec.size());
  SecureWipe(token_sec.data(), token_sec.size());
  dial.public_key = tpub;
  dial.secret_key = tsec;
  SecureWipe(tsec, sizeof tsec);
  uint8_t own_pub[32];
  if (!zmq_z85_decode(own_pub, pub)) return UnavailableError("libzmq made a malformed public key");
  try {
    zmq::context_t ctx(1);
    Link link = Dial(ctx, dial);
    SecureWipe(dial.secret_key.data(), dial.secret_key.size());
    zmq::socket_t* sock = link.sock.get();
    SendMsg(*sock, cap::Make("ENROL", 1,
                             {{"secret", ToHex(ByteView(secret.data(), secret.size()))},
                              {"key", ToHex(ByteView(own_pub, sizeof own_pub))},
                              {"host", HostName()},
                              {"version", kCustosVersion}}));
    bool refused = false;  // the monitor reports only refusals: one wait ends at a reply, a refusal or the timeout
    auto r = Receive(link, timeout_ms, &refused);
    if (refused) {
      return UnauthenticatedError("the appliance refused enrolment: the token is unknown there, already used or "
                                  "expired (ask for a new one with `custos agent add`)");
    }
    if (!r) {
      return UnavailableError("no answer from " + endpoint + " within " + std::to_string(timeout_ms / 1000) +
                              " s (is custosd running there, and is the token from this appliance?)");
    }
    if (!r->ok) return UnavailableError("malformed reply from the appliance: " + r->reason);
    const auto& m = r->message;
    if (m.type == "ERROR") return UnauthenticatedError("the appliance refused enrolment: " + m.header["reason"].get<std::string>());
    if (m.type != "ENROLLED") return UnavailableError("unexpected reply " + m.type);
    s.name = m.header["name"];
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("cannot reach the appliance: ") + e.what());
  }
  RETURN_IF_ERROR(SaveState(state_dir, s));
  return EnrolResult{s.name, s.appliance_key};
}

Status Agent::Run(const RunOptions& options) {
  ASSIGN_OR_RETURN(State s, LoadState(options.state_dir));
  auto say = [&](const std::string& what) {
    if (options.on_state) options.on_state(what);
  };
  std::unique_ptr<BackupJob> job;
  struct JobGuard {  // a job thread never outlives Run
    std::unique_ptr<BackupJob>& j;
    ~JobGuard() {
      if (j) j->Abandon("agent stopping");
    }
  } guard{job};
  std::unique_ptr<RestoreRun> restore;  // a restore job (agent/remote_source.h); its destructor joins
  std::unique_ptr<CollectRun> collect;  // an evidence collection (agent/remote_collect.h); likewise
  int collect_breaks = 0, restore_breaks = 0;
  // A restore or collection whose session broke: kept for the next session
  // (Detach), or given up after kMaxBreaks in a row without progress.
  auto detach_run = [&](auto& run, int& breaks, const char* what, const std::string& why) {
    if (!run) return;
    if (++breaks > kMaxBreaks) {
      say(std::string(what) + " job " + run->id() + " given up: " + why);
      run.reset();
    } else {
      run->Detach();
      say(std::string(what) + " job " + run->id() + " waits for the appliance: " + why);
    }
  };
  // WELCOME's verdict on a restore or collection this agent asked to resume.
  auto resume_run = [&](auto& run, const char* what, const json& jobs) {
    if (!run) return;
    if (ResumeAction(jobs, run->id()) == "continue") {
      run->Resumed(1);  // an ERROR about the job now refers to our HELLO
      say(std::string(what) + " job " + run->id() + " continues");
    } else {
      say(std::string(what) + " job " + run->id() + " given up: the appliance no longer runs it");
      run.reset();
    }
  };
  auto busy_with = [&]() -> std::string {
    if (job) return job->id;
    if (restore) return restore->id();
    if (collect) return collect->id();
    return "";
  };
  try {
    zmq::context_t ctx(1);
    int heartbeat_ms = 5000;
    while (!stop_.load()) {
      // One session: dial, greet, then heartbeats until silence or refusal.
      say("connecting to " + s.endpoint);
      Link link = Dial(ctx, s);
      zmq::socket_t* sock = link.sock.get();
      uint64_t seq = 0;
      SendMsg(*sock, cap::Make("HELLO", ++seq,
                               {{"protocol", 1},
                                {"version", kCustosVersion},
                                {"host", HostName()},
                                {"os", "linux"},
                                {"resume", busy_with().empty() ? json::array() : json::array({busy_with()})}}));
      auto last_heard = std::chrono::steady_clock::now();
      auto last_sent = last_heard;
      bool greeted = false;
      uint64_t credit = 0;
      int slots = kBlobSlots;  // BLOBs sent and not yet answered by a CREDIT
      bool send_failed = false;
      auto send = [&](cap::Message m) {
        m.seq = ++seq;
        if (!SendMsg(*sock, m)) send_failed = true;
        last_sent = std::chrono::steady_clock::now();
      };
      auto end_job = [&](const std::string& why, bool drop_cache = false) {
        restore.reset();  // abandons a running restore
        collect.reset();  // and a collection
        if (!job) return;
        job->Abandon(why, drop_cache);
        job.reset();
      };
      // The session is over but the job is not: the next session asks the
      // appliance to continue it (cap.md section 7).
      auto detach_job = [&](const std::string& why) {
        detach_run(restore, restore_breaks, "restore", why);
        detach_run(collect, collect_breaks, "collection", why);
        if (!job) return;
        if (++job->breaks > kMaxBreaks) {
          say("backup job " + job->id + " given up: " + why + " (" + std::to_string(kMaxBreaks) +
              " sessions in a row without progress)");
          end_job(why);
          return;
        }
        job->target->Detach();
        say("backup job " + job->id + " waits for the appliance: " + why);
      };
      while (!stop_.load()) {
        bool refused = false;
        auto r = Receive(link, job || restore || collect ? 5 : 200, &refused);
        auto now = std::chrono::steady_clock::now();
        if (refused) {
          say("refused: the appliance does not admit this agent's key (revoked, or not enrolled there)");
          end_job("refused by the appliance");
          return UnauthenticatedError("the appliance refused this agent: its key is revoked or not enrolled there");
        }
        if (r) {
          last_heard = now;
          if (!r->ok) continue;  // malformed: ignore (the appliance is trusted, but bytes are bytes)
          const auto& m = r->message;
          if (m.type == "WELCOME") {
            greeted = true;
            heartbeat_ms = int(m.header["heartbeat_ms"].get<uint64_t>());
            credit = m.header["credit"].get<uint64_t>();
            say("connected as " + s.name);
            resume_run(restore, "restore", m.header["jobs"]);
            resume_run(collect, "collection", m.header["jobs"]);
            if (job) {
              // What the appliance says about the job this agent was running.
              const json& js = m.header["jobs"];
              json entry = js.contains(job->id) && js[job->id].is_object() ? js[job->id] : json::object();
              std::string action = ResumeAction(js, job->id);
              job->job_seq = 1;  // an ERROR about this job now refers to our HELLO
              if (action == "continue") {
                say("backup job " + job->id + " continues");
              } else if (action == "restart") {
                // The appliance lost what it had not yet written: walk again
                // (the files cache of the last committed snapshot still holds).
                job->Abandon("the appliance restarted");
                job->Start();
                say("backup job " + job->id + " restarts: the appliance lost its state");
              } else if (std::optional<Id> snap;
                         action == "done" && entry.contains("snapshot") && entry["snapshot"].is_string() &&
                         (snap = Id::FromHex(entry["snapshot"].get<std::string>()))) {
                job->target->OnDone(*snap);
                say("backup job " + job->id + " done: snapshot " + snap->Short());
              } else {
                say("backup job " + job->id + " given up: the appliance no longer runs it");
                end_job("the appliance no longer runs the job");
              }
            }
          } else if (m.type == "PING") {
            send(cap::Make("PONG", 0));
          } else if (m.type == "JOB") {
            std::string id = m.header["job"];
            if (!busy_with().empty()) {
              send(cap::MakeError(0, cap::ErrorCode::kOutOfOrder, "busy with job " + busy_with(), m.seq));
            } else if (m.header["kind"] == "collect") {
              auto r = CollectRun::Start(id, m.seq, m.header["params"]);
              if (!r.ok()) {
                send(cap::MakeError(0, cap::ErrorCode::kMalformed, r.status().message(), m.seq));
              } else {
                collect = std::move(r).value();
                collect_breaks = 0;
                send(cap::Make("ACCEPT", 0, {{"job", id}}));
                say("collection job " + id + " started");
              }
            } else if (m.header["kind"] == "restore") {
              auto r = RestoreRun::Start(id, m.seq, m.header["params"]);
              if (!r.ok()) {
                send(cap::MakeError(0, cap::ErrorCode::kMalformed, r.status().message(), m.seq));
              } else {
                restore = std::move(r).value();
                restore_breaks = 0;
                send(cap::Make("ACCEPT", 0, {{"job", id}}));
                say("restore job " + id + " started");
              }
            } else {
              auto j = std::make_unique<BackupJob>();
              Status ps = ParseBackupParams(m.header["params"], &j->options, &j->chunker_key, &j->chunker,
                                            &j->zstd_level);
              if (!ps.ok()) {
                send(cap::MakeError(0, cap::ErrorCode::kMalformed, ps.message(), m.seq));
              } else {
                j->id = id;
                j->job_seq = m.seq;
                j->cache_dir = options.state_dir + "/cache";
                j->last_progress = now;
                j->options.host = HostName();
                j->options.program_version = kCustosVersion;
                j->options.progress_interval_ms = 500;
                send(cap::Make("ACCEPT", 0, {{"job", id}}));
                say("backup job " + id + " started");
                job = std::move(j);
                job->Start();
              }
            }
          } else if ((m.type == "BLOB" || m.type == "LACK") && restore && m.header["job"] == restore->id()) {
            restore->OnMessage(m);
            restore_breaks = 0;
          } else if (m.type == "LACK" && job && m.header["job"] == job->id) {
            job->breaks = 0;
            job->target->OnLack(m.header["ids"]);
          } else if (m.type == "CREDIT") {
            credit += m.header["bytes"].get<uint64_t>();
            slots = std::min(kBlobSlots, slots + 1);
            if (job && m.header["job"] == job->id) {
              job->breaks = 0;
              job->target->OnCredit();
            }
            if (collect && m.header["job"] == collect->id()) {
              collect_breaks = 0;
              collect->OnCredit();
            }
          } else if (m.type == "REDO" && collect && m.header["job"] == collect->id()) {
            collect->OnRedo(m.header["items"]);
          } else if (m.type == "DONE" && job && m.header["job"] == job->id) {
            if (auto snap = Id::FromHex(m.header["snapshot"].get<std::string>())) {
              job->target->OnDone(*snap);
              say("backup job " + job->id + " done: snapshot " + snap->Short());
            }
          } else if (m.type == "ERROR") {
            uint64_t code = m.header["code"];
            std::string reason = m.header["reason"];
            if (code == uint64_t(cap::ErrorCode::kUnauthorized)) {
              say("refused: " + reason);
              end_job("refused: " + reason);
              return UnauthenticatedError("the appliance refused this agent: " + reason);
            }
            say("error " + std::to_string(code) + ": " + reason);
            if (code == uint64_t(cap::ErrorCode::kMalformed) || code == uint64_t(cap::ErrorCode::kOutOfOrder)) {
              // Out of step (the connection was re-established under us, or
              // the appliance restarted): a fresh session greets again and
              // asks to continue the job.
              detach_job("the session with the appliance is out of step");
              break;
            }
            if (job || restore || collect) {
              // The appliance refused the job (its blobs or COMMIT, or it no
              // longer knows it): it may lack what the files cache says.
              end_job("appliance error " + std::to_string(code) + ": " + reason, true);
              continue;
            }
          }
        }
        if (restore && greeted && restore->Pump(send)) {
          say("restore job " + restore->id() + " " + restore->Summary());
          restore.reset();
        }
        if (collect && greeted && collect->Pump(send, &credit, &slots)) {
          say("collection job " + collect->id() + " " + collect->Summary());
          collect.reset();
        }
        if (job && greeted) {
          job->target->Pump(send, &credit, &slots);
          if (now - job->last_progress >= std::chrono::seconds(1)) {
            send(cap::Make("PROGRESS", 0, {{"job", job->id}, {"files", job->files.load()}, {"bytes", job->bytes.load()}}));
            job->last_progress = now;
          }
          if (job->finished) {
            job->thread.join();
            if (!job->status.ok()) {
              say("backup job " + job->id + " failed: " + job->status.ToString());
              send(cap::MakeError(0, cap::ErrorCode::kInternal, "backup failed: " + job->status.message(),
                                  job->job_seq));
            }
            job.reset();
          }
        }
        auto silence = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard).count();
        if (send_failed) {
          say("a message could not be queued to the appliance: starting a fresh session");
          detach_job("a message to the appliance could not be queued");
          break;
        }
        if (silence > 3 * heartbeat_ms) {
          detach_job("connection to the appliance lost");
          break;  // gone: dial again
        }
        if (std::chrono::duration_cast<std::chrono::milliseconds>(now - last_sent).count() >= heartbeat_ms / 2 &&
            greeted) {
          send(cap::Make("PING", 0));
        }
      }
    }
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("zmq: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace custos::agent
