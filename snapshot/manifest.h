// Snapshot manifests: the payload of a snapshot envelope (JSON), and how
// users name snapshots (unique ID prefix, "latest", filters).
//
// Thread-safety: values and pure functions; Find* read the repository.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "storage/repository.h"

namespace custos::snapshot {

struct Summary {
  uint64_t files_new = 0, files_changed = 0, files_unmodified = 0;
  uint64_t dirs = 0, other_nodes = 0;
  uint64_t data_blobs_added = 0, tree_blobs_added = 0;
  uint64_t atime_blobs_added = 0;    // pieces of the atime table (snapshot/atimes.h)
  uint64_t bytes_read = 0;           // content bytes read from disk
  uint64_t bytes_added = 0;          // plaintext bytes of new blobs
  uint64_t bytes_added_stored = 0;   // their stored (compressed, encrypted) size
  uint64_t total_files = 0, total_bytes = 0;
  uint64_t files_changed_during_read = 0;
  uint64_t errors = 0;
  double duration_s = 0;
};

struct Manifest {
  // 2: the trees hold atime 0 and the atimes live in the table `atimes`
  // points to (snapshot/atimes.h); 1: the trees hold the atimes.
  uint32_t version = 2;
  std::string time;      // RFC 3339 with nanoseconds, UTC
  int64_t time_ns = 0;   // Unix time in ns
  std::string host;
  std::string user;
  std::vector<std::string> paths;  // absolute, as given (exact bytes, base64 in JSON if not UTF-8)
  std::vector<std::string> tags;
  Id tree;
  std::vector<Id> atimes;  // the atime table's data blobs, in order (version 2)
  std::optional<Id> parent;
  bool partial = false;
  std::vector<std::string> error_samples;  // first errors, for the operator
  Summary summary;
  std::string program_version;
};

Bytes EncodeManifest(const Manifest& m);
// The summary as the manifest's JSON object, and back (Corruption for a
// count of the wrong type; missing counts are 0).
nlohmann::json SummaryToJson(const Summary& s);
Result<Summary> SummaryFromJson(const nlohmann::json& s);
Result<Manifest> DecodeManifest(ByteView payload);

struct SnapshotInfo {
  Id id;
  Manifest manifest;
};

// Loads every snapshot's manifest, oldest first. Damaged snapshots are
// skipped and returned in `damaged` when given.
Result<std::vector<SnapshotInfo>> LoadSnapshots(storage::Repository& repo,
                                                std::vector<Status>* damaged = nullptr);

struct SnapshotFilter {
  std::string host;
  std::vector<std::string> tags;   // all must be present
  std::vector<std::string> paths;  // exact set, when non-empty
};
bool Matches(const Manifest& m, const SnapshotFilter& f);

// Resolves "latest" (newest matching `filter`) or a unique hex prefix.
// NotFound / InvalidArgument (ambiguous) with a clear message.
Result<SnapshotInfo> FindSnapshot(storage::Repository& repo, const std::string& spec,
                                  const SnapshotFilter& filter = {});

std::string FormatTimeNs(int64_t ns);  // RFC 3339 UTC with 9 fraction digits
int64_t NowNs();

}  // namespace custos::snapshot
