// Restore drills: prove that a snapshot can be restored, and how fast,
// before it is needed.
//
// A drill restores a snapshot (all of it, or a random sample of its files)
// into a fresh scratch directory with verification on, measures the time,
// records a signed drill report in the repository (restore/report.h) and
// removes the scratch data. The report gives the measured restore rate and
// the time a full restore of the snapshot takes (measured with --all,
// extrapolated from the rate for a sample): the recovery time the office can
// promise.
//
// Thread-safety: RunDrill uses the restorer's threads; call from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/status.h"
#include "restore/report.h"
#include "snapshot/manifest.h"
#include "storage/repository.h"

namespace custos::restore {

struct DrillOptions {
  // 0: restore everything; else this many files chosen at random (every file
  // when the snapshot has fewer).
  uint64_t sample = 0;
  // Where the scratch directory is made (a fresh "custos-drill-XXXXXX" inside).
  std::string scratch_parent;
  bool keep_scratch = false;  // leave the restored data (for inspection)
  uint64_t seed = 0;          // 0: random; else a fixed sample (tests)
  std::function<void(uint64_t files_done, uint64_t files_total, uint64_t bytes_done, uint64_t bytes_total)> progress;
};

struct DrillResult {
  nlohmann::json body;  // the report body (also saved when report_id is set)
  std::optional<Id> report_id;
  Status report_status;  // why the report could not be saved, if not
  RestoreResult restore;
  bool ok() const { return restore.ok() && body.value("result", "") == "ok"; }
};

// Runs a drill of `snap`. Errors (Status) are for a drill that could not
// start: no space for the scratch data (NoSpace, with the sizes), scratch
// directory not creatable, unreadable snapshot tree. Per-file failures are
// in the result, which is then not ok().
Result<DrillResult> RunDrill(storage::Repository& repo, const snapshot::SnapshotInfo& snap,
                             const DrillOptions& options);

// Removes a directory tree without following symlinks, making read-only
// directories writable first (restored trees keep their modes). Paths
// outside `dir` are never touched.
Status RemoveTree(const std::string& dir);

}  // namespace custos::restore
