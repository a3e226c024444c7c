#include "agent/remote_collect.h"

#include <algorithm>

namespace custos::agent {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

constexpr size_t kMaxEvents = 256;
constexpr size_t kMaxQueued = size_t(16) << 20;
// A batch the collector has not filled is sent after this long anyway.
constexpr auto kBatchAge = std::chrono::milliseconds(50);

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

// A path as JSON: `path`, plus `path_hex` (the exact bytes) when it is not
// UTF-8 and `path` could only show it with replacement characters.
void PutPath(json& e, const std::string& path) {
  e["path"] = path;
  if (!ValidUtf8(path)) e["path_hex"] = ToHex(AsBytes(path));
}

}  // namespace

class CollectRun::Sink : public evidence::CollectSink {
 public:
  explicit Sink(std::string job) : job_(std::move(job)) {}

  // ---- the collector's thread
  Status BeginItem(const evidence::ItemStart& s) override {
    json e = {{"e", "begin"}, {"item", ++item_}, {"artifact", s.artifact}, {"kind", s.kind}};
    if (!s.path.empty()) PutPath(e, s.path);
    if (!s.argv.empty()) e["argv"] = s.argv;
    e["before"] = s.before;
    return Add(std::move(e), {});
  }
  Status Data(ByteView chunk) override { return Add({{"e", "data"}, {"length", chunk.size()}}, chunk); }
  Status EndItem(const evidence::ItemEnd& x) override {
    json e = {{"e", "end"},
              {"size", x.size},
              {"sha256", x.sha256},
              {"after", x.after.is_object() ? x.after : json::object()},
              {"changed", x.changed}};
    e["exit"] = x.exit_code;
    if (!x.stderr_text.empty()) e["stderr"] = x.stderr_text;
    return Add(std::move(e), {});
  }
  Status AbortItem(const std::string& reason) override { return Add({{"e", "abort"}, {"reason", reason}}, {}); }
  Status Gap(const std::string& artifact, const std::string& path, const std::string& reason) override {
    json e = {{"e", "gap"}, {"artifact", artifact}, {"reason", reason}};
    PutPath(e, path);
    return Add(std::move(e), {});
  }
  Status Footprint(const std::string& what) override { return Add({{"e", "footprint"}, {"what", what}}, {}); }
  Result<std::vector<Retry>> Drain() override {
    std::unique_lock lock(mu_);
    CloseBatchLocked();
    cv_.wait(lock, [&] { return !failed_.empty() || (queue_.empty() && inflight_.empty()); });
    if (!failed_.empty()) return UnavailableError(failed_);
    std::vector<Retry> out;
    out.swap(redo_);
    return out;
  }
  // The last event: the task's counts.
  Status Finish(const evidence::CollectCounts& c) {
    json counts = {{"planned", c.planned}, {"collected", c.collected}, {"failed", c.failed},
                   {"absent", c.absent},   {"retried", c.retried},     {"bytes", c.bytes}};
    RETURN_IF_ERROR(Add({{"e", "finish"}, {"counts", counts}}, {}));
    std::lock_guard lock(mu_);
    CloseBatchLocked();
    finish_queued_ = true;
    return Status::Ok();
  }

  // ---- the session thread
  void Pump(const std::function<void(cap::Message)>& send, uint64_t* credit, int* slots) {
    std::lock_guard lock(mu_);
    if (!batch_.events.empty() && std::chrono::steady_clock::now() - batch_.opened >= kBatchAge) CloseBatchLocked();
    while (!queue_.empty() && *slots > 0 && queue_.front().payload.size() <= *credit) {
      Batch& b = queue_.front();
      send(cap::Make("EVIDENCE", 0, {{"job", job_}, {"n", b.n}, {"events", b.events}}, {b.payload}));
      *credit -= b.payload.size();
      --*slots;
      inflight_.push_back(std::move(b));
      queue_.pop_front();
    }
  }
  void OnCredit() {
    std::lock_guard lock(mu_);
    if (inflight_.empty()) return;
    queued_ -= inflight_.front().payload.size();
    inflight_.pop_front();
    cv_.notify_all();
  }
  void OnRedo(const json& items) {
    std::lock_guard lock(mu_);
    for (const auto& i : items) {
      if (i.is_object() && i.contains("artifact") && i["artifact"].is_string() && i.contains("path") &&
          i["path"].is_string()) {
        std::string path = i["path"];
        if (i.contains("path_hex") && i["path_hex"].is_string()) {
          if (auto b = FromHex(i["path_hex"].get<std::string>())) path.assign(b->begin(), b->end());
        }
        redo_.push_back({i["artifact"].get<std::string>(), path});
      }
    }
  }
  void Detach() {
    std::lock_guard lock(mu_);
    while (!inflight_.empty()) {
      queue_.push_front(std::move(inflight_.back()));
      inflight_.pop_back();
    }
  }
  void Fail(const std::string& why) {
    std::lock_guard lock(mu_);
    if (failed_.empty()) failed_ = why;
    cv_.notify_all();
  }
  // Every message, the final one included, was answered.
  bool Done() {
    std::lock_guard lock(mu_);
    return finish_queued_ && queue_.empty() && inflight_.empty() && batch_.events.empty();
  }

