#include "protocol/message.h"

#include <algorithm>
#include <cstdlib>
#include <map>

namespace custos::protocol {

using nlohmann::json;

namespace {

enum class Kind { kString, kUint, kObject, kArray, kStringArray, kIdArray, kId, kEnum, kBlobList, kEventList };

struct Field {
  const char* name;
  Kind kind;
  std::vector<std::string> values = {};  // kEnum
};

struct Command {
  Direction from;
  size_t payloads;
  std::vector<Field> fields;  // all required; no others allowed
};

const std::map<std::string, Command, std::less<>>& Commands() {
  using K = Kind;
  using D = Direction;
  static const std::map<std::string, Command, std::less<>> commands = {
      {"ENROL",
       {D::kAgentToAppliance, 0, {{"secret", K::kString}, {"key", K::kId}, {"host", K::kString}, {"version", K::kString}}}},
      {"ENROLLED", {D::kApplianceToAgent, 0, {{"name", K::kString}}}},
      {"HELLO",
       {D::kAgentToAppliance,
        0,
        {{"protocol", K::kUint},
         {"version", K::kString},
         {"host", K::kString},
         {"os", K::kString},
         {"resume", K::kStringArray}}}},
      {"WELCOME",
       {D::kApplianceToAgent,
        0,
        {{"heartbeat_ms", K::kUint}, {"credit", K::kUint}, {"time", K::kString}, {"jobs", K::kObject}}}},
      {"PING", {D::kBoth, 0, {}}},
      {"PONG", {D::kBoth, 0, {}}},
      {"JOB",
       {D::kApplianceToAgent,
        0,
        {{"job", K::kString}, {"kind", K::kEnum, {"backup", "restore", "collect"}}, {"params", K::kObject}}}},
      {"ACCEPT", {D::kAgentToAppliance, 0, {{"job", K::kString}}}},
      {"HAVE", {D::kAgentToAppliance, 0, {{"job", K::kString}, {"ids", K::kIdArray}}}},
      {"LACK", {D::kApplianceToAgent, 0, {{"job", K::kString}, {"ids", K::kIdArray}}}},
      {"WANT", {D::kAgentToAppliance, 0, {{"job", K::kString}, {"ids", K::kIdArray}}}},
      {"BLOB", {D::kBoth, 1, {{"job", K::kString}, {"blobs", K::kBlobList}}}},
      {"EVIDENCE", {D::kAgentToAppliance, 1, {{"job", K::kString}, {"n", K::kUint}, {"events", K::kEventList}}}},
      {"REDO", {D::kApplianceToAgent, 0, {{"job", K::kString}, {"items", K::kArray}}}},
      {"CREDIT", {D::kBoth, 0, {{"job", K::kString}, {"bytes", K::kUint}}}},
      {"COMMIT",
       {D::kAgentToAppliance,
        0,
        {{"job", K::kString}, {"tree", K::kId}, {"atimes", K::kIdArray}, {"paths", K::kStringArray}, {"summary", K::kObject}}}},
      {"DONE", {D::kApplianceToAgent, 0, {{"job", K::kString}, {"snapshot", K::kId}}}},
      {"RESULT",
       {D::kAgentToAppliance, 0, {{"job", K::kString}, {"counts", K::kObject}, {"failures", K::kArray}}}},
      {"PROGRESS", {D::kAgentToAppliance, 0, {{"job", K::kString}, {"files", K::kUint}, {"bytes", K::kUint}}}},
      {"ERROR", {D::kBoth, 0, {{"code", K::kUint}, {"reason", K::kString}, {"ref", K::kUint}}}},
  };
  return commands;
}

bool FieldOk(const Field& f, const json& v, std::string* why) {
  switch (f.kind) {
    case Kind::kString:
      if (v.is_string()) return true;
      *why = "must be a string";
      return false;
    case Kind::kUint:
      if (v.is_number_unsigned()) return true;
      *why = "must be a non-negative integer";
      return false;
    case Kind::kObject:
      if (v.is_object()) return true;
      *why = "must be an object";
      return false;
    case Kind::kArray:
      if (v.is_array()) return true;
      *why = "must be an array";
      return false;
    case Kind::kStringArray:
      if (v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); })) return true;
      *why = "must be an array of strings";
      return false;
    case Kind::kIdArray:
      if (!v.is_array()) {
        *why = "must be an array of blob IDs";
        return false;
      }
      if (v.size() > kMaxIdsPerHave) {
        *why = "holds more than " + std::to_string(kMaxIdsPerHave) + " IDs";
        return false;
      }
      for (const auto& e : v) {
        if (!e.is_string() || !IsHexId(e.get_ref<const std::string&>())) {
          *why = "must hold blob IDs (64 lowercase hex digits)";
          return false;
        }
      }
      return true;
    case Kind::kBlobList: {
      // [{id, kind, compression, size, length}, ...]: 1 to kMaxBlobsPerMessage
      // entries, exactly these keys (the payload check is in Decode).
      if (!v.is_array() || v.empty() || v.size() > kMaxBlobsPerMessage) {
        *why = "must be an array of 1 to " + std::to_string(kMaxBlobsPerMessage) + " blob entries";
        return false;
      }
      for (const auto& e : v) {
        auto str = [&](const char* k) {
          auto it = e.find(k);
          return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
        };
        auto uint = [&](const char* k) {
          auto it = e.find(k);
          return it != e.end() && it->is_number_unsigned();
        };
        std::string kind = str("kind"), comp = str("compression");
        if (!e.is_object() || e.size() != 5 || !IsHexId(str("id")) || (kind != "data" && kind != "tree") ||
            (comp != "none" && comp != "zstd") || !uint("size") || !uint("length")) {
          *why = "entries must be {id, kind (data|tree), compression (none|zstd), size, length}";
          return false;
        }
      }
      return true;
    }
    case Kind::kEventList:
      // [{e, ...}, ...]: 1 to kMaxEventsPerMessage objects with a string
      // "e"; each event's own members are checked by the appliance
      // (appliance/collect_job.h); data events' lengths cut the payload.
      if (!v.is_array() || v.empty() || v.size() > kMaxEventsPerMessage) {
        *why = "must be an array of 1 to " + std::to_string(kMaxEventsPerMessage) + " events";
        return false;
      }
      for (const auto& e : v) {
        auto it = e.is_object() ? e.find("e") : e.end();
        if (!e.is_object() || it == e.end() || !it->is_string()) {
          *why = "must hold objects with a string \"e\"";
          return false;
        }
        if (*it == "data") {
          auto len = e.find("length");
          if (e.size() != 2 || len == e.end() || !len->is_number_unsigned()) {
            *why = "data events must be {e, length}";
            return false;
          }
        }
      }
      return true;
    case Kind::kId:
      if (v.is_string() && IsHexId(v.get_ref<const std::string&>())) return true;
      *why = "must be 64 lowercase hex digits (a blob ID or a public key)";
      return false;
    case Kind::kEnum:
      if (v.is_string() && std::find(f.values.begin(), f.values.end(), v.get<std::string>()) != f.values.end()) {
        return true;
      }
      *why = "must be one of";
      for (const auto& s : f.values) *why += " " + s;
      return false;
  }
  return false;
}

