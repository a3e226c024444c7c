// The agent's side of a restore (doc/protocols/cap.md, section 5.2; design
// D32): the ordinary restorer (restore/restorer.h) runs on the agent's job
// thread with a RemoteSource, which pulls the blobs it needs from the
// appliance:
//
//   LoadTree / PrefetchTrees (restorer)  -- queue tree IDs, newest first so
//                                           that they arrive in the walk's
//                                           depth-first order
//   Fetch (restorer)                     -- queue the data IDs; `workers`
//                                           threads decode what arrives
//   Pump (session thread)                -- WANT up to kMaxWanted IDs in
//                                           flight; CREDIT back the bytes
//                                           consumed
//   OnBlob / OnLack (session thread)     -- store what arrived, wake the
//                                           waiting threads
//
// Every blob is decompressed and checked (SHA-256 == its ID) before the
// restorer sees it; the restorer checks each whole file again. Memory: data
// payloads waiting for a worker are bounded by the credit the agent grants
// (kWindow); trees are credited back on arrival and kept until the walk
// reads them, and prefetching stops while kMaxTreeCache bytes of them wait.
//
// RestoreRun is the job around it: parses the JOB params, runs the
// restorer on its own thread, reports PROGRESS and finally RESULT (or
// ERROR when the restore could not start).
//
// Thread-safety: as marked per call; the session thread never blocks on
// the restorer (Pump and On* take one mutex for short, bounded work).
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "protocol/message.h"
#include "restore/restorer.h"
#include "restore/source.h"

namespace custos::agent {

class RemoteSource : public restore::RestoreSource {
 public:
  // The credit the agent grants: payload bytes the appliance may have in
  // flight or waiting here. At least protocol::kMaxPayload, so that any
  // blob can be sent.
  static constexpr uint64_t kWindow = protocol::kMaxPayload;
  // Trees received and not yet read by the walk, beyond which no more are
  // prefetched (demand loads still go).
  static constexpr uint64_t kMaxTreeCache = 32u << 20;
  static constexpr size_t kMaxPrefetched = 4096;

  explicit RemoteSource(std::string job) : job_(std::move(job)) {}

  // ---- restore::RestoreSource (the restorer's threads)
  Result<snapshot::Tree> LoadTree(const Id& id) override;
  void PrefetchTrees(const std::vector<Id>& ids) override;
  void Fetch(const std::vector<Id>& ids, int workers, const Sink& sink) override;

  // ---- the session thread
  // Sends the first CREDIT, WANTs and CREDITs as they are due; `send`
  // numbers and sends one message.
  void Pump(const std::function<void(protocol::Message)>& send);
  // A BLOB for this job (the codec checked its fields).
  void OnBlob(const protocol::Message& m);
  // A LACK for this job: the appliance cannot give these blobs.
  void OnLack(const nlohmann::json& ids);
  // The job ended (an ERROR, a lost connection, the agent stopping): every
  // waiting and later call fails with `reason`.
  void Fail(const std::string& reason);
  // The session broke (cap.md section 7): the IDs wanted and not yet
  // answered are asked for again, and the credit granted afresh, on the
  // next session that continues the job. What arrived is kept.
  void Detach();

 private:
  struct Arrived {
    bool zstd = false;
    uint64_t raw_size = 0;
    std::string payload;
    std::string lacked;  // non-empty: the appliance could not give it (why)
  };
  void Answered(const Id& id);  // mu_ held
  // Decompresses and checks one blob.
  static Result<Bytes> Decode(const Id& id, const Arrived& a);

  const std::string job_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string failed_;
  bool initial_credit_sent_ = false;
  uint64_t to_return_ = 0;  // credit consumed here and not yet given back
  size_t outstanding_ = 0;  // IDs wanted and not yet answered
  std::deque<Id> inflight_;  // those IDs, in the order asked (answers come in that order)
  // Trees: queued (front first), requested (queued or in flight, not yet
  // read), arrived (waiting for the walk).
  std::deque<Id> tree_queue_;
  std::unordered_set<Id, IdHash> trees_requested_;
  std::unordered_map<Id, Arrived, IdHash> trees_;
  uint64_t tree_bytes_ = 0;
  // Data of the running Fetch: queued, requested and not yet delivered,
  // arrived (waiting for a worker).
  std::deque<Id> data_queue_;
  std::unordered_set<Id, IdHash> data_pending_;
  std::deque<std::pair<Id, Arrived>> ready_;
  size_t remaining_ = 0;  // blobs of the Fetch not yet given to its sink
};

class RestoreRun {
 public:
  // Parses the JOB params and starts the restorer's thread. InvalidArgument
  // for bad params (answered with ERROR 400).
  static Result<std::unique_ptr<RestoreRun>> Start(const std::string& job, uint64_t job_seq,
                                                   const nlohmann::json& params);
  ~RestoreRun();  // abandons a running restore and joins its thread

  const std::string& id() const { return job_; }
  // Session thread: pumps the source, sends PROGRESS every second and, when
  // the restore is over, RESULT (or ERROR 500 with ref = the JOB when it
  // could not start). Returns true once the job is over.
  bool Pump(const std::function<void(protocol::Message)>& send);
  // BLOB and LACK of this job.
  void OnMessage(const protocol::Message& m);
  // Ends the job from the session's side and joins the thread.
  void Abandon(const std::string& why);
  // The session broke; the job continues on the next one (Detach), where
  // an ERROR about it refers to the resuming HELLO.
  void Detach() { source_.Detach(); }
  void Resumed(uint64_t hello_seq) { job_seq_ = hello_seq; }
  // "restored N files, M failed" once over.
  std::string Summary() const;

 private:
  RestoreRun(std::string job, uint64_t job_seq) : job_(std::move(job)), job_seq_(job_seq), source_(job_) {}

  const std::string job_;
  uint64_t job_seq_;
  RemoteSource source_;
  restore::RestoreOptions options_;
  Id tree_;
  std::vector<Id> atimes_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  Result<restore::RestoreResult> result_ = UnavailableError("not run");  // set before finished_
  std::atomic<uint64_t> files_{0}, bytes_{0};
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

}  // namespace custos::agent
