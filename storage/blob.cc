#include "storage/blob.h"

#include <zstd.h>

#include <cstdlib>
#include <memory>
#include <optional>

#include "storage/format.h"

namespace custos::storage {
namespace {

// Blobs this small are stored uncompressed: zstd's frame overhead eats the gain.
constexpr size_t kMinCompressSize = 64;

Bytes BlobAd(const PackEntry& e) {
  Bytes ad(kBlobAd.begin(), kBlobAd.end());
  ad.push_back(uint8_t(e.type));
  ad.push_back(uint8_t(e.compression));
  Append(ad, e.id.bytes);
  return ad;
}

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Seals `payload` with the entry (id, type, compression) as associated data.
void SealInto(const Key32& data_key, ByteView payload, EncodedBlob* out) {
  Bytes ad = BlobAd(out->entry);
  out->box.reserve(payload.size() + kBoxOverhead);
  SealAppend(data_key, payload, ad, out->box);
  out->entry.stored_length = uint32_t(out->box.size());
}

// Compresses `plaintext` at `zstd_level` (0 disables) into a buffer the
// thread keeps (uninitialised: only the pages zstd writes get touched, and
// no allocation per blob). The frame, valid until the thread's next call,
// when it saves at least 1/32 of the size: below that, decompression costs
// more than the bytes saved. The one compression policy of local blobs and
// of blobs on the wire.
std::optional<ByteView> CompressToScratch(ByteView plaintext, int zstd_level) {
  if (zstd_level <= 0 || plaintext.size() < kMinCompressSize) return std::nullopt;
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  thread_local std::unique_ptr<uint8_t[]> scratch;
  thread_local size_t scratch_size = 0;
  size_t bound = ZSTD_compressBound(plaintext.size());
  if (scratch_size < bound) {
    scratch.reset(new uint8_t[bound]);
    scratch_size = bound;
  }
  size_t n = ZSTD_compressCCtx(cctx.get(), scratch.get(), bound, plaintext.data(), plaintext.size(), zstd_level);
  if (ZSTD_isError(n) || n >= plaintext.size() - plaintext.size() / 32) return std::nullopt;
  return ByteView(scratch.get(), n);
}

// Decompresses `frame`, which must be one zstd frame declaring exactly
// `size` (at most kMaxBlobSize) plaintext bytes, into (*out)[0, size);
// *out grows to `size` if it is smaller, once the header has been checked.
Status DecompressInto(ByteView frame, size_t size, Bytes* out) {
  if (size > kMaxBlobSize) return CorruptionError("zstd: declared size too large");
  unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN || declared != size) {
    return CorruptionError("zstd: bad frame header or size");
  }
  if (out->size() < size) out->resize(size);
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  size_t n = ZSTD_decompressDCtx(dctx.get(), out->data(), size, frame.data(), frame.size());
  if (ZSTD_isError(n) || n != size) return CorruptionError("zstd: does not decompress");
  return Status::Ok();
}

}  // namespace

const char* BlobTypeName(BlobType t) { return t == BlobType::kTree ? "tree" : "data"; }

EncodedBlob EncodeBlob(const Key32& data_key, BlobType type, ByteView plaintext, int zstd_level) {
  return EncodeBlob(data_key, type, plaintext, Sha256(plaintext), zstd_level);
}

EncodedBlob EncodeBlob(const Key32& data_key, BlobType type, ByteView plaintext, const Id& id,
                       int zstd_level) {
  if (plaintext.size() > kMaxBlobSize) std::abort();  // callers split before this
  EncodedBlob out;
  out.entry.id = id;
  out.entry.type = type;
  out.entry.raw_length = uint32_t(plaintext.size());
  ByteView payload = plaintext;
  if (auto frame = CompressToScratch(plaintext, zstd_level)) {
    payload = *frame;
    out.entry.compression = Compression::kZstd;
  }
  SealInto(data_key, payload, &out);
  return out;
}

