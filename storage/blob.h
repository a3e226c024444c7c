// Blobs: the unit of deduplication. A blob's ID is the SHA-256 of its
// plaintext. On disk a blob is zstd-compressed (unless that does not save
// space) and sealed in a box whose associated data binds its ID, type and
// compression (doc/formats/repository.md, "Blobs").
//
// Thread-safety: EncodeBlob and DecodeBlob are pure and thread-safe.
#pragma once

#include <cstdint>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"

namespace custos::storage {

enum class BlobType : uint8_t { kData = 0, kTree = 1 };
enum class Compression : uint8_t { kNone = 0, kZstd = 1 };
const char* BlobTypeName(BlobType t);

constexpr uint32_t kUnknownRawLength = ~uint32_t(0);

// Where a blob lives in a pack, as the pack header and index record it.
struct PackEntry {
  Id id;
  BlobType type = BlobType::kData;
  Compression compression = Compression::kNone;
  uint32_t offset = 0;         // from the start of the pack file
  uint32_t stored_length = 0;  // the box's length
  uint32_t raw_length = 0;     // plaintext length, or kUnknownRawLength
};

// A blob ready to be appended to a pack.
struct EncodedBlob {
  PackEntry entry;  // offset is set by the pack builder
  Bytes box;
};

// Compresses (zstd at `zstd_level`; 0 disables) and seals `plaintext`.
// `id` must be Sha256(plaintext); pass it when the caller already hashed.
EncodedBlob EncodeBlob(const Key32& data_key, BlobType type, ByteView plaintext, const Id& id,
                       int zstd_level);
EncodedBlob EncodeBlob(const Key32& data_key, BlobType type, ByteView plaintext, int zstd_level);
// Seals a zstd frame as it is: the blob's plaintext has `raw_size` bytes
// and ID `id`, which the caller has checked by decompressing the frame (the
// appliance stores an agent's compressed blob without compressing it again).
EncodedBlob EncodeCompressedBlob(const Key32& data_key, BlobType type, ByteView zstd_frame, uint32_t raw_size,
                                 const Id& id);

// Plain zstd for blobs on the wire (CAP/1 BLOB payloads), with the policy
// of EncodeBlob: compressed only when that saves at least 1/32. Returns
// whether *out holds a zstd frame (else it is empty: send the plaintext).
bool ZstdCompress(ByteView plaintext, int zstd_level, Bytes* out);
// Corruption unless `frame` is one zstd frame that decompresses to exactly
// `size` bytes (at most kMaxBlobSize).
Result<Bytes> ZstdDecompress(ByteView frame, size_t size);

// Checks that `frame` is one zstd frame of `size` plaintext bytes (at most
// kMaxBlobSize) whose SHA-256 is `id`, without keeping the plaintext:
// Corruption when it does not decompress, Integrity when it hashes to
// something else. What the appliance does to every blob an agent sends.
Status VerifyFrame(ByteView frame, size_t size, const Id& id);

// Opens, decompresses and hashes a stored blob. The box is authenticated
// with id, type and compression as associated data; raw_length is checked
// unless it is kUnknownRawLength (the in-memory index does not keep it).
// Corruption when the box does not authenticate or does not decompress;
// Integrity when the plaintext does not hash to entry.id.
Result<Bytes> DecodeBlob(const Key32& data_key, const PackEntry& entry, ByteView box);
// Opens a stored blob without decompressing it, for sending it on as it is
// (CAP/1 restore): the box's content, a zstd frame when entry.compression
// is kZstd (then *raw_size is the size its header records) or else the
// plaintext. Not hashed: the receiver decompresses and checks the ID.
// Corruption when the box does not authenticate or the frame header is bad.
Result<Bytes> OpenBlob(const Key32& data_key, const PackEntry& entry, ByteView box, uint64_t* raw_size);

}  // namespace custos::storage
