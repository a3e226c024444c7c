#include "snapshot/holds.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "snapshot/manifest.h"

namespace custos::snapshot {

using nlohmann::json;

namespace {

constexpr const char* kHoldFormat = "custos-hold-1";

// One parsed record: a hold, or a release naming `target`.
struct Record {
  Id file;
  bool is_release = false;
  Id target;  // hold: the snapshot; release: the hold
  std::string reason, case_id, user, host, time;
};

Result<Record> ParseRecord(const Id& file, ByteView payload) {
  try {
    json j = json::parse(AsString(payload));
    if (j.at("format").get<std::string>() != kHoldFormat) {
      return NotSupportedError("hold " + file.Hex() + ": format " + j.at("format").get<std::string>());
    }
    Record r;
    r.file = file;
    std::string kind = j.at("kind").get<std::string>();
    if (kind != "hold" && kind != "release") return CorruptionError("hold " + file.Hex() + ": kind " + kind);
    r.is_release = kind == "release";
    auto target = Id::FromHex(j.at(r.is_release ? "hold" : "snapshot").get<std::string>());
    if (!target) return CorruptionError("hold " + file.Hex() + ": bad ID");
    r.target = *target;
    r.reason = j.at("reason").get<std::string>();
    r.case_id = j.value("case", "");
    r.user = j.at("user").get<std::string>();
    r.host = j.at("host").get<std::string>();
    r.time = j.at("time").get<std::string>();
    return r;
  } catch (const std::exception& e) {
    return CorruptionError("hold " + file.Hex() + ": " + e.what());
  }
}

Result<Id> SaveRecord(storage::Repository& repo, bool release, const Id& target, const std::string& reason,
                      const std::string& case_id, const storage::Actor& who) {
  json j = {{"format", kHoldFormat},
            {"kind", release ? "release" : "hold"},
            {release ? "hold" : "snapshot", target.Hex()},
            {"reason", reason},
            {"user", who.user},
            {"host", who.host},
            {"time", FormatTimeNs(NowNs())}};
  if (!case_id.empty()) j["case"] = case_id;
  return repo.SaveHold(AsBytes(j.dump(-1, ' ', false, json::error_handler_t::replace)));
}

// Every readable record; damaged ones in `damaged`.
Result<std::vector<Record>> LoadRecords(storage::Repository& repo, std::vector<Status>* damaged) {
  ASSIGN_OR_RETURN(auto ids, repo.ListHolds());
  std::vector<Record> out;
  for (const auto& id : ids) {
    auto payload = repo.LoadHold(id);
    Result<Record> r = payload.ok() ? ParseRecord(id, *payload) : Result<Record>(payload.status());
    if (!r.ok()) {
      damaged->push_back(r.status());
      continue;
    }
    out.push_back(std::move(r).value());
  }
  return out;
}

Hold FromRecord(const Record& r) {
  Hold h;
  h.id = r.file;
  h.snapshot = r.target;
  h.reason = r.reason;
  h.case_id = r.case_id;
  h.user = r.user;
  h.host = r.host;
  h.time = r.time;
  return h;
}

}  // namespace

Result<std::vector<Hold>> ListHolds(storage::Repository& repo, std::vector<Status>* damaged) {
  std::vector<Status> ignored;
  ASSIGN_OR_RETURN(auto records, LoadRecords(repo, damaged ? damaged : &ignored));
  std::map<Id, Hold> holds;
  for (const auto& r : records) {
    if (!r.is_release) holds[r.file] = FromRecord(r);
  }
  for (const auto& r : records) {
    if (!r.is_release) continue;
    auto it = holds.find(r.target);
    if (it == holds.end()) continue;  // a release of a hold that is not there: nothing to release
    Hold& h = it->second;
    if (h.released && h.released_at <= r.time) continue;  // the first release counts
    h.released = true;
    h.release_id = r.file;
    h.released_by = r.user + "@" + r.host;
    h.released_at = r.time;
    h.release_reason = r.reason;
  }
  std::vector<Hold> out;
  for (auto& [id, h] : holds) out.push_back(std::move(h));
  std::sort(out.begin(), out.end(), [](const Hold& a, const Hold& b) {
    return a.time < b.time || (a.time == b.time && a.id < b.id);
  });
  return out;
}

Result<Hold> AddHold(storage::Repository& repo, const Id& snapshot, const std::string& reason,
                     const std::string& case_id, const storage::Actor& who) {
  if (reason.empty()) return InvalidArgumentError("hold: a reason is required");
  ASSIGN_OR_RETURN(auto snaps, repo.ListSnapshots());
  if (!std::binary_search(snaps.begin(), snaps.end(), snapshot)) {
    return NotFoundError("hold: no snapshot " + snapshot.Hex());
  }
  ASSIGN_OR_RETURN(Id id, SaveRecord(repo, false, snapshot, reason, case_id, who));
  ASSIGN_OR_RETURN(auto payload, repo.LoadHold(id));
  ASSIGN_OR_RETURN(Record r, ParseRecord(id, payload));
  return FromRecord(r);
}

Result<Hold> ReleaseHold(storage::Repository& repo, const std::string& id_prefix, const std::string& reason,
                         const storage::Actor& who) {
  std::string prefix = id_prefix;
  for (char& c : prefix) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (prefix.empty() || prefix.size() > 64 || !IsLowerHex(prefix)) {
    return InvalidArgumentError("'" + id_prefix + "' is not a hold ID or ID prefix");
  }
  ASSIGN_OR_RETURN(auto holds, ListHolds(repo));
  const Hold* found = nullptr;
  for (const auto& h : holds) {
    if (h.id.Hex().rfind(prefix, 0) != 0) continue;
    if (found) return InvalidArgumentError("hold ID prefix " + id_prefix + " is ambiguous");
    found = &h;
  }
  if (!found) return NotFoundError("no hold " + id_prefix);
  if (found->released) {
    return InvalidArgumentError("hold " + found->id.Hex() + " was released already, at " + found->released_at +
                                " by " + found->released_by);
  }
  ASSIGN_OR_RETURN(Id rid, SaveRecord(repo, true, found->id, reason, "", who));
  Hold h = *found;
  h.released = true;
  h.release_id = rid;
  h.released_by = who.user + "@" + who.host;
  h.released_at = FormatTimeNs(NowNs());
  h.release_reason = reason;
  return h;
}

Result<std::set<Id>> HeldSnapshots(storage::Repository& repo) {
  std::vector<Status> damaged;
  ASSIGN_OR_RETURN(auto holds, ListHolds(repo, &damaged));
  if (!damaged.empty()) {
    return CorruptionError(damaged.front().message() +
                           " (a damaged hold file might hold any snapshot: nothing is forgotten until it is repaired "
                           "or removed by hand)");
  }
  std::set<Id> out;
  for (const auto& h : holds) {
    if (!h.released) out.insert(h.snapshot);
  }
  return out;
}

Result<std::vector<Id>> ForgetSnapshots(storage::Repository& repo, const std::vector<Id>& ids) {
  ASSIGN_OR_RETURN(auto held, HeldSnapshots(repo));
  for (const auto& id : ids) {
    if (held.count(id)) return PermissionDeniedError("snapshot " + id.Hex() + " is held: not forgotten");
  }
  std::vector<Id> removed;
  for (const auto& id : ids) {
    Status st = repo.RemoveSnapshot(id);
    if (!st.ok()) {
      return st.Annotate(std::to_string(removed.size()) + " of " + std::to_string(ids.size()) +
                         " snapshots removed before");
    }
    removed.push_back(id);
  }
  return removed;
}

}  // namespace custos::snapshot
