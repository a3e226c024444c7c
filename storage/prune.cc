#include "storage/prune.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "storage/index_file.h"
#include "storage/pack.h"

namespace custos::storage {
namespace {

// (pack, blob): a blob's copy in one pack. A blob stored twice (an orphan
// indexed again) has two; each is judged on its own.
using PackBlob = std::pair<Id, Id>;

int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What prune reads before deciding: every index file, every pack on disk
// and every mark, each checked (hash, box, parse). Damage stops the prune:
// deciding on a partial view could delete what a damaged file references.
struct State {
  std::map<std::string, std::vector<Id>> file_packs;  // index file -> packs it names
  std::map<std::string, uint64_t> file_sizes;
  std::set<std::string> superseded;              // present index files some other file supersedes
  std::map<Id, std::vector<PackEntry>> live;     // pack -> entries, from the live index files
  std::map<Id, std::vector<std::string>> named;  // pack -> live index files naming it
  std::map<Id, uint64_t> on_disk;                // pack -> size
  std::set<Id> retired;                          // on disk, named only by superseded files
  std::vector<std::pair<std::string, MarkFile>> marks;  // name ("" in a dry run's own mark)
};

Result<Bytes> LoadChecked(Backend& backend, FileType type, const std::string& name) {
  ASSIGN_OR_RETURN(Bytes bytes, backend.Load(type, name));
  if (Sha256(bytes).Hex() != name) {
    return CorruptionError(std::string(FileTypeName(type)) + " " + name + ": content does not hash to its name");
  }
  return bytes;
}

Result<State> LoadState(Repository& repo) {
  Backend& backend = repo.backend();
  const Key32& key = repo.keys().data;
  State st;
  std::map<std::string, IndexFile> files;
  RETURN_IF_ERROR(backend.List(FileType::kIndex, [&](const FileInfo& fi) -> Status {
    ASSIGN_OR_RETURN(Bytes bytes, LoadChecked(backend, FileType::kIndex, fi.name));
    auto decoded = DecodeIndexFile(key, bytes);
    if (!decoded.ok()) return decoded.status().Annotate("index " + fi.name);
    st.file_sizes[fi.name] = fi.size;
    files.emplace(fi.name, std::move(decoded).value());
    return Status::Ok();
  }));
  std::set<std::string> superseded_names;
  for (const auto& [name, f] : files) {
    for (const auto& s : f.supersedes) superseded_names.insert(s.Hex());
  }
  for (auto& [name, f] : files) {
    std::vector<Id>& packs = st.file_packs[name];
    bool is_live = !superseded_names.count(name);
    if (!is_live) st.superseded.insert(name);
    for (auto& p : f.packs) {
      packs.push_back(p.pack);
      if (!is_live) continue;
      st.named[p.pack].push_back(name);
      std::vector<PackEntry>& entries = st.live[p.pack];
      if (entries.empty()) {
        entries = std::move(p.entries);
        continue;
      }
      // The same pack in two index files (orphans indexed again) lists the same entries.
      std::set<std::pair<uint32_t, Id>> have;
      for (const auto& x : entries) have.insert({x.offset, x.id});
      for (const auto& e : p.entries) {
        if (have.insert({e.offset, e.id}).second) entries.push_back(e);
      }
    }
    f.packs.clear();
  }
  RETURN_IF_ERROR(backend.List(FileType::kPack, [&](const FileInfo& fi) -> Status {
    if (auto id = Id::FromHex(fi.name)) st.on_disk[*id] = fi.size;
    return Status::Ok();
  }));
  for (const auto& name : st.superseded) {
    for (const Id& p : st.file_packs[name]) {
      if (!st.live.count(p) && st.on_disk.count(p)) st.retired.insert(p);
    }
  }
  RETURN_IF_ERROR(backend.List(FileType::kMark, [&](const FileInfo& fi) -> Status {
    ASSIGN_OR_RETURN(Bytes bytes, LoadChecked(backend, FileType::kMark, fi.name));
    auto decoded = DecodeMarkFile(key, bytes);
    if (!decoded.ok()) return decoded.status().Annotate("mark " + fi.name);
    st.marks.emplace_back(fi.name, std::move(decoded).value());
    return Status::Ok();
  }));
  std::sort(st.marks.begin(), st.marks.end(),
            [](const auto& a, const auto& b) { return a.second.time_ns < b.second.time_ns; });
  return st;
}

Result<std::string> SaveMark(Backend& backend, const Key32& key, const MarkFile& mark) {
  Bytes bytes = EncodeMarkFile(key, mark);
  std::string name = Sha256(bytes).Hex();
  RETURN_IF_ERROR(backend.Save(FileType::kMark, name, bytes).Annotate("save mark " + name));
  return name;
}

// Removes a file; one already gone (a crashed prune got that far) is fine.
Status RemoveIfPresent(Backend& backend, FileType type, const std::string& name) {
  Status st = backend.Remove(type, name);
  if (st.ok() || st.code() == Code::kNotFound) return Status::Ok();
  return st.Annotate("prune: remove " + std::string(FileTypeName(type)) + " " + name);
}

// Copies the live blobs of the packs being repacked into new packs, as
// stored. Each box is opened and hashed first: a damaged blob is never
// copied (the prune stops, nothing deleted).
class Repacker {
 public:
  Repacker(Repository& repo, PruneStats& stats) : repo_(repo), stats_(stats) {}

