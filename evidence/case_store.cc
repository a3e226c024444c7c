#include "evidence/case_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "evidence/bundle.h"
#include "evidence/timestamp.h"
#include "snapshot/manifest.h"

namespace custos::evidence {

using nlohmann::json;

namespace {

constexpr size_t kMaxTitle = 4096;
constexpr size_t kMaxNoteText = 64 << 10;

// Types the store writes itself; Append refuses them.
bool IsStoreType(std::string_view t) {
  return t == "case.open" || t == "case.close" || t == "checkpoint" || t == "export";
}
// What a closed case still accepts through Append.
bool AllowedWhenClosed(std::string_view t) { return t == "note" || t == "hold" || t == "custody"; }
// After these the store takes a checkpoint by itself.
bool CheckpointAfter(std::string_view t) { return t == "task.end" || t == "hold" || t == "custody"; }


// Folds one record into a case's summary (at load and after each append).
void ApplyRecord(CaseInfo& info, uint64_t seq, std::string_view type, const json& body, const std::string& time) {
  info.records = seq + 1;
  if (type == "case.open") {
    info.title = StringMember(body, "title");
    info.reference = StringMember(body, "reference");
    info.detected_at = StringMember(body, "detected_at");
    info.opened_at = time;
    info.state = "open";
  } else if (type == "case.close") {
    info.state = "closed";
    info.closed_at = time;
    info.close_reason = StringMember(body, "reason");
  } else if (type == "item") {
    ++info.items;
  } else if (type == "gap") {
    ++info.gaps;
  } else if (type == "hold") {
    info.held = StringMember(body, "action") == "place";
  } else if (type == "checkpoint") {
    CheckpointInfo cp;
    auto size = body.find("size");
    cp.size = size != body.end() && size->is_number_unsigned() ? size->get<uint64_t>() : 0;
    cp.root = StringMember(body, "root");
    cp.time = StringMember(body, "time");
    cp.text_file = StringMember(body, "text");
    cp.timestamped = !StringMember(body, "tsr").empty();
    cp.record_seq = seq;
    info.last_checkpoint = cp;
  }
}

// An object being written: a temporary in objects/, hashed on the way.
class FileObjectWriter : public ObjectWriter {
 public:
  FileObjectWriter(std::string objects_dir, std::string tmp, Fd fd)
      : objects_dir_(std::move(objects_dir)), tmp_(std::move(tmp)), fd_(std::move(fd)) {}
  ~FileObjectWriter() override { Abort(); }

  Status Write(ByteView data) override {
    if (!fd_.valid()) return InvalidArgumentError("object writer: already committed or aborted");
    RETURN_IF_ERROR(WriteAll(fd_.get(), data, tmp_));
    hash_.Update(data);
    size_ += data.size();
    return Status::Ok();
  }

  Result<std::string> Commit() override {
    if (!fd_.valid()) return InvalidArgumentError("object writer: already committed or aborted");
    if (::fsync(fd_.get()) != 0) return ErrnoStatus(tmp_ + ": fsync", errno);
    if (::close(fd_.release()) != 0) return ErrnoStatus(tmp_ + ": close", errno);
    std::string hex = hash_.Finish().Hex();
    std::string sub = JoinPath(objects_dir_, hex.substr(0, 2));
    Status st = MakeDirs(sub);
    std::string final_path = JoinPath(sub, hex);
    // link(2) never replaces: an existing object has the same bytes.
    if (st.ok() && ::link(tmp_.c_str(), final_path.c_str()) != 0 && errno != EEXIST) {
      st = ErrnoStatus(final_path + ": link", errno);
    }
    ::unlink(tmp_.c_str());
    tmp_.clear();
    RETURN_IF_ERROR(st);
    RETURN_IF_ERROR(FsyncDir(sub));
    return hex;
  }

  void Abort() override {
    if (fd_.valid()) fd_ = Fd();
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
  }

  uint64_t size() const override { return size_; }