DecodeResult Error(ErrorCode code, std::string reason, bool close = false) {
  DecodeResult r;
  r.code = code;
  r.reason = std::move(reason);
  r.close = close;
  return r;
}

}  // namespace

bool IsHexId(std::string_view s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

namespace {

// Decode's work; `keep_payloads` false checks the payloads without copying
// them (Encode's self-check).
DecodeResult Check(const std::vector<std::string_view>& frames, Direction from, bool keep_payloads) {
  if (frames.empty() || frames[0] != kVersion) {
    return Error(ErrorCode::kMalformed, "not a CAP1 message (first frame must be \"CAP1\")", true);
  }
  if (frames.size() < 2) return Error(ErrorCode::kMalformed, "no header frame");
  std::string_view text = frames[1];
  if (text.size() > kMaxHeader) {
    return Error(ErrorCode::kTooLarge, "header of " + std::to_string(text.size()) + " octets (at most " +
                                           std::to_string(kMaxHeader) + ")");
  }
  json header = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return Error(ErrorCode::kMalformed, "header is not a JSON object (or not UTF-8)");
  }
  auto type_it = header.find("type");
  auto seq_it = header.find("seq");
  if (type_it == header.end() || !type_it->is_string()) return Error(ErrorCode::kMalformed, "header lacks \"type\"");
  if (seq_it == header.end() || !seq_it->is_number_unsigned() || seq_it->get<uint64_t>() == 0) {
    return Error(ErrorCode::kMalformed, "header lacks \"seq\" (a positive integer)");
  }
  std::string type = type_it->get<std::string>();
  const auto& commands = Commands();
  auto cmd = commands.find(type);
  if (cmd == commands.end()) {
    std::string shown = type.size() > 32 ? type.substr(0, 32) + "..." : type;
    return Error(ErrorCode::kMalformed, "unknown command \"" + shown + "\"");
  }
  const Command& c = cmd->second;
  if (c.from != Direction::kBoth && c.from != from) {
    return Error(ErrorCode::kForbidden, type + " may not be sent by this side");
  }
  for (const auto& f : c.fields) {
    auto it = header.find(f.name);
    if (it == header.end()) return Error(ErrorCode::kMalformed, type + ": missing field \"" + f.name + "\"");
    std::string why;
    if (!FieldOk(f, *it, &why)) return Error(ErrorCode::kMalformed, type + ": field \"" + f.name + "\" " + why);
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& k = it.key();
    if (k == "type" || k == "seq") continue;
    bool known = std::any_of(c.fields.begin(), c.fields.end(), [&](const Field& f) { return k == f.name; });
    if (!known) {
      std::string shown = k.size() > 32 ? k.substr(0, 32) + "..." : k;
      return Error(ErrorCode::kMalformed, type + ": unknown field \"" + shown + "\"");
    }
  }
  size_t payloads = frames.size() - 2;
  if (payloads != c.payloads) {
    return Error(ErrorCode::kMalformed, type + " takes " + std::to_string(c.payloads) + " payload frame(s), got " +
                                            std::to_string(payloads));
  }
  DecodeResult r;
  for (size_t i = 2; i < frames.size(); ++i) {
    if (frames[i].size() > kMaxPayload) {
      return Error(ErrorCode::kTooLarge, type + ": payload of " + std::to_string(frames[i].size()) +
                                             " octets (at most " + std::to_string(kMaxPayload) + ")");
    }
    if (keep_payloads) r.message.payloads.emplace_back(frames[i]);
  }
  if (type == "BLOB") {
    // The entries' lengths cut the payload exactly.
    uint64_t total = 0;
    for (const auto& e : header["blobs"]) {
      uint64_t n = e["length"].get<uint64_t>();
      if (n > kMaxPayload || (total += n) > kMaxPayload) return Error(ErrorCode::kMalformed, "BLOB: lengths too large");
    }
    if (total != frames[2].size()) {
      return Error(ErrorCode::kMalformed, "BLOB: the entries' lengths add up to " + std::to_string(total) +
                                              ", the payload has " + std::to_string(frames[2].size()) + " octets");
    }
  }
  if (type == "EVIDENCE") {
    uint64_t total = 0;
    for (const auto& e : header["events"]) {
      if (e["e"] != "data") continue;
      uint64_t n = e["length"].get<uint64_t>();
      if (n > kMaxPayload || (total += n) > kMaxPayload) {
        return Error(ErrorCode::kMalformed, "EVIDENCE: lengths too large");
      }
    }
    if (total != frames[2].size()) {
      return Error(ErrorCode::kMalformed, "EVIDENCE: the data events' lengths add up to " + std::to_string(total) +
                                              ", the payload has " + std::to_string(frames[2].size()) + " octets");
    }
  }
  r.ok = true;
  r.message.type = std::move(type);
  r.message.seq = seq_it->get<uint64_t>();
  r.message.header = std::move(header);
  return r;
}

}  // namespace

