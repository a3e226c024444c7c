#include "evidence/ledger.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/crypto.h"
#include "snapshot/manifest.h"

namespace custos::evidence {

using nlohmann::json;

namespace {

constexpr size_t kMaxActorName = 256;

bool IsActorKind(std::string_view k) { return k == "operator" || k == "agent" || k == "appliance"; }


// "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", the form FormatTimeNs writes.
bool IsRecordTime(std::string_view t) {
  if (t.size() != 30) return false;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    switch (i) {
      case 4: case 7: if (c != '-') return false; break;
      case 10: if (c != 'T') return false; break;
      case 13: case 16: if (c != ':') return false; break;
      case 19: if (c != '.') return false; break;
      case 29: if (c != 'Z') return false; break;
      default: if (c < '0' || c > '9') return false;
    }
  }
  return true;
}

// A SAX handler that builds the DOM (nlohmann's own builder) and also
// enforces what RFC 8259 leaves open and nlohmann accepts: duplicate member
// names, unbounded depth. It records the member names of the top level and
// of "actor", in order, so the caller can check the fixed layout.
class StrictSax {
 public:
  using Dom = nlohmann::detail::json_sax_dom_parser<json>;
  explicit StrictSax(json& out) : dom_(out, /*allow_exceptions=*/false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return dom_.number_float(v, s); }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) {
    if (!Enter()) return false;
    keys_.resize(depth_);
    keys_[depth_ - 1].clear();
    in_actor_.resize(depth_);
    in_actor_[depth_ - 1] = depth_ == 2 && last_top_key_ == "actor";
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    auto& ks = keys_[depth_ - 1];
    if (ks.size() < 64 && std::find(ks.begin(), ks.end(), k) != ks.end()) return Fail("duplicate member \"" + k + "\"");
    ks.push_back(k);
    if (depth_ == 1) {
      last_top_key_ = k;
      top_keys_.push_back(k);
    } else if (in_actor_[depth_ - 1]) {
      actor_keys_.push_back(k);
    }
    return dom_.key(k);
  }
  bool end_object() {
    auto& ks = keys_[depth_ - 1];
    if (ks.size() >= 64) {  // large objects: sort once instead of scanning
      std::sort(ks.begin(), ks.end());
      if (std::adjacent_find(ks.begin(), ks.end()) != ks.end()) return Fail("duplicate member name");
    }
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!Enter()) return false;
    keys_.resize(depth_);
    keys_[depth_ - 1].clear();
    in_actor_.resize(depth_);
    in_actor_[depth_ - 1] = false;
    return dom_.start_array(n);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string&, const Exception& ex) {
    return Fail(std::string("not valid JSON (") + ex.what() + ")");
  }

  const std::string& error() const { return error_; }
  const std::vector<std::string>& top_keys() const { return top_keys_; }
  const std::vector<std::string>& actor_keys() const { return actor_keys_; }

 private:
  bool Enter() {
    if (++depth_ > kMaxJsonDepth) return Fail("nested deeper than " + std::to_string(kMaxJsonDepth));
    return true;
  }
  bool Fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  Dom dom_;
  int depth_ = 0;
  std::vector<std::vector<std::string>> keys_;
  std::vector<bool> in_actor_;
  std::string last_top_key_;
  std::vector<std::string> top_keys_, actor_keys_;
  std::string error_;
};

const std::vector<std::string> kTopKeys = {"v", "seq", "prev", "time", "actor", "type", "body"};
const std::vector<std::string> kActorKeys = {"kind", "name", "key"};

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::strict); }

void CollectObjects(const json& j, std::vector<std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "object" && it->is_string()) out.push_back(it->get<std::string>());
      else CollectObjects(*it, out);
    }
  } else if (j.is_array()) {
    for (const auto& e : j) CollectObjects(e, out);
  }
}

// Whether some line after `from` starts with {"v":1,"seq":<seq>, (a
// cheap look-ahead that tells a reordered record from a deleted one).
bool LaterLineHasSeq(std::string_view data, size_t from, uint64_t seq) {
  std::string needle = "\n{\"v\":1,\"seq\":" + std::to_string(seq) + ",";
  if (from == 0 && data.rfind(needle.substr(1), 0) == 0) return true;
  return data.find(needle, from == 0 ? 0 : from - 1) != std::string_view::npos;
}

}  // namespace

