#include "appliance/collect_job.h"

#include <algorithm>
#include <set>

namespace custos::appliance {

using nlohmann::json;

namespace {

const std::set<std::string>& ItemKinds() {
  static const std::set<std::string> k = {"file", "symlink", "cmd", "processes", "timeline"};
  return k;
}

// Members of each event type (besides "e"): name -> required.
struct Member {
  const char* name;
  json::value_t type;  // number_unsigned for counts; object, array, string, boolean
  bool required;
};

bool TypeIs(const json& v, json::value_t t) {
  if (t == json::value_t::number_unsigned) return v.is_number_unsigned();
  if (t == json::value_t::number_integer) return v.is_number_integer();
  return v.type() == t;
}

Status CheckMembers(const json& e, std::initializer_list<Member> members) {
  const std::string type = e["e"];
  for (auto it = e.begin(); it != e.end(); ++it) {
    if (it.key() == "e") continue;
    auto m = std::find_if(members.begin(), members.end(), [&](const Member& x) { return it.key() == x.name; });
    if (m == members.end()) return InvalidArgumentError(type + " event: unknown member \"" + it.key().substr(0, 32) + "\"");
    if (!TypeIs(*it, m->type)) return InvalidArgumentError(type + " event: member \"" + it.key() + "\" has the wrong type");
  }
  for (const auto& m : members) {
    if (m.required && !e.contains(m.name)) {
      return InvalidArgumentError(type + " event: missing member \"" + std::string(m.name) + "\"");
    }
  }
  return Status::Ok();
}

bool IsHex64(const json& v) {
  if (!v.is_string() || v.get_ref<const std::string&>().size() != 64) return false;
  const auto& s = v.get_ref<const std::string&>();
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

constexpr auto S = json::value_t::string;
constexpr auto U = json::value_t::number_unsigned;
constexpr auto O = json::value_t::object;
constexpr auto A = json::value_t::array;
constexpr auto B = json::value_t::boolean;
constexpr auto I = json::value_t::number_integer;

}  // namespace

Result<std::unique_ptr<CollectJob>> CollectJob::Start(evidence::CaseStore& store, const Request& request,
                                                      const evidence::Actor& by) {
  std::unique_ptr<CollectJob> j(new CollectJob(store, request));
  j->agent_actor_ = evidence::Actor{"agent", request.agent, request.agent_key};
  // The recipe text itself is kept as an object, so a bundle shows exactly
  // what ran.
  ASSIGN_OR_RETURN(auto writer, store.NewObject());
  RETURN_IF_ERROR(writer->Write(AsBytes(request.recipe.text)));
  ASSIGN_OR_RETURN(std::string recipe_obj, writer->Commit());
  json plan = {{"recipe", request.recipe.name},
               {"recipe_version", request.recipe.version},
               {"recipe_sha256", request.recipe.sha256},
               {"object", recipe_obj},
               {"host", request.agent},
               {"steps", request.recipe.steps.size()},
               {"excludes", request.excludes},
               {"max_file_bytes", request.max_file_bytes}};
  ASSIGN_OR_RETURN(uint64_t plan_seq, store.Append(request.case_id, "plan", plan, by));
  ASSIGN_OR_RETURN(j->task_seq_, store.Append(request.case_id, "task.start",
                                              json{{"plan", plan_seq}, {"host", request.agent},
                                                   {"agent_key", request.agent_key}, {"kind", "collect"}},
                                              by));
  return j;
}

CollectJob::~CollectJob() {
  if (item_ && item_->writer) item_->writer->Abort();
}

json CollectJob::Params() const {
  return json{{"case", req_.case_id},
              {"task", task_seq_},
              {"recipe", req_.recipe.text},
              {"excludes", req_.excludes},
              {"max_file_bytes", req_.max_file_bytes},
              {"cmd_timeout_s", req_.cmd_timeout_s}};
}

Status CollectJob::Record(std::string_view type, json body) {
  body["task"] = task_seq_;
  body["host"] = req_.agent;
  pending_.push_back(evidence::NewRecord{std::string(type), std::move(body), agent_actor_});
  return Status::Ok();
}

Status CollectJob::Flush() {
  if (pending_.empty()) return Status::Ok();
  std::vector<evidence::NewRecord> batch;
  batch.swap(pending_);
  return store_.AppendBatch(req_.case_id, batch).status();
}

CollectJob::Outcome CollectJob::OnEvidence(uint64_t n, const json& events, std::string_view payload) {
  Outcome out;
  if (finished_ || ended_) {
    out.error = InvalidArgumentError("EVIDENCE after the task ended");
    return out;
  }
  if (n <= last_n_) return out;  // re-sent after a resumed session: already processed
  if (n != last_n_ + 1) {
    out.error = InvalidArgumentError("EVIDENCE n=" + std::to_string(n) + " skips messages (expected " +
                                     std::to_string(last_n_ + 1) + ")");
    return out;
  }
  last_n_ = n;
  size_t offset = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (finished_) {
      out.error = InvalidArgumentError("events after finish");
      return out;
    }
    Status s = Event(events[i], payload, &offset, &out);
    if (!s.ok()) {
      Status flushed = Flush();  // what the message held before the bad event is kept
      out.error = flushed.ok() ? s : flushed;
      return out;
    }
  }
  if (Status s = Flush(); !s.ok()) {
    out.error = s;
    return out;
  }
  out.finished = finished_;
  return out;
}

Status CollectJob::Event(const json& e, std::string_view payload, size_t* offset, Outcome* out) {
  const std::string type = e["e"];  // the codec checked it is a string
  if (type == "begin") {
    RETURN_IF_ERROR(CheckMembers(e, {{"item", U, true}, {"artifact", S, true}, {"kind", S, true}, {"path", S, false},
                                     {"path_hex", S, false}, {"argv", A, false}, {"before", O, true}}));
    if (item_) return InvalidArgumentError("begin inside an item");
    if (!ItemKinds().count(e["kind"].get<std::string>())) return InvalidArgumentError("begin: unknown item kind");
    if (e.contains("argv") && !std::all_of(e["argv"].begin(), e["argv"].end(), [](const json& a) { return a.is_string(); })) {
      return InvalidArgumentError("begin: argv must hold strings");
    }
    ASSIGN_OR_RETURN(auto writer, store_.NewObject());
    item_ = Open{e, std::move(writer), 0};
    return Status::Ok();
  }
  if (type == "data") {
    uint64_t len = e["length"];  // the codec checked the member and the total
    if (!item_) return InvalidArgumentError("data outside an item");
    RETURN_IF_ERROR(item_->writer->Write(AsBytes(payload.substr(*offset, len))));
    *offset += len;
    item_->received += len;
    bytes_ += len;
    return Status::Ok();
  }
  if (type == "end") {
    RETURN_IF_ERROR(CheckMembers(e, {{"size", U, true}, {"sha256", S, true}, {"after", O, true}, {"changed", B, true},
                                     {"exit", I, false}, {"stderr", S, false}}));
    if (e.contains("exit") && !e["exit"].is_number_integer()) return InvalidArgumentError("end: bad exit");
    if (!item_) return InvalidArgumentError("end outside an item");
    if (!IsHex64(e["sha256"])) return InvalidArgumentError("end: sha256 must be 64 lowercase hex digits");
    return EndItem(e, out);
  }
  if (type == "abort") {
    RETURN_IF_ERROR(CheckMembers(e, {{"reason", S, true}}));
    if (!item_) return InvalidArgumentError("abort outside an item");
    item_->writer->Abort();
    item_.reset();
    return Status::Ok();  // the agent's gap event follows
  }
  if (type == "gap") {
    RETURN_IF_ERROR(CheckMembers(e, {{"artifact", S, true}, {"path", S, true}, {"path_hex", S, false}, {"reason", S, true}}));
    if (item_) return InvalidArgumentError("gap inside an item");
    json body = {{"artifact", e["artifact"]}, {"reason", e["reason"]}, {"source", "agent"}};
    if (!e["path"].get_ref<const std::string&>().empty()) body["path"] = e["path"];
    if (e.contains("path_hex")) body["path_hex"] = e["path_hex"];
    bool absent = e["reason"].get_ref<const std::string&>().rfind("absent", 0) == 0;
    if (absent) body["absent"] = true;
    ++(absent ? absent_ : gaps_);
    return Record("gap", std::move(body));
  }
  if (type == "footprint") {
    RETURN_IF_ERROR(CheckMembers(e, {{"what", S, true}}));
    ++footprints_;
    return Record("footprint", json{{"what", e["what"]}});
  }
  if (type == "finish") {
    RETURN_IF_ERROR(CheckMembers(e, {{"counts", O, true}}));
    if (item_) return InvalidArgumentError("finish inside an item");
    agent_counts_ = e["counts"];
    finished_ = true;
    return End(state(), "");
  }
  return InvalidArgumentError("unknown event \"" + type.substr(0, 32) + "\"");
}

Status CollectJob::EndItem(const json& e, Outcome* out) {
  Open it = std::move(*item_);
  item_.reset();
  const json& b = it.begin;
  const std::string kind = b["kind"];
  ASSIGN_OR_RETURN(std::string mine, it.writer->Commit());
  const std::string theirs = e["sha256"];
  uint64_t size = e["size"];
  json body = {{"artifact", b["artifact"]}, {"kind", kind}};
  if (b.contains("path")) body["path"] = b["path"];
  if (b.contains("path_hex")) body["path_hex"] = b["path_hex"];
  if (b.contains("argv")) body["argv"] = b["argv"];
  if (mine != theirs || size != it.received) {
    // The bytes that arrived are not the bytes the agent read: a gap, and
    // a file is asked for again.
    ++mismatches_;
    ++gaps_;
    body["reason"] = "hash mismatch on receipt: agent " + theirs + " (" + std::to_string(size) + " bytes), appliance " +
                     mine + " (" + std::to_string(it.received) + " bytes)";
    body["source"] = "appliance";
    if (kind == "file" && b.contains("path")) {
      json r = {{"artifact", b["artifact"]}, {"path", b["path"]}};
      if (b.contains("path_hex")) r["path_hex"] = b["path_hex"];
      out->redo.push_back(std::move(r));
      body["retry"] = true;
    }
    return Record("gap", std::move(body));
  }
  body["object"] = mine;
  body["size"] = size;
  body["agent_sha256"] = theirs;
  body["appliance_sha256"] = mine;
  body["before"] = b["before"];
  body["after"] = e["after"];
  body["changed"] = e["changed"];
  if (kind == "cmd") {
    body["exit"] = e.value("exit", 0);
    if (e.contains("stderr")) body["stderr"] = e["stderr"];
  }
  ++items_;
  return Record(kind == "cmd" ? "cmd" : "item", std::move(body));
}

std::string CollectJob::state() const {
  uint64_t agent_failed = agent_counts_.is_object() ? agent_counts_.value("failed", uint64_t(0)) : 0;
  return (gaps_ == 0 && agent_failed == 0) ? "ok" : "partial";
}

Status CollectJob::End(const std::string& state, const std::string& error) {
  if (ended_) return Status::Ok();
  ended_ = true;
  if (item_) {
    item_->writer->Abort();
    item_.reset();
  }
  // planned = what the agent set out to collect (its count when it sent
  // one); collected and failed are what the ledger holds.
  uint64_t planned = items_ + gaps_;
  if (agent_counts_.is_object() && agent_counts_.contains("planned") && agent_counts_["planned"].is_number_unsigned()) {
    planned = std::max<uint64_t>(planned, agent_counts_["planned"].get<uint64_t>());
  }
  json body = {{"state", state},
               {"planned", planned},
               {"collected", items_},
               {"failed", gaps_},
               {"counts",
                {{"absent", absent_}, {"mismatches", mismatches_}, {"footprints", footprints_}, {"bytes", bytes_}}}};
  if (agent_counts_.is_object()) body["agent_counts"] = agent_counts_;
  if (!error.empty()) body["error"] = error;
  RETURN_IF_ERROR(Record("task.end", std::move(body)));
  return Flush();
}

std::string CollectJob::Summary() const {
  return std::to_string(items_) + " items, " + std::to_string(gaps_) + " gaps, " + std::to_string(absent_) +
         " absent, " + std::to_string(bytes_) + " bytes";
}

}  // namespace custos::appliance
