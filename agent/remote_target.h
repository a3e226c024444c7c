// The agent's backup target: the archiver (snapshot/archiver.h) runs on the
// agent exactly as in local mode, and this target hands its blobs to the
// appliance over CAP/1 (doc/protocols/cap.md, section 5.1):
//
//   Put (archiver threads)  -- zstd --> queue (bounded: Put blocks when full)
//   Pump (session thread)   -- HAVE up to 512 IDs --> LACK --> BLOB for the
//                              lacking ones, within the appliance's credit
//   Commit (archiver)       -- waits until every blob is out, then COMMIT,
//                              then DONE {snapshot} or an error
//
// The agent holds no repository key: blobs travel compressed but not
// sealed (CURVE encrypts the connection), and the appliance checks each
// blob's SHA-256 before it seals and stores it. The agent never reads from
// the appliance: its files cache is its own. After a committed backup it
// keeps that snapshot's trees in `cache_dir` (one file per set of paths,
// written atomically); the next backup of the same paths uses them as the
// parent, so unchanged files are not read and their chunks, already on the
// appliance, are not offered again. A COMMIT the appliance refuses drops
// the cache (the next run reads everything).
//
// A dropped session does not end the job: Detach puts what was in flight
// back in line, and the next session that continues the job sends it again
// (content addressed: a blob that did arrive is stored once).
//
// Thread-safety: Put/Knows from any thread; Pump and the On* calls from the
// session thread; Commit from the archiver's main thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/message.h"
#include "snapshot/target.h"

namespace custos::agent {

class RemoteTarget : public snapshot::BackupTarget {
 public:
  // `cache_dir`: where the files cache lives (empty: no cache).
  RemoteTarget(std::string job, const Key32& chunker_key, const snapshot::ChunkerParams& params, int zstd_level,
               std::string cache_dir = "", size_t max_queued_bytes = size_t(16) << 20);

  // ---- snapshot::BackupTarget
  const Key32& chunker_key() const override { return chunker_key_; }
  snapshot::ChunkerParams chunker_params() const override { return params_; }
  Status Ready() const override { return Status::Ok(); }
  bool Knows(const Id& id) const override;
  Result<bool> Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) override;
  Result<std::optional<snapshot::SnapshotInfo>> FindParent(const std::optional<Id>&, const std::string&,
                                                           const std::vector<std::string>& paths) override;
  std::optional<snapshot::Tree> ReadTree(const Id& id) override;
  Result<Id> Commit(snapshot::Manifest* m) override;

  // ---- the session thread
  // Sends what can go now (HAVE, BLOBs within *credit bytes and *slots
  // messages, COMMIT); `send` numbers and sends one message. The appliance
  // answers each BLOB with one CREDIT, which gives the bytes and the slot
  // back: with a few hundred slots neither side's ZeroMQ queue (1000
  // messages) can fill, so no message is ever dropped.
  void Pump(const std::function<void(protocol::Message)>& send, uint64_t* credit, int* slots);
  // A BLOB message carries up to this many payload bytes (one larger blob
  // goes alone).
  static constexpr size_t kBatchBytes = 1u << 20;
  void OnLack(const nlohmann::json& ids);
  // One CREDIT: the oldest BLOB message in flight was answered.
  void OnCredit();
  void OnDone(const Id& snapshot);
  // The session broke (cap.md section 7): what was in flight is sent again
  // on the next session that continues the job: BLOBs not yet answered by a
  // CREDIT, the outstanding HAVE, the COMMIT if no DONE came.
  void Detach();
  // The job failed (an ERROR from the appliance, it was given up):
  // blocked and later calls return this reason. `drop_cache`: the
  // appliance refused the job's blobs or COMMIT, so the files cache may
  // name blobs it lacks (the next backup reads everything).
  void Fail(const std::string& reason, bool drop_cache = false);
  const std::string& job() const { return job_; }

  uint64_t blobs_sent() const { return blobs_sent_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  struct Pending {
    Id id;
    storage::BlobType type;
    bool zstd;
    uint64_t raw_size;
    Bytes data;  // zstd frame or plaintext
  };
  const std::string job_;
  const Key32 chunker_key_;
  const snapshot::ChunkerParams params_;
  const int zstd_level_;
  const size_t max_queued_;
  const std::string cache_dir_;
  std::string cache_file_;  // for the paths of this backup (set by FindParent)
  std::unordered_map<Id, Bytes, IdHash> parent_trees_;  // the cached snapshot's trees
  std::unordered_map<Id, Bytes, IdHash> new_trees_;     // trees Put in this backup
  std::unordered_set<Id, IdHash> parent_blobs_;         // every blob the cached snapshot references

  void SaveCache(const Id& root, const snapshot::Summary& summary);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;    // waiting for a HAVE
  std::vector<Pending> asked_;   // in the outstanding HAVE
  std::deque<Pending> to_send_;  // lacking: waiting for credit
  std::deque<std::vector<Pending>> inflight_;  // BLOB messages sent, no CREDIT yet (bounded by the credit)
  size_t queued_bytes_ = 0;      // all three
  bool have_outstanding_ = false;
  std::unordered_set<Id, IdHash> known_;  // the appliance did not ask for these
  std::optional<nlohmann::json> commit_;  // COMMIT fields, once Commit is called
  bool commit_sent_ = false;
  std::optional<Id> done_;
  std::string failed_;
  bool drop_cache_ = false;
  uint64_t blobs_sent_ = 0, bytes_sent_ = 0;
};

}  // namespace custos::agent