DecodeResult Decode(const std::vector<std::string_view>& frames, Direction from) { return Check(frames, from, true); }

Message Make(const std::string& type, uint64_t seq, json fields, std::vector<std::string> payloads) {
  Message m;
  m.type = type;
  m.seq = seq;
  m.header = fields.is_object() ? std::move(fields) : json::object();
  m.header["type"] = type;
  m.header["seq"] = seq;
  m.payloads = std::move(payloads);
  return m;
}

Message MakeError(uint64_t seq, ErrorCode code, const std::string& reason, uint64_t ref) {
  return Make("ERROR", seq, json{{"code", int(code)}, {"reason", reason}, {"ref", ref}});
}

std::vector<std::string> Encode(const Message& m) {
  json h = m.header.is_object() ? m.header : json::object();
  h["type"] = m.type;
  h["seq"] = m.seq;
  std::vector<std::string> frames;
  frames.emplace_back(kVersion);
  frames.push_back(h.dump(-1, ' ', false, json::error_handler_t::replace));
  for (const auto& p : m.payloads) frames.push_back(p);
  // What we send must be what we accept: a header the grammar refuses is a
  // bug in the caller.
  std::vector<std::string_view> views(frames.begin(), frames.end());
  const auto& commands = Commands();
  auto c = commands.find(m.type);
  if (c == commands.end()) std::abort();
  Direction from = c->second.from == Direction::kBoth ? Direction::kAgentToAppliance : c->second.from;
  DecodeResult check = Check(views, from, /*keep_payloads=*/false);
  if (!check.ok && check.code != ErrorCode::kTooLarge) std::abort();
  return frames;
}

}  // namespace custos::protocol
