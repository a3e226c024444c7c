// Fuzzes mark file decoding (storage/index_file.h, prune's first phase).
//
// Input: one selector byte, then
//   0: a whole mark file (magic || box): DecodeMarkFile under the fixed key.
//   1: the plaintext of a mark file: sealed with the fixed key, then
//      decoded; a success must re-encode to the same plaintext.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "storage/format.h"
#include "storage/index_file.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

namespace {

bool SameMark(const MarkFile& a, const MarkFile& b) {
  if (a.time_ns != b.time_ns || a.retired_packs != b.retired_packs || a.packs.size() != b.packs.size()) return false;
  for (size_t i = 0; i < a.packs.size(); ++i) {
    if (a.packs[i].pack != b.packs[i].pack || a.packs[i].blobs != b.packs[i].blobs) return false;
  }
  return true;
}

void Decode(ByteView file, ByteView plain) {
  auto mark = DecodeMarkFile(FixedKey(), file);
  if (!mark.ok()) return;
  Bytes encoded = EncodeMarkFile(FixedKey(), *mark);
  auto again = DecodeMarkFile(FixedKey(), encoded);
  FUZZ_CHECK(again.ok() && SameMark(*again, *mark));
  if (!plain.empty()) {
    // No slack in the format: the plaintext re-encodes byte for byte.
    auto opened = Open(FixedKey(), ByteView(encoded).subspan(kMarkMagic.size()), AsBytes(kMarkAd));
    FUZZ_CHECK(opened.ok() && fuzz::SameBytes(*opened, plain));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  if (in.U8() % 2 == 0) {
    Decode(in.Rest(), {});
  } else {
    ByteView plain = in.Rest();
    Bytes file(kMarkMagic.begin(), kMarkMagic.end());
    SealAppend(FixedKey(), plain, AsBytes(kMarkAd), file);
    Decode(file, plain);
  }
  return 0;
}
