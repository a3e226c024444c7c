#include "storage/repository.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "storage/format.h"
#include "storage/index_file.h"

namespace custos::storage {
namespace {

// Write an index file once this many packs wait unindexed, so that an
// interrupted long backup leaves most of its packs indexed and reusable.
constexpr size_t kIndexEveryPacks = 16;

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string Username() {
  if (passwd* pw = getpwuid(geteuid())) return pw->pw_name;
  return "uid" + std::to_string(geteuid());
}

}  // namespace

Actor Actor::FromProcess(const std::string& command) {
  return Actor{Hostname(), Username(), command};
}

std::string Actor::Describe() const {
  return "pid " + std::to_string(getpid()) + " " + user + "@" + host + " (" + command + ") since " +
         NowRfc3339();
}

Repository::~Repository() = default;

Result<InitResult> Repository::Init(std::unique_ptr<Backend> backend, const std::string& passphrase,
                                    const InitOptions& options, const Actor& actor) {
  RETURN_IF_ERROR(backend->Create());
  RepoConfig c;
  c.version = kFormatVersion;
  c.id = ToHex(RandomKey());
  c.created = NowRfc3339();
  c.pack_size = options.pack_size ? options.pack_size : kDefaultPackSize;
  if (c.pack_size < 4096 || c.pack_size > kMaxPackSize) {
    return InvalidArgumentError("pack size must be between 4 KiB and 1 GiB");
  }
  c.zstd_level = options.zstd_level < 0 ? kDefaultZstdLevel : options.zstd_level;
  if (c.zstd_level > 19) return InvalidArgumentError("zstd level must be 0..19");
  // FastCDC bounds: 512 KiB / 1 MiB / 8 MiB (doc/formats/repository.md, "Chunking").
  c.chunk_min = 512u << 10;
  c.chunk_avg = 1u << 20;
  c.chunk_max = 8u << 20;

  Key32 master = RandomKey();
  auto keys = std::make_unique<MasterKeys>(MasterKeys::FromMaster(master));
  SecureWipe(master.data(), master.size());

  std::unique_ptr<Repository> repo(new Repository());
  repo->backend_ = std::move(backend);
  repo->config_ = c;
  repo->keys_ = std::move(keys);
  // Take the writer lock before the first file exists.
  auto lock = repo->backend_->LockWriter(actor.Describe());
  if (!lock.ok()) return lock.status();
  repo->lock_ = std::move(lock).value();

  KeySlot meta;
  meta.label = options.label;
  meta.created = c.created;
  meta.host = actor.host;
  meta.user = actor.user;
  ASSIGN_OR_RETURN(KeySlot slot, WrapMaster(repo->keys_->master, c.id, SlotKind::kPassphrase, passphrase,
                                            options.kdf, meta));
  InitResult result;
  if (options.make_recovery_key) {
    result.recovery_key = MakeRecoveryKey();
    KeySlot rmeta = meta;
    rmeta.label = "recovery key";
    ASSIGN_OR_RETURN(KeySlot rslot, WrapMaster(repo->keys_->master, c.id, SlotKind::kRecovery,
                                               result.recovery_key, options.kdf, rmeta));
    RETURN_IF_ERROR(repo->SaveKeySlot(rslot));
  }
  RETURN_IF_ERROR(repo->SaveKeySlot(slot));
  // The config goes last: a directory without it is not a repository, so an
  // interrupted init can simply be run again in an emptied directory.
  std::string config = EncodeSealedText(EncodeConfigBody(c), repo->keys_->mac);
  RETURN_IF_ERROR(repo->backend_->Save(FileType::kConfig, "", AsBytes(config)));
  repo->current_key_ = slot.id;
  result.repo = std::move(repo);
  return result;
}

Status Repository::SaveKeySlot(const KeySlot& slot) {
  std::string text = EncodeSealedText(EncodeKeySlotBody(slot), keys_->mac);
  return backend_->Save(FileType::kKey, slot.id, AsBytes(text));
}

Result<std::unique_ptr<Repository>> Repository::Open(std::unique_ptr<Backend> backend,
                                                     const std::string& secret,
                                                     const OpenOptions& options) {
  auto config_bytes = backend->Load(FileType::kConfig, "");
  if (!config_bytes.ok()) {
    if (config_bytes.status().code() == Code::kNotFound) {
      return NotFoundError("no repository at " + backend->Location());
    }
    return config_bytes.status();
  }
  ASSIGN_OR_RETURN(SealedText config_text, ParseSealedText(*config_bytes, "config"));
  ASSIGN_OR_RETURN(RepoConfig config, DecodeConfigBody(config_text.body));

  // Collect slots; a recovery-key-shaped secret tries recovery slots first
  // (cheap), passphrases go to Argon2id slots.
  std::vector<KeySlot> slots;
  std::vector<Status> damaged;
  RETURN_IF_ERROR(backend->List(FileType::kKey, [&](const FileInfo& fi) -> Status {
    auto bytes = backend->Load(FileType::kKey, fi.name);
    if (!bytes.ok()) {
      damaged.push_back(bytes.status());
      return Status::Ok();
    }
    auto text = ParseSealedText(*bytes, "key " + fi.name);
    if (!text.ok()) {
      damaged.push_back(text.status());
      return Status::Ok();
    }
    auto slot = DecodeKeySlotBody(text->body);
    if (!slot.ok()) {
      damaged.push_back(slot.status().Annotate("key " + fi.name));
      return Status::Ok();
    }
    slots.push_back(std::move(slot).value());
    return Status::Ok();
  }));
  bool looks_recovery = ParseRecoveryKey(secret).has_value();
  std::stable_sort(slots.begin(), slots.end(), [&](const KeySlot& a, const KeySlot& b) {
    return (a.kind == SlotKind::kRecovery) == looks_recovery && (b.kind == SlotKind::kRecovery) != looks_recovery;
  });
  std::optional<Key32> master;
  std::string used;
  bool used_recovery = false;
  for (const auto& s : slots) {
    if (s.kind == SlotKind::kRecovery && !looks_recovery) continue;
    auto m = UnwrapMaster(s, config.id, secret);
    if (m.ok()) {
      master = *m;
      used = s.id;
      used_recovery = s.kind == SlotKind::kRecovery;
      break;
    }
    // A slot that cannot even be tried (KDF parameters out of range, no
    // memory) must not keep the other slots from opening the repository.
    if (m.status().code() != Code::kUnauthenticated) damaged.push_back(m.status().Annotate("key " + s.id));
  }
  if (!master) {
    std::string msg = "wrong passphrase: no key slot of " + backend->Location() + " opens with it";
    if (!looks_recovery && LooksLikeRecoveryKey(secret)) {
      msg += " (it looks like a recovery key but its checksum does not match: check it for typos)";
    }
    if (!damaged.empty()) msg += " (" + std::to_string(damaged.size()) + " key slot(s) damaged: " + damaged[0].message() + ")";
    return UnauthenticatedError(msg);
  }
  std::unique_ptr<Repository> repo(new Repository());
  repo->backend_ = std::move(backend);
  repo->config_ = config;
  repo->keys_ = std::make_unique<MasterKeys>(MasterKeys::FromMaster(*master));
  SecureWipe(master->data(), master->size());
  repo->current_key_ = used;
  repo->current_is_recovery_ = used_recovery;
  RETURN_IF_ERROR(VerifySealedTextMac(config_text, repo->keys_->mac, "config"));
  if (options.load_index) {
    RETURN_IF_ERROR(repo->LoadIndex());
    repo->index_loaded_ = true;
  }
  return repo;
}

Status Repository::ReadIndexFiles(const std::unordered_set<std::string>& skip,
                                  std::vector<std::pair<std::string, IndexFile>>* files, std::vector<Status>* errors) {
  return backend_->List(FileType::kIndex, [&](const FileInfo& fi) -> Status {
    if (skip.count(fi.name)) return Status::Ok();
    auto bytes = backend_->Load(FileType::kIndex, fi.name);
    if (!bytes.ok()) {
      // Removed since the listing (a prune deleting a superseded file) is no damage.
      if (bytes.status().code() != Code::kNotFound) errors->push_back(bytes.status().Annotate("index " + fi.name));
      return Status::Ok();
    }
    if (Sha256(*bytes).Hex() != fi.name) {
      errors->push_back(IntegrityError("index " + fi.name + ": content does not hash to its name"));
      return Status::Ok();
    }
    auto decoded = DecodeIndexFile(keys_->data, *bytes);
    if (!decoded.ok()) {
      errors->push_back(decoded.status().Annotate("index " + fi.name));
      return Status::Ok();
    }
    files->emplace_back(fi.name, std::move(decoded).value());
    return Status::Ok();
  });
}

namespace {

// Adds the entries of the index files in `files` that `superseded` does not
// name to `index` (reserved, not finalized); their names go to `live`. The
// superseded ones go to `skipped`, and the packs they name to `retired`
// candidates (AddRetired keeps those no live file names).
void AddIndexFiles(const std::vector<std::pair<std::string, IndexFile>>& files,
                   const std::unordered_set<std::string>& superseded, Index& index, std::vector<std::string>* live,
                   std::unordered_set<std::string>* skipped, std::vector<Id>* retired) {
  size_t total = 0;
  for (const auto& [name, f] : files) {
    if (superseded.count(name)) continue;
    for (const auto& p : f.packs) total += p.entries.size();
  }
  index.Reserve(total);
  for (const auto& [name, f] : files) {
    if (superseded.count(name)) {
      skipped->insert(name);
      for (const auto& p : f.packs) retired->push_back(p.pack);
      continue;
    }
    live->push_back(name);
    for (const auto& p : f.packs) {
      uint32_t n = index.AddPack(p.pack);
      for (const auto& e : p.entries) index.AddUnsorted(n, e);
    }
  }
  index.Finalize();
}

// Adds to `out` the `candidates` that `index` does not name.
void AddRetired(const Index& index, const std::vector<Id>& candidates, std::unordered_set<Id, IdHash>* out) {
  std::unordered_set<Id, IdHash> live_packs;
  for (uint32_t i = 0; i < index.pack_count(); ++i) live_packs.insert(index.PackId(i));
  for (const Id& p : candidates) {
    if (!live_packs.count(p)) out->insert(p);
  }
}

std::unordered_set<std::string> SupersededNames(const std::vector<std::pair<std::string, IndexFile>>& files) {
  std::unordered_set<std::string> out;
  for (const auto& [name, f] : files) {
    for (const auto& s : f.supersedes) out.insert(s.Hex());
  }
  return out;
}

}  // namespace

Status Repository::LoadIndex() {
  std::vector<std::pair<std::string, IndexFile>> files;
  std::vector<Status> errors;
  std::unordered_set<std::string> live, loaded;
  {
    std::lock_guard<std::mutex> g(mu_);
    live.insert(index_files_.begin(), index_files_.end());
    loaded = live;
    loaded.insert(superseded_files_.begin(), superseded_files_.end());
  }
  RETURN_IF_ERROR(ReadIndexFiles(loaded, &files, &errors));
  std::unordered_set<std::string> superseded = SupersededNames(files);
  // A new file supersedes one already loaded (a prune ran since): rebuild.
  for (const auto& name : superseded) {
    if (live.count(name)) return ReloadIndex();
  }
  std::lock_guard<std::mutex> g(mu_);
  for (auto& st : errors) index_errors_.push_back(std::move(st));
  std::vector<Id> retired;
  AddIndexFiles(files, superseded, index_, &index_files_, &superseded_files_, &retired);
  AddRetired(index_, retired, &retired_packs_);
  return Status::Ok();
}

Status Repository::ReloadIndex() {
  std::vector<std::pair<std::string, IndexFile>> files;
  std::vector<Status> errors;
  RETURN_IF_ERROR(ReadIndexFiles({}, &files, &errors));
  Index fresh;
  std::vector<std::string> names;
  std::unordered_set<std::string> skipped;
  std::vector<Id> retired;
  AddIndexFiles(files, SupersededNames(files), fresh, &names, &skipped, &retired);
  std::unordered_set<Id, IdHash> retired_set;
  AddRetired(fresh, retired, &retired_set);
  std::lock_guard<std::mutex> g(mu_);
  if (open_pack_ || !unindexed_.empty()) std::abort();  // callers flush first: a bug otherwise
  index_ = std::move(fresh);
  index_files_ = std::move(names);
  superseded_files_ = std::move(skipped);
  retired_packs_ = std::move(retired_set);
  index_errors_ = std::move(errors);
  return Status::Ok();
}

std::vector<std::string> Repository::index_file_names() const {
  std::lock_guard<std::mutex> g(mu_);
  return index_files_;
}

Status Repository::LockForWrite(const Actor& actor) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (lock_) return Status::Ok();
  }
  ASSIGN_OR_RETURN(auto lock, backend_->LockWriter(actor.Describe()));
  {
    std::lock_guard<std::mutex> g(mu_);
    lock_ = std::move(lock);
  }
  RETURN_IF_ERROR(backend_->RemoveStaleTemporaries());
  // Another writer may have added index files since Open. A repository
  // opened without its index loads it now: orphan indexing must know which
  // packs the index names, or it would index every pack again.
  RETURN_IF_ERROR(LoadIndex());
  index_loaded_ = true;
  return IndexOrphanPacks();
}