 private:
  std::string objects_dir_, tmp_;
  Fd fd_;
  Sha256Stream hash_;
  uint64_t size_ = 0;
};

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "appliance";
  return IsValidUtf8(buf) ? buf : "appliance";
}

std::string BaseName(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

}  // namespace

struct CaseStore::Case {
  std::string id, dir;
  std::unique_ptr<Ledger> ledger;
  CaseInfo info;
};

bool IsCaseId(std::string_view id) {
  if (id.size() < 9 || id.size() > 20 || id[4] != '-') return false;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i != 4 && (id[i] < '0' || id[i] > '9')) return false;
  }
  return true;
}

CaseStore::CaseStore(std::string dir, const SigningKey& key, StoreOptions options, Fd lock)
    : dir_(std::move(dir)), key_(key), options_(std::move(options)), lock_(std::move(lock)) {}

CaseStore::~CaseStore() { SecureWipe(key_.secret_key.data(), key_.secret_key.size()); }

Result<std::unique_ptr<CaseStore>> CaseStore::Open(const std::string& dir, const SigningKey& key, StoreOptions options) {
  RETURN_IF_ERROR(MakeDirs(JoinPath(dir, "cases")));
  RETURN_IF_ERROR(MakeDirs(JoinPath(dir, "objects")));
  std::string lock_path = JoinPath(dir, "lock");
  Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid()) return ErrnoStatus(lock_path, errno);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return BusyError("evidence store " + dir + " is in use by another process");
    return ErrnoStatus(lock_path + ": flock", errno);
  }
  // Temporaries of interrupted object writes (ours: we hold the lock).
  std::string objects = JoinPath(dir, "objects");
  if (DIR* d = ::opendir(objects.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::string_view(e->d_name).rfind(kTempPrefix, 0) == 0) ::unlink(JoinPath(objects, e->d_name).c_str());
    }
    ::closedir(d);
  }
  if (!options.clock) options.clock = [] { return snapshot::NowNs(); };
  if (options.appliance_name.empty()) options.appliance_name = HostName();
  if (!options.tsa_ca_file.empty()) {
    auto ca = ReadFile(options.tsa_ca_file);
    if (!ca.ok()) return ca.status().Annotate("tsa_ca_file");
  }
  return std::unique_ptr<CaseStore>(new CaseStore(dir, key, std::move(options), std::move(lock)));
}

int64_t CaseStore::Now() const { return options_.clock(); }

std::string CaseStore::KeyFingerprint() const { return evidence::KeyFingerprint(key_.public_key); }

Actor CaseStore::ApplianceActor() const { return Actor{"appliance", options_.appliance_name, KeyFingerprint()}; }

std::string CaseStore::CaseDir(const std::string& id) const { return JoinPath(JoinPath(dir_, "cases"), id); }

std::string CaseStore::ObjectPath(const std::string& hex) const {
  return JoinPath(JoinPath(JoinPath(dir_, "objects"), hex.substr(0, 2)), hex);
}

