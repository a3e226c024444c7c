// The in-memory index: blob ID -> (pack, offset, stored length, type,
// compression). Compact by design: 44 bytes per blob plus a bucket
// directory of about half a byte per blob (bench/index_memory measures it).
//
// Layout: a sorted array of packed 44-byte entries, located by a directory
// of bucket starts indexed by the ID's top bits (IDs are uniform hashes, so
// each bucket holds about 8 entries), plus a small hash map of recent
// additions that is merged into the array when it grows past 1/16 of it.
// Every merge allocates the array at its exact size: no growth slack.
// Duplicates (the same blob in two packs) are kept; Find returns one.
//
// Thread-safety: not thread-safe; the Repository guards it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/bytes.h"
#include "storage/blob.h"

namespace custos::storage {

struct BlobLocation {
  Id pack;
  PackEntry entry;  // raw_length is kUnknownRawLength
};

class Index {
 public:
  // Registers a pack and returns its number (idempotent per pack id).
  uint32_t AddPack(const Id& pack_id);
  void Add(uint32_t pack, const PackEntry& e);
  // Bulk loading: reserve room for `n` more entries in the sorted array and
  // append unsorted with AddUnsorted; Finalize sorts once.
  void Reserve(size_t n);
  void AddUnsorted(uint32_t pack, const PackEntry& e);
  void Finalize();

  std::optional<BlobLocation> Find(const Id& blob) const;
  bool Has(const Id& blob) const { return Find(blob).has_value(); }
  size_t size() const { return sorted_.size() + pending_.size(); }
  size_t pack_count() const { return packs_.size(); }
  const Id& PackId(uint32_t pack) const { return packs_[pack]; }
  // Calls fn for every entry, duplicates included, in no set order.
  void ForEach(const std::function<void(const BlobLocation&)>& fn) const;
  // Bytes of heap this index holds (for the memory benchmark).
  size_t MemoryBytes() const;

  struct Packed {
    uint8_t id[32];
    uint32_t pack_and_flags;  // bits 0-29 pack number, bit 30 tree, bit 31 zstd
    uint32_t offset;
    uint32_t stored_length;
  };
  static_assert(sizeof(Packed) == 44, "index entry must stay 44 bytes");

 private:
  static Packed Pack(uint32_t pack, const PackEntry& e);
  BlobLocation Unpack(const Packed& p) const;
  void Merge();
  void RebuildDirectory();

  std::vector<Packed> sorted_;
  std::vector<uint32_t> directory_;  // bucket b starts at directory_[b]
  int directory_bits_ = 0;
  bool unsorted_tail_ = false;
  std::vector<Packed> pending_;
  std::unordered_map<Id, uint32_t, IdHash> pending_pos_;
  std::vector<Id> packs_;
  std::unordered_map<Id, uint32_t, IdHash> pack_numbers_;
};

}  // namespace custos::storage
