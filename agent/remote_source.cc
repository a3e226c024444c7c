#include "agent/remote_source.h"

#include <algorithm>

#include "base/crypto.h"
#include "restore/report.h"
#include "snapshot/tree.h"
#include "storage/blob.h"

namespace custos::agent {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

// Consumed credit is given back once this much has gathered, or at once
// when nothing waits here any more (so a blob the appliance holds back for
// lack of credit is never stuck).
constexpr uint64_t kCreditBatch = 1u << 20;
// A WANT goes out when this many IDs can be asked for (or all that are left).
constexpr size_t kMinWant = 64;
// Failures listed in RESULT: at most this many, and at most kMaxFailureBytes
// of them, so that the header stays well under protocol::kMaxHeader. The
// total is always in counts.failures.
constexpr size_t kMaxFailures = 1000;
constexpr size_t kMaxFailureBytes = 48u << 10;

}  // namespace

// ---- RemoteSource

Result<Bytes> RemoteSource::Decode(const Id& id, const Arrived& a) {
  if (!a.lacked.empty()) return NotFoundError("blob " + id.Short() + ": the appliance cannot give it (" + a.lacked + ")");
  ByteView raw(reinterpret_cast<const uint8_t*>(a.payload.data()), a.payload.size());
  Result<Bytes> plain = Bytes();
  if (a.zstd) {
    plain = storage::ZstdDecompress(raw, size_t(std::min<uint64_t>(a.raw_size, SIZE_MAX)));
  } else if (a.raw_size == raw.size()) {
    plain = Bytes(raw.begin(), raw.end());
  } else {
    plain = CorruptionError("size " + std::to_string(a.raw_size) + " differs from the payload's");
  }
  if (!plain.ok()) return plain.status().Annotate("blob " + id.Short() + " from the appliance");
  if (Sha256(*plain) != id) return IntegrityError("blob " + id.Short() + " from the appliance does not hash to its ID");
  return plain;
}

Result<snapshot::Tree> RemoteSource::LoadTree(const Id& id) {
  Arrived a;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (!trees_.count(id) && trees_requested_.insert(id).second) {
      tree_queue_.push_front(id);
    }
    cv_.wait(l, [&] { return trees_.count(id) || !failed_.empty(); });
    auto it = trees_.find(id);
    if (it == trees_.end()) return UnavailableError("tree " + id.Short() + ": " + failed_);
    a = std::move(it->second);
    trees_.erase(it);
    trees_requested_.erase(id);
    tree_bytes_ -= a.payload.size();
  }
  auto plain = Decode(id, a);
  if (!plain.ok()) return plain.status().Annotate("tree " + id.Short());
  auto t = snapshot::DecodeTree(*plain);
  if (!t.ok()) return t.status().Annotate("tree " + id.Short());
  return t;
}

void RemoteSource::PrefetchTrees(const std::vector<Id>& ids) {
  std::lock_guard<std::mutex> g(mu_);
  if (tree_bytes_ >= kMaxTreeCache || trees_requested_.size() >= kMaxPrefetched) return;
  // Pushed to the front in reverse, so the first subtree is asked for
  // first: the queue follows the walk's depth-first order.
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (trees_requested_.insert(*it).second) tree_queue_.push_front(*it);
  }
}

void RemoteSource::Fetch(const std::vector<Id>& ids, int workers, const Sink& sink) {
  if (ids.empty()) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    remaining_ = ids.size();
    for (const Id& id : ids) {
      if (data_pending_.insert(id).second) data_queue_.push_back(id);
      else --remaining_;  // asked twice: delivered once
    }
  }
  auto worker = [&] {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return remaining_ == 0 || !ready_.empty() || (!failed_.empty() && !data_pending_.empty()); });
      if (!ready_.empty()) {
        auto [id, a] = std::move(ready_.front());
        ready_.pop_front();
        l.unlock();
        sink(id, Decode(id, a));
        l.lock();
        to_return_ += a.payload.size();
        if (--remaining_ == 0) cv_.notify_all();
        continue;
      }
      if (remaining_ == 0) return;
      // Failed: what has not arrived never will.
      std::vector<Id> lost(data_pending_.begin(), data_pending_.end());
      data_pending_.clear();
      data_queue_.clear();
      std::string why = failed_;
      l.unlock();
      for (const Id& id : lost) sink(id, UnavailableError("blob " + id.Short() + ": " + why));
      l.lock();
      remaining_ -= std::min(remaining_, lost.size());
      cv_.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < std::max(1, workers); ++i) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

