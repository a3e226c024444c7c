#include "restore/report.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "base/bytes.h"
#include "storage/repository.h"
#include "base/version.h"

namespace custos::restore {

using nlohmann::json;

namespace {

constexpr const char* kPayloadFormat = "custos-signed-report-1";

const char* OverwriteName(OverwritePolicy p) {
  switch (p) {
    case OverwritePolicy::kNever: return "never";
    case OverwritePolicy::kIfChanged: return "if-changed";
    case OverwritePolicy::kAlways: return "always";
  }
  return "?";
}

std::vector<std::string> SafeList(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(JsonSafe(s));
  return out;
}

// Reads a JSON field as the given type, or the fallback when missing or of
// another type (rendering must never throw on an odd but signed body).
template <typename T>
T Get(const json& j, const char* key, T fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  // Numbers only of the exact kind asked for: converting a float such as
  // -9e19 to an integer is undefined behaviour (found by the fuzzer).
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return fallback;
  } else if constexpr (std::is_same_v<T, uint64_t>) {
    if (!it->is_number_unsigned()) return fallback;
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) return fallback;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!it->is_number()) return fallback;
  }
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

}  // namespace

std::string JsonSafe(const std::string& s) { return IsValidUtf8(s) ? s : EscapeForDisplay(s); }

SignedReport SignReport(const SigningKey& key, const json& body) {
  SignedReport r;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  r.signature = Sign(key, AsBytes(r.body));
  r.public_key = key.public_key;
  return r;
}

