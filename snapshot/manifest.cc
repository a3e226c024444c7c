#include "snapshot/manifest.h"

#include <nlohmann/json.hpp>

#include "base/internal/json_int.h"

#include <algorithm>
#include <ctime>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace custos::snapshot {

using nlohmann::json;

namespace {

json PathJson(const std::string& p) {
  if (IsValidUtf8(p)) return p;
  return json{{"base64", Base64Encode(AsBytes(p))}};
}

std::string PathFromJson(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  auto b = Base64Decode(j.at("base64").get<std::string>());
  if (!b) throw std::runtime_error("bad base64 path");
  return std::string(b->begin(), b->end());
}


uint64_t Count(const json& s, const char* key) {
  return s.contains(key) ? internal::JsonInt<uint64_t>(s.at(key), key) : 0;
}

}  // namespace

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string FormatTimeNs(int64_t ns) {
  time_t sec = time_t(ns / 1000000000);
  long frac = long(ns % 1000000000);
  if (frac < 0) {
    frac += 1000000000;
    --sec;
  }
  tm t;
  gmtime_r(&sec, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof buf - n, ".%09ldZ", frac);
  return buf;
}

Bytes EncodeManifest(const Manifest& m) {
  json paths = json::array();
  for (const auto& p : m.paths) paths.push_back(PathJson(p));
  json atimes = json::array();
  for (const auto& id : m.atimes) atimes.push_back(id.Hex());
  json j = {{"version", m.version},
            {"time", m.time},
            {"time_ns", m.time_ns},
            {"host", m.host},
            {"user", m.user},
            {"paths", paths},
            {"tags", m.tags},
            {"tree", m.tree.Hex()},
            {"atimes", atimes},
            {"parent", m.parent ? json(m.parent->Hex()) : json(nullptr)},
            {"partial", m.partial},
            {"errors", m.error_samples},
            {"program_version", m.program_version},
            {"summary", SummaryToJson(m.summary)}};
  std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return Bytes(text.begin(), text.end());
}

json SummaryToJson(const Summary& s) {
  return json{{"files_new", s.files_new},
              {"files_changed", s.files_changed},
              {"files_unmodified", s.files_unmodified},
              {"dirs", s.dirs},
              {"other_nodes", s.other_nodes},
              {"data_blobs_added", s.data_blobs_added},
              {"tree_blobs_added", s.tree_blobs_added},
              {"atime_blobs_added", s.atime_blobs_added},
              {"bytes_read", s.bytes_read},
              {"bytes_added", s.bytes_added},
              {"bytes_added_stored", s.bytes_added_stored},
              {"total_files", s.total_files},
              {"total_bytes", s.total_bytes},
              {"files_changed_during_read", s.files_changed_during_read},
              {"errors", s.errors},
              {"duration_s", s.duration_s}};
}

Result<Summary> SummaryFromJson(const json& s) {
  if (!s.is_object()) return CorruptionError("snapshot summary: not an object");
  try {
    Summary o;
    o.files_new = Count(s, "files_new");
    o.files_changed = Count(s, "files_changed");
    o.files_unmodified = Count(s, "files_unmodified");
    o.dirs = Count(s, "dirs");
    o.other_nodes = Count(s, "other_nodes");
    o.data_blobs_added = Count(s, "data_blobs_added");
    o.tree_blobs_added = Count(s, "tree_blobs_added");
    o.atime_blobs_added = Count(s, "atime_blobs_added");
    o.bytes_read = Count(s, "bytes_read");
    o.bytes_added = Count(s, "bytes_added");
    o.bytes_added_stored = Count(s, "bytes_added_stored");
    o.total_files = Count(s, "total_files");
    o.total_bytes = Count(s, "total_bytes");
    o.files_changed_during_read = Count(s, "files_changed_during_read");
    o.errors = Count(s, "errors");
    auto d = s.find("duration_s");
    if (d != s.end() && !d->is_number()) return CorruptionError("snapshot summary: duration_s is not a number");
    o.duration_s = d != s.end() ? d->get<double>() : 0.0;
    return o;
  } catch (const std::exception& e) {
    return CorruptionError(std::string("snapshot summary: ") + e.what());
  }
}