bool IsRecordType(std::string_view type) {
  return std::find(std::begin(kRecordTypes), std::end(kRecordTypes), type) != std::end(kRecordTypes);
}

Status ValidateActor(const Actor& a) {
  if (!IsActorKind(a.kind)) return InvalidArgumentError("actor kind '" + EscapeForDisplay(a.kind) + "' is not operator, agent or appliance");
  if (a.name.empty() || a.name.size() > kMaxActorName || !IsValidUtf8(a.name)) {
    return InvalidArgumentError("actor name must be 1-256 bytes of UTF-8");
  }
  if (!a.key.empty() && (a.key.size() != 71 || a.key.rfind("sha256:", 0) != 0 || !IsLowerHex(a.key.substr(7)))) {
    return InvalidArgumentError("actor key '" + EscapeForDisplay(a.key) + "' is not sha256:<64 lowercase hex>");
  }
  return Status::Ok();
}

Result<std::string> FormatRecord(const RecordHeader& h, const json& body) {
  if (!IsRecordType(h.type)) return InvalidArgumentError("unknown record type '" + EscapeForDisplay(h.type) + "'");
  RETURN_IF_ERROR(ValidateActor(h.actor));
  if (!body.is_object()) return InvalidArgumentError("record body must be a JSON object");
  if (!IsRecordTime(h.time)) return InvalidArgumentError("record time '" + EscapeForDisplay(h.time) + "' is not RFC 3339 UTC with nanoseconds");
  std::string line;
  try {
    line.reserve(256);
    line += "{\"v\":1,\"seq\":";
    line += std::to_string(h.seq);
    line += ",\"prev\":\"";
    line += h.prev.Hex();
    line += "\",\"time\":\"";
    line += h.time;
    line += "\",\"actor\":{\"kind\":";
    line += Dump(h.actor.kind);
    line += ",\"name\":";
    line += Dump(h.actor.name);
    line += ",\"key\":";
    line += Dump(h.actor.key);
    line += "},\"type\":";
    line += Dump(h.type);
    line += ",\"body\":";
    line += Dump(body);
    line += "}";
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("record body: ") + e.what() + " (strings must be valid UTF-8)");
  }
  if (line.size() > kMaxLineBytes) {
    return InvalidArgumentError("record of " + std::to_string(line.size()) + " bytes exceeds the " +
                                std::to_string(kMaxLineBytes) + "-byte line limit");
  }
  return line;
}

Result<Record> ParseRecord(std::string_view line) {
  if (line.size() > kMaxLineBytes) return CorruptionError("line longer than " + std::to_string(kMaxLineBytes) + " bytes");
  // The writer puts nothing around the object: no whitespace, no BOM.
  if (line.empty() || line.front() != '{' || line.back() != '}') return CorruptionError("not a JSON object on its own (bytes around it)");
  json j;
  StrictSax sax(j);
  bool ok = json::sax_parse(line.begin(), line.end(), &sax, json::input_format_t::json, /*strict=*/true,
                            /*ignore_comments=*/false);
  if (!ok || !sax.error().empty()) return CorruptionError(sax.error().empty() ? "not valid JSON" : sax.error());
  if (!j.is_object()) return CorruptionError("not a JSON object");
  if (sax.top_keys() != kTopKeys) return CorruptionError("members are not v, seq, prev, time, actor, type, body in that order");
  const json& v = j["v"];
  if (!v.is_number_unsigned() || v.get<uint64_t>() != uint64_t(kLedgerVersion)) {
    return CorruptionError("\"v\" is not 1 (unknown ledger version)");
  }
  Record r;
  const json& seq = j["seq"];
  if (!seq.is_number_unsigned()) return CorruptionError("\"seq\" is not an unsigned integer");
  r.header.seq = seq.get<uint64_t>();
  const json& prev = j["prev"];
  if (!prev.is_string()) return CorruptionError("\"prev\" is not a string");
  const std::string& prev_s = prev.get_ref<const std::string&>();
  auto prev_id = prev_s.size() == 64 && IsLowerHex(prev_s) ? Id::FromHex(prev_s) : std::nullopt;
  if (!prev_id) return CorruptionError("\"prev\" is not 64 lowercase hex digits");
  r.header.prev = *prev_id;
  const json& time = j["time"];
  if (!time.is_string() || !IsRecordTime(time.get_ref<const std::string&>())) {
    return CorruptionError("\"time\" is not RFC 3339 UTC with nanoseconds");
  }
  r.header.time = time.get<std::string>();
  const json& actor = j["actor"];
  if (!actor.is_object() || sax.actor_keys() != kActorKeys) {
    return CorruptionError("\"actor\" is not an object of kind, name, key in that order");
  }
  for (const char* k : {"kind", "name", "key"}) {
    if (!actor[k].is_string()) return CorruptionError(std::string("actor \"") + k + "\" is not a string");
  }
  r.header.actor = Actor{actor["kind"].get<std::string>(), actor["name"].get<std::string>(), actor["key"].get<std::string>()};
  Status st = ValidateActor(r.header.actor);
  if (!st.ok()) return CorruptionError(st.message());
  const json& type = j["type"];
  if (!type.is_string() || !IsRecordType(type.get_ref<const std::string&>())) {
    return CorruptionError("\"type\" is not a known record type");
  }
  r.header.type = type.get<std::string>();
  if (!j["body"].is_object()) return CorruptionError("\"body\" is not an object");
  r.body = std::move(j["body"]);
  return r;
}