std::string EncodeSignedReport(const SignedReport& r) {
  json j{{"format", kPayloadFormat},
         {"body", r.body},
         {"signature", Base64Encode(ByteView(r.signature.data(), r.signature.size()))},
         {"public_key", Base64Encode(ByteView(r.public_key.data(), r.public_key.size()))}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<SignedReport> DecodeSignedReport(ByteView payload) {
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return CorruptionError("report: not a JSON object");
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto format = str("format");
  if (!format || *format != kPayloadFormat) return NotSupportedError("report: unknown format");
  auto body = str("body"), sig = str("signature"), pub = str("public_key");
  if (!body || !sig || !pub) return CorruptionError("report: missing body, signature or public_key");
  auto sig_bytes = Base64Decode(*sig);
  auto pub_bytes = Base64Decode(*pub);
  if (!sig_bytes || sig_bytes->size() != 64) return CorruptionError("report: signature is not 64 bytes of base64");
  if (!pub_bytes || pub_bytes->size() != 32) return CorruptionError("report: public_key is not 32 bytes of base64");
  SignedReport r;
  r.body = std::move(*body);
  std::copy(sig_bytes->begin(), sig_bytes->end(), r.signature.begin());
  std::copy(pub_bytes->begin(), pub_bytes->end(), r.public_key.begin());
  return r;
}

bool SignatureValid(const SignedReport& r) {
  return VerifySignature(ByteView(r.public_key.data(), r.public_key.size()), AsBytes(r.body),
                         ByteView(r.signature.data(), r.signature.size()));
}

Result<Id> SaveReport(storage::Repository& repo, const json& body) {
  SignedReport r = SignReport(repo.signing_key(), body);
  return repo.SaveReport(AsBytes(EncodeSignedReport(r)));
}

Result<StoredReport> LoadReport(storage::Repository& repo, const Id& id) {
  ASSIGN_OR_RETURN(Bytes payload, repo.LoadReport(id));
  auto decoded = DecodeSignedReport(payload);
  if (!decoded.ok()) return decoded.status().Annotate("report " + id.Hex());
  StoredReport out{id, std::move(decoded).value(), json()};
  if (out.signed_report.public_key != repo.signing_key().public_key) {
    return IntegrityError("report " + id.Hex() + ": signed by another key than this repository's");
  }
  if (!SignatureValid(out.signed_report)) {
    return IntegrityError("report " + id.Hex() + ": signature does not verify");
  }
  out.body = json::parse(out.signed_report.body, nullptr, /*allow_exceptions=*/false);
  if (out.body.is_discarded() || !out.body.is_object()) {
    return CorruptionError("report " + id.Hex() + ": body is not a JSON object");
  }
  return out;
}

Result<std::vector<StoredReport>> LoadReports(storage::Repository& repo, std::vector<std::string>* problems) {
  ASSIGN_OR_RETURN(std::vector<Id> ids, repo.ListReports());
  std::vector<StoredReport> out;
  for (const Id& id : ids) {
    auto r = LoadReport(repo, id);
    if (!r.ok()) {
      if (problems) problems->push_back(r.status().ToString());
      continue;
    }
    out.push_back(std::move(r).value());
  }
  std::stable_sort(out.begin(), out.end(), [](const StoredReport& a, const StoredReport& b) {
    return Get<std::string>(a.body, "finished", "") < Get<std::string>(b.body, "finished", "");
  });
  return out;
}

Result<Id> FindReport(storage::Repository& repo, const std::string& prefix) {
  if (prefix == "latest") {
    ASSIGN_OR_RETURN(auto all, LoadReports(repo, nullptr));
    if (all.empty()) return NotFoundError("no reports in the repository");
    return all.back().id;
  }
  if (prefix.empty() || prefix.size() > 64 || !std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return InvalidArgumentError("'" + EscapeForDisplay(prefix) + "' is not a report ID (hex digits) or 'latest'");
  }
  ASSIGN_OR_RETURN(std::vector<Id> ids, repo.ListReports());
  std::optional<Id> found;
  for (const Id& id : ids) {
    if (id.Hex().rfind(prefix, 0) != 0) continue;
    if (found) return InvalidArgumentError("report ID prefix '" + prefix + "' is ambiguous");
    found = id;
  }
  if (!found) return NotFoundError("no report with ID " + prefix);
  return *found;
}

json RestoreReportBody(const ReportContext& ctx, const RestoreResult& r, const std::string& error) {
  const auto& m = ctx.snapshot.manifest;
  json failures = json::array();
  for (const auto& f : r.failures) failures.push_back(json{{"path", JsonSafe(f.path)}, {"reason", JsonSafe(f.reason)}});
  std::string result = !error.empty() ? "error" : r.ok() ? "ok" : "partial";
  storage::Actor me = storage::Actor::FromProcess("");
  const auto& o = ctx.options;
  json body{
      {"type", kRestoreReportType},
      {"kind", "restore"},
      {"result", result},
      {"custos_version", kCustosVersion},
      {"repository_id", ctx.repository_id},
      {"snapshot",
       {{"id", ctx.snapshot.id.Hex()},
        {"host", JsonSafe(m.host)},
        {"time", m.time},
        {"paths", SafeList(m.paths)},
        {"tags", SafeList(m.tags)},
        {"partial", m.partial}}},
      {"subpath", JsonSafe(ctx.subpath)},
      {"target", JsonSafe(ctx.target)},
      {"restored_on", JsonSafe(me.host)},
      {"operator", JsonSafe(me.user)},
      {"started", ctx.started},
      {"finished", ctx.finished},
      {"duration_s", r.duration_s},
      {"options",
       {{"overwrite", OverwriteName(o.overwrite)},
        {"verify", o.verify ? "hash" : "none"},
        {"includes", SafeList(o.includes)},
        {"excludes", SafeList(o.excludes)},
        {"paths", o.paths.size()}}},
      {"counts",
       {{"files_restored", r.files_restored},
        {"files_skipped", r.files_skipped},
        {"files_verified", r.files_verified},
        {"files_failed", r.files_failed},
        {"dirs", r.dirs},
        {"links", r.links},
        {"specials", r.specials},
        {"failures", r.failures.size()}}},
      {"bytes_written", r.bytes_written},
      {"verification",
       {{"method", o.verify ? "sha256" : "none"},
        {"result", !o.verify ? "not verified" : (error.empty() && r.ok()) ? "all files match" : "failures"}}},
      {"failures", failures},
  };
  if (!error.empty()) body["error"] = JsonSafe(error);
  return body;
}

std::string ReportVerdict(const json& body) {
  std::string result = Get<std::string>(body, "result", "?");
  if (result == "ok") return "ok";
  if (result == "partial") {
    return "FAILED (" + std::to_string(Get<json>(body, "failures", json::array()).size()) + " failures)";
  }
  if (result == "error") return "ERROR";
  return result;
}

std::string RenderReport(const json& body) {
  std::string out;
  auto line = [&](const std::string& label, const std::string& value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%-20s", (label + ":").c_str());
    out += buf + value + "\n";
  };
  json snap = Get<json>(body, "snapshot", json::object());
  json counts = Get<json>(body, "counts", json::object());
  std::string kind = Get<std::string>(body, "kind", "?");
  line("kind", kind);
  line("result", ReportVerdict(body));
  std::string paths;
  for (const auto& p : Get<std::vector<std::string>>(snap, "paths", {})) paths += (paths.empty() ? "" : " ") + p;
  line("snapshot", Get<std::string>(snap, "id", "?").substr(0, 12) + " of " + Get<std::string>(snap, "host", "?") +
                       " taken " + Get<std::string>(snap, "time", "?") + (paths.empty() ? "" : " (" + paths + ")"));
  std::string sub = Get<std::string>(body, "subpath", "/");
  if (sub != "/") line("subpath", sub);
  line("target", Get<std::string>(body, "target", "?"));
  line("by", Get<std::string>(body, "operator", "?") + "@" + Get<std::string>(body, "restored_on", "?"));
  line("started", Get<std::string>(body, "started", "?"));
  line("finished", Get<std::string>(body, "finished", "?"));
  char dur[64];
  std::snprintf(dur, sizeof dur, "%.3f s", Get<double>(body, "duration_s", 0));
  line("duration", dur);
  auto n = [&](const char* k) { return std::to_string(Get<uint64_t>(counts, k, 0)); };
  line("files", n("files_restored") + " restored, " + n("files_skipped") + " already correct, " + n("files_failed") +
                    " failed");
  line("other entries", n("dirs") + " dirs, " + n("links") + " hard links, " + n("specials") + " special");
  line("bytes written", HumanBytes(Get<uint64_t>(body, "bytes_written", 0)));
  json ver = Get<json>(body, "verification", json::object());
  line("verification", Get<std::string>(ver, "method", "?") + ": " + Get<std::string>(ver, "result", "?") + " (" +
                           n("files_verified") + " files verified)");
  if (kind == "drill") {
    json d = Get<json>(body, "drill", json::object());
    line("drill sample", Get<std::string>(d, "mode", "?") + ", " + std::to_string(Get<uint64_t>(d, "files_sampled", 0)) +
                             " of " + std::to_string(Get<uint64_t>(d, "snapshot_files", 0)) + " files, " +
                             HumanBytes(Get<uint64_t>(d, "bytes_sampled", 0)) + " of " +
                             HumanBytes(Get<uint64_t>(d, "snapshot_bytes", 0)));
    char rate[96];
    std::snprintf(rate, sizeof rate, "%.1f MiB/s", Get<double>(d, "throughput_bytes_per_s", 0) / (1 << 20));
    line("restore rate", rate);
    double est = Get<double>(d, "estimated_full_restore_s", 0);
    std::snprintf(rate, sizeof rate, "%.1f s (%.1f min)%s", est, est / 60,
                  Get<std::string>(d, "mode", "") == "all" ? ", measured" : ", extrapolated from the sample");
    line("full restore time", rate);
    line("scratch data", Get<bool>(d, "scratch_removed", false) ? "removed" : "kept at " + Get<std::string>(d, "scratch", "?"));
  }
  if (auto err = Get<std::string>(body, "error", ""); !err.empty()) line("error", err);
  json failures = Get<json>(body, "failures", json::array());
  if (failures.is_array() && !failures.empty()) {
    out += "failures:\n";
    for (const auto& f : failures) {
      out += "  " + EscapeForDisplay(Get<std::string>(f, "path", "?")) + ": " +
             EscapeForDisplay(Get<std::string>(f, "reason", "?")) + "\n";
    }
  }
  return out;
}

}  // namespace custos::restore
