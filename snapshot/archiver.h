// The archiver: backs up file trees into a snapshot.
//
// Pipeline (doc/design.md, "Backup pipeline"):
//   walker (own thread)      -- lstat, excludes, files cache --> file jobs
//   readers (N threads)      -- read, chunk, SHA-256 --> new chunks
//   encoders (cores threads) -- zstd, seal --> Repository::AddEncodedBlob
// A directory's tree blob is written when its last child completes, by
// whichever thread completes it; the snapshot is saved after everything is
// flushed (the commit point). Queues are bounded by count and bytes, so
// memory stays bounded whatever the tree looks like.
//
// Errors on single items (unreadable file or directory, vanished entry)
// are recorded, the item is skipped or kept with what could be read, and
// the snapshot is marked partial. Repository errors abort the backup.
//
// Thread-safety: Backup may run once at a time per Repository writer.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/manifest.h"
#include "storage/repository.h"

namespace custos::snapshot {

struct BackupProgress {
  uint64_t files_done = 0, bytes_done = 0, dirs_done = 0;
  uint64_t files_total = 0, bytes_total = 0;  // from the scanner, grows until scan_done
  bool scan_done = false;
  uint64_t errors = 0;
  double elapsed_s = 0;
};

struct BackupOptions {
  std::vector<std::string> paths;
  std::vector<std::string> excludes;  // glob patterns (see doc/cli.md)
  bool exclude_caches = false;
  bool one_file_system = false;
  std::vector<std::string> tags;
  std::string host;                   // default: this machine's name
  std::optional<Id> parent;           // default: found automatically
  bool use_parent = true;             // false: read every file (--force)
  int readers = 0;                    // 0: 4 (cold reads are latency-bound)
  int encoders = 0;                   // 0: hardware concurrency
  int64_t time_ns = 0;                // 0: now
  std::string program_version;
  std::function<void(const BackupProgress&)> progress;  // called from a timer thread
  int progress_interval_ms = 250;
  std::function<void(const std::string&)> warn;  // each item error, as it happens
};

struct BackupResult {
  Id snapshot_id;
  Manifest manifest;
  std::vector<std::string> errors;    // item errors (the snapshot is partial)
  std::vector<std::string> warnings;  // e.g. files that changed while read
};

class BackupTarget;
// Backs up into `target` (snapshot/target.h). Returns an error only when no
// snapshot could be made (target failure, or no path could be read).
Result<BackupResult> Backup(BackupTarget& target, const BackupOptions& options);
// Into a local repository; needs its writer lock.
Result<BackupResult> Backup(storage::Repository& repo, const BackupOptions& options);

// Turns a path argument into an absolute, lexically normalised path
// ("/a/./b/../c/" -> "/a/c"); does not follow symlinks.
std::string NormalizePath(const std::string& path);

// The backup paths as a snapshot records them: normalised, sorted, unique,
// and none inside another ("/a", "/a/b" -> "/a").
std::vector<std::string> BackupRoots(const std::vector<std::string>& paths);

// Whether `name` (at absolute path `path`) matches an exclude pattern:
// patterns without '/' match the name, others the whole path or a prefix
// of it ending at a '/'. fnmatch(3) globbing.
bool MatchesExclude(const std::vector<std::string>& patterns, const std::string& path,
                    const std::string& name);

}  // namespace custos::snapshot
