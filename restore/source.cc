#include "restore/source.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "snapshot/browse.h"
#include "storage/blob.h"
#include "storage/repository.h"

namespace custos::restore {

namespace {

// Blobs of a pack closer than this are read in one request; a request
// never exceeds kMaxSpan, which bounds each worker's buffer.
constexpr uint64_t kMaxGap = 256 << 10;
constexpr uint64_t kMaxSpan = 4 << 20;

}  // namespace

Result<snapshot::Tree> LocalSource::LoadTree(const Id& id) { return snapshot::LoadTree(repo_, id); }

void LocalSource::Fetch(const std::vector<Id>& ids, int workers, const Sink& sink) {
  // Group the blobs by pack; those the index does not know fail at once.
  std::unordered_map<Id, std::vector<storage::BlobLocation>, IdHash> by_pack;
  for (const Id& id : ids) {
    auto loc = repo_.FindBlob(id);
    if (!loc) {
      sink(id, NotFoundError("blob " + id.Short() + " is not in the repository index"));
      continue;
    }
    by_pack[loc->pack].push_back(*loc);
  }
  std::vector<std::pair<Id, std::vector<storage::BlobLocation>>> packs(by_pack.begin(), by_pack.end());
  std::sort(packs.begin(), packs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::atomic<size_t> next{0};
  auto& backend = repo_.backend();
  const Key32& key = repo_.keys().data;
  auto worker = [&] {
    for (size_t i = next++; i < packs.size(); i = next++) {
      const Id& pack = packs[i].first;
      auto& blobs = packs[i].second;
      std::sort(blobs.begin(), blobs.end(), [](const storage::BlobLocation& a, const storage::BlobLocation& b) {
        return a.entry.offset < b.entry.offset;
      });
      size_t b = 0;
      while (b < blobs.size()) {
        // A span of nearby blobs, read with one request.
        uint64_t start = blobs[b].entry.offset, end = start + blobs[b].entry.stored_length;
        size_t e = b + 1;
        while (e < blobs.size() && blobs[e].entry.offset <= end + kMaxGap &&
               blobs[e].entry.offset + blobs[e].entry.stored_length - start <= kMaxSpan) {
          end = std::max<uint64_t>(end, blobs[e].entry.offset + blobs[e].entry.stored_length);
          ++e;
        }
        auto span = backend.Load(storage::FileType::kPack, pack.Hex(), start, end - start);
        for (size_t k = b; k < e; ++k) {
          const auto& loc = blobs[k];
          Result<Bytes> plain =
              span.ok() ? storage::DecodeBlob(key, loc.entry,
                                              ByteView(span->data() + (loc.entry.offset - start), loc.entry.stored_length))
                        : Result<Bytes>(span.status());
          if (!plain.ok()) {
            plain = Status(plain.status().code(), "blob " + loc.entry.id.Short() + " in pack " + pack.Short() + ": " +
                                                      plain.status().ToString());
          }
          sink(loc.entry.id, plain);
        }
        b = e;
      }
    }
  };
  std::vector<std::thread> pool;
  int n = std::max(1, std::min<int>(workers, int(packs.size())));
  for (int i = 0; i < n; ++i) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

Result<std::shared_ptr<const snapshot::AtimeTable>> LoadAtimes(RestoreSource& source, const std::vector<Id>& ids) {
  if (ids.empty()) return std::shared_ptr<const snapshot::AtimeTable>();
  std::vector<Id> unique = ids;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  std::mutex mu;
  std::unordered_map<Id, Result<Bytes>, IdHash> got;
  source.Fetch(unique, 1, [&](const Id& id, const Result<Bytes>& plain) {
    std::lock_guard<std::mutex> g(mu);
    got.emplace(id, plain);
  });
  return snapshot::LoadAtimes(ids, [&](const Id& id) -> Result<Bytes> {
    auto it = got.find(id);
    if (it == got.end()) return NotFoundError("blob " + id.Short() + " was not delivered");
    return it->second;
  });
}

}  // namespace custos::restore
