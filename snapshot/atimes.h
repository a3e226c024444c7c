// Atime tables: the access times of a snapshot, kept out of its tree blobs.
//
// Reading a file moves its atime without changing anything else (no ctime
// change), and a nightly backup, a virus scan or rsync --checksum reads
// many files. With atimes inside the tree blobs, each such read makes the
// file's tree and every tree above it new, and a night that reads the whole
// server stores every tree again. So a snapshot's trees carry atime 0 for
// every node, and the real atimes of non-directory nodes live in one table
// per snapshot, keyed by tree ID, stored as ordinary content-chunked data
// blobs referenced from the manifest (`atimes`). Trees then change only when
// something other than an atime changes, as restic's do (restic simply
// stores mtime in place of atime by default). Format: doc/formats/snapshot.md,
// "Atime tables"; design note D28.
//
// Two places in one snapshot with the same tree ID hold nodes with equal
// dev/inode, so the same files: their atimes are equal too, except for a
// read between the two stats; the table keeps the first.
//
// Thread-safety: AtimeTable is immutable after Decode; AtimeCollector is
// safe for concurrent Add.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "snapshot/tree.h"
#include "storage/repository.h"

namespace custos::snapshot {

struct Manifest;
class Chunker;
class BackupTarget;

class AtimeTable {
 public:
  static Result<AtimeTable> Decode(ByteView data);
  // The same bytes Decode read: the encoding is canonical.
  Bytes Encode() const;

  // Sets the atimes of t's non-directory nodes from the entry of `tree`.
  // A tree without an entry is left as it is (all its atimes were 0). An
  // entry whose count differs from the tree's is Corruption.
  Status Apply(const Id& tree, Tree* t) const;

  size_t trees() const { return index_.size(); }
  size_t entries() const { return times_.size(); }

 private:
  friend class AtimeCollector;
  std::vector<std::pair<Id, uint32_t>> index_;  // sorted by ID; offset into times_
  std::vector<uint32_t> counts_;                // per index_ entry
  std::vector<Timestamp> times_;
};

// Collects atimes while trees are written, then encodes the table.
class AtimeCollector {
 public:
  // Takes the atimes out of t (setting them to 0) and remembers them under
  // the ID the tree will have. Call before encoding the tree.
  void Take(Tree* t, std::vector<Timestamp>* out) const;
  void Add(const Id& tree, std::vector<Timestamp> atimes);
  // The encoded table (empty when no node had a non-zero atime).
  Bytes Encode();

 private:
  std::mutex mu_;
  std::unordered_map<Id, std::vector<Timestamp>, IdHash> map_;
};

// Stores an encoded table as data blobs cut by `chunker` (so that unchanged
// parts deduplicate across snapshots) and returns their IDs in order;
// adds the blobs that were new to `added`.
struct AddedBlobs {
  uint64_t blobs = 0, bytes = 0, stored = 0;  // count, plaintext and stored bytes
};
Result<std::vector<Id>> StoreAtimes(BackupTarget& target, const Chunker& chunker, ByteView table,
                                    AddedBlobs* added);

// The snapshot's table, or nullptr for a snapshot without one (its trees
// hold the atimes themselves: manifests of version 1).
Result<std::shared_ptr<const AtimeTable>> LoadAtimes(storage::Repository& repo, const Manifest& m);
// The table made of the blobs `ids` (in order), each read with `read`;
// nullptr when `ids` is empty. For readers other than a repository (a
// remote restore reads through the appliance: restore/source.h).
Result<std::shared_ptr<const AtimeTable>> LoadAtimes(const std::vector<Id>& ids,
                                                     const std::function<Result<Bytes>(const Id&)>& read);

}  // namespace custos::snapshot