std::unordered_set<Id, IdHash> Repository::retired_packs() const {
  std::lock_guard<std::mutex> g(mu_);
  return retired_packs_;
}

bool Repository::HasWriterLock() const {
  std::lock_guard<std::mutex> g(mu_);
  return lock_ != nullptr;
}

Status Repository::IndexOrphanPacks() {
  std::unordered_set<Id, IdHash> known;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (uint32_t i = 0; i < index_.pack_count(); ++i) known.insert(index_.PackId(i));
    // Packs a prune replaced wait for their deletion; they are no orphans.
    known.insert(retired_packs_.begin(), retired_packs_.end());
  }
  std::vector<FileInfo> orphans;
  RETURN_IF_ERROR(backend_->List(FileType::kPack, [&](const FileInfo& fi) -> Status {
    auto id = Id::FromHex(fi.name);
    if (id && !known.count(*id)) orphans.push_back(fi);
    return Status::Ok();
  }));
  if (orphans.empty()) return Status::Ok();
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& fi : orphans) {
    uint64_t want = std::min<uint64_t>(fi.size, kPackTailGuess);
    auto tail = backend_->Load(FileType::kPack, fi.name, fi.size - want, want);
    if (!tail.ok()) continue;
    auto need = PackTailLength(*tail, fi.size);
    if (need.ok() && *need > tail->size()) {
      tail = backend_->Load(FileType::kPack, fi.name, fi.size - *need, *need);
      if (!tail.ok()) continue;
    }
    // A damaged orphan stays unindexed; `check` reports it.
    auto entries = ParsePackHeader(keys_->data, *tail, fi.size);
    if (!entries.ok()) continue;
    Id pack = *Id::FromHex(fi.name);
    uint32_t n = index_.AddPack(pack);
    for (const auto& e : *entries) index_.Add(n, e);
    unindexed_.push_back(IndexPack{pack, std::move(entries).value()});
  }
  return WriteIndexLocked();
}