bool CaseStore::HasObject(const std::string& hex) const {
  if (hex.size() != 64 || !IsLowerHex(hex)) return false;
  struct stat sb;
  return ::stat(ObjectPath(hex).c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

Result<CaseStore::Case*> CaseStore::Load(const std::string& id) {
  if (!IsCaseId(id)) return InvalidArgumentError("'" + EscapeForDisplay(id) + "' is not a case id (like 2026-0001)");
  auto it = cases_.find(id);
  if (it != cases_.end()) return it->second.get();
  auto c = std::make_unique<Case>();
  c->id = id;
  c->dir = CaseDir(id);
  struct stat sb;
  if (::stat(c->dir.c_str(), &sb) != 0) return NotFoundError("no case " + id);
  c->info.id = id;
  if (::stat(JoinPath(c->dir, "ledger.jsonl").c_str(), &sb) != 0 || sb.st_size == 0) {
    return NotFoundError("no case " + id + " (its creation was interrupted before the first record)");
  }
  CaseInfo& info = c->info;
  uint64_t truncated = 0;
  auto ledger = Ledger::Open(JoinPath(c->dir, "ledger.jsonl"), TornTail::kTruncate, &truncated,
                             [&info](const Record& r, std::string_view) {
                               ApplyRecord(info, r.header.seq, r.header.type, r.body, r.header.time);
                               return Status::Ok();
                             });
  if (!ledger.ok()) return ledger.status().Annotate("case " + id);
  c->ledger = std::move(ledger).value();
  if (c->ledger->size() == 0) return CorruptionError("case " + id + ": empty ledger (no case.open record)");
  Case* out = c.get();
  cases_[id] = std::move(c);
  if (truncated > 0) {
    // Say so in the ledger itself: the repair is part of the custody story.
    auto seq = AppendLocked(*out, "note",
                            json{{"text", "appliance: removed a torn last ledger line of " + std::to_string(truncated) +
                                              " bytes (an append interrupted by a crash; never acknowledged)"}},
                            ApplianceActor());
    if (!seq.ok()) return seq.status();
  }
  return out;
}

Result<uint64_t> CaseStore::AppendLocked(Case& c, std::string_view type, const json& body, const Actor& actor) {
  int64_t now = Now();
  ASSIGN_OR_RETURN(uint64_t seq, c.ledger->Append(type, body, actor, now));
  ApplyRecord(c.info, seq, type, body, snapshot::FormatTimeNs(now));
  return seq;
}

Result<CheckpointInfo> CaseStore::CheckpointLocked(Case& c, const Actor& actor) {
  evidence::Checkpoint cp;
  cp.origin = OriginForCase(c.id);
  cp.size = c.ledger->size();
  cp.root = c.ledger->root();
  cp.time = snapshot::FormatTimeNs(Now());
  SignedCheckpoint s = SignCheckpoint(key_, cp);
  std::string base = CheckpointBaseName(cp.size);
  RETURN_IF_ERROR(MakeDirs(JoinPath(c.dir, "checkpoints")));
  // Files no record names yet may exist from a crash before the record:
  // replacing them is safe (the record carries the signature it names).
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(c.dir, base + ".txt"), AsBytes(s.text), 0644, Overwrite::kYes));
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(c.dir, base + ".sig"), s.signature, 0644, Overwrite::kYes));
  json body{{"size", cp.size},
            {"root", Base64Encode(cp.root.bytes)},
            {"time", cp.time},
            {"key", KeyFingerprint()},
            {"signature", Base64Encode(s.signature)},
            {"text", base + ".txt"},
            {"sig", base + ".sig"}};
  if (!options_.tsa_url.empty()) {
    auto tsr = RequestTimestamp(options_.tsa_url, AsBytes(s.text), options_.tsa_timeout_s);
    if (tsr.ok()) {
      RETURN_IF_ERROR(WriteFileAtomic(JoinPath(c.dir, base + ".tsr"), *tsr, 0644, Overwrite::kYes));
      body["tsr"] = base + ".tsr";
    } else {
      body["tsr_error"] = tsr.status().ToString();
    }
  }
  ASSIGN_OR_RETURN(uint64_t seq, AppendLocked(c, "checkpoint", body, actor));
  (void)seq;
  return *c.info.last_checkpoint;
}

Result<CaseInfo> CaseStore::OpenCase(const std::string& title, const std::string& detected_at,
                                     const std::string& reference, const Actor& actor) {
  if (title.empty() || title.size() > kMaxTitle) return InvalidArgumentError("case title must be 1 to 4096 bytes");
  for (const std::string* s : {&title, &detected_at, &reference}) {
    if (!IsValidUtf8(*s) || s->size() > kMaxTitle) return InvalidArgumentError("case title, reference and detection time must be UTF-8 of at most 4096 bytes");
  }
  RETURN_IF_ERROR(ValidateActor(actor));
  std::lock_guard<std::mutex> lock(mu_);
  time_t sec = time_t(Now() / 1000000000);
  tm t;
  gmtime_r(&sec, &t);
  std::string year = std::to_string(t.tm_year + 1900);
  // The next number of this year: one more than the largest present.
  uint64_t next = 1;
  std::string cases = JoinPath(dir_, "cases");
  if (DIR* d = ::opendir(cases.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (IsCaseId(name) && name.rfind(year + "-", 0) == 0) next = std::max<uint64_t>(next, std::stoull(name.substr(5)) + 1);
    }
    ::closedir(d);
  } else {
    return ErrnoStatus(cases, errno);
  }
  std::string id;
  for (;; ++next) {
    char num[24];
    std::snprintf(num, sizeof num, "%04llu", static_cast<unsigned long long>(next));
    id = year + "-" + num;
    if (::mkdir(CaseDir(id).c_str(), 0700) == 0) break;
    if (errno != EEXIST) return ErrnoStatus(CaseDir(id) + ": mkdir", errno);
  }
  RETURN_IF_ERROR(FsyncDir(cases));
  RETURN_IF_ERROR(MakeDirs(JoinPath(CaseDir(id), "checkpoints")));
  auto c = std::make_unique<Case>();
  c->id = id;
  c->dir = CaseDir(id);
  c->info.id = id;
  ASSIGN_OR_RETURN(c->ledger, Ledger::Create(JoinPath(c->dir, "ledger.jsonl")));
  Case* cp = c.get();
  cases_[id] = std::move(c);
  json body{{"title", title}, {"reference", reference}, {"detected_at", detected_at}, {"appliance_key", KeyFingerprint()}};
  RETURN_IF_ERROR(AppendLocked(*cp, "case.open", body, actor).status());
  RETURN_IF_ERROR(CheckpointLocked(*cp, ApplianceActor()).status());
  return cp->info;
}

