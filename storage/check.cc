#include "storage/check.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "storage/format.h"
#include "storage/index_file.h"
#include "storage/pack.h"

namespace custos::storage {

bool PackInSubset(const Id& pack, uint32_t n, uint32_t m) {
  uint32_t v = (uint32_t(pack.bytes[0]) << 24) | (uint32_t(pack.bytes[1]) << 16) |
               (uint32_t(pack.bytes[2]) << 8) | pack.bytes[3];
  return v % m == n - 1;
}

namespace {

bool SameEntry(const PackEntry& a, const PackEntry& b) {
  return a.id == b.id && a.type == b.type && a.compression == b.compression && a.offset == b.offset &&
         a.stored_length == b.stored_length && a.raw_length == b.raw_length;
}

Result<std::vector<PackEntry>> ReadPackHeader(Backend& backend, const Key32& key, const std::string& name,
                                              uint64_t size) {
  uint64_t want = std::min<uint64_t>(size, kPackTailGuess);
  ASSIGN_OR_RETURN(Bytes tail, backend.Load(FileType::kPack, name, size - want, want));
  ASSIGN_OR_RETURN(uint64_t need, PackTailLength(tail, size));
  if (need > tail.size()) {
    ASSIGN_OR_RETURN(tail, backend.Load(FileType::kPack, name, size - need, need));
  }
  return ParsePackHeader(key, tail, size);
}

}  // namespace

Result<CheckReport> Check(Repository& repo, const CheckOptions& options) {
  if (options.subset_m == 0 || options.subset_n == 0 || options.subset_n > options.subset_m) {
    return InvalidArgumentError("read-data subset must be N/M with 1 <= N <= M");
  }
  CheckReport report;
  Backend& backend = repo.backend();
  const Key32& key = repo.keys().data;

  // Key slots.
  ASSIGN_OR_RETURN(auto slots, repo.ListKeys());
  report.key_slots = slots.slots.size() + slots.problems.size();
  for (size_t i = 0; i < slots.problems.size(); ++i) {
    report.errors.push_back({"key " + slots.problem_ids[i], slots.problems[i].ToString(), {}});
  }

  // Index files: re-read from disk, so that damage since Open is seen too.
  std::map<Id, std::vector<PackEntry>> indexed;  // pack -> entries, from all index files
  std::vector<std::pair<Id, IndexFile>> index_files;
  RETURN_IF_ERROR(backend.List(FileType::kIndex, [&](const FileInfo& fi) -> Status {
    ++report.index_files;
    std::string what = "index " + fi.name;
    auto bytes = backend.Load(FileType::kIndex, fi.name);
    if (!bytes.ok()) {
      report.errors.push_back({what, bytes.status().ToString(), {}});
      return Status::Ok();
    }
    if (Sha256(*bytes).Hex() != fi.name) {
      report.errors.push_back({what, "content does not hash to its name (damaged)", {}});
      return Status::Ok();
    }
    auto file = DecodeIndexFile(key, *bytes);
    if (!file.ok()) {
      report.errors.push_back({what, file.status().ToString(), {}});
      return Status::Ok();
    }
    index_files.emplace_back(*Id::FromHex(fi.name), std::move(file).value());
    return Status::Ok();
  }));
  // Files superseded by a newer index file (compaction) do not count.
  std::set<Id> superseded;
  for (const auto& [id, f] : index_files) superseded.insert(f.supersedes.begin(), f.supersedes.end());
  for (const auto& [id, f] : index_files) {
    if (superseded.count(id)) continue;
    for (const auto& p : f.packs) {
      auto& v = indexed[p.pack];
      v.insert(v.end(), p.entries.begin(), p.entries.end());
    }
  }

  // Packs on disk.
  std::map<Id, uint64_t> on_disk;
  RETURN_IF_ERROR(backend.List(FileType::kPack, [&](const FileInfo& fi) -> Status {
    auto id = Id::FromHex(fi.name);
    if (!id) {
      report.warnings.push_back({"pack " + fi.name, "file name is not a pack ID; ignored", {}});
    } else {
      on_disk[*id] = fi.size;
    }
    return Status::Ok();
  }));
  report.packs = on_disk.size();

  auto blob_ids = [](const std::vector<PackEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.id.Hex());
    return out;
  };

