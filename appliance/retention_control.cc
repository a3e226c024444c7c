#include "appliance/retention_control.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <set>

#include "base/internal/json_int.h"
#include "scheduler/calendar.h"
#include "snapshot/browse.h"
#include "snapshot/holds.h"
#include "snapshot/manifest.h"

namespace custos::appliance {

using nlohmann::json;

namespace {

// The policy's counts by their request keys, one table for both directions.
struct PolicyCount {
  const char* key;
  int scheduler::RetentionPolicy::*field;
};
constexpr PolicyCount kCounts[] = {{"keep_last", &scheduler::RetentionPolicy::keep_last},
                             {"keep_hourly", &scheduler::RetentionPolicy::keep_hourly},
                             {"keep_daily", &scheduler::RetentionPolicy::keep_daily},
                             {"keep_weekly", &scheduler::RetentionPolicy::keep_weekly},
                             {"keep_monthly", &scheduler::RetentionPolicy::keep_monthly},
                             {"keep_yearly", &scheduler::RetentionPolicy::keep_yearly}};

Result<ForgetRequest> ParseForgetRequest(const json& j) {
  ForgetRequest r;
  std::string within;
  try {
    for (const auto& c : kCounts) {
      if (j.contains(c.key)) r.policy.*c.field = internal::JsonIntAt<int>(j, c.key);
    }
    within = j.value("keep_within", "");
    r.hosts = j.value("hosts", std::vector<std::string>());
    r.zone = j.value("timezone", "");
    r.dry_run = j.value("dry_run", false);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("forget request: ") + e.what());
  }
  if (!within.empty()) {
    ASSIGN_OR_RETURN(r.policy.keep_within, scheduler::ParseRetentionDuration(within));
  }
  return r;
}

Result<json> Forget(storage::Repository& repo, const ForgetRequest& request) {
  if (request.policy.empty()) {
    return InvalidArgumentError("the policy keeps nothing: refused (give at least one --keep-* rule)");
  }
  std::string zone = request.zone.empty() ? scheduler::SystemZone() : request.zone;
  if (!scheduler::IsKnownZone(zone)) return InvalidArgumentError("unknown time zone \"" + zone + "\"");
  if (!request.dry_run && !repo.HasWriterLock()) std::abort();
  std::vector<Status> damaged;
  ASSIGN_OR_RETURN(auto snapshots, snapshot::LoadSnapshots(repo, &damaged));
  ASSIGN_OR_RETURN(auto held_ids, snapshot::HeldSnapshots(repo));

  std::set<std::string> hosts(request.hosts.begin(), request.hosts.end());
  std::vector<scheduler::RetentionSnapshot> input;
  std::map<std::string, const snapshot::SnapshotInfo*> by_id;
  for (const auto& s : snapshots) {
    if (!hosts.empty() && !hosts.count(s.manifest.host)) continue;
    input.push_back({s.id.Hex(), s.manifest.time_ns, s.manifest.host, s.manifest.paths});
    by_id[s.id.Hex()] = &s;
  }
  std::set<std::string> held;
  for (const auto& id : held_ids) held.insert(id.Hex());
  ASSIGN_OR_RETURN(auto groups, scheduler::ApplyRetention(input, request.policy, zone, held));

  json out_groups = json::array();
  std::vector<Id> remove;
  size_t kept = 0;
  for (const auto& g : groups) {
    json keep = json::array(), gone = json::array();
    for (const auto& d : g.decisions) {
      json item = {{"id", d.id}, {"time", by_id.at(d.id)->manifest.time}};
      if (d.keep) {
        item["reasons"] = d.reasons;
        keep.push_back(std::move(item));
        ++kept;
      } else {
        gone.push_back(std::move(item));
        remove.push_back(*Id::FromHex(d.id));
      }
    }
    out_groups.push_back(json{{"host", g.host}, {"paths", g.paths}, {"keep", keep}, {"remove", gone}});
  }
  if (!request.dry_run && !remove.empty()) {
    // ForgetSnapshots reads the holds again under the same writer lock: a
    // second guard, independent of the decision above.
    RETURN_IF_ERROR(snapshot::ForgetSnapshots(repo, remove).status());
  }
  json damaged_json = json::array();
  for (const auto& st : damaged) damaged_json.push_back(st.ToString());
  return json{{"ok", true},        {"dry_run", request.dry_run}, {"policy", request.policy.ToString()},
              {"timezone", zone},  {"groups", out_groups},       {"kept", kept},
              {"removed", remove.size()}, {"damaged", damaged_json}};
}

Result<PruneRequest> ParsePruneJson(const json& j) {
  PruneRequest r;
  try {
    if (j.contains("grace")) {
      ASSIGN_OR_RETURN(r.grace_s, storage::ParseGrace(j.at("grace").get<std::string>()));
    }
    if (j.contains("max_waste")) {
      int pct = internal::JsonIntAt<int>(j, "max_waste");
      if (pct < 0 || pct > 100) return InvalidArgumentError("prune: --max-waste must be 0 to 100 (percent)");
      r.max_waste = pct / 100.0;
    }
    r.dry_run = j.value("dry_run", false);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("prune request: ") + e.what());
  }
  return r;
}

