// The appliance's side of a restore through an agent (doc/protocols/cap.md,
// section 5.2; design D32). The agent runs the ordinary restorer and pulls
// what it needs; this class decides what it may have and sends it:
//
//   Plan         resolves the snapshot and the subpath and collects the
//                blobs of that subtree (its trees, their data, the trees on
//                the path down to it, the snapshot's atime table): the
//                job's allowance. Nothing else is ever sent for this job.
//   OnWant       queues requested IDs; one outside the allowance is
//                PermissionDenied (the server answers 403 and fails the job)
//   OnCredit     the agent grants payload bytes
//   Pump         sends BLOBs for queued IDs, in order, while the agent's
//                credit lasts; a blob the repository cannot give is
//                answered with LACK (the agent fails the files using it)
//   Finish/Fail  builds and saves the signed restore report
//
// Bounded state: at most protocol::kMaxWanted queued IDs (more is
// ResourceExhausted: 429) and one loaded blob waiting for credit.
//
// Thread-safety: custosd's single thread; not thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "protocol/message.h"
#include "restore/restorer.h"
#include "snapshot/manifest.h"

namespace custos::storage {
class Repository;
}

namespace custos::appliance {

class RestoreJob {
 public:
  // From the control request {agent, snapshot, subpath, target, overwrite,
  // verify, includes, excludes, host}. `snapshot` is an ID, a unique prefix
  // or "latest" (of `host`, by default of the agent's own host).
  // InvalidArgument for bad options (the target must be absolute);
  // NotFound for an unknown snapshot or subpath.
  static Result<std::unique_ptr<RestoreJob>> Plan(storage::Repository& repo, const std::string& agent,
                                                  const nlohmann::json& request);

  // The JOB params: snapshot, tree, subpath, target, atimes, options.
  nlohmann::json Params() const;
  const snapshot::SnapshotInfo& snapshot() const { return snap_; }
  size_t allowance() const { return allowed_.size(); }
  // The blobs it may send: a prune spares them while the job runs.
  const std::unordered_set<Id, IdHash>& allowed() const { return allowed_; }

  // A WANT's IDs (the codec checked their form). PermissionDenied names
  // the first ID outside the allowance (the server answers 403);
  // InvalidArgument when more than kMaxWanted would be outstanding (429).
  // Either fails the job.
  Status OnWant(const nlohmann::json& ids);
  void OnCredit(uint64_t bytes) { credit_ += bytes; }
  // The agent resumes the job on a new session (cap.md section 7): it asks
  // again for what it wanted and grants fresh credit, so what this side
  // held for the old session is dropped.
  void Resume() {
    wanted_.clear();
    head_.reset();
    credit_ = 0;
  }
  // Sends (through `send`, which numbers the message) every BLOB the
  // credit allows, and a LACK for each wanted blob that cannot be read.
  void Pump(const std::string& job, const std::function<void(protocol::Message)>& send);

  struct Outcome {
    std::string state;  // "ok", "partial", "failed"
    std::string error;
    std::string report;  // the saved report's ID (hex), or empty if saving failed
    uint64_t files = 0, bytes = 0;
  };
  // The agent's RESULT: builds the report from its counts and failures
  // (untrusted input: read defensively) and saves it.
  Outcome Finish(const std::string& agent, const nlohmann::json& counts, const nlohmann::json& failures);
  // The job failed before a RESULT: a report with the error is saved too.
  Outcome Fail(const std::string& agent, const std::string& error);

  uint64_t blobs_sent() const { return blobs_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  explicit RestoreJob(storage::Repository& repo) : repo_(repo) {}
  Outcome Save(const std::string& agent, const restore::RestoreResult& r, uint64_t failures_total,
               const std::string& error);

  struct Loaded {
    Id id;
    bool tree = false, zstd = false;
    uint64_t raw_size = 0;
    std::string payload;
  };

  storage::Repository& repo_;
  snapshot::SnapshotInfo snap_;
  std::string subpath_ = "/", target_;
  restore::RestoreOptions options_;  // overwrite, verify, includes, excludes
  std::unordered_set<Id, IdHash> allowed_;
  std::deque<Id> wanted_;
  std::optional<Loaded> head_;  // loaded, waiting for credit
  uint64_t credit_ = 0;
  uint64_t blobs_sent_ = 0, bytes_sent_ = 0;
  std::string started_;  // RFC 3339
};

}  // namespace custos::appliance
