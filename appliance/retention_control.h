// Retention requests: forget (apply a retention policy, scheduler/
// retention.h) and holds (snapshot/holds.h), as JSON request -> JSON reply.
// One handler serves custosd's control socket and `custos forget|hold
// --repo` on a local repository, so the two modes cannot drift and the CLI
// prints both from the same reply.
//
// Requests (objects with "cmd"):
//   forget        keep_last, keep_hourly, keep_daily, keep_weekly,
//                 keep_monthly, keep_yearly (int, -1 unlimited), keep_within
//                 ("30d"), hosts (list), timezone, dry_run
//   hold-add      snapshot (ID prefix or "latest"), reason, case, user
//   hold-list     -
//   hold-release  hold (ID prefix), reason, user
//   prune         grace ("24h", "0"; default 24h), max_waste (percent,
//                 default 20), dry_run (storage/prune.h)
// A forget with "prune":true prunes after removing (grace and max_waste as
// for prune).
// Replies: {"ok":true, ...} (see HandleRetentionRequest) or {"ok":false,
// "error":TEXT, "code":"usage"|"error"}; "usage" marks a request the user
// must change (an empty policy, a bad duration or zone, a missing reason).
//
// Forget removes only snapshot files: their data stays until a prune, which
// marks unreferenced blobs and deletes them after the grace period (D38). A
// held snapshot is never removed, so neither is its data.
//
// Thread-safety: as the repository's; call from one thread at a time.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "scheduler/retention.h"
#include "storage/prune.h"
#include "storage/repository.h"

namespace custos::appliance {

struct ForgetRequest {
  scheduler::RetentionPolicy policy;
  std::vector<std::string> hosts;  // only these hosts' snapshots (empty: all)
  std::string zone;                // IANA zone of the periods (empty: the system's)
  bool dry_run = false;
};
// The {"cmd":"forget",...} request.
std::string ForgetRequestJson(const ForgetRequest& request);

// A policy as the JSON object of its request keys (keep_last ...,
// keep_within), and back: how schedules keep theirs in SQLite.
std::string PolicyJson(const scheduler::RetentionPolicy& policy);
Result<scheduler::RetentionPolicy> ParsePolicyJson(const std::string& text);

// A prune request's options (its grace, waste limit, dry run) and back.
struct PruneRequest {
  int64_t grace_s = storage::kDefaultPruneGraceS;
  double max_waste = storage::kDefaultMaxWaste;
  bool dry_run = false;
};
std::string PruneRequestJson(const PruneRequest& request);
// InvalidArgument for a bad grace or waste limit.
Result<PruneRequest> ParsePruneRequest(const std::string& request_json);

// What the caller knows beyond the repository: for custosd, the blobs its
// running jobs rely on (received, or answered HAVE from) that no snapshot
// references yet; prune never sweeps them. `progress` gets human progress
// lines (the CLI prints them on stderr, custosd logs them).
struct RetentionContext {
  storage::BlobSet protected_blobs;
  std::function<void(const std::string&)> progress;
};

// Whether `cmd` is one of the requests above.
bool IsRetentionCommand(const std::string& cmd);
// Whether the request changes the repository (a forget or prune that is not
// a dry run, hold-add, hold-release): the caller must hold the writer lock.
bool RetentionRequestWrites(const std::string& request_json);

// Serves one request; `who` is recorded in hold records (its user replaced
// by the request's "user" when given). Forget replies
//   {"ok":true, "dry_run":B, "policy":"keep-last 3", "timezone":ZONE,
//    "groups":[{"host":H, "paths":[...],
//               "keep":[{"id":HEX, "time":RFC3339, "reasons":["held","last 1"]}],
//               "remove":[{"id":HEX, "time":RFC3339}]}],
//    "kept":N, "removed":N (gone, or would go), "damaged":["snapshot ...: ..."]};
// hold-add and hold-release {"ok":true, "hold":HOLD}; hold-list
// {"ok":true, "holds":[HOLD...], "damaged":[...]} where HOLD is
// {"id", "snapshot", "reason", "case", "user", "host", "time", "released",
//  and when released "release_id", "released_by", "released_at", "release_reason"}.
// A damaged hold file makes forget fail (nothing removed): it might hold
// anything. Prune replies
//   {"ok":true, "dry_run":B, "grace_s":N, "max_waste":PCT, "referenced":N,
//    "marked":N, "marked_bytes":N, "pending":N, "swept":N, "swept_bytes":N,
//    "kept_garbage":N, "protected":N, "packs_dropped":N, "packs_repacked":N,
//    "packs_written":N, "retired_deleted":N, "blobs_copied":N, "bytes_copied":N,
//    "index_files_written":N, "index_files_removed":N, "bytes_freed":N,
//    "bytes_before":N, "bytes_after":N};
// a forget with "prune":true adds that object as "prune". A damaged
// snapshot, index or mark file makes prune fail with nothing deleted.
std::string HandleRetentionRequest(storage::Repository& repo, const std::string& request_json,
                                   const storage::Actor& who, const RetentionContext& context = {});

}  // namespace custos::appliance