void RemoteSource::Pump(const std::function<void(cap::Message)>& send) {
  std::lock_guard<std::mutex> g(mu_);
  if (!failed_.empty()) return;
  if (!initial_credit_sent_) {
    initial_credit_sent_ = true;
    send(cap::Make("CREDIT", 0, {{"job", job_}, {"bytes", kWindow}}));
  }
  if (to_return_ >= kCreditBatch || (to_return_ > 0 && ready_.empty())) {
    send(cap::Make("CREDIT", 0, {{"job", job_}, {"bytes", to_return_}}));
    to_return_ = 0;
  }
  // Trees first (the walk waits for them), then data.
  for (auto* queue : {&tree_queue_, &data_queue_}) {
    while (!queue->empty() && outstanding_ < cap::kMaxWanted) {
      size_t room = cap::kMaxWanted - outstanding_;
      size_t n = std::min({room, queue->size(), cap::kMaxIdsPerHave});
      if (n < kMinWant && n < queue->size() && outstanding_ > 0) break;  // wait for a fuller WANT
      json ids = json::array();
      for (size_t i = 0; i < n; ++i) {
        ids.push_back(queue->front().Hex());
        queue->pop_front();
      }
      outstanding_ += n;
      for (const auto& s : ids) inflight_.push_back(*Id::FromHex(s.get<std::string>()));
      send(cap::Make("WANT", 0, {{"job", job_}, {"ids", std::move(ids)}}));
    }
  }
}

void RemoteSource::OnBlob(const cap::Message& m) {
  const std::string& payload = m.payloads[0];
  std::lock_guard<std::mutex> g(mu_);
  size_t offset = 0;  // the codec checked that the entries' lengths cut the payload exactly
  for (const auto& e : m.header["blobs"]) {
    size_t n = e["length"].get<uint64_t>();
    auto id = Id::FromHex(e["id"].get<std::string>());
    if (outstanding_ > 0) --outstanding_;
    if (id) Answered(*id);
    Arrived a;
    a.zstd = e["compression"] == "zstd";
    a.raw_size = e["size"];
    a.payload = payload.substr(offset, n);
    offset += n;
    if (id && e["kind"] == "tree" && trees_requested_.count(*id) && !trees_.count(*id)) {
      // Credited back at once: the walk reads trees in its own time, and a
      // data blob must never wait for a tree that waits for credit.
      to_return_ += n;
      tree_bytes_ += n;
      trees_.emplace(*id, std::move(a));
    } else if (id && data_pending_.erase(*id)) {
      ready_.emplace_back(*id, std::move(a));
    } else {
      to_return_ += n;  // not asked for (or twice): dropped
    }
  }
  cv_.notify_all();
}

void RemoteSource::OnLack(const json& ids) {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& s : ids) {
    auto id = Id::FromHex(s.get<std::string>());
    if (!id) continue;
    if (outstanding_ > 0) --outstanding_;
    Answered(*id);
    Arrived a;
    a.lacked = "unreadable in the appliance's repository";
    if (trees_requested_.count(*id) && !trees_.count(*id)) {
      trees_.emplace(*id, std::move(a));
    } else if (data_pending_.erase(*id)) {
      ready_.emplace_back(*id, std::move(a));
    }
  }
  cv_.notify_all();
}

void RemoteSource::Answered(const Id& id) {
  // In order, so almost always the front.
  auto it = std::find(inflight_.begin(), inflight_.end(), id);
  if (it != inflight_.end()) inflight_.erase(it);
}

void RemoteSource::Detach() {
  std::lock_guard<std::mutex> g(mu_);
  // Asked again first, in the order they were asked.
  for (auto it = inflight_.rbegin(); it != inflight_.rend(); ++it) {
    if (trees_requested_.count(*it) && !trees_.count(*it)) tree_queue_.push_front(*it);
    else if (data_pending_.count(*it)) data_queue_.push_front(*it);
  }
  inflight_.clear();
  outstanding_ = 0;
  // The new session's appliance side starts with no credit: grant the
  // window again (what waits here was already counted, so memory may
  // briefly hold up to twice the window).
  initial_credit_sent_ = false;
  to_return_ = 0;
}

void RemoteSource::Fail(const std::string& reason) {
  std::lock_guard<std::mutex> g(mu_);
  if (failed_.empty()) failed_ = reason.empty() ? "failed" : reason;
  cv_.notify_all();
}

// ---- RestoreRun