  Status Copy(const Id& pack, const std::vector<PackEntry>& entries) {
    if (entries.empty()) return Status::Ok();
    ASSIGN_OR_RETURN(Bytes bytes, repo_.backend().Load(FileType::kPack, pack.Hex()));
    for (const PackEntry& e : entries) {
      std::string what = "prune: pack " + pack.Hex() + ": blob " + e.id.Hex();
      if (uint64_t(e.offset) + e.stored_length > bytes.size()) return CorruptionError(what + ": beyond the pack's end");
      ByteView box(bytes.data() + e.offset, e.stored_length);
      auto plain = DecodeBlob(repo_.keys().data, e, box);
      if (!plain.ok()) return plain.status().Annotate(what + " (nothing deleted; see check --read-data)");
      if (!out_) {
        ASSIGN_OR_RETURN(auto writer, repo_.backend().NewWriter(FileType::kPack));
        out_ = std::make_unique<PackWriter>(std::move(writer));
      }
      RETURN_IF_ERROR(out_->Add(EncodedBlob{e, Bytes(box.begin(), box.end())}));
      ++stats_.blobs_copied;
      stats_.bytes_copied += e.stored_length;
      if (out_->size() >= repo_.config().pack_size) RETURN_IF_ERROR(Finish());
    }
    return Status::Ok();
  }

  Status Finish() {
    if (!out_ || out_->empty()) return Status::Ok();
    auto done = out_->Finish(repo_.keys().data);
    out_.reset();
    if (!done.ok()) return done.status().Annotate("prune: save pack");
    ASSIGN_OR_RETURN(uint64_t size, repo_.backend().Size(FileType::kPack, done->id.Hex()));
    new_bytes_ += size;
    ++stats_.packs_written;
    written_.push_back(IndexPack{done->id, std::move(done->entries)});
    return Status::Ok();
  }

  std::vector<IndexPack>& written() { return written_; }
  uint64_t new_bytes() const { return new_bytes_; }

 private:
  Repository& repo_;
  PruneStats& stats_;
  std::unique_ptr<PackWriter> out_;
  std::vector<IndexPack> written_;
  uint64_t new_bytes_ = 0;
};

}  // namespace

Result<PruneStats> Prune(Repository& repo, const std::function<Result<BlobSet>()>& referenced,
                         const BlobSet& protected_blobs, const PruneOptions& o) {
  if (o.grace_s < 0) return InvalidArgumentError("prune: the grace period must not be negative");
  if (!(o.max_waste >= 0 && o.max_waste <= 1)) return InvalidArgumentError("prune: max waste must be 0 to 100 %");
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };
  Backend& backend = repo.backend();
  const Key32& key = repo.keys().data;
  if (!o.dry_run) {
    if (!repo.HasWriterLock()) std::abort();  // pruning without the writer lock is a bug
    RETURN_IF_ERROR(repo.Flush());
    RETURN_IF_ERROR(repo.IndexOrphanPacks());
  }
  const int64_t now = o.now_ns ? o.now_ns : WallNowNs();
  ASSIGN_OR_RETURN(State st, LoadState(repo));
  say("prune: " + std::to_string(st.live.size()) + " packs indexed, " + std::to_string(st.marks.size()) +
      " mark(s); walking the snapshots");
  ASSIGN_OR_RETURN(BlobSet refs, referenced());
  PruneStats stats;
  stats.referenced_blobs = refs.size();
  for (const auto& [pack, size] : st.on_disk) stats.bytes_before += size;

