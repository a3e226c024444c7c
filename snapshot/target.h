// Where a backup goes: the seam between the archiver (walk, read, chunk,
// hash, compress) and the store. The local target is a repository this
// process holds the writer lock of (`custos backup`); the agent's target
// sends blobs to the appliance over CAP/1 (agent/remote_target.h), so the
// appliance and its agents run exactly the same archiver.
//
// Thread-safety: Knows and Put are called from many archiver threads at
// once; the other calls from the archiver's main thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "snapshot/chunker.h"
#include "snapshot/manifest.h"
#include "snapshot/tree.h"
#include "storage/blob.h"

namespace custos::storage {
class Repository;
}

namespace custos::snapshot {

class BackupTarget {
 public:
  virtual ~BackupTarget() = default;

  // The chunker secret and parameters of the repository the blobs end in,
  // so that the same content is cut the same way wherever it is read.
  virtual const Key32& chunker_key() const = 0;
  virtual ChunkerParams chunker_params() const = 0;
  // Why a backup cannot start (e.g. the writer lock is not held), or Ok.
  virtual Status Ready() const = 0;
  // Whether the target certainly holds blob `id` (false when unsure: the
  // blob is then offered again, and deduplicated there).
  virtual bool Knows(const Id& id) const = 0;
  // Stores one blob whose ID is SHA-256(plaintext). Returns whether it was
  // new; adds the bytes it takes in the store (compressed, sealed) to
  // *stored. May block (flow control). An error aborts the backup.
  virtual Result<bool> Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) = 0;
  // The parent snapshot for the files cache: `explicit_parent`, else the
  // newest snapshot of `host` with exactly these paths; nullopt for none.
  virtual Result<std::optional<SnapshotInfo>> FindParent(const std::optional<Id>& explicit_parent,
                                                         const std::string& host,
                                                         const std::vector<std::string>& paths) = 0;
  // A tree of the parent (plaintext, decoded), or nullopt when it cannot be
  // had: the parent is only a cache, so the files below are read again.
  virtual std::optional<Tree> ReadTree(const Id& id) = 0;
  // The commit point: writes the snapshot and returns its ID. A target may
  // stamp fields (the appliance sets host and time); *m is updated to what
  // was written.
  virtual Result<Id> Commit(Manifest* m) = 0;
};

// A repository opened by this process with its writer lock.
class LocalTarget : public BackupTarget {
 public:
  explicit LocalTarget(storage::Repository& repo) : repo_(repo) {}
  const Key32& chunker_key() const override;
  ChunkerParams chunker_params() const override;
  Status Ready() const override;
  bool Knows(const Id& id) const override;
  Result<bool> Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) override;
  Result<std::optional<SnapshotInfo>> FindParent(const std::optional<Id>& explicit_parent, const std::string& host,
                                                 const std::vector<std::string>& paths) override;
  std::optional<Tree> ReadTree(const Id& id) override;
  Result<Id> Commit(Manifest* m) override;

 private:
  storage::Repository& repo_;
};

}  // namespace custos::snapshot
