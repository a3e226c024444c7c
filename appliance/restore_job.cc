#include "appliance/restore_job.h"

#include <algorithm>

#include "restore/report.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "storage/backend.h"
#include "storage/blob.h"
#include "storage/repository.h"

namespace custos::appliance {

using nlohmann::json;
namespace cap = custos::protocol;

namespace {

// How many failures a report keeps when the agent lists them (RESULT
// carries at most this many, within the 64 KiB header; the total is in
// counts.failures).
constexpr size_t kMaxReportedFailures = 1000;

Result<restore::OverwritePolicy> ParseOverwrite(const std::string& s) {
  if (s == "never") return restore::OverwritePolicy::kNever;
  if (s == "if-changed") return restore::OverwritePolicy::kIfChanged;
  if (s == "always") return restore::OverwritePolicy::kAlways;
  return InvalidArgumentError("restore: --overwrite must be never, if-changed or always");
}

const char* OverwriteName(restore::OverwritePolicy p) {
  switch (p) {
    case restore::OverwritePolicy::kNever: return "never";
    case restore::OverwritePolicy::kIfChanged: return "if-changed";
    case restore::OverwritePolicy::kAlways: return "always";
  }
  return "if-changed";
}

Result<std::vector<std::string>> StringList(const json& req, const char* key) {
  std::vector<std::string> out;
  if (!req.contains(key)) return out;
  const json& v = req[key];
  if (!v.is_array()) return InvalidArgumentError(std::string("restore: ") + key + " must be a list of strings");
  for (const auto& e : v) {
    if (!e.is_string()) return InvalidArgumentError(std::string("restore: ") + key + " must be a list of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

// The allowance of a restore of `subpath`: the trees from the root down to
// it, everything below it, and the atime table.
Status CollectAllowance(storage::Repository& repo, const snapshot::Manifest& m, const std::string& subpath,
                        std::unordered_set<Id, IdHash>* allowed) {
  for (const Id& a : m.atimes) allowed->insert(a);
  snapshot::Node cur;
  cur.type = snapshot::NodeType::kDir;
  cur.subtree = m.tree;
  size_t i = 0;
  while (i < subpath.size()) {  // as snapshot::FindPath parses it
    size_t j = subpath.find('/', i);
    if (j == std::string::npos) j = subpath.size();
    std::string comp = subpath.substr(i, j - i);
    i = j + 1;
    if (comp.empty() || comp == ".") continue;
    if (cur.type != snapshot::NodeType::kDir) return NotFoundError(subpath + ": not a directory in the snapshot");
    allowed->insert(cur.subtree);
    ASSIGN_OR_RETURN(snapshot::Tree t, snapshot::LoadTree(repo, cur.subtree));
    auto it = std::lower_bound(t.nodes.begin(), t.nodes.end(), comp,
                               [](const snapshot::Node& n, const std::string& k) { return n.name < k; });
    if (it == t.nodes.end() || it->name != comp) return NotFoundError(subpath + ": not in the snapshot");
    cur = *it;
  }
  if (cur.type == snapshot::NodeType::kDir) {
    if (cur.subtree.IsZero()) return Status::Ok();
    std::unordered_map<Id, uint64_t, IdHash> blobs;
    RETURN_IF_ERROR(snapshot::CollectBlobs(repo, cur.subtree, &blobs));
    for (const auto& [id, size] : blobs) allowed->insert(id);
    allowed->insert(cur.subtree);
  } else {
    for (const auto& c : cur.content) allowed->insert(c.id);
  }
  return Status::Ok();
}

uint64_t Count(const json& counts, const char* key) {
  auto it = counts.find(key);
  return it != counts.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace

Result<std::unique_ptr<RestoreJob>> RestoreJob::Plan(storage::Repository& repo, const std::string& agent,
                                                     const json& req) {
  std::unique_ptr<RestoreJob> job(new RestoreJob(repo));
  std::string spec = req.value("snapshot", "");
  if (spec.empty()) return InvalidArgumentError("restore: no snapshot");
  std::string target = req.value("target", "");
  if (target.empty() || target[0] != '/') return InvalidArgumentError("restore: the target must be an absolute path");
  job->target_ = snapshot::NormalizePath(target);
  if (job->target_ == "/") return InvalidArgumentError("restore: refusing to restore into / on the agent");
  std::string subpath = req.value("subpath", "/");
  job->subpath_ = snapshot::NormalizePath(subpath.empty() || subpath[0] != '/' ? "/" + subpath : subpath);
  ASSIGN_OR_RETURN(auto overwrite, ParseOverwrite(req.value("overwrite", "if-changed")));
  job->options_.overwrite = overwrite;
  job->options_.verify = req.value("verify", true);
  ASSIGN_OR_RETURN(job->options_.includes, StringList(req, "includes"));
  ASSIGN_OR_RETURN(job->options_.excludes, StringList(req, "excludes"));
  // "latest" means the agent's own newest snapshot unless a host is named.
  std::string host = req.value("host", "");
  if (host.empty() && spec == "latest") host = agent;
  ASSIGN_OR_RETURN(job->snap_, snapshot::FindSnapshot(repo, spec, snapshot::SnapshotFilter{host, {}, {}}));
  RETURN_IF_ERROR(CollectAllowance(repo, job->snap_.manifest, job->subpath_, &job->allowed_)
                      .Annotate("restore: snapshot " + job->snap_.id.Short()));
  job->started_ = snapshot::FormatTimeNs(snapshot::NowNs());
  return job;
}

json RestoreJob::Params() const {
  json atimes = json::array();
  for (const Id& a : snap_.manifest.atimes) atimes.push_back(a.Hex());
  return json{{"snapshot", snap_.id.Hex()},
              {"tree", snap_.manifest.tree.Hex()},
              {"atimes", atimes},
              {"subpath", subpath_},
              {"target", target_},
              {"overwrite", OverwriteName(options_.overwrite)},
              {"verify", options_.verify},
              {"includes", options_.includes},
              {"excludes", options_.excludes}};
}

Status RestoreJob::OnWant(const json& ids) {
  if (wanted_.size() + ids.size() + (head_ ? 1 : 0) > cap::kMaxWanted) {
    return InvalidArgumentError("more than " + std::to_string(cap::kMaxWanted) + " blobs wanted and not yet sent");
  }
  std::vector<Id> add;
  for (const auto& s : ids) {
    Id id = *Id::FromHex(s.get<std::string>());  // the codec checked the form
    if (!allowed_.count(id)) return PermissionDeniedError("blob " + id.Hex() + " is not part of this restore");
    add.push_back(id);
  }
  wanted_.insert(wanted_.end(), add.begin(), add.end());
  return Status::Ok();
}

void RestoreJob::Pump(const std::string& job, const std::function<void(cap::Message)>& send) {
  while (head_ || !wanted_.empty()) {
    if (!head_) {
      Id id = wanted_.front();
      wanted_.pop_front();
      auto loc = repo_.FindBlob(id);
      Result<Bytes> box = loc ? repo_.backend().Load(storage::FileType::kPack, loc->pack.Hex(), loc->entry.offset,
                                                     loc->entry.stored_length)
                              : Result<Bytes>(NotFoundError("not in the repository index"));
      Loaded l;
      l.id = id;
      Result<Bytes> content = box.ok() ? storage::OpenBlob(repo_.keys().data, loc->entry, *box, &l.raw_size)
                                       : Result<Bytes>(box.status());
      if (!content.ok() || content->size() > cap::kMaxPayload) {
        // The files that need it fail on the agent; the rest goes on.
        send(cap::Make("LACK", 0, {{"job", job}, {"ids", json::array({id.Hex()})}}));
        continue;
      }
      l.tree = loc->entry.type == storage::BlobType::kTree;
      l.zstd = loc->entry.compression == storage::Compression::kZstd;
      l.payload.assign(reinterpret_cast<const char*>(content->data()), content->size());
      head_ = std::move(l);
    }
    if (head_->payload.size() > credit_) return;  // wait for the agent's CREDIT
    credit_ -= head_->payload.size();
    ++blobs_sent_;
    bytes_sent_ += head_->payload.size();
    // One blob per BLOB: each WANTed ID is answered by one message.
    json entry = {{"id", head_->id.Hex()},
                  {"kind", head_->tree ? "tree" : "data"},
                  {"compression", head_->zstd ? "zstd" : "none"},
                  {"size", head_->raw_size},
                  {"length", head_->payload.size()}};
    cap::Message m = cap::Make("BLOB", 0, {{"job", job}, {"blobs", json::array({std::move(entry)})}});
    m.payloads.push_back(std::move(head_->payload));
    head_.reset();
    send(std::move(m));
  }
}

RestoreJob::Outcome RestoreJob::Save(const std::string& agent, const restore::RestoreResult& r,
                                     uint64_t failures_total, const std::string& error) {
  restore::ReportContext ctx;
  ctx.repository_id = repo_.config().id;
  ctx.snapshot = snap_;
  ctx.subpath = subpath_;
  ctx.target = target_;
  ctx.started = started_;
  ctx.finished = snapshot::FormatTimeNs(snapshot::NowNs());
  ctx.options = options_;
  json body = restore::RestoreReportBody(ctx, r, error);
  // Where it ran: the agent (by its enrolled name), through this appliance.
  body["agent"] = agent;
  body["restored_on"] = "agent " + agent;
  if (failures_total > r.failures.size()) {
    body["counts"]["failures"] = failures_total;
    body["failures_truncated"] = true;
    if (body["result"] == "ok") body["result"] = "partial";
  }
  Outcome o;
  o.error = error;
  o.state = !error.empty() ? "failed" : (r.ok() && failures_total == 0) ? "ok" : "partial";
  o.files = r.files_restored + r.files_skipped;
  o.bytes = r.bytes_written;
  auto id = restore::SaveReport(repo_, body);
  if (id.ok()) {
    o.report = id->Hex();
  } else {
    o.error += (o.error.empty() ? "" : "; ") + std::string("the restore report could not be saved: ") +
               id.status().ToString();
  }
  return o;
}

RestoreJob::Outcome RestoreJob::Finish(const std::string& agent, const json& counts, const json& failures) {
  restore::RestoreResult r;
  r.files_restored = Count(counts, "files_restored");
  r.files_skipped = Count(counts, "files_skipped");
  r.files_verified = Count(counts, "files_verified");
  r.files_failed = Count(counts, "files_failed");
  r.dirs = Count(counts, "dirs");
  r.links = Count(counts, "links");
  r.specials = Count(counts, "specials");
  r.bytes_written = Count(counts, "bytes_written");
  if (auto it = counts.find("duration_s"); it != counts.end() && it->is_number()) r.duration_s = it->get<double>();
  for (const auto& f : failures) {
    if (r.failures.size() >= kMaxReportedFailures) break;
    if (!f.is_object()) continue;
    auto p = f.find("path"), w = f.find("reason");
    r.failures.push_back({p != f.end() && p->is_string() ? p->get<std::string>() : "?",
                          w != f.end() && w->is_string() ? w->get<std::string>() : "?"});
  }
  uint64_t total = std::max<uint64_t>(Count(counts, "failures"), r.failures.size());
  return Save(agent, r, total, "");
}

RestoreJob::Outcome RestoreJob::Fail(const std::string& agent, const std::string& error) {
  return Save(agent, restore::RestoreResult(), 0, error.empty() ? "failed" : error);
}

}  // namespace custos::appliance