  // ---- mark: unreferenced entries no mark lists yet, and retired packs no
  // mark times yet.
  std::set<PackBlob> marked;
  std::set<Id> retired_marked;
  for (const auto& [name, m] : st.marks) {
    for (const auto& mp : m.packs) {
      for (const Id& b : mp.blobs) marked.insert({mp.pack, b});
    }
    retired_marked.insert(m.retired_packs.begin(), m.retired_packs.end());
  }
  MarkFile fresh;
  fresh.time_ns = now;
  for (const auto& [pack, entries] : st.live) {
    if (!st.on_disk.count(pack)) continue;  // damage (check reports it); not prune's to touch
    MarkedPack mp{pack, {}};
    std::set<Id> seen;
    for (const auto& e : entries) {
      if (refs.count(e.id) || marked.count({pack, e.id}) || !seen.insert(e.id).second) continue;
      mp.blobs.push_back(e.id);
      ++stats.marked_blobs;
      stats.marked_bytes += e.stored_length;
    }
    if (!mp.blobs.empty()) fresh.packs.push_back(std::move(mp));
  }
  for (const Id& p : st.retired) {
    if (!retired_marked.count(p)) fresh.retired_packs.push_back(p);
  }
  if (!fresh.empty()) {
    std::string name;
    if (!o.dry_run) {
      ASSIGN_OR_RETURN(name, SaveMark(backend, key, fresh));
    }
    st.marks.emplace_back(name, std::move(fresh));
  }
  say("prune: " + std::to_string(stats.referenced_blobs) + " blobs referenced, " +
      std::to_string(stats.marked_blobs) + " newly marked unreferenced");

  // ---- sweep: due marks' entries still unreferenced and unprotected.
  const int64_t cutoff = now - o.grace_s * 1000000000;
  std::map<Id, std::set<Id>> garbage;  // live pack -> garbage blobs in it
  std::map<PackBlob, int64_t> garbage_since;
  std::set<Id> retired_due;
  std::vector<std::string> due_marks;
  for (const auto& [name, m] : st.marks) {
    bool due = m.time_ns <= cutoff;
    if (due && !name.empty()) due_marks.push_back(name);
    for (const auto& mp : m.packs) {
      auto live = st.live.find(mp.pack);
      if (live == st.live.end() || !st.on_disk.count(mp.pack)) continue;  // gone since
      BlobSet in_pack;
      for (const auto& e : live->second) in_pack.insert(e.id);
      for (const Id& b : mp.blobs) {
        if (!in_pack.count(b) || refs.count(b)) continue;  // gone, or referenced again: live
        if (!due) {
          ++stats.pending_blobs;
        } else if (protected_blobs.count(b)) {
          ++stats.protected_blobs;
        } else if (garbage[mp.pack].insert(b).second) {
          garbage_since[{mp.pack, b}] = m.time_ns;
        }
      }
    }
    if (due) {
      for (const Id& p : m.retired_packs) {
        if (st.retired.count(p)) retired_due.insert(p);
      }
    }
  }