bool Repository::KnowsBlob(const Id& id) const {
  std::lock_guard<std::mutex> g(mu_);
  return open_pack_ids_.count(id) || index_.Has(id);
}

Result<bool> Repository::AddBlob(BlobType type, ByteView plaintext) {
  Id id = Sha256(plaintext);
  if (KnowsBlob(id)) return false;
  return AddEncodedBlob(EncodeBlob(keys_->data, type, plaintext, id, config_.zstd_level));
}

Result<bool> Repository::AddEncodedBlob(EncodedBlob blob) {
  std::lock_guard<std::mutex> g(mu_);
  if (!lock_) std::abort();  // writing without the writer lock is a bug
  if (open_pack_ids_.count(blob.entry.id) || index_.Has(blob.entry.id)) return false;
  if (!open_pack_) {
    auto writer = backend_->NewWriter(FileType::kPack);
    if (!writer.ok()) return writer.status().Annotate("new pack");
    open_pack_ = std::make_unique<PackWriter>(std::move(writer).value());
  }
  Id id = blob.entry.id;
  Status added = open_pack_->Add(std::move(blob));
  if (!added.ok()) {
    open_pack_.reset();
    open_pack_ids_.clear();
    return added.Annotate("write pack");
  }
  open_pack_ids_.insert(id);
  if (open_pack_->size() >= config_.pack_size) {
    RETURN_IF_ERROR(SavePackLocked());
    if (unindexed_.size() >= kIndexEveryPacks) RETURN_IF_ERROR(WriteIndexLocked());
  }
  return true;
}