Result<json> Prune(storage::Repository& repo, const PruneRequest& request, const RetentionContext& context) {
  storage::PruneOptions o;
  o.grace_s = request.grace_s;
  o.max_waste = request.max_waste;
  o.dry_run = request.dry_run;
  o.progress = context.progress;
  ASSIGN_OR_RETURN(storage::PruneStats s,
                   storage::Prune(repo, [&] { return snapshot::ReferencedBlobs(repo); }, context.protected_blobs, o));
  return json{{"ok", true},
              {"dry_run", request.dry_run},
              {"grace_s", request.grace_s},
              {"max_waste", int(request.max_waste * 100 + 0.5)},
              {"referenced", s.referenced_blobs},
              {"marked", s.marked_blobs},
              {"marked_bytes", s.marked_bytes},
              {"pending", s.pending_blobs},
              {"swept", s.swept_blobs},
              {"swept_bytes", s.swept_bytes},
              {"kept_garbage", s.kept_garbage_blobs},
              {"protected", s.protected_blobs},
              {"packs_dropped", s.packs_dropped},
              {"packs_repacked", s.packs_repacked},
              {"packs_written", s.packs_written},
              {"retired_deleted", s.retired_deleted},
              {"blobs_copied", s.blobs_copied},
              {"bytes_copied", s.bytes_copied},
              {"index_files_written", s.index_files_written},
              {"index_files_removed", s.index_files_removed},
              {"bytes_freed", s.bytes_freed},
              {"bytes_before", s.bytes_before},
              {"bytes_after", s.bytes_after}};
}

json HoldJson(const snapshot::Hold& h) {
  json j = {{"id", h.id.Hex()},  {"snapshot", h.snapshot.Hex()}, {"reason", h.reason}, {"case", h.case_id},
            {"user", h.user},    {"host", h.host},               {"time", h.time},     {"released", h.released}};
  if (h.released) {
    j["release_id"] = h.release_id.Hex();
    j["released_by"] = h.released_by;
    j["released_at"] = h.released_at;
    j["release_reason"] = h.release_reason;
  }
  return j;
}