std::vector<std::string> ObjectReferences(const json& body) {
  std::vector<std::string> out;
  CollectObjects(body, out);
  return out;
}

Result<LedgerScan> ScanLedger(std::string_view data, const ScanOptions& options) {
  LedgerScan scan;
  MerkleTree tree;
  Hash prev_hash;  // zeros
  size_t pos = 0;
  while (pos < data.size()) {
    const void* nl = std::memchr(data.data() + pos, '\n', data.size() - pos);
    if (!nl) {
      scan.torn_bytes = data.size() - pos;
      break;
    }
    size_t end = size_t(static_cast<const char*>(nl) - data.data());
    std::string_view line = data.substr(pos, end - pos);
    uint64_t expect = scan.records;
    std::string where = "ledger line " + std::to_string(expect + 1);
    auto rec = ParseRecord(line);
    if (!rec.ok()) return rec.status().Annotate(where);
    uint64_t seq = rec->header.seq;
    if (seq != expect) {
      if (seq > expect) {
        if (LaterLineHasSeq(data, end + 1, expect)) {
          return IntegrityError(where + ": records out of order: seq " + std::to_string(seq) + " stands where seq " +
                                std::to_string(expect) + " belongs (records reordered)");
        }
        std::string missing = seq == expect + 1 ? "record " + std::to_string(expect) + " is missing"
                                                : "records " + std::to_string(expect) + " to " + std::to_string(seq - 1) + " are missing";
        return IntegrityError(where + ": " + missing + " (deleted): seq " + std::to_string(seq) + " follows " +
                              (expect == 0 ? std::string("the start") : "seq " + std::to_string(expect - 1)));
      }
      return IntegrityError(where + ": records out of order: seq " + std::to_string(seq) + " after seq " +
                            std::to_string(expect - 1) + " (records reordered or repeated)");
    }
    if (rec->header.prev != prev_hash) {
      if (expect == 0) return IntegrityError(where + ": seq 0 has a prev other than 64 zeros");
      return IntegrityError(where + ": seq " + std::to_string(seq) + "'s prev is not the SHA-256 of record " +
                            std::to_string(expect - 1) + ": record " + std::to_string(expect - 1) +
                            " was altered (hash chain broken)");
    }
    if (options.on_record) {
      Status st = options.on_record(*rec, line);
      if (!st.ok()) return st;
    }
    prev_hash = Sha256(AsBytes(line));
    Hash leaf = LeafHash(AsBytes(line));
    tree.AppendLeafHash(leaf);
    if (options.keep_leaf_hashes) scan.leaf_hashes.push_back(leaf);
    ++scan.records;
    pos = end + 1;
  }
  scan.valid_bytes = pos;
  scan.last_line_hash = prev_hash;
  scan.root = tree.Root();
  return scan;
}