Result<Manifest> DecodeManifest(ByteView payload) {
  try {
    json j = json::parse(AsString(payload));
    Manifest m;
    m.version = internal::JsonIntAt<uint32_t>(j, "version");
    if (m.version != 1 && m.version != 2) return NotSupportedError("snapshot manifest version " + std::to_string(m.version));
    m.time = j.at("time").get<std::string>();
    m.time_ns = internal::JsonIntAt<int64_t>(j, "time_ns");
    m.host = j.at("host").get<std::string>();
    m.user = j.value("user", "");
    for (const auto& p : j.at("paths")) m.paths.push_back(PathFromJson(p));
    m.tags = j.at("tags").get<std::vector<std::string>>();
    auto tree = Id::FromHex(j.at("tree").get<std::string>());
    if (!tree) return CorruptionError("snapshot manifest: bad tree id");
    m.tree = *tree;
    if (m.version >= 2) {
      const json& at = j.at("atimes");
      if (!at.is_array()) return CorruptionError("snapshot manifest: bad atimes");
      for (const auto& a : at) {
        auto id = a.is_string() ? Id::FromHex(a.get<std::string>()) : std::nullopt;
        if (!id) return CorruptionError("snapshot manifest: bad atimes id");
        m.atimes.push_back(*id);
      }
    }
    if (!j.at("parent").is_null()) {
      auto parent = Id::FromHex(j.at("parent").get<std::string>());
      if (!parent) return CorruptionError("snapshot manifest: bad parent id");
      m.parent = *parent;
    }
    m.partial = j.value("partial", false);
    m.error_samples = j.value("errors", std::vector<std::string>{});
    m.program_version = j.value("program_version", "");
    if (j.contains("summary")) {
      auto summary = SummaryFromJson(j.at("summary"));
      if (!summary.ok()) return summary.status();
      m.summary = *summary;
    }
    return m;
  } catch (const std::exception& e) {
    return CorruptionError(std::string("snapshot manifest: malformed: ") + e.what());
  }
}

Result<std::vector<SnapshotInfo>> LoadSnapshots(storage::Repository& repo, std::vector<Status>* damaged) {
  ASSIGN_OR_RETURN(auto ids, repo.ListSnapshots());
  std::vector<SnapshotInfo> out;
  for (const auto& id : ids) {
    auto payload = repo.LoadSnapshot(id);
    Result<Manifest> m = payload.ok() ? DecodeManifest(*payload) : Result<Manifest>(payload.status());
    if (!m.ok()) {
      if (damaged) damaged->push_back(m.status().Annotate("snapshot " + id.Hex()));
      continue;
    }
    out.push_back(SnapshotInfo{id, std::move(m).value()});
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.manifest.time_ns < b.manifest.time_ns || (a.manifest.time_ns == b.manifest.time_ns && a.id < b.id);
  });
  return out;
}

bool Matches(const Manifest& m, const SnapshotFilter& f) {
  if (!f.host.empty() && m.host != f.host) return false;
  for (const auto& t : f.tags) {
    if (std::find(m.tags.begin(), m.tags.end(), t) == m.tags.end()) return false;
  }
  if (!f.paths.empty()) {
    auto a = m.paths, b = f.paths;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return false;
  }
  return true;
}

Result<SnapshotInfo> FindSnapshot(storage::Repository& repo, const std::string& spec,
                                  const SnapshotFilter& filter) {
  ASSIGN_OR_RETURN(auto all, LoadSnapshots(repo));
  if (spec == "latest") {
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      if (Matches(it->manifest, filter)) return *it;
    }
    return NotFoundError("no snapshot matches 'latest'" + (filter.host.empty() ? std::string() : " for host " + filter.host));
  }
  std::string prefix = spec;
  for (char& c : prefix) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (prefix.empty() || prefix.size() > 64 || !IsLowerHex(prefix)) {
    return InvalidArgumentError("'" + spec + "' is not a snapshot ID, ID prefix or 'latest'");
  }
  const SnapshotInfo* found = nullptr;
  int n = 0;
  for (const auto& s : all) {
    if (s.id.Hex().rfind(prefix, 0) == 0) {
      found = &s;
      ++n;
    }
  }
  if (n == 0) return NotFoundError("no snapshot with ID " + spec);
  if (n > 1) return InvalidArgumentError("snapshot ID prefix " + spec + " is ambiguous (" + std::to_string(n) + " match)");
  return *found;
}

}  // namespace custos::snapshot
