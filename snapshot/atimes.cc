#include "snapshot/atimes.h"

#include <algorithm>

#include "snapshot/chunker.h"
#include "snapshot/manifest.h"
#include "snapshot/target.h"

namespace custos::snapshot {
namespace {

constexpr char kMagic[8] = {'C', 'S', 'T', 'A', 'T', 'I', 'M', '1'};
constexpr uint32_t kVersion = 1;
// A tree has at most kMaxList nodes (tree.cc); the table as a whole is
// bounded by its input size (each entry takes at least 5 bytes).
constexpr uint32_t kMaxPerTree = 1u << 24;

void PutVarint(Bytes& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(uint8_t(v) | 0x80);
    v >>= 7;
  }
  out.push_back(uint8_t(v));
}

bool GetVarint(ByteReader& r, uint64_t* v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    uint8_t b;
    if (!r.GetU8(&b)) return false;
    if (shift == 63 && b > 1) return false;  // more than 64 bits
    x |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (b == 0 && shift > 0) return false;  // not the shortest form: the format is canonical
      *v = x;
      return true;
    }
  }
  return false;
}

uint64_t ZigZag(int64_t v) { return (uint64_t(v) << 1) ^ uint64_t(v >> 63); }
int64_t UnZigZag(uint64_t v) { return int64_t(v >> 1) ^ -int64_t(v & 1); }

struct TreeAtimes {
  const Id* id;
  const Timestamp* times;
  size_t count;
};

// `trees` sorted by ID, each with at least one atime.
Bytes EncodeTable(const std::vector<TreeAtimes>& trees) {
  Bytes out;
  Append(out, ByteView(reinterpret_cast<const uint8_t*>(kMagic), 8));
  PutU32(out, kVersion);
  PutU32(out, uint32_t(trees.size()));
  for (const auto& t : trees) {
    Append(out, ByteView(t.id->bytes.data(), t.id->bytes.size()));
    PutU32(out, uint32_t(t.count));
    int64_t prev = 0;
    for (size_t i = 0; i < t.count; ++i) {
      const Timestamp& ts = t.times[i];
      PutVarint(out, ZigZag(int64_t(uint64_t(ts.sec) - uint64_t(prev))));
      PutU32(out, ts.nsec);
      prev = ts.sec;
    }
  }
  return out;
}

}  // namespace

Result<AtimeTable> AtimeTable::Decode(ByteView data) {
  ByteReader r(data);
  ByteView magic;
  uint32_t version, trees;
  if (!r.GetBytes(8, &magic) || std::memcmp(magic.data(), kMagic, 8) != 0) {
    return CorruptionError("atime table: bad magic");
  }
  if (!r.GetU32(&version) || version != kVersion) return NotSupportedError("atime table: unknown version");
  if (!r.GetU32(&trees) || trees > r.remaining() / 37) return CorruptionError("atime table: bad tree count");
  AtimeTable t;
  t.index_.reserve(trees);
  t.counts_.reserve(trees);
  for (uint32_t i = 0; i < trees; ++i) {
    Id id;
    uint32_t n;
    if (!r.GetArray(&id.bytes) || !r.GetU32(&n)) return CorruptionError("atime table: truncated");
    if (n == 0 || n > kMaxPerTree || n > r.remaining() / 5) return CorruptionError("atime table: bad entry count");
    if (!t.index_.empty() && !(t.index_.back().first < id)) {
      return CorruptionError("atime table: trees not sorted or repeated");
    }
    t.index_.emplace_back(id, uint32_t(t.times_.size()));
    t.counts_.push_back(n);
    int64_t prev = 0;
    for (uint32_t k = 0; k < n; ++k) {
      uint64_t z;
      Timestamp ts;
      if (!GetVarint(r, &z) || !r.GetU32(&ts.nsec)) return CorruptionError("atime table: truncated");
      if (ts.nsec >= 1000000000u) return CorruptionError("atime table: nanoseconds out of range");
      // Wrapping arithmetic: a hostile delta must not be signed overflow.
      ts.sec = int64_t(uint64_t(prev) + uint64_t(UnZigZag(z)));
      prev = ts.sec;
      t.times_.push_back(ts);
    }
  }
  if (r.remaining() != 0) return CorruptionError("atime table: trailing bytes");
  return t;
}

