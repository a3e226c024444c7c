#include "appliance/case_control.h"

#include "snapshot/holds.h"
#include "snapshot/manifest.h"

namespace custos::appliance {

using nlohmann::json;

namespace {

json Fail(const Status& s) {
  std::string code = s.code() == Code::kNotFound          ? "not-found"
                     : s.code() == Code::kInvalidArgument ? "invalid"
                     : s.code() == Code::kPermissionDenied ? "denied"
                                                          : "error";
  return json{{"ok", false}, {"error", s.message()}, {"code", code}};
}

json CheckpointJson(const evidence::CheckpointInfo& c) {
  return json{{"size", c.size}, {"root", c.root}, {"time", c.time}, {"file", c.text_file},
              {"timestamped", c.timestamped}, {"record", c.record_seq}};
}

json CaseJson(const evidence::CaseInfo& c) {
  json j = {{"id", c.id},
            {"title", c.title},
            {"reference", c.reference},
            {"detected_at", c.detected_at},
            {"opened_at", c.opened_at},
            {"closed_at", c.closed_at},
            {"state", c.state},
            {"close_reason", c.close_reason},
            {"records", c.records},
            {"items", c.items},
            {"gaps", c.gaps},
            {"held", c.held}};
  if (c.last_checkpoint) j["checkpoint"] = CheckpointJson(*c.last_checkpoint);
  return j;
}


Result<json> Handle(evidence::CaseStore& cases, storage::Repository& repo, const json& req) {
  const std::string cmd = req["cmd"];
  const evidence::Actor by = OperatorActor(req);
  const std::string id = evidence::StringMember(req, "case");
  if (cmd == "case-open") {
    ASSIGN_OR_RETURN(auto c, cases.OpenCase(evidence::StringMember(req, "title"), evidence::StringMember(req, "detected_at"), evidence::StringMember(req, "reference"), by));
    return json{{"ok", true}, {"case", CaseJson(c)}, {"id", c.id}, {"key", cases.KeyFingerprint()}};
  }
  if (cmd == "case-list") {
    ASSIGN_OR_RETURN(auto list, cases.List());
    json out = json::array();
    for (const auto& c : list) out.push_back(CaseJson(c));
    return json{{"ok", true}, {"cases", out}};
  }
  if (cmd == "case-show") {
    ASSIGN_OR_RETURN(auto c, cases.Show(id));
    json out = {{"ok", true}, {"case", CaseJson(c)}, {"key", cases.KeyFingerprint()}};
    // The holds placed for this case, from the repository (their truth).
    json holds = json::array();
    if (auto all = snapshot::ListHolds(repo); all.ok()) {
      for (const auto& h : *all) {
        if (h.case_id != id) continue;
        holds.push_back(json{{"hold", h.id.Hex()}, {"snapshot", h.snapshot.Hex()}, {"reason", h.reason},
                             {"released", h.released}, {"time", h.time}});
      }
    }
    out["holds"] = holds;
    return out;
  }
  if (cmd == "case-close") {
    RETURN_IF_ERROR(cases.Close(id, evidence::StringMember(req, "reason"), by));
    ASSIGN_OR_RETURN(auto c, cases.Show(id));
    return json{{"ok", true}, {"case", CaseJson(c)}};
  }
  if (cmd == "case-note") {
    std::optional<std::string> attach;
    if (std::string a = evidence::StringMember(req, "attach"); !a.empty()) attach = a;
    ASSIGN_OR_RETURN(uint64_t seq, cases.Note(id, evidence::StringMember(req, "text"), attach, by));
    return json{{"ok", true}, {"case", id}, {"record", seq}};
  }
  if (cmd == "case-checkpoint") {
    ASSIGN_OR_RETURN(auto c, cases.Checkpoint(id, by));
    return json{{"ok", true}, {"case", id}, {"checkpoint", CheckpointJson(c)}};
  }
  if (cmd == "case-export") {
    std::string out = evidence::StringMember(req, "output");
    if (out.empty() || out[0] != '/') return InvalidArgumentError("case export: the output path must be absolute");
    RETURN_IF_ERROR(cases.Export(id, out, by));
    ASSIGN_OR_RETURN(auto c, cases.Show(id));
    return json{{"ok", true}, {"case", CaseJson(c)}, {"output", out}, {"key", cases.KeyFingerprint()}};
  }
  if (cmd == "case-hold") {
    if (!req.contains("snapshots") || !req["snapshots"].is_array() || req["snapshots"].empty()) {
      return InvalidArgumentError("case hold: name at least one snapshot");
    }
    ASSIGN_OR_RETURN(auto c, cases.Show(id));  // an unknown case places no hold
    (void)c;
    std::string reason = evidence::StringMember(req, "reason");
    json placed = json::array();
    for (const auto& s : req["snapshots"]) {
      if (!s.is_string()) return InvalidArgumentError("case hold: snapshots must be strings");
      ASSIGN_OR_RETURN(json h, HoldForCase(cases, repo, id, s.get<std::string>(),
                                           reason.empty() ? "evidence for case " + id : reason, by));
      placed.push_back(std::move(h));
    }
    return json{{"ok", true}, {"case", id}, {"holds", placed}};
  }
  if (cmd == "case-release") {
    ASSIGN_OR_RETURN(auto c, cases.Show(id));
    (void)c;
    std::string hold = evidence::StringMember(req, "hold");
    // Only this case's holds are released through it.
    ASSIGN_OR_RETURN(auto all, snapshot::ListHolds(repo));
    const snapshot::Hold* match = nullptr;
    for (const auto& h : all) {
      if (h.case_id == id && !h.released && !hold.empty() && h.id.Hex().rfind(hold, 0) == 0) {
        if (match) return InvalidArgumentError("case release: hold prefix " + hold + " is ambiguous");
        match = &h;
      }
    }
    if (!match) return NotFoundError("case release: no active hold " + hold + " of case " + id);
    std::string reason = evidence::StringMember(req, "reason");
    if (reason.empty()) return InvalidArgumentError("case release: give a --reason (it goes into the ledger)");
    storage::Actor who = storage::Actor::FromProcess("custosd");
    who.user = by.name;
    ASSIGN_OR_RETURN(auto released, snapshot::ReleaseHold(repo, match->id.Hex(), reason, who));
    json body = {{"action", "release"}, {"snapshot", released.snapshot.Hex()}, {"hold", released.id.Hex()},
                 {"release", released.release_id.Hex()}, {"reason", reason}};
    ASSIGN_OR_RETURN(uint64_t seq, cases.Append(id, "hold", body, by));
    return json{{"ok", true}, {"case", id}, {"hold", released.id.Hex()}, {"snapshot", released.snapshot.Hex()},
                {"record", seq}};
  }
  return InvalidArgumentError("unknown case command " + cmd);
}

}  // namespace

bool IsCaseCommand(const std::string& cmd) {
  for (const char* c : {"case-open", "case-list", "case-show", "case-close", "case-note", "case-checkpoint",
                        "case-export", "case-hold", "case-release"}) {
    if (cmd == c) return true;
  }
  return false;
}

evidence::Actor OperatorActor(const json& req) {
  std::string user = evidence::StringMember(req, "user");
  if (user.empty() || user.size() > 256) user = "operator";
  return evidence::Actor{"operator", user, ""};
}

Result<json> HoldForCase(evidence::CaseStore& cases, storage::Repository& repo, const std::string& case_id,
                         const std::string& snapshot_prefix, const std::string& reason, const evidence::Actor& by) {
  ASSIGN_OR_RETURN(auto snap, snapshot::FindSnapshot(repo, snapshot_prefix));
  storage::Actor who = storage::Actor::FromProcess("custosd");
  who.user = by.name;
  ASSIGN_OR_RETURN(auto hold, snapshot::AddHold(repo, snap.id, reason, case_id, who));
  json body = {{"action", "place"},
               {"snapshot", snap.id.Hex()},
               {"hold", hold.id.Hex()},
               {"reason", reason},
               {"snapshot_host", snap.manifest.host},
               {"snapshot_time", snap.manifest.time},
               {"snapshot_paths", snap.manifest.paths}};
  ASSIGN_OR_RETURN(uint64_t seq, cases.Append(case_id, "hold", body, by));
  return json{{"hold", hold.id.Hex()}, {"snapshot", snap.id.Hex()}, {"record", seq}};
}

json HandleCaseRequest(evidence::CaseStore& cases, storage::Repository& repo, const json& req) {
  auto r = Handle(cases, repo, req);
  if (!r.ok()) return Fail(r.status());
  return *r;
}

}  // namespace custos::appliance