Result<std::vector<CaseInfo>> CaseStore::List() {
  std::vector<std::string> ids;
  std::string cases = JoinPath(dir_, "cases");
  DIR* d = ::opendir(cases.c_str());
  if (!d) return ErrnoStatus(cases, errno);
  while (dirent* e = ::readdir(d)) {
    if (IsCaseId(e->d_name)) ids.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() && a.substr(0, 4) == b.substr(0, 4) ? a.size() < b.size() : a < b;
  });
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CaseInfo> out;
  for (const auto& id : ids) {
    auto c = Load(id);
    if (c.ok()) {
      out.push_back((*c)->info);
    } else if (c.status().code() != Code::kNotFound) {
      CaseInfo damaged;
      damaged.id = id;
      damaged.state = "damaged";
      damaged.problem = c.status().ToString();
      out.push_back(std::move(damaged));
    }
  }
  return out;
}

Result<CaseInfo> CaseStore::Show(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Case * c, Load(id));
  return c->info;
}

Status CaseStore::CheckRecord(const NewRecord& r) const {
  if (!IsRecordType(r.type)) return InvalidArgumentError("unknown record type '" + EscapeForDisplay(r.type) + "'");
  if (IsStoreType(r.type)) return InvalidArgumentError("record type " + r.type + " is written by the store itself");
  if (!r.body.is_object()) return InvalidArgumentError("record body must be a JSON object");
  RETURN_IF_ERROR(ValidateActor(r.actor));
  if (r.type == "hold") {
    std::string action = StringMember(r.body, "action");
    if (action != "place" && action != "release") return InvalidArgumentError("a hold record needs \"action\": \"place\" or \"release\"");
  }
  for (const std::string& obj : ObjectReferences(r.body)) {
    if (obj.size() != 64 || !IsLowerHex(obj)) return InvalidArgumentError("\"object\" '" + EscapeForDisplay(obj) + "' is not a SHA-256 in lowercase hex");
    if (!HasObject(obj)) return NotFoundError("object " + obj + " is not in the evidence store");
  }
  return Status::Ok();
}

Result<uint64_t> CaseStore::Append(const std::string& id, std::string_view type, const json& body, const Actor& actor) {
  return AppendBatch(id, {NewRecord{std::string(type), body, actor}});
}

Result<uint64_t> CaseStore::AppendBatch(const std::string& id, const std::vector<NewRecord>& records) {
  bool checkpoint = false;
  for (const auto& r : records) {
    RETURN_IF_ERROR(CheckRecord(r));
    checkpoint |= CheckpointAfter(r.type);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Case * c, Load(id));
  if (c->info.state == "closed") {
    for (const auto& r : records) {
      if (!AllowedWhenClosed(r.type)) {
        return InvalidArgumentError("case " + id + " is closed: it accepts only note, hold and custody records and exports");
      }
    }
  }
  int64_t now = Now();
  ASSIGN_OR_RETURN(uint64_t first, c->ledger->AppendBatch(records, now));
  std::string time = snapshot::FormatTimeNs(now);
  for (size_t i = 0; i < records.size(); ++i) ApplyRecord(c->info, first + i, records[i].type, records[i].body, time);
  if (checkpoint) RETURN_IF_ERROR(CheckpointLocked(*c, ApplianceActor()).status());
  return first;
}

