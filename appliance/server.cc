#include "appliance/server.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "appliance/registry.h"
#include "base/bytes.h"
#include "base/file_util.h"
#include "base/version.h"
#include "protocol/message.h"

namespace custos::appliance {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

constexpr uint64_t kInitialCredit = 64u << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string NowUtc() {
  time_t t = ::time(nullptr);
  tm g;
  gmtime_r(&t, &g);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &g);
  return buf;
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
  int64_t last_seen_ms = 0;
};

}  // namespace

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
  std::string public_z85, secret_z85, bound;
  Fd lock;
  std::map<std::string, Peer> peers;  // by ROUTER routing id

  void Send(const std::string& id, Peer& p, cap::Message m) {
    m.seq = ++p.out_seq;
    auto frames = cap::Encode(m);
    std::vector<zmq::const_buffer> out;
    out.push_back(zmq::buffer(id));
    for (const auto& f : frames) out.push_back(zmq::buffer(f));
    try {
      zmq::send_multipart(router, out, zmq::send_flags::dontwait);
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
      status = "200";
      text = "OK";
      // Unknown keys may connect to enrol, and for nothing else (checked per message).
      user = reg->Admitted(key) ? "agent:" + hex : "enrol:" + hex;
    }
    std::string request_id = str(1);  // the buffers below point into these strings: keep them alive
    std::vector<zmq::const_buffer> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(status),
                                            zmq::buffer(text),        zmq::buffer(user),        zmq::str_buffer("")};
    zmq::send_multipart(zap, reply);
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
      Status st = reg->Seen(p.agent, m.header["version"], m.header["host"]);
      if (!st.ok()) Log(st.ToString());
      Log("agent " + p.agent + " connected (" + m.header["host"].get<std::string>() + ", " +
          m.header["version"].get<std::string>() + ")");
      Send(id, p, cap::Make("WELCOME", 0, {{"heartbeat_ms", opts.heartbeat_ms}, {"credit", kInitialCredit}, {"time", NowUtc()}}));
      return;
    }
    if (m.type == "PING") return Send(id, p, cap::Make("PONG", 0));
    if (m.type == "PONG") return;
    if (m.header.contains("job")) {
      return SendError(id, p, cap::ErrorCode::kUnknownJob, "no job " + m.header["job"].dump(), m.seq);
    }
    SendError(id, p, cap::ErrorCode::kOutOfOrder, m.type + " is not expected now", m.seq);
  }

  void HandleEnrol(const std::string& id, Peer& p, const cap::Message& m, const std::string& key_hex) {
    if (m.type != "ENROL") {
      SendError(id, p, cap::ErrorCode::kUnauthorized, "not enrolled: only ENROL is accepted from this key", m.seq);
      return;
    }
    auto key = KeyFromHex(key_hex);
    auto secret_bytes = FromHex(m.header["secret"].get<std::string>());
    if (!key || !secret_bytes || secret_bytes->size() != 16) {
      SendError(id, p, cap::ErrorCode::kUnauthorized, "bad enrolment secret", m.seq);
      return;
    }
    std::array<uint8_t, 16> secret;
    std::copy(secret_bytes->begin(), secret_bytes->end(), secret.begin());
    auto name = reg->Enrol(secret, *key, m.header["host"], m.header["version"]);
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
    return json{{"ok", true}, {"version", kCustosVersion}, {"endpoint", bound}, {"appliance_key", public_z85},
                {"agents", agents}, {"jobs", json::array()}};
  }

  json HandleControlRequest(const std::string& text) {
    json req = json::parse(text, nullptr, false);
    if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
      return json{{"ok", false}, {"error", "control request is not a JSON object with \"cmd\""}};
    }
    std::string cmd = req["cmd"];
    std::string name = req.value("name", "");
    if (cmd == "status") return StatusJson();
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
    zmq::message_t req;
    if (!control.recv(req, zmq::recv_flags::dontwait)) return;
    json reply = HandleControlRequest(req.to_string());
    control.send(zmq::buffer(reply.dump(-1, ' ', false, json::error_handler_t::replace)), zmq::send_flags::none);
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::string Server::endpoint() const { return impl_->bound; }
std::string Server::public_key_z85() const { return impl_->public_z85; }

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
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
                               {s.control.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(200));
      if (items[0].revents & ZMQ_POLLIN) s.HandleZap();
      if (items[1].revents & ZMQ_POLLIN) s.HandleAgent();
      if (items[2].revents & ZMQ_POLLIN) s.HandleControl();
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      return IOError(std::string("zmq: ") + e.what());
    }
    // Sessions silent for three heartbeats are gone (the agent reconnects
    // and greets again).
    int64_t now = NowMs();
    for (auto it = s.peers.begin(); it != s.peers.end();) {
      it = now - it->second.last_seen_ms > 3 * s.opts.heartbeat_ms ? s.peers.erase(it) : std::next(it);
    }
  }
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
