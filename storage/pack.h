// Packs: files of many blobs, named by the SHA-256 of their bytes, ending
// in an encrypted header that lists every blob, so that the index can be
// rebuilt from the packs alone (doc/formats/repository.md, "Packs").
//
// Thread-safety: PackBuilder is not thread-safe; the parse functions are.
#pragma once

#include <vector>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"
#include "storage/backend.h"
#include "storage/blob.h"

namespace custos::storage {

class PackBuilder {
 public:
  PackBuilder();
  // Appends a blob; its entry's offset is set here.
  void Add(EncodedBlob blob);
  size_t size() const { return bytes_.size(); }
  size_t count() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  struct Finished {
    Id id;  // SHA-256 of bytes: the pack's file name
    Bytes bytes;
    std::vector<PackEntry> entries;
  };
  // Seals the header and returns the whole pack. The builder is then empty
  // and may be reused.
  Finished Finish(const Key32& data_key);

 private:
  Bytes bytes_;
  std::vector<PackEntry> entries_;
};

// Streams a pack to a backend writer: blobs go to disk as they come, the
// pack's SHA-256 is computed on the way, the header goes last. Memory stays
// small whatever the pack size. Not thread-safe.
class PackWriter {
 public:
  explicit PackWriter(std::unique_ptr<FileWriter> out);
  Status Add(EncodedBlob blob);
  uint64_t size() const { return size_; }
  bool empty() const { return entries_.empty(); }

  struct Finished {
    Id id;
    std::vector<PackEntry> entries;
  };
  // Seals the header and commits the file under the pack's ID. AlreadyExists
  // (an identical pack is stored) counts as success.
  Result<Finished> Finish(const Key32& data_key);

 private:
  std::unique_ptr<FileWriter> out_;
  Sha256Stream hash_;
  std::vector<PackEntry> entries_;
  uint64_t size_ = 0;
  Status status_;
};

// The header box and trailer that end a pack holding `entries`.
Bytes EncodePackTail(const Key32& data_key, const std::vector<PackEntry>& entries);

// Serialises and parses the list of entries; shared by pack headers and
// index files. Parse validates every field; Corruption on any defect.
void EncodeEntries(const std::vector<PackEntry>& entries, Bytes& out);
Result<std::vector<PackEntry>> DecodeEntries(ByteReader& r, uint32_t count);

// How many bytes at the end of a pack hold its trailer and, usually, its
// header: read this much first, then more if the trailer asks for it.
constexpr size_t kPackTailGuess = 64 * 1024;

// Given the last bytes of a pack (at least the trailer) and the pack's size,
// returns how many bytes from the end are needed to hold the header box and
// the trailer. Corruption if the trailer is malformed.
Result<uint64_t> PackTailLength(ByteView tail, uint64_t pack_size);

// Parses and checks the pack header from the last `tail` bytes of a pack of
// `pack_size` bytes (tail must be at least PackTailLength). Checks: magic,
// header authentication, entry fields, and that the blobs tile the region
// between the leading magic and the header exactly.
Result<std::vector<PackEntry>> ParsePackHeader(const Key32& data_key, ByteView tail,
                                               uint64_t pack_size);

}  // namespace custos::storage
