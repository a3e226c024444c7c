#include "agent/remote_target.h"

#include <algorithm>

#include "storage/blob.h"

namespace custos::agent {

using nlohmann::json;
namespace cap = custos::protocol;

RemoteTarget::RemoteTarget(std::string job, const Key32& chunker_key, const snapshot::ChunkerParams& params,
                           int zstd_level, size_t max_queued_bytes)
    : job_(std::move(job)),
      chunker_key_(chunker_key),
      params_(params),
      zstd_level_(zstd_level),
      max_queued_(max_queued_bytes) {}

bool RemoteTarget::Knows(const Id& id) const {
  std::lock_guard<std::mutex> g(mu_);
  return known_.count(id) > 0;
}

Result<bool> RemoteTarget::Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) {
  Pending p{id, type, false, plaintext.size(), {}};
  p.zstd = storage::ZstdCompress(plaintext, zstd_level_, &p.data);  // in the caller's thread: all cores compress
  if (!p.zstd) p.data.assign(plaintext.begin(), plaintext.end());
  size_t size = p.data.size();
  std::unique_lock<std::mutex> l(mu_);
  // Bounded: wait while the queue is full (the session drains it).
  cv_.wait(l, [&] { return queued_bytes_ + size <= max_queued_ || queued_bytes_ == 0 || !failed_.empty(); });
  if (!failed_.empty()) return UnavailableError("backup job " + job_ + ": " + failed_);
  queued_bytes_ += size;
  queue_.push_back(std::move(p));
  *stored += size;
  return true;
}

void RemoteTarget::Pump(const std::function<void(cap::Message)>& send, uint64_t* credit, int* slots) {
  std::lock_guard<std::mutex> g(mu_);
  if (!failed_.empty()) return;
  bool freed = false;
  while (!to_send_.empty() && to_send_.front().data.size() <= *credit && *slots > 0) {
    Pending& p = to_send_.front();
    cap::Message m = cap::Make("BLOB", 0,
                               {{"job", job_},
                                {"id", p.id.Hex()},
                                {"kind", p.type == storage::BlobType::kTree ? "tree" : "data"},
                                {"compression", p.zstd ? "zstd" : "none"},
                                {"size", p.raw_size}});
    m.payloads.emplace_back(reinterpret_cast<const char*>(p.data.data()), p.data.size());
    *credit -= p.data.size();
    --*slots;
    queued_bytes_ -= p.data.size();
    ++blobs_sent_;
    bytes_sent_ += p.data.size();
    known_.insert(p.id);
    to_send_.pop_front();
    send(std::move(m));
    freed = true;
  }
  if (!have_outstanding_ && to_send_.empty() && !queue_.empty()) {
    json ids = json::array();
    size_t n = std::min(queue_.size(), cap::kMaxIdsPerHave);
    for (size_t i = 0; i < n; ++i) {
      ids.push_back(queue_.front().id.Hex());
      asked_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    have_outstanding_ = true;
    send(cap::Make("HAVE", 0, {{"job", job_}, {"ids", std::move(ids)}}));
  }
  if (commit_ && !commit_sent_ && queue_.empty() && asked_.empty() && to_send_.empty()) {
    commit_sent_ = true;
    send(cap::Make("COMMIT", 0, *commit_));
  }
  if (freed) cv_.notify_all();
}

void RemoteTarget::OnLack(const json& ids) {
  std::lock_guard<std::mutex> g(mu_);
  std::unordered_set<Id, IdHash> lacking;
  for (const auto& s : ids) {
    if (auto id = Id::FromHex(s.get<std::string>())) lacking.insert(*id);
  }
  for (auto& p : asked_) {
    if (lacking.count(p.id)) {
      to_send_.push_back(std::move(p));
    } else {
      queued_bytes_ -= p.data.size();
      known_.insert(p.id);
    }
  }
  asked_.clear();
  have_outstanding_ = false;
  cv_.notify_all();
}

void RemoteTarget::OnDone(const Id& snapshot) {
  std::lock_guard<std::mutex> g(mu_);
  done_ = snapshot;
  cv_.notify_all();
}

void RemoteTarget::Fail(const std::string& reason) {
  std::lock_guard<std::mutex> g(mu_);
  if (failed_.empty()) failed_ = reason.empty() ? "failed" : reason;
  cv_.notify_all();
}

Result<Id> RemoteTarget::Commit(snapshot::Manifest* m) {
  const snapshot::Summary& s = m->summary;
  json atimes = json::array();
  for (const auto& id : m->atimes) atimes.push_back(id.Hex());
  json summary = snapshot::SummaryToJson(s);
  summary["partial"] = m->partial;
  summary["error_samples"] = m->error_samples;
  std::unique_lock<std::mutex> l(mu_);
  if (!failed_.empty()) return UnavailableError("backup job " + job_ + ": " + failed_);
  commit_ = json{{"job", job_}, {"tree", m->tree.Hex()}, {"atimes", atimes}, {"paths", m->paths},
                 {"summary", summary}};
  cv_.wait(l, [&] { return done_.has_value() || !failed_.empty(); });
  if (!failed_.empty()) return UnavailableError("backup job " + job_ + ": " + failed_);
  return *done_;
}

}  // namespace custos::agent
