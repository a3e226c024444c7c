// Repository: the encrypted, deduplicated, crash-safe store of blobs and
// snapshots on top of a Backend (doc/formats/repository.md).
//
// Write ordering (the crash-safety contract): packs are saved (fsynced)
// before the index file that names them, and index files before the
// snapshot that references their blobs. A snapshot file is the commit
// point. A writer killed at any moment leaves only complete files: at worst
// packs no index names, which the next writer indexes again on LockForWrite.
//
// One writer at a time: LockForWrite takes the backend's writer lock
// (Busy if taken). Readers take no lock: they see every file that was
// complete when they listed it.
//
// Thread-safety: all methods may be called from several threads at once.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"
#include "storage/backend.h"
#include "storage/blob.h"
#include "storage/index.h"
#include "storage/index_file.h"
#include "storage/keys.h"
#include "storage/pack.h"

namespace custos::storage {

struct InitOptions {
  uint32_t pack_size = 0;  // 0: kDefaultPackSize
  int zstd_level = -1;     // -1: kDefaultZstdLevel; 0: no compression
  Argon2Params kdf;
  bool make_recovery_key = true;
  std::string label = "initial";
};

class Repository;

struct InitResult {
  std::unique_ptr<Repository> repo;
  std::string recovery_key;  // empty unless make_recovery_key
};

struct OpenOptions {
  bool load_index = true;
};

// Who the writer or key-slot creator is; filled from the process by default.
struct Actor {
  std::string host, user, command;
  static Actor FromProcess(const std::string& command);
  std::string Describe() const;  // "pid 12 user@host (command) since TIME"
};

class Repository {
 public:
  // Creates a new repository. AlreadyExists if one is there.
  static Result<InitResult> Init(std::unique_ptr<Backend> backend, const std::string& passphrase,
                                 const InitOptions& options, const Actor& actor);
  // Opens with a passphrase or the recovery key. NotFound: no repository
  // there. Unauthenticated: no slot opens with `secret`. Corruption /
  // Integrity: the config is damaged or altered.
  static Result<std::unique_ptr<Repository>> Open(std::unique_ptr<Backend> backend,
                                                  const std::string& secret,
                                                  const OpenOptions& options = {});
  ~Repository();

  const RepoConfig& config() const { return config_; }
  const MasterKeys& keys() const { return *keys_; }
  Backend& backend() { return *backend_; }
  const std::string& current_key_id() const { return current_key_; }
  // Whether the slot in use is the recovery slot.
  bool opened_with_recovery_key() const { return current_is_recovery_; }
  // Index files that could not be loaded at Open (damaged); their blobs are
  // unknown to this session. `check` reports them.
  const std::vector<Status>& index_load_errors() const { return index_errors_; }
  std::vector<std::string> index_file_names() const;

  // ---- writing (each needs LockForWrite first, else an abort: a bug)
  // Busy if another writer holds the lock. Also removes temporaries, loads
  // the index (if Open did not, or what other writers added since) and
  // indexes packs that an interrupted writer left unindexed.
  Status LockForWrite(const Actor& actor);
  bool HasWriterLock() const;

  // Indexes packs that no index file names (as LockForWrite does), except
  // packs a prune replaced (retired_packs). Needs the writer lock.
  Status IndexOrphanPacks();
  // Rebuilds the in-memory index from every index file, honouring
  // `supersedes` (after a prune replaced index files). Call after Flush,
  // from the writer: an open pack or unindexed packs are a bug (abort).
  Status ReloadIndex();
  // Packs named only by superseded index files: a prune replaced them.
  // Those still on disk wait for a later prune to delete them after the
  // grace period (storage/prune.h); they are neither live nor orphans.
  std::unordered_set<Id, IdHash> retired_packs() const;

  // Stores a blob unless already present. Returns true when it was new.
  Result<bool> AddBlob(BlobType type, ByteView plaintext);
  // Same with a precomputed ID and an already-encoded blob (pipelines
  // encode in parallel and hand over here).
  Result<bool> AddEncodedBlob(EncodedBlob blob);
  // Whether a blob is stored or waiting in the open pack.
  bool KnowsBlob(const Id& id) const;
  // Saves the open pack and writes one index file for every pack not yet
  // indexed. After OK, everything added so far is durable and indexed.
  Status Flush();
  // Flush, then save a snapshot envelope with `payload`; returns its ID
  // (the file name: SHA-256 of the file's bytes). This is the commit point.
  Result<Id> SaveSnapshot(ByteView payload);

