// Fuzzes the snapshot envelope (DecodeSnapshotFile in storage/index_file.h).
//
// Input: one selector byte, then
//   0: a whole snapshot file (magic || box) under the fixed key.
//   1: the envelope's plaintext (u32 version || payload), sealed with the
//      fixed key; a success must give back the payload after the version.
//   2: a payload: EncodeSnapshotFile then DecodeSnapshotFile must return it.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "storage/format.h"
#include "storage/index_file.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 3) {
    case 0: {
      auto payload = DecodeSnapshotFile(FixedKey(), in.Rest());
      if (payload.ok()) {
        FUZZ_CHECK(in.Rest().size() == kSnapshotMagic.size() + kBoxOverhead + 4 + payload->size());
      }
      break;
    }
    case 1: {
      ByteView plain = in.Rest();
      Bytes file(kSnapshotMagic.begin(), kSnapshotMagic.end());
      SealAppend(FixedKey(), plain, AsBytes(kSnapshotAd), file);
      auto payload = DecodeSnapshotFile(FixedKey(), file);
      bool valid = plain.size() >= 4 && GetU32(plain.data()) == kFormatVersion;
      FUZZ_CHECK(payload.ok() == valid);
      if (payload.ok()) FUZZ_CHECK(fuzz::SameBytes(*payload, plain.subspan(4)));
      break;
    }
    case 2: {
      ByteView payload = in.Rest();
      Bytes file = EncodeSnapshotFile(FixedKey(), payload);
      auto back = DecodeSnapshotFile(FixedKey(), file);
      FUZZ_CHECK(back.ok() && fuzz::SameBytes(*back, payload));
      // Any single flipped bit must be caught (magic or authentication).
      if (!payload.empty()) {
        size_t bit = (payload[0] * 131u + payload.size()) % (file.size() * 8);
        file[bit / 8] ^= uint8_t(1u << (bit % 8));
        FUZZ_CHECK(!DecodeSnapshotFile(FixedKey(), file).ok());
      }
      break;
    }
  }
  return 0;
}
