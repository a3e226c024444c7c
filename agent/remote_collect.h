// The agent's evidence collection (doc/protocols/cap.md section 5.3): the
// collector (evidence/collect.h) runs on its own thread into a RemoteSink,
// which batches its events into EVIDENCE messages (up to 256 events and
// 1 MiB of content each); the session thread sends them within the
// appliance's credit and message slots.
//
// Acknowledged and resumable: each EVIDENCE carries the job's message
// number `n`; the appliance answers each with one CREDIT and processes a
// number once (a number it has seen is credited and ignored). A broken
// session puts the unanswered messages back in line, and the next session
// that continues the job sends them again. Nothing is written to the
// server's disks: the collector blocks while 16 MiB wait to be sent.
//
// Thread-safety: the sink's calls from the collector thread; Pump, OnCredit,
// OnRedo and Detach from the session thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "evidence/collect.h"
#include "protocol/message.h"

namespace custos::agent {

class CollectRun {
 public:
  // Parses the JOB params (recipe text, excludes, limits) and starts the
  // collector's thread. InvalidArgument for bad params (ERROR 400).
  static Result<std::unique_ptr<CollectRun>> Start(const std::string& job, uint64_t job_seq,
                                                   const nlohmann::json& params);
  ~CollectRun();  // cancels a running collection and joins its thread

  const std::string& id() const { return job_; }
  // Sends what can go (EVIDENCE within *credit bytes and *slots messages)
  // and PROGRESS every second; ERROR 500 (ref = the JOB) if the collector
  // failed. True once the job is over (the final message was answered, or
  // it failed).
  bool Pump(const std::function<void(protocol::Message)>& send, uint64_t* credit, int* slots);
  // One CREDIT of this job: the oldest EVIDENCE in flight was processed.
  void OnCredit();
  // REDO {items}: file items whose hash the appliance found wrong.
  void OnRedo(const nlohmann::json& items);
  // The session broke: unanswered messages are sent again next session.
  void Detach();
  // The resuming HELLO's seq: an ERROR about the job now refers to it.
  void Resumed(uint64_t hello_seq) { job_seq_ = hello_seq; }
  std::string Summary() const;

 private:
  class Sink;
  CollectRun(std::string job, uint64_t job_seq);

  const std::string job_;
  uint64_t job_seq_;
  evidence::Recipe recipe_;
  evidence::CollectOptions options_;
  std::atomic<bool> cancel_{false};
  std::unique_ptr<Sink> sink_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  Result<evidence::CollectCounts> result_ = UnavailableError("not run");  // set before finished_
  bool error_sent_ = false;
  std::atomic<uint64_t> items_{0}, bytes_{0};
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
};

}  // namespace custos::agent
