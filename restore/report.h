// Signed reports: what a restore or a restore drill did, recorded in the
// repository so that the office can later show what was restored, when, by
// whom, and whether every byte matched.
//
// A report's body is one compact JSON object (keys sorted, UTF-8; names that
// are not UTF-8 are shown escaped). The body's exact bytes are signed with
// the repository's Ed25519 key (plain Ed25519, no pre-hash), so an outsider
// verifies a report with standard tools alone:
//
//   custos reports verify ID --export DIR   # report.json, report.sig, signing-key.pem
//   openssl pkeyutl -verify -pubin -inkey DIR/signing-key.pem -rawin
//       -in DIR/report.json -sigfile DIR/report.sig
//
// Every body carries a "type" naming what it is ("custos.restore-report.v1",
// "custos.drill-report.v1"), so a signature over one kind of document can
// never be presented as another (other signed objects of the repository use
// other types).
//
// Stored payload (inside the encrypted report envelope, storage/index_file.h):
//   {"format":"custos-signed-report-1","body":"<body text>",
//    "signature":"<base64, 64 bytes>","public_key":"<base64, 32 bytes>"}
// Format: doc/formats/repository.md, "Report files".
//
// Thread-safety: pure functions, and repository calls that are themselves
// thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/status.h"
#include "restore/restorer.h"
#include "snapshot/manifest.h"
#include "storage/repository.h"

namespace custos::restore {

inline constexpr const char* kRestoreReportType = "custos.restore-report.v1";
inline constexpr const char* kDrillReportType = "custos.drill-report.v1";

struct SignedReport {
  std::string body;  // the signed bytes
  std::array<uint8_t, 64> signature{};
  std::array<uint8_t, 32> public_key{};
};

// Serialises `body` (sorted keys, compact) and signs it.
SignedReport SignReport(const SigningKey& key, const nlohmann::json& body);
// The stored payload and its parser. Decode never trusts its input:
// Corruption on anything malformed (fuzzed: fuzz/report_fuzzer.cc).
std::string EncodeSignedReport(const SignedReport& r);
Result<SignedReport> DecodeSignedReport(ByteView payload);
// Whether the signature over the body verifies with the embedded key.
bool SignatureValid(const SignedReport& r);

struct StoredReport {
  Id id;
  SignedReport signed_report;
  nlohmann::json body;
};

// Signs `body` with the repository's key and stores it; returns its ID.
Result<Id> SaveReport(storage::Repository& repo, const nlohmann::json& body);
// Loads one report. Integrity if the signature does not verify or was made
// by another key than this repository's; Corruption if malformed.
Result<StoredReport> LoadReport(storage::Repository& repo, const Id& id);
// Every report, oldest first (by "finished"); damaged or forged ones go to
// `problems` ("report <id>: reason") instead.
Result<std::vector<StoredReport>> LoadReports(storage::Repository& repo, std::vector<std::string>* problems);
// A unique ID prefix of a report (or "latest"). NotFound / InvalidArgument.
Result<Id> FindReport(storage::Repository& repo, const std::string& prefix);

// What a report says about the snapshot and the run around the result.
struct ReportContext {
  std::string repository_id;  // RepoConfig::id
  snapshot::SnapshotInfo snapshot;
  std::string subpath = "/";
  std::string target;  // as given by the operator
  std::string started, finished;  // RFC 3339 UTC
  RestoreOptions options;
};

// The body of a restore report. `error` is set when the restore stopped
// before restoring anything (the target was locked, unwritable...).
nlohmann::json RestoreReportBody(const ReportContext& ctx, const RestoreResult& result,
                                 const std::string& error = "");

// A human summary of any report body (restore or drill), several lines.
std::string RenderReport(const nlohmann::json& body);
// A one-line verdict: "ok", "FAILED (3 files)", "ERROR".
std::string ReportVerdict(const nlohmann::json& body);

// A string for JSON: itself if valid UTF-8, else escaped for display.
std::string JsonSafe(const std::string& s);

}  // namespace custos::restore