 private:
  struct Batch {
    uint64_t n = 0;
    json events = json::array();
    std::string payload;
    std::chrono::steady_clock::time_point opened;
  };

  Status Add(json event, ByteView data) {
    std::unique_lock lock(mu_);
    if (batch_.events.size() >= kMaxEvents || batch_.payload.size() + data.size() > evidence::kChunkBytes) {
      CloseBatchLocked();
    }
    cv_.wait(lock, [&] { return !failed_.empty() || queued_ + data.size() <= kMaxQueued || queued_ == 0; });
    if (!failed_.empty()) return UnavailableError(failed_);
    if (batch_.events.empty()) batch_.opened = std::chrono::steady_clock::now();
    batch_.events.push_back(std::move(event));
    batch_.payload.append(reinterpret_cast<const char*>(data.data()), data.size());
    queued_ += data.size();
    return Status::Ok();
  }
  void CloseBatchLocked() {
    if (batch_.events.empty()) return;
    batch_.n = ++n_;
    queue_.push_back(std::move(batch_));
    batch_ = Batch{};
  }

  const std::string job_;
  uint64_t item_ = 0;  // collector thread only
  std::mutex mu_;
  std::condition_variable cv_;
  Batch batch_;                 // being filled
  std::deque<Batch> queue_;     // closed, waiting for credit
  std::deque<Batch> inflight_;  // sent, no CREDIT yet
  size_t queued_ = 0;           // payload bytes in all three
  uint64_t n_ = 0;
  std::vector<Retry> redo_;
  bool finish_queued_ = false;
  std::string failed_;
};

CollectRun::CollectRun(std::string job, uint64_t job_seq)
    : job_(std::move(job)), job_seq_(job_seq), sink_(std::make_unique<Sink>(job_)) {}

Result<std::unique_ptr<CollectRun>> CollectRun::Start(const std::string& job, uint64_t job_seq, const json& p) {
  std::unique_ptr<CollectRun> r(new CollectRun(job, job_seq));
  try {
    ASSIGN_OR_RETURN(r->recipe_, evidence::ParseRecipe(p.at("recipe").get<std::string>()));
    if (p.contains("excludes")) r->options_.excludes = p.at("excludes").get<std::vector<std::string>>();
    r->options_.max_file_bytes = p.value("max_file_bytes", uint64_t(0));
    r->options_.cmd_timeout_s = p.value("cmd_timeout_s", 300);
    if (r->options_.cmd_timeout_s <= 0) return InvalidArgumentError("collect: cmd_timeout_s must be positive");
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("bad collect parameters: ") + e.what());
  }
  CollectRun* self = r.get();
  self->options_.cancel = &self->cancel_;
  self->options_.progress = [self](uint64_t items, uint64_t bytes) {
    self->items_ = items;
    self->bytes_ = bytes;
  };
  r->thread_ = std::thread([self] {
    auto res = evidence::Collect(self->recipe_, self->options_, *self->sink_);
    if (res.ok()) {
      Status s = self->sink_->Finish(*res);
      if (!s.ok()) res = s;
    }
    self->result_ = std::move(res);
    self->finished_ = true;
  });
  return r;
}

CollectRun::~CollectRun() {
  cancel_ = true;
  sink_->Fail("agent stopping");
  if (thread_.joinable()) thread_.join();
}

bool CollectRun::Pump(const std::function<void(cap::Message)>& send, uint64_t* credit, int* slots) {
  sink_->Pump(send, credit, slots);
  auto now = std::chrono::steady_clock::now();
  if (now - last_progress_ >= std::chrono::seconds(1)) {
    send(cap::Make("PROGRESS", 0, {{"job", job_}, {"files", items_.load()}, {"bytes", bytes_.load()}}));
    last_progress_ = now;
  }
  if (!finished_) return false;
  if (thread_.joinable()) thread_.join();
  if (!result_.ok()) {
    if (!error_sent_) {
      send(cap::MakeError(0, cap::ErrorCode::kInternal, "collection failed: " + result_.status().message(), job_seq_));
      error_sent_ = true;
    }
    return true;
  }
  return sink_->Done();
}

void CollectRun::OnCredit() { sink_->OnCredit(); }
void CollectRun::OnRedo(const json& items) { sink_->OnRedo(items); }
void CollectRun::Detach() { sink_->Detach(); }

std::string CollectRun::Summary() const {
  if (!finished_) return "running";
  if (!result_.ok()) return "failed: " + result_.status().ToString();
  const auto& c = *result_;
  return "collected " + std::to_string(c.collected) + " of " + std::to_string(c.planned) + " items, " +
         std::to_string(c.failed) + " failed, " + std::to_string(c.absent) + " absent";
}

}  // namespace custos::agent