Status Repository::SavePackLocked() {
  if (!open_pack_ || open_pack_->empty()) return Status::Ok();
  auto finished = open_pack_->Finish(keys_->data);
  open_pack_.reset();
  if (!finished.ok()) {
    // The blobs are lost from this session; forget them so a retry re-adds them.
    open_pack_ids_.clear();
    return finished.status().Annotate("save pack");
  }
  PackWriter::Finished& f = *finished;
  uint32_t n = index_.AddPack(f.id);
  for (const auto& e : f.entries) index_.Add(n, e);
  open_pack_ids_.clear();
  unindexed_.push_back(IndexPack{f.id, std::move(f.entries)});
  return Status::Ok();
}

Status Repository::WriteIndexLocked() {
  if (unindexed_.empty()) return Status::Ok();
  IndexFile file;
  file.packs = unindexed_;
  Bytes bytes = EncodeIndexFile(keys_->data, file);
  std::string name = Sha256(bytes).Hex();
  Status st = backend_->Save(FileType::kIndex, name, bytes);
  if (!st.ok() && st.code() != Code::kAlreadyExists) return st.Annotate("save index " + name);
  index_files_.push_back(name);
  unindexed_.clear();
  return Status::Ok();
}

Status Repository::Flush() {
  std::lock_guard<std::mutex> g(mu_);
  if (!lock_) std::abort();
  RETURN_IF_ERROR(SavePackLocked());
  RETURN_IF_ERROR(WriteIndexLocked());
  // Merge recent additions into the compact array: a long-running writer
  // (the appliance) keeps 44 bytes per blob between backups.
  index_.Finalize();
  return Status::Ok();
}

