// The appliance's side of an evidence collection (doc/protocols/cap.md
// section 5.3): turns an agent's EVIDENCE events into custody-ledger
// records and stored evidence objects.
//
//   Start   plan record (the recipe's name, version, SHA-256 and text, as an
//           object) and task.start, both before the agent hears of the job
//   begin   a new evidence object is opened (evidence::CaseStore::NewObject)
//   data    its bytes, written as they arrive (nothing is buffered whole)
//   end     the object is committed under the SHA-256 the appliance
//           computed; equal to the agent's hash and size: an `item` (or
//           `cmd`) record holding both hashes; different: a `gap` record
//           and, for files, a REDO asking the agent to read it again
//   gap, footprint   records as sent (the agent's name as host)
//   finish  task.end with the agent's counts and the appliance's own (the
//           store then signs a checkpoint)
//
// Every event is checked (members, types, order: data only inside an item,
// finish last); anything wrong fails the job with a task.end saying why.
// Messages are numbered (`n`): one already processed (re-sent after a
// resumed session) is acknowledged and ignored, a gap in the numbering is
// an error.
//
// Thread-safety: one thread (custosd's loop).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "evidence/case_store.h"
#include "evidence/recipe.h"

namespace custos::appliance {

class CollectJob {
 public:
  struct Request {
    std::string case_id;
    std::string agent;
    std::string agent_key;  // "sha256:<hex>" of the agent's CURVE public key
    evidence::Recipe recipe;
    std::vector<std::string> excludes;
    uint64_t max_file_bytes = 0;
    int cmd_timeout_s = 300;
  };
  // Writes the plan and task.start records. InvalidArgument / NotFound from
  // the store (a closed or unknown case).
  static Result<std::unique_ptr<CollectJob>> Start(evidence::CaseStore& store, const Request& request,
                                                   const evidence::Actor& by);
  ~CollectJob();

  // The JOB params for the agent.
  nlohmann::json Params() const;
  uint64_t task() const { return task_seq_; }
  const std::string& case_id() const { return req_.case_id; }

  struct Outcome {
    nlohmann::json redo = nlohmann::json::array();  // file items to read again (REDO)
    bool finished = false;  // the finish event came: the job is over (see state())
    Status error;           // the job must fail (a protocol or storage error)
  };
  // One EVIDENCE message.
  Outcome OnEvidence(uint64_t n, const nlohmann::json& events, std::string_view payload);

  // The job ends with `state` ("ok", "partial", "failed"): writes task.end
  // unless the finish event did. Idempotent; an error is the store's.
  Status End(const std::string& state, const std::string& error);

  // "ok" or "partial" once finished; counts for the job history.
  std::string state() const;
  uint64_t items() const { return items_; }
  uint64_t bytes() const { return bytes_; }
  std::string Summary() const;

 private:
  CollectJob(evidence::CaseStore& store, Request request) : store_(store), req_(std::move(request)) {}
  Status Event(const nlohmann::json& e, std::string_view payload, size_t* offset, Outcome* out);
  Status EndItem(const nlohmann::json& e, Outcome* out);
  // Queues a record; Flush writes the queue with one fdatasync (one
  // EVIDENCE message's records at a time: a durable append per item would
  // cost a disk flush per small file).
  Status Record(std::string_view type, nlohmann::json body);
  Status Flush();
  std::vector<evidence::NewRecord> pending_;

  evidence::CaseStore& store_;
  Request req_;
  evidence::Actor agent_actor_;
  uint64_t task_seq_ = 0;
  uint64_t last_n_ = 0;
  bool ended_ = false, finished_ = false;

  struct Open {
    nlohmann::json begin;
    std::unique_ptr<evidence::ObjectWriter> writer;
    uint64_t received = 0;
  };
  std::optional<Open> item_;

  nlohmann::json agent_counts_;
  uint64_t items_ = 0, gaps_ = 0, absent_ = 0, mismatches_ = 0, footprints_ = 0, bytes_ = 0;
};

}  // namespace custos::appliance