  // ---- keys (need the writer lock)
  Result<KeySlot> AddKey(const std::string& passphrase, const Argon2Params& kdf, const std::string& label,
                         const Actor& actor);
  // Removes the slot whose id starts with `id_prefix`. InvalidArgument for
  // the slot in use or an ambiguous prefix; NotFound if none matches.
  // `removed_id`, when given, receives the full ID of the removed slot.
  Status RemoveKey(const std::string& id_prefix, std::string* removed_id = nullptr);
  // Replaces the slot in use with a new one for `passphrase`.
  Result<KeySlot> ChangePassphrase(const std::string& passphrase, const Argon2Params& kdf, const Actor& actor);

  struct SlotListing {
    std::vector<KeySlot> slots;
    std::vector<Status> problems;          // damaged or altered slot files
    std::vector<std::string> problem_ids;  // file name of each problem, same order
  };
  Result<SlotListing> ListKeys();

  // ---- reading
  bool HasBlob(const Id& id) const;
  std::optional<BlobLocation> FindBlob(const Id& id) const;
  // NotFound if unknown; Corruption/Integrity naming pack and blob.
  Result<Bytes> ReadBlob(const Id& id) const;
  Result<std::vector<Id>> ListSnapshots();
  Result<Bytes> LoadSnapshot(const Id& id);
  size_t BlobCount() const;
  // Copies the index under the lock (for check and statistics).
  void ForEachIndexEntry(const std::function<void(const BlobLocation&)>& fn) const;
  size_t PackCount() const;

  // ---- reports (restore and drill reports). Saving needs no writer lock:
  // a report is one new, write-once file named by its hash, independent of
  // packs and indexes, so a restore can record its report while a backup
  // holds the lock.
  Result<Id> SaveReport(ByteView payload);
  Result<std::vector<Id>> ListReports();
  Result<Bytes> LoadReport(const Id& id);

  // ---- holds: write-once hold and release records whose payload belongs
  // to the snapshot layer (snapshot/holds.h). Saving needs the writer lock:
  // forget decides and removes under that lock, so no hold can appear
  // between its decision and its removals.
  Result<Id> SaveHold(ByteView payload);
  Result<std::vector<Id>> ListHolds();
  Result<Bytes> LoadHold(const Id& id);

  // ---- forgetting (needs the writer lock). Removes one snapshot file, the
  // snapshot's commit point; its packs and index entries stay until a prune
  // (not built yet). NotFound if there is no such snapshot. Knows nothing
  // of holds: call snapshot::ForgetSnapshots, which refuses held ones.
  Status RemoveSnapshot(const Id& id);

  // Ed25519 key of this repository (reports, checkpoints).
  SigningKey signing_key() const { return SigningKeyFromSeed(keys_->signing_seed); }

 private:
  Repository() = default;
  // Loads index files not loaded yet (all of them at Open; at
  // LockForWrite those another writer added since).
  Status LoadIndex();
  // Reads and decodes every index file whose name is not in `skip`;
  // unreadable or damaged ones go to `errors`.
  Status ReadIndexFiles(const std::unordered_set<std::string>& skip,
                        std::vector<std::pair<std::string, IndexFile>>* files, std::vector<Status>* errors);
  Status SavePackLocked();
  Status WriteIndexLocked();
  Status SaveKeySlot(const KeySlot& slot);

  std::unique_ptr<Backend> backend_;
  RepoConfig config_;
  std::unique_ptr<MasterKeys> keys_;
  std::string current_key_;
  bool current_is_recovery_ = false;
  bool index_loaded_ = false;

  mutable std::mutex mu_;
  Index index_;
  std::vector<std::string> index_files_;      // loaded (live) index files
  std::unordered_set<std::string> superseded_files_;  // present, superseded, skipped
  std::unordered_set<Id, IdHash> retired_packs_;      // named only by superseded files
  std::vector<Status> index_errors_;
  std::unique_ptr<WriterLock> lock_;
  std::unique_ptr<PackWriter> open_pack_;  // null until the first blob
  std::unordered_set<Id, IdHash> open_pack_ids_;
  std::vector<IndexPack> unindexed_;
};

// Unlocks `secret` against the repository at `backend` and returns the
// slot id that opened (for diagnostics). Used by Open.

}  // namespace custos::storage
