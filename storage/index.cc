#include "storage/index.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace custos::storage {
namespace {

constexpr uint32_t kPackMask = (1u << 30) - 1;
constexpr uint32_t kTreeBit = 1u << 30;
constexpr uint32_t kZstdBit = 1u << 31;
// Merge the recent additions when they exceed max(kMinPending, sorted/16).
constexpr size_t kMinPending = 4096;

bool Less(const Index::Packed& a, const Index::Packed& b) {
  return std::memcmp(a.id, b.id, 32) < 0;
}

uint64_t Top64(const uint8_t* id) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | id[i];
  return v;
}

}  // namespace

uint32_t Index::AddPack(const Id& pack_id) {
  auto it = pack_numbers_.find(pack_id);
  if (it != pack_numbers_.end()) return it->second;
  if (packs_.size() > kPackMask) std::abort();  // 2^30 packs: far beyond any repository
  uint32_t n = uint32_t(packs_.size());
  packs_.push_back(pack_id);
  pack_numbers_.emplace(pack_id, n);
  return n;
}

Index::Packed Index::Pack(uint32_t pack, const PackEntry& e) {
  Packed p;
  std::memcpy(p.id, e.id.bytes.data(), 32);
  p.pack_and_flags = (pack & kPackMask) | (e.type == BlobType::kTree ? kTreeBit : 0) |
                     (e.compression == Compression::kZstd ? kZstdBit : 0);
  p.offset = e.offset;
  p.stored_length = e.stored_length;
  return p;
}

BlobLocation Index::Unpack(const Packed& p) const {
  BlobLocation loc;
  loc.pack = packs_[p.pack_and_flags & kPackMask];
  std::memcpy(loc.entry.id.bytes.data(), p.id, 32);
  loc.entry.type = (p.pack_and_flags & kTreeBit) ? BlobType::kTree : BlobType::kData;
  loc.entry.compression = (p.pack_and_flags & kZstdBit) ? Compression::kZstd : Compression::kNone;
  loc.entry.offset = p.offset;
  loc.entry.stored_length = p.stored_length;
  loc.entry.raw_length = kUnknownRawLength;
  return loc;
}

void Index::Add(uint32_t pack, const PackEntry& e) {
  if (pending_pos_.count(e.id)) return;  // a second copy adds nothing to lookups
  pending_pos_.emplace(e.id, uint32_t(pending_.size()));
  pending_.push_back(Pack(pack, e));
  if (pending_.size() > std::max(kMinPending, sorted_.size() / 16)) Merge();
}

void Index::Reserve(size_t n) {
  if (!pending_.empty()) Merge();
  sorted_.reserve(sorted_.size() + n);
}

void Index::AddUnsorted(uint32_t pack, const PackEntry& e) {
  sorted_.push_back(Pack(pack, e));
  unsorted_tail_ = true;
}

void Index::Finalize() {
  if (!pending_.empty()) Merge();
  if (unsorted_tail_) {
    std::sort(sorted_.begin(), sorted_.end(), Less);
    unsorted_tail_ = false;
  }
  sorted_.shrink_to_fit();
  RebuildDirectory();
}

void Index::Merge() {
  if (unsorted_tail_) std::sort(sorted_.begin(), sorted_.end(), Less);
  unsorted_tail_ = false;
  std::sort(pending_.begin(), pending_.end(), Less);
  std::vector<Packed> merged;
  merged.reserve(sorted_.size() + pending_.size());
  std::merge(sorted_.begin(), sorted_.end(), pending_.begin(), pending_.end(),
             std::back_inserter(merged), Less);
  sorted_.swap(merged);
  std::vector<Packed>().swap(pending_);
  std::unordered_map<Id, uint32_t, IdHash>().swap(pending_pos_);
  RebuildDirectory();
}

void Index::RebuildDirectory() {
  // About 8 entries per bucket: 4 bytes of directory per 8 entries.
  int bits = 0;
  while ((size_t(1) << (bits + 3)) < sorted_.size() && bits < 28) ++bits;
  directory_bits_ = bits;
  std::vector<uint32_t> dir((size_t(1) << bits) + 1);
  size_t i = 0;
  for (size_t b = 0; b < (size_t(1) << bits); ++b) {
    dir[b] = uint32_t(i);
    while (i < sorted_.size() && (bits == 0 ? 0 : Top64(sorted_[i].id) >> (64 - bits)) == b) ++i;
  }
  dir.back() = uint32_t(sorted_.size());
  directory_.swap(dir);
}

std::optional<BlobLocation> Index::Find(const Id& blob) const {
  if (!pending_.empty()) {
    auto it = pending_pos_.find(blob);
    if (it != pending_pos_.end()) return Unpack(pending_[it->second]);
  }
  if (sorted_.empty()) return std::nullopt;
  size_t lo = 0, hi = sorted_.size();
  if (!unsorted_tail_ && directory_.size() > 1) {
    size_t b = directory_bits_ == 0 ? 0 : Top64(blob.bytes.data()) >> (64 - directory_bits_);
    lo = directory_[b];
    hi = directory_[b + 1];
  } else if (unsorted_tail_) {
    for (const auto& p : sorted_) {
      if (std::memcmp(p.id, blob.bytes.data(), 32) == 0) return Unpack(p);
    }
    return std::nullopt;
  }
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = std::memcmp(sorted_[mid].id, blob.bytes.data(), 32);
    if (c == 0) return Unpack(sorted_[mid]);
    if (c < 0) lo = mid + 1; else hi = mid;
  }
  return std::nullopt;
}

void Index::ForEach(const std::function<void(const BlobLocation&)>& fn) const {
  for (const auto& p : sorted_) fn(Unpack(p));
  for (const auto& p : pending_) fn(Unpack(p));
}

size_t Index::MemoryBytes() const {
  return sorted_.capacity() * sizeof(Packed) + directory_.capacity() * sizeof(uint32_t) +
         pending_.capacity() * sizeof(Packed) + pending_pos_.size() * 64 +
         packs_.capacity() * sizeof(Id) + pack_numbers_.size() * 64;
}

}  // namespace custos::storage
