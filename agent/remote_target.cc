#include "agent/remote_target.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/crypto.h"
#include "base/file_util.h"

#include "storage/blob.h"

namespace custos::agent {

using nlohmann::json;
namespace cap = custos::protocol;

RemoteTarget::RemoteTarget(std::string job, const Key32& chunker_key, const snapshot::ChunkerParams& params,
                           int zstd_level, std::string cache_dir, size_t max_queued_bytes)
    : job_(std::move(job)),
      chunker_key_(chunker_key),
      params_(params),
      zstd_level_(zstd_level),
      max_queued_(max_queued_bytes),
      cache_dir_(std::move(cache_dir)) {}

namespace {

constexpr char kCacheMagic[8] = {'C', 'S', 'T', 'A', 'G', 'C', '1', '\n'};

// Cache file: magic, root tree ID, total files u64, total bytes u64, then
// (tree ID, u32 length, tree blob) until the end; all written atomically.
struct CacheFile {
  Id root;
  uint64_t files = 0, bytes = 0;
  std::unordered_map<Id, Bytes, IdHash> trees;
};

std::optional<CacheFile> ReadCache(const std::string& path) {
  auto data = ReadFile(path);
  if (!data.ok()) return std::nullopt;
  ByteReader r(*data);
  ByteView magic;
  CacheFile c;
  if (!r.GetBytes(8, &magic) || std::memcmp(magic.data(), kCacheMagic, 8) != 0 || !r.GetArray(&c.root.bytes) ||
      !r.GetU64(&c.files) || !r.GetU64(&c.bytes)) {
    return std::nullopt;
  }
  while (r.remaining() > 0) {
    Id id;
    uint32_t n;
    ByteView blob;
    if (!r.GetArray(&id.bytes) || !r.GetU32(&n) || !r.GetBytes(n, &blob)) return std::nullopt;
    if (Sha256(blob) != id) return std::nullopt;  // a damaged cache is no cache
    c.trees.emplace(id, Bytes(blob.begin(), blob.end()));
  }
  if (!c.trees.count(c.root)) return std::nullopt;
  return c;
}

}  // namespace

bool RemoteTarget::Knows(const Id& id) const {
  std::lock_guard<std::mutex> g(mu_);
  return known_.count(id) > 0 || parent_blobs_.count(id) > 0;
}

Result<std::optional<snapshot::SnapshotInfo>> RemoteTarget::FindParent(const std::optional<Id>&, const std::string&,
                                                                       const std::vector<std::string>& paths) {
  if (cache_dir_.empty()) return std::optional<snapshot::SnapshotInfo>();
  std::string key;
  for (const auto& p : paths) key += p + '\0';
  cache_file_ = cache_dir_ + "/" + Sha256(AsBytes(key)).Hex() + ".trees";
  auto c = ReadCache(cache_file_);
  if (!c) return std::optional<snapshot::SnapshotInfo>();
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& [id, blob] : c->trees) {
    auto t = snapshot::DecodeTree(blob);
    if (!t.ok()) return std::optional<snapshot::SnapshotInfo>();
    parent_blobs_.insert(id);
    for (const auto& n : t->nodes) {
      for (const auto& ch : n.content) parent_blobs_.insert(ch.id);
    }
  }
  parent_trees_ = std::move(c->trees);
  snapshot::SnapshotInfo info;
  info.manifest.tree = c->root;
  info.manifest.summary.total_files = c->files;
  info.manifest.summary.total_bytes = c->bytes;
  return std::optional<snapshot::SnapshotInfo>(std::move(info));
}

std::optional<snapshot::Tree> RemoteTarget::ReadTree(const Id& id) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = parent_trees_.find(id);
  if (it == parent_trees_.end()) return std::nullopt;
  auto t = snapshot::DecodeTree(it->second);
  if (!t.ok()) return std::nullopt;
  return std::move(t).value();
}