  for (const auto& [pack, entries] : indexed) {
    report.blobs += entries.size();
    std::string what = "pack " + pack.Hex();
    auto it = on_disk.find(pack);
    if (it == on_disk.end()) {
      report.errors.push_back({what, "named by the index but missing", blob_ids(entries)});
      continue;
    }
    auto header = ReadPackHeader(backend, key, pack.Hex(), it->second);
    if (!header.ok()) {
      report.errors.push_back({what, "header: " + header.status().ToString(), blob_ids(entries)});
      continue;
    }
    std::vector<PackEntry> mismatched;
    for (const auto& e : entries) {
      bool found = std::any_of(header->begin(), header->end(), [&](const PackEntry& h) { return SameEntry(h, e); });
      if (!found) mismatched.push_back(e);
    }
    if (!mismatched.empty()) {
      report.errors.push_back({what, "index entries disagree with the pack header", blob_ids(mismatched)});
    }
    std::vector<PackEntry> unindexed;
    for (const auto& h : *header) {
      bool found = std::any_of(entries.begin(), entries.end(), [&](const PackEntry& e) { return SameEntry(h, e); });
      if (!found) unindexed.push_back(h);
    }
    if (!unindexed.empty()) {
      report.warnings.push_back({what, std::to_string(unindexed.size()) + " blob(s) in the pack are not in the index",
                                 blob_ids(unindexed)});
    }
  }
  // Packs named only by superseded index files: a prune replaced them and
  // deletes them after its grace period (storage/prune.h). Not orphans.
  std::set<Id> retired;
  for (const auto& [id, f] : index_files) {
    if (!superseded.count(id)) continue;
    for (const auto& p : f.packs) {
      if (!indexed.count(p.pack) && on_disk.count(p.pack)) retired.insert(p.pack);
    }
  }
  report.retired_packs = retired.size();
  for (const auto& [pack, size] : on_disk) {
    if (!indexed.count(pack) && !retired.count(pack)) {
      report.warnings.push_back({"pack " + pack.Hex(),
                                 "not named by any index (left by an interrupted writer; the next "
                                 "writer indexes it)",
                                 {}});
    }
  }

  // Snapshots.
  ASSIGN_OR_RETURN(auto snaps, repo.ListSnapshots());
  report.snapshots = snaps.size();
  for (const auto& s : snaps) {
    auto payload = repo.LoadSnapshot(s);
    if (!payload.ok()) report.errors.push_back({"snapshot " + s.Hex(), payload.status().ToString(), {}});
  }

  // Reports and holds: the envelope (decrypts, hashes to its name). Report
  // signatures are the restore layer's (`custos reports verify`); hold
  // records are the snapshot layer's (`custos hold list`).
  auto envelopes = [&](const char* what, const std::vector<Id>& ids, Result<Bytes> (Repository::*load)(const Id&)) {
    for (const auto& id : ids) {
      auto payload = (repo.*load)(id);
      if (!payload.ok()) report.errors.push_back({what + (" " + id.Hex()), payload.status().ToString(), {}});
    }
  };
  ASSIGN_OR_RETURN(auto reports, repo.ListReports());
  report.reports = reports.size();
  envelopes("report", reports, &Repository::LoadReport);
  ASSIGN_OR_RETURN(auto holds, repo.ListHolds());
  report.holds = holds.size();
  envelopes("hold", holds, &Repository::LoadHold);

  if (!options.read_data) return report;

  // Read-data: every selected pack on disk, in parallel.
  std::vector<std::pair<Id, uint64_t>> work;
  for (const auto& [pack, size] : on_disk) {
    if (PackInSubset(pack, options.subset_n, options.subset_m)) work.emplace_back(pack, size);
  }
  int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, int(std::max<size_t>(1, work.size())));
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done{0}, bytes_done{0};
  std::mutex mu;
  auto worker = [&]() {
    for (size_t i = next++; i < work.size(); i = next++) {
      const Id& pack = work[i].first;
      std::string what = "pack " + pack.Hex();
      std::vector<CheckProblem> problems;
      uint64_t blobs_ok = 0;
      auto bytes = backend.Load(FileType::kPack, pack.Hex());
      auto idx_it = indexed.find(pack);
      const std::vector<PackEntry> none;
      const auto& idx_entries = idx_it == indexed.end() ? none : idx_it->second;
      if (!bytes.ok()) {
        problems.push_back({what, "read: " + bytes.status().ToString(), blob_ids(idx_entries)});
      } else {
        bytes_done += bytes->size();
        if (Sha256(*bytes) != pack) {
          problems.push_back({what, "content does not hash to its name (damaged)", {}});
        }
        // Decode blobs by the pack's own header; if that is unreadable,
        // fall back to the index's entries so the damaged blobs are named.
        auto header = ParsePackHeader(key, *bytes, bytes->size());
        std::vector<PackEntry> entries;
        if (header.ok()) {
          entries = std::move(header).value();
        } else {
          problems.push_back({what, "header: " + header.status().ToString(), {}});
          entries = idx_entries;
        }
        std::vector<std::string> bad;
        std::string first_error;
        for (const auto& e : entries) {
          if (uint64_t(e.offset) + e.stored_length > bytes->size()) {
            bad.push_back(e.id.Hex());
            if (first_error.empty()) first_error = "blob " + e.id.Hex() + ": beyond end of pack";
            continue;
          }
          auto plain = DecodeBlob(key, e, ByteView(bytes->data() + e.offset, e.stored_length));
          if (!plain.ok()) {
            bad.push_back(e.id.Hex());
            if (first_error.empty()) first_error = plain.status().ToString();
          } else {
            ++blobs_ok;
          }
        }
        if (!bad.empty()) {
          problems.push_back({what, std::to_string(bad.size()) + " damaged blob(s), first: " + first_error, bad});
        }
      }
      uint64_t d = ++done;
      std::lock_guard<std::mutex> g(mu);
      report.packs_read++;
      report.blobs_read += blobs_ok;
      for (auto& p : problems) report.errors.push_back(std::move(p));
      if (options.progress) options.progress(d, work.size(), bytes_done.load());
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  report.bytes_read += bytes_done.load();
  return report;
}

}  // namespace custos::storage