Result<CheckpointInfo> CaseStore::Checkpoint(const std::string& id, const Actor& actor) {
  RETURN_IF_ERROR(ValidateActor(actor));
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Case * c, Load(id));
  return CheckpointLocked(*c, actor);
}

Status CaseStore::Close(const std::string& id, const std::string& reason, const Actor& actor) {
  if (!IsValidUtf8(reason) || reason.size() > kMaxNoteText) return InvalidArgumentError("close reason must be UTF-8 of at most 64 KiB");
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Case * c, Load(id));
  if (c->info.state == "closed") return InvalidArgumentError("case " + id + " is already closed");
  RETURN_IF_ERROR(AppendLocked(*c, "case.close", json{{"reason", reason}}, actor).status());
  return CheckpointLocked(*c, ApplianceActor()).status();
}

Result<uint64_t> CaseStore::Note(const std::string& id, const std::string& text,
                                 const std::optional<std::string>& attachment, const Actor& actor) {
  if (text.size() > kMaxNoteText) return InvalidArgumentError("note text is longer than 64 KiB");
  json body{{"text", text}};
  if (attachment) {
    ASSIGN_OR_RETURN(std::string hex, PutFile(*attachment));
    struct stat sb;
    if (::stat(ObjectPath(hex).c_str(), &sb) != 0) return ErrnoStatus(ObjectPath(hex), errno);
    std::string name = BaseName(*attachment);
    body["object"] = hex;
    body["name"] = IsValidUtf8(name) ? name : EscapeForDisplay(name);
    body["size"] = uint64_t(sb.st_size);
  }
  return Append(id, "note", body, actor);
}

Result<std::unique_ptr<ObjectWriter>> CaseStore::NewObject() {
  std::string objects = JoinPath(dir_, "objects");
  uint8_t rnd[8];
  RandomBytes(rnd, sizeof rnd);
  std::string tmp = JoinPath(objects, std::string(kTempPrefix) + ToHex(rnd));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(tmp + ": create", errno);
  return std::unique_ptr<ObjectWriter>(new FileObjectWriter(objects, tmp, std::move(fd)));
}

Result<std::string> CaseStore::PutFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME));
  if (!fd.valid() && errno == EPERM) fd = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  ASSIGN_OR_RETURN(auto w, NewObject());
  Bytes buf(kCopyBlock);
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(path + ": read", errno);
    }
    if (n == 0) break;
    RETURN_IF_ERROR(w->Write(ByteView(buf.data(), size_t(n))));
  }
  return w->Commit();
}

Status CaseStore::Export(const std::string& id, const std::string& output_tar_path, const Actor& actor) {
  RETURN_IF_ERROR(ValidateActor(actor));
  BundleSource src;
  uint64_t length = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(Case * c, Load(id));
    std::string file = BaseName(output_tar_path);
    RETURN_IF_ERROR(AppendLocked(*c, "export", json{{"file", IsValidUtf8(file) ? file : EscapeForDisplay(file)}}, actor).status());
    RETURN_IF_ERROR(CheckpointLocked(*c, ApplianceActor()).status());
    length = c->ledger->bytes();
    src.case_dir = c->dir;
  }
  // The ledger only grows: its first `length` bytes are fixed, so the bundle
  // is written without the lock.
  src.case_id = id;
  std::string ledger_path = JoinPath(src.case_dir, "ledger.jsonl");
  Fd fd(::open(ledger_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(ledger_path, errno);
  src.ledger.resize(length);
  RETURN_IF_ERROR(ReadAt(fd.get(), 0, length, reinterpret_cast<uint8_t*>(src.ledger.data()), ledger_path));
  src.object_path = [this](const std::string& hex) { return ObjectPath(hex); };
  if (!options_.tsa_ca_file.empty()) {
    ASSIGN_OR_RETURN(Bytes ca, ReadFile(options_.tsa_ca_file));
    src.tsa_ca_pem.assign(ca.begin(), ca.end());
  }
  return WriteBundle(src, key_, output_tar_path);
}

}  // namespace custos::evidence