  // ---- plan: drop packs that are all garbage, repack those over the limit.
  std::set<Id> drop, repack;
  for (const auto& [pack, blobs] : garbage) {
    const auto& entries = st.live.at(pack);
    uint64_t bytes = 0;
    bool all = true;
    for (const auto& e : entries) {
      if (blobs.count(e.id)) bytes += e.stored_length;
      else all = false;
    }
    if (all) {
      drop.insert(pack);
    } else if (double(bytes) > o.max_waste * double(st.on_disk.at(pack))) {
      repack.insert(pack);
    } else {
      stats.kept_garbage_blobs += blobs.size();
      continue;
    }
    stats.swept_blobs += blobs.size();
    stats.swept_bytes += bytes;
  }
  stats.packs_dropped = drop.size();
  stats.packs_repacked = repack.size();
  // Live blobs of repacked packs, unless a pack that stays holds them too.
  std::map<Id, std::vector<PackEntry>> to_copy;
  std::set<Id> wanted;
  for (const Id& p : repack) {
    for (const auto& e : st.live.at(p)) {
      if (!garbage[p].count(e.id)) wanted.insert(e.id);
    }
  }
  for (const auto& [pack, entries] : st.live) {
    if (drop.count(pack) || repack.count(pack) || !st.on_disk.count(pack)) continue;
    for (const auto& e : entries) wanted.erase(e.id);
  }
  for (const Id& p : repack) {
    for (const auto& e : st.live.at(p)) {
      if (wanted.erase(e.id)) to_copy[p].push_back(e);
    }
  }
  say("prune: " + std::to_string(stats.swept_blobs) + " blobs to sweep: " + std::to_string(drop.size()) +
      " pack(s) to drop, " + std::to_string(repack.size()) + " to repack; " + std::to_string(stats.pending_blobs) +
      " marked blob(s) wait for the grace period");

  uint64_t deleted_bytes = 0, new_bytes = 0;
  std::set<Id> retire_now(retired_due);
  if (o.grace_s == 0) retire_now.insert(repack.begin(), repack.end());
  if (o.dry_run) {
    for (const Id& p : repack) {
      for (const auto& e : to_copy[p]) {
        ++stats.blobs_copied;
        stats.bytes_copied += e.stored_length;
      }
    }
    for (const Id& p : drop) deleted_bytes += st.on_disk.at(p);
    for (const Id& p : retire_now) deleted_bytes += st.on_disk.at(p);
    new_bytes = stats.bytes_copied;
    stats.retired_deleted = retire_now.size();
    stats.bytes_freed = deleted_bytes > new_bytes ? deleted_bytes - new_bytes : 0;
    stats.bytes_after = stats.bytes_before + new_bytes - std::min(stats.bytes_before + new_bytes, deleted_bytes);
    return stats;
  }

  // ---- repack, then one index file superseding every file that names a
  // dropped or repacked pack (and every superseded file still present, so
  // that none of them becomes live again when the file superseding it goes).
  Repacker repacker(repo, stats);
  for (const Id& p : repack) {
    say("prune: repacking pack " + p.Short() + " (" + std::to_string(to_copy[p].size()) + " live blobs)");
    RETURN_IF_ERROR(repacker.Copy(p, to_copy[p]));
  }
  RETURN_IF_ERROR(repacker.Finish());
  new_bytes += repacker.new_bytes();
  std::set<std::string> live_files_left;
  for (const auto& [name, packs] : st.file_packs) {
    if (!st.superseded.count(name)) live_files_left.insert(name);
  }
  if (!drop.empty() || !repack.empty()) {
    IndexFile file;
    std::set<std::string> replaced;
    for (const Id& p : drop) replaced.insert(st.named[p].begin(), st.named[p].end());
    for (const Id& p : repack) replaced.insert(st.named[p].begin(), st.named[p].end());
    std::set<Id> listed;
    for (const auto& name : replaced) {
      file.supersedes.push_back(*Id::FromHex(name));
      live_files_left.erase(name);
      for (const Id& p : st.file_packs[name]) {
        if (drop.count(p) || repack.count(p) || !listed.insert(p).second) continue;
        file.packs.push_back(IndexPack{p, st.live[p]});
      }
    }
    for (const auto& name : st.superseded) file.supersedes.push_back(*Id::FromHex(name));
    for (auto& p : repacker.written()) file.packs.push_back(std::move(p));
    Bytes bytes = EncodeIndexFile(key, file);
    std::string name = Sha256(bytes).Hex();
    Status saved = backend.Save(FileType::kIndex, name, bytes);
    if (!saved.ok() && saved.code() != Code::kAlreadyExists) return saved.Annotate("prune: save index " + name);
    new_bytes += bytes.size();
    ++stats.index_files_written;
    live_files_left.insert(name);
    st.file_packs[name].clear();
    for (const auto& p : file.packs) st.file_packs[name].push_back(p.pack);
    st.superseded.insert(replaced.begin(), replaced.end());
  }