Status AtimeTable::Apply(const Id& tree, Tree* t) const {
  auto it = std::lower_bound(index_.begin(), index_.end(), tree,
                             [](const std::pair<Id, uint32_t>& e, const Id& k) { return e.first < k; });
  if (it == index_.end() || it->first != tree) return Status::Ok();
  uint32_t n = counts_[size_t(it - index_.begin())];
  size_t non_dirs = 0;
  for (const auto& node : t->nodes) non_dirs += node.type != NodeType::kDir;
  if (non_dirs != n) {
    return CorruptionError("atime table: " + std::to_string(n) + " atimes for tree " + tree.Short() + " with " +
                           std::to_string(non_dirs) + " non-directory entries");
  }
  const Timestamp* p = times_.data() + it->second;
  for (auto& node : t->nodes) {
    if (node.type != NodeType::kDir) node.atime = *p++;
  }
  return Status::Ok();
}

void AtimeCollector::Take(Tree* t, std::vector<Timestamp>* out) const {
  out->clear();
  bool any = false;
  for (auto& node : t->nodes) {
    if (node.type == NodeType::kDir) {
      node.atime = {};  // never recorded for directories (listing one moves it)
      continue;
    }
    out->push_back(node.atime);
    any |= node.atime != Timestamp{};
    node.atime = {};
  }
  if (!any) out->clear();
}

void AtimeCollector::Add(const Id& tree, std::vector<Timestamp> atimes) {
  if (atimes.empty()) return;
  std::lock_guard<std::mutex> g(mu_);
  map_.try_emplace(tree, std::move(atimes));  // the first stat wins (see the header)
}

Bytes AtimeCollector::Encode() {
  std::lock_guard<std::mutex> g(mu_);
  if (map_.empty()) return {};
  std::vector<const std::pair<const Id, std::vector<Timestamp>>*> order;
  order.reserve(map_.size());
  for (const auto& e : map_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::vector<TreeAtimes> trees;
  trees.reserve(order.size());
  for (const auto* e : order) trees.push_back({&e->first, e->second.data(), e->second.size()});
  return EncodeTable(trees);
}

Bytes AtimeTable::Encode() const {
  std::vector<TreeAtimes> trees;
  trees.reserve(index_.size());
  for (size_t i = 0; i < index_.size(); ++i) trees.push_back({&index_[i].first, &times_[index_[i].second], counts_[i]});
  return EncodeTable(trees);
}

Result<std::vector<Id>> StoreAtimes(BackupTarget& target, const Chunker& chunker, ByteView table,
                                    AddedBlobs* added) {
  std::vector<Id> ids;
  size_t pos = 0;
  while (pos < table.size()) {
    size_t n = chunker.FindCut(table.data() + pos, table.size() - pos, true);
    ByteView piece = table.subspan(pos, n);
    Id id = Sha256(piece);
    uint64_t stored = 0;
    ASSIGN_OR_RETURN(bool fresh, target.Put(storage::BlobType::kData, id, piece, &stored));
    if (fresh) {
      ++added->blobs;
      added->bytes += piece.size();
      added->stored += stored;
    }
    ids.push_back(id);
    pos += n;
  }
  return ids;
}

Result<std::shared_ptr<const AtimeTable>> LoadAtimes(storage::Repository& repo, const Manifest& m) {
  return LoadAtimes(m.atimes, [&](const Id& id) { return repo.ReadBlob(id); });
}

Result<std::shared_ptr<const AtimeTable>> LoadAtimes(const std::vector<Id>& ids,
                                                     const std::function<Result<Bytes>(const Id&)>& read) {
  if (ids.empty()) return std::shared_ptr<const AtimeTable>();
  Bytes all;
  for (const Id& id : ids) {
    auto piece = read(id);
    if (!piece.ok()) return piece.status().Annotate("atime table blob " + id.Short());
    Append(all, *piece);
  }
  auto t = AtimeTable::Decode(all);
  if (!t.ok()) return t.status();
  return std::shared_ptr<const AtimeTable>(std::make_shared<AtimeTable>(std::move(*t)));
}

}  // namespace custos::snapshot
