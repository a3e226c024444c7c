// The restorer: writes a snapshot (or part of it) back to a directory,
// verifying every file against its recorded SHA-256.
//
// Safety (doc/design.md, "Restore"): every file-system call is relative to
// an open directory descriptor and never follows a symlink (openat with
// O_NOFOLLOW, mkdirat, symlinkat, renameat), names come from tree blobs that
// reject '/', NUL, "." and "..", so nothing is written outside the target
// whatever the snapshot or a symlink planted in the target says. A file is
// written under a temporary name and renamed into place only after it was
// read back and its SHA-256 matched: an interrupted or failed restore never
// leaves a truncated or wrong file under a real name. The target directory
// is flock()ed: two restores into one target cannot interleave.
//
// Plan: the tree walk creates directories, links and special files and
// lists every file's chunks; then the source delivers each needed blob
// once (restore/source.h: a LocalSource reads pack by pack in offset
// order with a few worker threads, the agent's RemoteSource receives them
// from the appliance), and a chunk used by many files is written to each.
//
// Thread-safety: Restore uses its own threads; call it from one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/atimes.h"
#include "snapshot/tree.h"
#include "storage/repository.h"

namespace custos::restore {

class RestoreSource;

enum class OverwritePolicy { kNever, kIfChanged, kAlways };

struct RestoreOptions {
  std::string target;
  std::string subpath = "/";             // path inside the snapshot
  std::vector<std::string> includes;     // only matching paths (and their parents)
  std::vector<std::string> excludes;
  // When not empty: only these exact paths (files, links or special files,
  // "/" being the root of the restored subtree) and the directories leading to them.
  // Drills use it for a random sample.
  std::vector<std::string> paths;
  OverwritePolicy overwrite = OverwritePolicy::kIfChanged;
  bool verify = true;
  int workers = 0;  // 0: 2 x hardware concurrency (reads and writes overlap)
  // The snapshot's atime table (snapshot::LoadAtimes); null when its trees
  // hold the atimes (manifest version 1).
  std::shared_ptr<const snapshot::AtimeTable> atimes;
  // Why the table could not be read (LoadAtimesFor): reported as a failure
  // of "/", and files keep the atime of the restore.
  std::string atimes_error;
  std::function<void(uint64_t files_done, uint64_t files_total, uint64_t bytes_done, uint64_t bytes_total)> progress;
};

struct RestoreFailure {
  std::string path;    // inside the target, "/"-rooted, exact bytes
  std::string reason;
  std::string Describe() const { return path + ": " + reason; }
};

struct RestoreResult {
  uint64_t files_restored = 0;   // written (and verified when verify is on)
  uint64_t files_skipped = 0;    // already correct in the target
  uint64_t files_verified = 0;
  uint64_t files_failed = 0;
  uint64_t dirs = 0, links = 0, specials = 0;
  uint64_t bytes_written = 0;
  double duration_s = 0;
  std::vector<RestoreFailure> failures;
  bool ok() const { return files_failed == 0 && failures.empty(); }
};

// Restores a snapshot: loads its atime table into the options
// (LoadAtimesFor) and restores its tree. Busy if another restore holds the
// target; PermissionDenied / NoSpace / IOError for the target itself.
// Per-file failures are in the result.
Result<RestoreResult> Restore(storage::Repository& repo, const snapshot::Manifest& snapshot, RestoreOptions options);
// Restores a tree as it is: options.atimes must be set for a tree of a
// snapshot with an atime table (manifest version 2), or atimes are not restored.
Result<RestoreResult> Restore(storage::Repository& repo, const Id& root_tree, const RestoreOptions& options);
// The same from any source (restore/source.h): the agent restores what the
// appliance sends it with this very code. The repository overloads above
// wrap a LocalSource.
Result<RestoreResult> Restore(RestoreSource& source, const Id& root_tree, const RestoreOptions& options);

// Loads the atime table of the snapshot with manifest `m` into
// options->atimes. A table that cannot be read does not stop a restore (the
// content matters more): the reason goes to options->atimes_error.
void LoadAtimesFor(storage::Repository& repo, const snapshot::Manifest& m, RestoreOptions* options);

}  // namespace custos::restore