Result<std::unique_ptr<RestoreRun>> RestoreRun::Start(const std::string& job, uint64_t job_seq, const json& p) {
  std::unique_ptr<RestoreRun> r(new RestoreRun(job, job_seq));
  auto& o = r->options_;
  try {
    auto tree = Id::FromHex(p.at("tree").get<std::string>());
    if (!tree) return InvalidArgumentError("restore: bad tree ID");
    r->tree_ = *tree;
    for (const auto& a : p.at("atimes")) {
      auto id = Id::FromHex(a.get<std::string>());
      if (!id) return InvalidArgumentError("restore: bad atime blob ID");
      r->atimes_.push_back(*id);
    }
    o.target = p.at("target").get<std::string>();
    if (o.target.empty() || o.target[0] != '/') return InvalidArgumentError("restore: the target must be absolute");
    o.subpath = p.value("subpath", "/");
    std::string ow = p.value("overwrite", "if-changed");
    if (ow == "never") o.overwrite = restore::OverwritePolicy::kNever;
    else if (ow == "always") o.overwrite = restore::OverwritePolicy::kAlways;
    else if (ow == "if-changed") o.overwrite = restore::OverwritePolicy::kIfChanged;
    else return InvalidArgumentError("restore: bad overwrite policy " + ow);
    o.verify = p.value("verify", true);
    if (p.contains("includes")) o.includes = p.at("includes").get<std::vector<std::string>>();
    if (p.contains("excludes")) o.excludes = p.at("excludes").get<std::vector<std::string>>();
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("bad restore parameters: ") + e.what());
  }
  RestoreRun* self = r.get();
  o.progress = [self](uint64_t files, uint64_t, uint64_t bytes, uint64_t) {
    self->files_ = files;
    self->bytes_ = bytes;
  };
  r->thread_ = std::thread([self] {
    restore::RestoreOptions opts = self->options_;
    // The atime table through the same source; one that cannot be read
    // does not stop the restore (as in restore::LoadAtimesFor).
    auto t = restore::LoadAtimes(self->source_, self->atimes_);
    if (t.ok()) opts.atimes = *t;
    else opts.atimes_error = t.status().ToString();
    self->result_ = restore::Restore(self->source_, self->tree_, opts);
    self->finished_ = true;
  });
  return r;
}

RestoreRun::~RestoreRun() { Abandon("agent stopping"); }

void RestoreRun::Abandon(const std::string& why) {
  source_.Fail(why);
  if (thread_.joinable()) thread_.join();
}

void RestoreRun::OnMessage(const cap::Message& m) {
  if (m.type == "BLOB") source_.OnBlob(m);
  else if (m.type == "LACK") source_.OnLack(m.header["ids"]);
}

bool RestoreRun::Pump(const std::function<void(cap::Message)>& send) {
  if (finished_) {
    thread_.join();
    if (!result_.ok()) {
      send(cap::MakeError(0, cap::ErrorCode::kInternal, "restore failed: " + result_.status().ToString(), job_seq_));
      return true;
    }
    const auto& r = *result_;
    json failures = json::array();
    size_t bytes = 0;
    for (const auto& f : r.failures) {
      if (failures.size() >= kMaxFailures) break;
      json one{{"path", restore::JsonSafe(f.path)}, {"reason", restore::JsonSafe(f.reason)}};
      bytes += one.dump().size();
      if (bytes > kMaxFailureBytes) break;
      failures.push_back(std::move(one));
    }
    json counts{{"files_restored", r.files_restored}, {"files_skipped", r.files_skipped},
                {"files_verified", r.files_verified}, {"files_failed", r.files_failed},
                {"dirs", r.dirs},                     {"links", r.links},
                {"specials", r.specials},             {"bytes_written", r.bytes_written},
                {"duration_s", r.duration_s},         {"failures", uint64_t(r.failures.size())}};
    send(cap::Make("RESULT", 0, {{"job", job_}, {"counts", counts}, {"failures", failures}}));
    return true;
  }
  source_.Pump(send);
  auto now = std::chrono::steady_clock::now();
  if (now - last_progress_ >= std::chrono::seconds(1)) {
    send(cap::Make("PROGRESS", 0, {{"job", job_}, {"files", files_.load()}, {"bytes", bytes_.load()}}));
    last_progress_ = now;
  }
  return false;
}

std::string RestoreRun::Summary() const {
  if (!finished_) return "running";
  if (!result_.ok()) return "failed: " + result_.status().ToString();
  return "restored " + std::to_string(result_->files_restored) + " files, " + std::to_string(result_->files_failed) +
         " failed";
}

}  // namespace custos::agent
