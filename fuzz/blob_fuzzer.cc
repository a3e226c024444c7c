// Fuzzes blob decoding (DecodeBlob in storage/blob.h): authentication,
// zstd decompression, length and hash checks.
//
// Input: one selector byte, then
//   0: u8 type, u8 compression, u32 raw length, 32-byte id, then a stored
//      box: DecodeBlob under the fixed key (mostly fails authentication).
//   1: u8 type, u8 compression, u8 flags, u32 raw length, then a payload
//      (for compression 1, a zstd frame). The fuzzer seals the payload with
//      the associated data the format binds (doc/formats/repository.md,
//      "Blobs"), so DecodeBlob reaches decompression and the checks after
//      it. flags bit 0: raw length unknown; bit 1: id = SHA-256 of the
//      payload (right for uncompressed blobs), else all zero.
//   2: u8 type, u8 zstd level (mod 4), then plaintext: EncodeBlob then
//      DecodeBlob must give the plaintext back.
//   3: u8 flags, u32 size (mod 2^21), then a zstd frame as an agent sends
//      it: VerifyFrame (the appliance's check) must agree with decompressing
//      in one piece and hashing. flags bit 0: id = SHA-256 of what the frame
//      decompresses to (when it does), else all zero.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "storage/blob.h"
#include "storage/format.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

namespace {

// The blob's associated data: kBlobAd || type || compression || id.
Bytes BlobAd(const PackEntry& e) {
  Bytes ad(kBlobAd.begin(), kBlobAd.end());
  ad.push_back(uint8_t(e.type));
  ad.push_back(uint8_t(e.compression));
  Append(ad, e.id.bytes);
  return ad;
}

void CheckDecoded(const PackEntry& entry, const Result<Bytes>& plain) {
  if (!plain.ok()) return;
  FUZZ_CHECK(entry.compression == Compression::kNone || entry.compression == Compression::kZstd);
  FUZZ_CHECK(Sha256(*plain) == entry.id);
  FUZZ_CHECK(entry.raw_length == kUnknownRawLength || plain->size() == entry.raw_length);
  FUZZ_CHECK(plain->size() <= kMaxBlobSize);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 4) {
    case 0: {
      PackEntry e;
      e.type = BlobType(in.U8());
      e.compression = Compression(in.U8());
      e.raw_length = in.U32();
      in.Array(e.id.bytes.data(), e.id.bytes.size());
      ByteView box = in.Rest();
      e.stored_length = uint32_t(box.size());
      CheckDecoded(e, DecodeBlob(FixedKey(), e, box));
      break;
    }
    case 1: {
      PackEntry e;
      e.type = BlobType(in.U8() % 2);
      e.compression = Compression(in.U8() % 3);  // 2 is unknown: must be refused
      uint8_t flags = in.U8();
      e.raw_length = in.U32();
      if (flags & 1) e.raw_length = kUnknownRawLength;
      ByteView payload = in.Rest();
      if (flags & 2) e.id = Sha256(payload);
      Bytes box = Seal(FixedKey(), payload, BlobAd(e));
      e.stored_length = uint32_t(box.size());
      auto plain = DecodeBlob(FixedKey(), e, box);
      CheckDecoded(e, plain);
      if (e.compression == Compression::kNone) {
        bool valid = (flags & 2) && (e.raw_length == kUnknownRawLength || e.raw_length == payload.size());
        FUZZ_CHECK(plain.ok() == valid);
        if (valid) FUZZ_CHECK(fuzz::SameBytes(*plain, payload));
      }
      break;
    }
    case 2: {
      BlobType type = BlobType(in.U8() % 2);
      int level = in.U8() % 4;
      ByteView plaintext = in.Rest();
      EncodedBlob blob = EncodeBlob(FixedKey(), type, plaintext, level);
      FUZZ_CHECK(blob.entry.id == Sha256(plaintext) && blob.entry.stored_length == blob.box.size());
      auto plain = DecodeBlob(FixedKey(), blob.entry, blob.box);
      FUZZ_CHECK(plain.ok() && fuzz::SameBytes(*plain, plaintext));
      // The index does not keep raw lengths: decoding without one works too.
      blob.entry.raw_length = kUnknownRawLength;
      FUZZ_CHECK(DecodeBlob(FixedKey(), blob.entry, blob.box).ok());
      // The associated data binds the type.
      blob.entry.type = type == BlobType::kData ? BlobType::kTree : BlobType::kData;
      FUZZ_CHECK(!DecodeBlob(FixedKey(), blob.entry, blob.box).ok());
      break;
    }
    case 3: {
      uint8_t flags = in.U8();
      size_t n = in.U32() % (1u << 21);
      ByteView frame = in.Rest();
      auto plain = ZstdDecompress(frame, n);
      Id id;
      if (plain.ok() && (flags & 1)) id = Sha256(*plain);
      Status st = VerifyFrame(frame, n, id);
      FUZZ_CHECK(st.ok() == (plain.ok() && Sha256(*plain) == id));
      if (!st.ok() && plain.ok()) FUZZ_CHECK(st.code() == Code::kIntegrity);
      break;
    }
  }
  return 0;
}