Result<Id> Repository::SaveSnapshot(ByteView payload) {
  RETURN_IF_ERROR(Flush());
  Bytes file = EncodeSnapshotFile(keys_->data, payload);
  Id id = Sha256(file);
  RETURN_IF_ERROR(backend_->Save(FileType::kSnapshot, id.Hex(), file));
  return id;
}

Result<KeySlot> Repository::AddKey(const std::string& passphrase, const Argon2Params& kdf,
                                   const std::string& label, const Actor& actor) {
  if (!HasWriterLock()) std::abort();
  KeySlot meta;
  meta.label = label;
  meta.created = NowRfc3339();
  meta.host = actor.host;
  meta.user = actor.user;
  ASSIGN_OR_RETURN(KeySlot slot, WrapMaster(keys_->master, config_.id, SlotKind::kPassphrase, passphrase, kdf, meta));
  RETURN_IF_ERROR(SaveKeySlot(slot));
  return slot;
}

Result<Repository::SlotListing> Repository::ListKeys() {
  SlotListing out;
  RETURN_IF_ERROR(backend_->List(FileType::kKey, [&](const FileInfo& fi) -> Status {
    std::string what = "key " + fi.name;
    auto problem = [&](const Status& st) {
      out.problems.push_back(st);
      out.problem_ids.push_back(fi.name);
      return Status::Ok();
    };
    auto bytes = backend_->Load(FileType::kKey, fi.name);
    if (!bytes.ok()) {
      return problem(bytes.status().Annotate(what));
    }
    auto text = ParseSealedText(*bytes, what);
    if (!text.ok()) {
      return problem(text.status());
    }
    Status mac = VerifySealedTextMac(*text, keys_->mac, what);
    if (!mac.ok()) {
      return problem(mac);
    }
    auto slot = DecodeKeySlotBody(text->body);
    if (!slot.ok()) {
      return problem(slot.status().Annotate(what));
    }
    if (slot->id != fi.name) {
      return problem(IntegrityError(what + ": records id " + slot->id));
    }
    out.slots.push_back(std::move(slot).value());
    return Status::Ok();
  }));
  std::sort(out.slots.begin(), out.slots.end(),
            [](const KeySlot& a, const KeySlot& b) { return a.created < b.created || (a.created == b.created && a.id < b.id); });
  return out;
}