Result<std::unique_ptr<Ledger>> Ledger::Create(const std::string& path) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == EEXIST) return AlreadyExistsError(path + ": ledger exists");
    return ErrnoStatus(path + ": create", errno);
  }
  if (::fsync(fd.get()) != 0) return ErrnoStatus(path + ": fsync", errno);
  RETURN_IF_ERROR(FsyncDir(Dirname(path)));
  return std::unique_ptr<Ledger>(new Ledger(path, std::move(fd)));
}

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path, TornTail torn, uint64_t* truncated,
                                             const std::function<Status(const Record&, std::string_view)>& on_record) {
  if (truncated) *truncated = 0;
  Fd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  struct stat sb;
  if (::fstat(fd.get(), &sb) != 0) return ErrnoStatus(path + ": stat", errno);
  size_t len = size_t(sb.st_size);
  void* map = nullptr;
  if (len > 0) {
    map = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (map == MAP_FAILED) return ErrnoStatus(path + ": mmap", errno);
  }
  ScanOptions opts;
  opts.keep_leaf_hashes = true;
  opts.on_record = on_record;
  auto scan = ScanLedger(std::string_view(static_cast<const char*>(map), len), opts);
  if (map) ::munmap(map, len);
  if (!scan.ok()) return scan.status().Annotate(path);
  if (scan->torn_bytes > 0) {
    if (torn == TornTail::kFail) {
      return CorruptionError(path + ": ledger line " + std::to_string(scan->records + 1) + " is torn (" +
                             std::to_string(scan->torn_bytes) + " bytes without a newline: an append interrupted by a crash)");
    }
    if (::ftruncate(fd.get(), off_t(scan->valid_bytes)) != 0) return ErrnoStatus(path + ": truncate torn line", errno);
    if (::fsync(fd.get()) != 0) return ErrnoStatus(path + ": fsync", errno);
    if (truncated) *truncated = scan->torn_bytes;
  }
  std::unique_ptr<Ledger> l(new Ledger(path, std::move(fd)));
  l->bytes_ = scan->valid_bytes;
  l->last_ = scan->last_line_hash;
  l->leaves_ = std::move(scan->leaf_hashes);
  for (const Hash& h : l->leaves_) l->tree_.AppendLeafHash(h);
  return l;
}

Result<uint64_t> Ledger::Append(std::string_view type, const json& body, const Actor& actor, int64_t time_ns) {
  NewRecord r{std::string(type), body, actor};
  return AppendBatch(std::span<const NewRecord>(&r, 1), time_ns);
}

Result<uint64_t> Ledger::AppendBatch(std::span<const NewRecord> records, int64_t time_ns) {
  if (!broken_.ok()) return broken_;
  if (records.empty()) return InvalidArgumentError("no records to append");
  std::string out;
  std::vector<Hash> leaves;
  leaves.reserve(records.size());
  Hash prev = last_;
  std::string time = snapshot::FormatTimeNs(time_ns);
  for (size_t i = 0; i < records.size(); ++i) {
    RecordHeader h;
    h.seq = tree_.size() + i;
    h.prev = prev;
    h.time = time;
    h.actor = records[i].actor;
    h.type = records[i].type;
    ASSIGN_OR_RETURN(std::string line, FormatRecord(h, records[i].body));
    prev = Sha256(AsBytes(line));
    leaves.push_back(LeafHash(AsBytes(line)));
    out += line;
    out.push_back('\n');
  }
  Status st = WriteAll(fd_.get(), AsBytes(out), path_);
  if (st.ok() && ::fdatasync(fd_.get()) != 0) st = ErrnoStatus(path_ + ": fdatasync", errno);
  if (!st.ok()) {
    // The file may hold part of the lines: refuse further appends until the
    // ledger is opened again (which truncates a torn tail).
    broken_ = st.Annotate("ledger unusable until reopened");
    return st;
  }
  uint64_t first = tree_.size();
  bytes_ += out.size();
  last_ = prev;
  for (const Hash& leaf : leaves) {
    tree_.AppendLeafHash(leaf);
    leaves_.push_back(leaf);
  }
  return first;
}

}  // namespace custos::evidence
