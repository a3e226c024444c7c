// Prune: two-phase garbage collection of a repository (doc/design.md D38,
// doc/formats/repository.md "Pruning").
//
// Phase 1, mark: every index entry whose blob is not referenced is recorded,
// with its pack and the time, in a write-once mark file (`marks/`). Phase 2,
// sweep: entries of marks older than the grace period whose blob is still
// unreferenced and not protected are garbage. A pack that is all garbage is
// dropped; a pack whose garbage exceeds `max_waste` of its size is repacked
// (its live blobs copied as stored: ciphertext, no re-encryption, each one
// decrypted and hashed first so that damage is never copied). Then one new
// index file that supersedes every index file naming those packs is saved,
// and only then are dropped packs deleted. Repacked packs are *retired*:
// named only by superseded index files, they stay on disk for one more grace
// period (a reader that loaded the old index can still read them) and are
// deleted by a later prune. One Prune call does both phases: it marks, then
// sweeps what is due, so `grace = 0` does everything at once.
//
// The referenced set comes from the caller (the snapshot layer walks the
// snapshots: snapshot::ReferencedBlobs), called after the repository is
// flushed. `protected_blobs` is what a running writer relies on without a
// snapshot yet (custosd: blobs its running backups received or may answer
// HAVE from); a protected blob is never swept.
//
// Crash safety: every step publishes one complete file (packs, then the
// index file, then deletions, marks last), so a crash between any two
// steps leaves either the old or the new index authoritative and never an
// indexed blob without its pack. Leftovers (orphan packs of an unfinished
// repack, retired packs, superseded index files, consumed marks) are
// cleaned by the next prune; duplicates are harmless.
//
// Needs the writer lock (abort otherwise) unless dry_run. Runs as the only
// writer activity at that moment: the caller must not add blobs
// concurrently (custosd runs it on its event loop, between messages).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>

#include "base/status.h"
#include "storage/repository.h"

namespace custos::storage {

using BlobSet = std::unordered_set<Id, IdHash>;

// 24 hours: a reader that listed a snapshot before it was forgotten, or a
// writer that decided "the store has this blob", has a day to finish. PBS
// uses the same margin for its chunk atimes.
constexpr int64_t kDefaultPruneGraceS = 24 * 3600;
// A pack is repacked when its garbage exceeds 20 % of its size: copying the
// live rest then costs at most 4 bytes written per byte freed, and no pack
// keeps more than a fifth of dead weight (see D38 for the trade-off).
constexpr double kDefaultMaxWaste = 0.20;

struct PruneOptions {
  int64_t grace_s = kDefaultPruneGraceS;  // 0: sweep what this run marks
  double max_waste = kDefaultMaxWaste;    // 0..1
  bool dry_run = false;                   // plan only: nothing written or removed
  int64_t now_ns = 0;                     // 0: the system clock (tests pass their own)
  std::function<void(const std::string& line)> progress;  // human progress lines
};

struct PruneStats {
  uint64_t referenced_blobs = 0;
  uint64_t marked_blobs = 0, marked_bytes = 0;    // newly marked in this run
  uint64_t pending_blobs = 0;                     // marked, grace not yet over
  uint64_t swept_blobs = 0, swept_bytes = 0;      // garbage removed from the index
  uint64_t kept_garbage_blobs = 0;                // due garbage left in packs under the waste limit
  uint64_t protected_blobs = 0;                   // due garbage spared by the protected set
  uint64_t packs_dropped = 0, packs_repacked = 0, packs_written = 0, retired_deleted = 0;
  uint64_t blobs_copied = 0, bytes_copied = 0;
  uint64_t index_files_written = 0, index_files_removed = 0, marks_removed = 0;
  uint64_t bytes_freed = 0;  // deleted file bytes minus new file bytes (never negative)
  uint64_t bytes_before = 0, bytes_after = 0;  // packs on disk
};

// Runs one prune. InvalidArgument for options out of range; Corruption
// (nothing deleted) when an index or mark file is damaged or a blob to copy
// does not verify; errors of `referenced` are returned as they are.
Result<PruneStats> Prune(Repository& repo, const std::function<Result<BlobSet>()>& referenced,
                         const BlobSet& protected_blobs, const PruneOptions& options);

// "0", "90s", "30m", "24h", "7d", "1w", "1d12h": a grace period in seconds.
// InvalidArgument otherwise.
Result<int64_t> ParseGrace(const std::string& text);

}  // namespace custos::storage
