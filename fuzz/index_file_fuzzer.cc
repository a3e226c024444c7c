// Fuzzes index file decoding (storage/index_file.h) and, through it, the
// entry parser shared with pack headers.
//
// Input: one selector byte, then
//   0: a whole index file (magic || box): DecodeIndexFile under the fixed key.
//   1: the plaintext of an index file: sealed with the fixed key, then
//      decoded; a success must re-encode to the same plaintext.
//   2: u32 count, then bytes for DecodeEntries directly.
#include <cstddef>
#include <cstdint>

#include "fuzz/entries_util.h"
#include "fuzz/fuzz_util.h"
#include "storage/format.h"
#include "storage/index_file.h"
#include "storage/pack.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

namespace {

bool SameIndex(const IndexFile& a, const IndexFile& b) {
  if (a.supersedes != b.supersedes || a.packs.size() != b.packs.size()) return false;
  for (size_t i = 0; i < a.packs.size(); ++i) {
    if (a.packs[i].pack != b.packs[i].pack || !fuzz::SameEntries(a.packs[i].entries, b.packs[i].entries)) {
      return false;
    }
  }
  return true;
}

void Decode(ByteView file, ByteView plain) {
  auto index = DecodeIndexFile(FixedKey(), file);
  if (!index.ok()) return;
  Bytes encoded = EncodeIndexFile(FixedKey(), *index);
  auto again = DecodeIndexFile(FixedKey(), encoded);
  FUZZ_CHECK(again.ok() && SameIndex(*again, *index));
  if (!plain.empty()) {
    // The format has no slack: the plaintext re-encodes byte for byte.
    auto opened = Open(FixedKey(), ByteView(encoded).subspan(kIndexMagic.size()), AsBytes(kIndexAd));
    FUZZ_CHECK(opened.ok() && fuzz::SameBytes(*opened, plain));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 3) {
    case 0:
      Decode(in.Rest(), {});
      break;
    case 1: {
      ByteView plain = in.Rest();
      Bytes file(kIndexMagic.begin(), kIndexMagic.end());
      SealAppend(FixedKey(), plain, AsBytes(kIndexAd), file);
      Decode(file, plain);
      break;
    }
    case 2: {
      uint32_t count = in.U32();
      ByteView rest = in.Rest();
      ByteReader r(rest);
      auto entries = DecodeEntries(r, count);
      if (entries.ok()) {
        Bytes again;
        EncodeEntries(*entries, again);
        FUZZ_CHECK(fuzz::SameBytes(again, rest.subspan(0, rest.size() - r.remaining())));
      }
      break;
    }
  }
  return 0;
}