void RemoteTarget::SaveCache(const Id& root, const snapshot::Summary& summary) {
  if (cache_file_.empty()) return;
  // Every tree of the new snapshot: new ones, and unchanged ones from the old cache.
  Bytes out(kCacheMagic, kCacheMagic + 8);
  Append(out, ByteView(root.bytes.data(), root.bytes.size()));
  PutU64(out, summary.total_files);
  PutU64(out, summary.total_bytes);
  std::vector<Id> todo = {root};
  std::unordered_set<Id, IdHash> done;
  std::lock_guard<std::mutex> g(mu_);
  while (!todo.empty()) {
    Id id = todo.back();
    todo.pop_back();
    if (!done.insert(id).second) continue;
    const Bytes* blob = nullptr;
    if (auto it = new_trees_.find(id); it != new_trees_.end()) blob = &it->second;
    else if (auto jt = parent_trees_.find(id); jt != parent_trees_.end()) blob = &jt->second;
    if (!blob) return;  // incomplete: keep no cache rather than a wrong one
    Append(out, ByteView(id.bytes.data(), id.bytes.size()));
    PutU32(out, uint32_t(blob->size()));
    Append(out, *blob);
    auto t = snapshot::DecodeTree(*blob);
    if (!t.ok()) return;
    for (const auto& n : t->nodes) {
      if (n.type == snapshot::NodeType::kDir && !n.subtree.IsZero()) todo.push_back(n.subtree);
    }
  }
  if (MakeDirs(cache_dir_, 0700).ok()) (void)WriteFileAtomic(cache_file_, out, 0600, Overwrite::kYes);
}

Result<bool> RemoteTarget::Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) {
  if (type == storage::BlobType::kTree && !cache_dir_.empty()) {
    std::lock_guard<std::mutex> g(mu_);
    new_trees_.emplace(id, Bytes(plaintext.begin(), plaintext.end()));
  }
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
  // Lacking blobs go in BLOB messages of up to 256 blobs and kBatchBytes
  // (one larger blob alone), each within the credit: one message, header
  // and CREDIT for many small files instead of one each.
  while (!to_send_.empty() && to_send_.front().data.size() <= *credit && *slots > 0) {
    json entries = json::array();
    std::string payload;
    payload.reserve(std::min<uint64_t>(*credit, std::max(kBatchBytes, to_send_.front().data.size())));  // no regrowth
    std::vector<Pending> batch;
    while (!to_send_.empty() && entries.size() < cap::kMaxBlobsPerMessage) {
      Pending& p = to_send_.front();
      size_t n = p.data.size();
      if (n > *credit - payload.size() || (!batch.empty() && payload.size() + n > kBatchBytes)) break;
      entries.push_back(json{{"id", p.id.Hex()},
                             {"kind", p.type == storage::BlobType::kTree ? "tree" : "data"},
                             {"compression", p.zstd ? "zstd" : "none"},
                             {"size", p.raw_size},
                             {"length", n}});
      payload.append(reinterpret_cast<const char*>(p.data.data()), n);
      queued_bytes_ -= n;
      ++blobs_sent_;
      known_.insert(p.id);
      batch.push_back(std::move(p));
      to_send_.pop_front();
    }
    *credit -= payload.size();
    --*slots;
    bytes_sent_ += payload.size();
    inflight_.push_back(std::move(batch));
    send(cap::Make("BLOB", 0, {{"job", job_}, {"blobs", std::move(entries)}}, {std::move(payload)}));
    freed = true;
  }
  // The next HAVE goes as soon as the last LACK came, while its lacking
  // blobs are still being sent: the appliance never waits on a round trip.
  if (!have_outstanding_ && !queue_.empty()) {
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

void RemoteTarget::OnCredit() {
  std::lock_guard<std::mutex> g(mu_);
  if (!inflight_.empty()) inflight_.pop_front();
}

void RemoteTarget::Detach() {
  std::lock_guard<std::mutex> g(mu_);
  for (auto it = inflight_.rbegin(); it != inflight_.rend(); ++it) {
    for (auto p = it->rbegin(); p != it->rend(); ++p) {
      queued_bytes_ += p->data.size();
      to_send_.push_front(std::move(*p));
    }
  }
  inflight_.clear();
  for (auto it = asked_.rbegin(); it != asked_.rend(); ++it) queue_.push_front(std::move(*it));
  asked_.clear();
  have_outstanding_ = false;
  commit_sent_ = false;
}

void RemoteTarget::OnDone(const Id& snapshot) {
  std::lock_guard<std::mutex> g(mu_);
  done_ = snapshot;
  cv_.notify_all();
}

void RemoteTarget::Fail(const std::string& reason, bool drop_cache) {
  std::lock_guard<std::mutex> g(mu_);
  if (failed_.empty()) failed_ = reason.empty() ? "failed" : reason;
  drop_cache_ = drop_cache_ || drop_cache;
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
  if (!failed_.empty()) {
    // The appliance may lack what the cache says it has: start afresh.
    if (drop_cache_ && !cache_file_.empty()) ::unlink(cache_file_.c_str());
    return UnavailableError("backup job " + job_ + ": " + failed_);
  }
  Id snap = *done_;
  l.unlock();
  SaveCache(m->tree, m->summary);
  return snap;
}

}  // namespace custos::agent