EncodedBlob EncodeCompressedBlob(const Key32& data_key, BlobType type, ByteView zstd_frame, uint32_t raw_size,
                                 const Id& id) {
  if (raw_size > kMaxBlobSize) std::abort();  // the caller decompressed it: a bug
  EncodedBlob out;
  out.entry.id = id;
  out.entry.type = type;
  out.entry.raw_length = raw_size;
  out.entry.compression = Compression::kZstd;
  SealInto(data_key, zstd_frame, &out);
  return out;
}

bool ZstdCompress(ByteView plaintext, int zstd_level, Bytes* out) {
  out->clear();
  auto frame = CompressToScratch(plaintext, zstd_level);
  if (!frame) return false;
  out->assign(frame->begin(), frame->end());  // the caller queues it: a copy at its size
  return true;
}

Result<Bytes> ZstdDecompress(ByteView frame, size_t size) {
  Bytes plain;
  RETURN_IF_ERROR(DecompressInto(frame, size, &plain));
  return plain;
}

Status VerifyFrame(ByteView frame, size_t size, const Id& id) {
  // Decompressed into one buffer that stays with the thread: no allocation,
  // no zeroing and no page faults per blob, and the plaintext is hashed
  // while it is still in cache. A buffer grown past a chunker's largest
  // chunk (an agent may declare up to kMaxBlobSize) is not kept.
  constexpr size_t kKeep = 16u << 20;
  thread_local Bytes plain;
  Status st = DecompressInto(frame, size, &plain);
  if (st.ok() && Sha256(ByteView(plain.data(), size)) != id) st = IntegrityError("content does not hash to its ID");
  if (plain.size() > kKeep) Bytes().swap(plain);
  return st;
}

Result<Bytes> DecodeBlob(const Key32& data_key, const PackEntry& entry, ByteView box) {
  auto opened = Open(data_key, box, BlobAd(entry));
  if (!opened.ok()) return opened.status().Annotate("blob " + entry.id.Hex());
  Bytes plain;
  if (entry.compression == Compression::kNone) {
    plain = std::move(opened).value();
  } else if (entry.compression == Compression::kZstd) {
    thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
    unsigned long long size = ZSTD_getFrameContentSize(opened->data(), opened->size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > kMaxBlobSize) {
      return CorruptionError("blob " + entry.id.Hex() + ": bad zstd frame header");
    }
    plain.resize(size_t(size));
    size_t n = ZSTD_decompressDCtx(dctx.get(), plain.data(), plain.size(), opened->data(),
                                   opened->size());
    if (ZSTD_isError(n) || n != size) {
      return CorruptionError("blob " + entry.id.Hex() + ": does not decompress");
    }
  } else {
    return CorruptionError("blob " + entry.id.Hex() + ": unknown compression " +
                           std::to_string(int(entry.compression)));
  }
  if (entry.raw_length != kUnknownRawLength && plain.size() != entry.raw_length) {
    return CorruptionError("blob " + entry.id.Hex() + ": length " + std::to_string(plain.size()) +
                           " differs from recorded " + std::to_string(entry.raw_length));
  }
  if (Sha256(plain) != entry.id) {
    return IntegrityError("blob " + entry.id.Hex() + ": content does not hash to its ID");
  }
  return plain;
}

Result<Bytes> OpenBlob(const Key32& data_key, const PackEntry& entry, ByteView box, uint64_t* raw_size) {
  auto opened = Open(data_key, box, BlobAd(entry));
  if (!opened.ok()) return opened.status().Annotate("blob " + entry.id.Hex());
  if (entry.compression == Compression::kNone) {
    *raw_size = opened->size();
  } else if (entry.compression == Compression::kZstd) {
    unsigned long long size = ZSTD_getFrameContentSize(opened->data(), opened->size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > kMaxBlobSize) {
      return CorruptionError("blob " + entry.id.Hex() + ": bad zstd frame header");
    }
    *raw_size = size;
  } else {
    return CorruptionError("blob " + entry.id.Hex() + ": unknown compression " + std::to_string(int(entry.compression)));
  }
  return opened;
}

}  // namespace custos::storage