Status Repository::RemoveKey(const std::string& id_prefix, std::string* removed_id) {
  if (!HasWriterLock()) std::abort();
  if (id_prefix.empty()) return InvalidArgumentError("key id is empty");
  std::vector<std::string> matches;
  RETURN_IF_ERROR(backend_->List(FileType::kKey, [&](const FileInfo& fi) -> Status {
    if (fi.name.rfind(id_prefix, 0) == 0) matches.push_back(fi.name);
    return Status::Ok();
  }));
  if (matches.empty()) return NotFoundError("no key slot with id " + id_prefix);
  if (matches.size() > 1) return InvalidArgumentError("key id prefix " + id_prefix + " is ambiguous");
  if (matches[0] == current_key_) {
    return InvalidArgumentError("key slot " + matches[0] +
                                " is the one in use; open the repository with another key to remove it");
  }
  RETURN_IF_ERROR(backend_->Remove(FileType::kKey, matches[0]));
  if (removed_id) *removed_id = matches[0];
  return Status::Ok();
}

Result<KeySlot> Repository::ChangePassphrase(const std::string& passphrase, const Argon2Params& kdf,
                                             const Actor& actor) {
  // Write the new slot before removing the old one: at every moment at
  // least one slot opens the repository.
  if (current_is_recovery_) {
    return InvalidArgumentError(
        "the repository was opened with the recovery key, which stays as it is: use 'custos key add' "
        "to add a passphrase");
  }
  std::string label = "passphrase";
  auto listing = ListKeys();
  if (listing.ok()) {
    for (const auto& s : listing->slots) {
      if (s.id == current_key_) label = s.label;
    }
  }
  ASSIGN_OR_RETURN(KeySlot slot, AddKey(passphrase, kdf, label, actor));
  std::string old = current_key_;
  current_key_ = slot.id;
  RETURN_IF_ERROR(backend_->Remove(FileType::kKey, old));
  return slot;
}

bool Repository::HasBlob(const Id& id) const {
  std::lock_guard<std::mutex> g(mu_);
  return index_.Has(id);
}

std::optional<BlobLocation> Repository::FindBlob(const Id& id) const {
  std::lock_guard<std::mutex> g(mu_);
  return index_.Find(id);
}

