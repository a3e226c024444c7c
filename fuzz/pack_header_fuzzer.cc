// Fuzzes the pack trailer and header parsers (storage/pack.h).
//
// Input: one selector byte, then
//   0: a whole pack file: PackTailLength and ParsePackHeader with the
//      input as both tail and pack.
//   1: u64 pack size, then a tail: the same with a pack size that need not
//      match the tail (a reader sees only the last bytes of a pack).
//   2: u16 filler length (mod 4096), then the header plaintext: the fuzzer
//      builds magic || filler || box(plaintext) || trailer under the fixed
//      key, so the parser behind the AEAD sees the bytes. A parse that
//      succeeds must re-encode to the same plaintext and tile the filler.
//   3: u32 count, then bytes for DecodeEntries directly; a success must
//      re-encode to the bytes it consumed.
#include <cstddef>
#include <cstdint>

#include "fuzz/entries_util.h"
#include "fuzz/fuzz_util.h"
#include "storage/format.h"
#include "storage/pack.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

namespace {

void ParseWhole(ByteView tail, uint64_t pack_size) {
  auto need = PackTailLength(tail, pack_size);
  auto entries = ParsePackHeader(FixedKey(), tail, pack_size);
  if (entries.ok()) {
    FUZZ_CHECK(need.ok());
    FUZZ_CHECK(*need <= tail.size() && *need <= pack_size);
  }
}

void ParseSealed(fuzz::Input& in) {
  uint16_t filler = in.U16() % 4096;
  ByteView plain = in.Rest();
  Bytes pack(kPackMagic.begin(), kPackMagic.end());
  pack.resize(pack.size() + filler, 0);
  size_t before = pack.size();
  SealAppend(FixedKey(), plain, AsBytes(kPackHeaderAd), pack);
  PutU32(pack, uint32_t(pack.size() - before));
  Append(pack, AsBytes(kPackEndMagic));

  auto need = PackTailLength(pack, pack.size());
  FUZZ_CHECK(plain.size() < 8 || need.ok());  // the trailer is always well formed here
  auto entries = ParsePackHeader(FixedKey(), pack, pack.size());
  if (!entries.ok()) return;
  // Re-encoding gives the plaintext back: the header has no slack.
  Bytes again;
  PutU32(again, kFormatVersion);
  PutU32(again, uint32_t(entries->size()));
  EncodeEntries(*entries, again);
  FUZZ_CHECK(fuzz::SameBytes(again, plain));
  // The blobs tile the filler exactly.
  uint64_t pos = kPackMagic.size();
  for (const auto& e : *entries) {
    FUZZ_CHECK(e.offset == pos);
    pos += e.stored_length;
  }
  FUZZ_CHECK(pos == kPackMagic.size() + filler);
}

void ParseEntries(fuzz::Input& in) {
  uint32_t count = in.U32();
  ByteView rest = in.Rest();
  ByteReader r(rest);
  auto entries = DecodeEntries(r, count);
  if (!entries.ok()) return;
  FUZZ_CHECK(entries->size() == count);
  size_t used = rest.size() - r.remaining();
  FUZZ_CHECK(used == size_t(count) * kPackEntrySize);
  Bytes again;
  EncodeEntries(*entries, again);
  FUZZ_CHECK(fuzz::SameBytes(again, rest.subspan(0, used)));
  ByteReader r2(again);
  auto twice = DecodeEntries(r2, count);
  FUZZ_CHECK(twice.ok() && fuzz::SameEntries(*twice, *entries));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 4) {
    case 0: {
      ByteView pack = in.Rest();
      ParseWhole(pack, pack.size());
      break;
    }
    case 1: {
      uint64_t pack_size = in.U64();
      ParseWhole(in.Rest(), pack_size);
      break;
    }
    case 2:
      ParseSealed(in);
      break;
    case 3:
      ParseEntries(in);
      break;
  }
  return 0;
}