Result<json> Serve(storage::Repository& repo, const json& req, storage::Actor who, const RetentionContext& context) {
  std::string cmd = req.value("cmd", "");
  if (std::string user = req.value("user", ""); !user.empty()) who.user = user;
  if (cmd == "forget") {
    ASSIGN_OR_RETURN(ForgetRequest r, ParseForgetRequest(req));
    bool then_prune = req.value("prune", false);
    std::optional<PruneRequest> pr;
    if (then_prune) {  // parsed before anything is removed: a bad --grace removes nothing
      ASSIGN_OR_RETURN(pr, ParsePruneJson(req));
    }
    ASSIGN_OR_RETURN(json out, Forget(repo, r));
    if (pr) {
      ASSIGN_OR_RETURN(out["prune"], Prune(repo, *pr, context));
    }
    return out;
  }
  if (cmd == "prune") {
    ASSIGN_OR_RETURN(PruneRequest r, ParsePruneJson(req));
    return Prune(repo, r, context);
  }
  if (cmd == "hold-add") {
    std::string reason = req.value("reason", "");
    if (reason.empty()) return InvalidArgumentError("hold add: --reason is required");
    ASSIGN_OR_RETURN(auto snap, snapshot::FindSnapshot(repo, req.value("snapshot", "")));
    ASSIGN_OR_RETURN(auto hold, snapshot::AddHold(repo, snap.id, reason, req.value("case", ""), who));
    return json{{"ok", true}, {"hold", HoldJson(hold)}};
  }
  if (cmd == "hold-list") {
    std::vector<Status> damaged;
    ASSIGN_OR_RETURN(auto holds, snapshot::ListHolds(repo, &damaged));
    json list = json::array(), bad = json::array();
    for (const auto& h : holds) list.push_back(HoldJson(h));
    for (const auto& st : damaged) bad.push_back(st.ToString());
    return json{{"ok", true}, {"holds", list}, {"damaged", bad}};
  }
  if (cmd == "hold-release") {
    ASSIGN_OR_RETURN(auto hold, snapshot::ReleaseHold(repo, req.value("hold", ""), req.value("reason", ""), who));
    return json{{"ok", true}, {"hold", HoldJson(hold)}};
  }
  return InvalidArgumentError("unknown retention command \"" + cmd + "\"");
}

}  // namespace

std::string ForgetRequestJson(const ForgetRequest& r) {
  json j = {{"cmd", "forget"}, {"hosts", r.hosts}, {"timezone", r.zone}, {"dry_run", r.dry_run}};
  for (const auto& c : kCounts) j[c.key] = r.policy.*c.field;
  if (!r.policy.keep_within.zero()) j["keep_within"] = r.policy.keep_within.ToString();
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string PolicyJson(const scheduler::RetentionPolicy& policy) {
  json j = json::object();
  for (const auto& c : kCounts) {
    if (policy.*c.field) j[c.key] = policy.*c.field;
  }
  if (!policy.keep_within.zero()) j["keep_within"] = policy.keep_within.ToString();
  return j.dump();
}

Result<scheduler::RetentionPolicy> ParsePolicyJson(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return InvalidArgumentError("retention policy: not a JSON object");
  ASSIGN_OR_RETURN(ForgetRequest r, ParseForgetRequest(j));
  return r.policy;
}

Result<PruneRequest> ParsePruneRequest(const std::string& request_json) {
  json j = json::parse(request_json, nullptr, false);
  if (!j.is_object()) return InvalidArgumentError("prune request is not a JSON object");
  return ParsePruneJson(j);
}

std::string PruneRequestJson(const PruneRequest& r) {
  return json{{"cmd", "prune"},
              {"grace", std::to_string(r.grace_s) + "s"},
              {"max_waste", int(r.max_waste * 100 + 0.5)},
              {"dry_run", r.dry_run}}
      .dump();
}

bool IsRetentionCommand(const std::string& cmd) {
  return cmd == "forget" || cmd == "prune" || cmd == "hold-add" || cmd == "hold-list" || cmd == "hold-release";
}

bool RetentionRequestWrites(const std::string& request_json) {
  json j = json::parse(request_json, nullptr, false);
  if (!j.is_object()) return false;
  std::string cmd = j.value("cmd", "");
  return cmd == "hold-add" || cmd == "hold-release" ||
         ((cmd == "forget" || cmd == "prune") && !j.value("dry_run", false));
}

std::string HandleRetentionRequest(storage::Repository& repo, const std::string& request_json,
                                   const storage::Actor& who, const RetentionContext& context) {
  json req = json::parse(request_json, nullptr, false);
  Result<json> reply = req.is_object() ? Serve(repo, req, who, context)
                                       : Result<json>(InvalidArgumentError("request is not a JSON object"));
  if (!reply.ok()) {
    bool usage = reply.status().code() == Code::kInvalidArgument;
    return json{{"ok", false}, {"error", reply.status().message()}, {"code", usage ? "usage" : "error"}}.dump(
        -1, ' ', false, json::error_handler_t::replace);
  }
  return reply->dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace custos::appliance