Result<Bytes> Repository::ReadBlob(const Id& id) const {
  auto loc = FindBlob(id);
  if (!loc) return NotFoundError("blob " + id.Hex() + ": not in the index");
  auto box = backend_->Load(FileType::kPack, loc->pack.Hex(), loc->entry.offset, loc->entry.stored_length);
  if (!box.ok()) return box.status().Annotate("pack " + loc->pack.Hex() + ": blob " + id.Hex());
  auto plain = DecodeBlob(keys_->data, loc->entry, *box);
  if (!plain.ok()) return plain.status().Annotate("pack " + loc->pack.Hex());
  return plain;
}

namespace {

Result<std::vector<Id>> ListIds(Backend& backend, FileType type) {
  std::vector<Id> out;
  RETURN_IF_ERROR(backend.List(type, [&](const FileInfo& fi) -> Status {
    if (auto id = Id::FromHex(fi.name)) out.push_back(*id);
    return Status::Ok();
  }));
  std::sort(out.begin(), out.end());
  return out;
}

// Saves `file` under the hex SHA-256 of its bytes; returns that ID.
Result<Id> SaveHashNamed(Backend& backend, FileType type, const Bytes& file) {
  Id id = Sha256(file);
  RETURN_IF_ERROR(backend.Save(type, id.Hex(), file));
  return id;
}

Result<Bytes> LoadHashNamed(Backend& backend, FileType type, const Id& id, const Key32& key,
                            Result<Bytes> (*decode)(const Key32&, ByteView)) {
  std::string what = std::string(FileTypeName(type)) + " " + id.Hex();
  ASSIGN_OR_RETURN(Bytes file, backend.Load(type, id.Hex()));
  if (Sha256(file) != id) return IntegrityError(what + ": content does not hash to its name");
  auto payload = decode(key, file);
  if (!payload.ok()) return payload.status().Annotate(what);
  return payload;
}

}  // namespace

Result<std::vector<Id>> Repository::ListSnapshots() { return ListIds(*backend_, FileType::kSnapshot); }

Result<Bytes> Repository::LoadSnapshot(const Id& id) {
  return LoadHashNamed(*backend_, FileType::kSnapshot, id, keys_->data, &DecodeSnapshotFile);
}

Result<Id> Repository::SaveReport(ByteView payload) {
  return SaveHashNamed(*backend_, FileType::kReport, EncodeReportFile(keys_->data, payload));
}

Result<std::vector<Id>> Repository::ListReports() { return ListIds(*backend_, FileType::kReport); }

Result<Bytes> Repository::LoadReport(const Id& id) {
  return LoadHashNamed(*backend_, FileType::kReport, id, keys_->data, &DecodeReportFile);
}

Result<Id> Repository::SaveHold(ByteView payload) {
  if (!HasWriterLock()) std::abort();
  return SaveHashNamed(*backend_, FileType::kHold, EncodeHoldFile(keys_->data, payload));
}

Result<std::vector<Id>> Repository::ListHolds() { return ListIds(*backend_, FileType::kHold); }

Result<Bytes> Repository::LoadHold(const Id& id) {
  return LoadHashNamed(*backend_, FileType::kHold, id, keys_->data, &DecodeHoldFile);
}

Status Repository::RemoveSnapshot(const Id& id) {
  if (!HasWriterLock()) std::abort();
  return backend_->Remove(FileType::kSnapshot, id.Hex()).Annotate("forget");
}

size_t Repository::BlobCount() const {
  std::lock_guard<std::mutex> g(mu_);
  return index_.size();
}

size_t Repository::PackCount() const {
  std::lock_guard<std::mutex> g(mu_);
  return index_.pack_count();
}

void Repository::ForEachIndexEntry(const std::function<void(const BlobLocation&)>& fn) const {
  std::lock_guard<std::mutex> g(mu_);
  index_.ForEach(fn);
}

}  // namespace custos::storage