  // ---- delete: dropped packs now; retired packs when their grace is over.
  for (const Id& p : drop) {
    RETURN_IF_ERROR(RemoveIfPresent(backend, FileType::kPack, p.Hex()));
    deleted_bytes += st.on_disk.at(p);
    st.on_disk.erase(p);
  }
  for (const Id& p : retire_now) {
    RETURN_IF_ERROR(RemoveIfPresent(backend, FileType::kPack, p.Hex()));
    deleted_bytes += st.on_disk.at(p);
    st.on_disk.erase(p);
    ++stats.retired_deleted;
  }
  // A superseded file goes once no pack it names waits on disk as retired
  // (else that pack would look like an orphan and be indexed again).
  std::set<Id> live_packs;
  for (const auto& name : live_files_left) live_packs.insert(st.file_packs[name].begin(), st.file_packs[name].end());
  for (const auto& name : st.superseded) {
    bool waits = std::any_of(st.file_packs[name].begin(), st.file_packs[name].end(),
                             [&](const Id& p) { return st.on_disk.count(p) && !live_packs.count(p); });
    if (waits) continue;
    RETURN_IF_ERROR(RemoveIfPresent(backend, FileType::kIndex, name));
    deleted_bytes += st.file_sizes.count(name) ? st.file_sizes[name] : 0;
    ++stats.index_files_removed;
  }

  // ---- marks: garbage left in packs under the limit keeps its time; packs
  // repacked now wait (grace > 0) under a new mark; then the due marks go.
  std::map<int64_t, std::map<Id, std::vector<Id>>> carry;
  for (const auto& [pack, blobs] : garbage) {
    if (drop.count(pack) || repack.count(pack)) continue;
    for (const Id& b : blobs) carry[garbage_since[{pack, b}]][pack].push_back(b);
  }
  for (const auto& [time, packs] : carry) {
    MarkFile m;
    m.time_ns = time;
    for (const auto& [pack, blobs] : packs) m.packs.push_back(MarkedPack{pack, blobs});
    RETURN_IF_ERROR(SaveMark(backend, key, m).status());
  }
  if (o.grace_s > 0 && !repack.empty()) {
    MarkFile m;
    m.time_ns = now;
    m.retired_packs.assign(repack.begin(), repack.end());
    RETURN_IF_ERROR(SaveMark(backend, key, m).status());
  }
  for (const auto& name : due_marks) {
    RETURN_IF_ERROR(RemoveIfPresent(backend, FileType::kMark, name));
    ++stats.marks_removed;
  }
  stats.bytes_freed = deleted_bytes > new_bytes ? deleted_bytes - new_bytes : 0;
  for (const auto& [pack, size] : st.on_disk) stats.bytes_after += size;
  stats.bytes_after += repacker.new_bytes();
  RETURN_IF_ERROR(repo.ReloadIndex());
  say("prune: done, " + std::to_string(stats.bytes_freed) + " bytes freed");
  return stats;
}

Result<int64_t> ParseGrace(const std::string& text) {
  if (text == "0") return int64_t(0);
  int64_t total = 0;
  size_t i = 0;
  if (text.empty()) return InvalidArgumentError("grace period is empty");
  while (i < text.size()) {
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i++] - '0');
      if (n > 100000000) return InvalidArgumentError("grace period \"" + text + "\" is too long");
    }
    if (i == start || i == text.size()) {
      return InvalidArgumentError("grace period \"" + text + "\": want a number and a unit (s, m, h, d, w), e.g. 24h");
    }
    char unit = text[i++];
    int64_t mul = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : unit == 'w' ? 604800 : 0;
    if (!mul) return InvalidArgumentError("grace period \"" + text + "\": unknown unit '" + std::string(1, unit) + "'");
    total += n * mul;
  }
  return total;
}

}  // namespace custos::storage
