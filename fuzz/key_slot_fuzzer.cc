// Fuzzes key slot files and recovery keys (storage/keys.h).
//
// Input: one selector byte, then
//   0: a whole key slot file: ParseSealedText, then DecodeKeySlotBody.
//   1: a key slot body (one JSON line): sealed with the fixed MAC key,
//      parsed back, decoded. A decoded slot must re-encode and decode to
//      the same values.
//   2: recovery key text: ParseRecoveryKey. A key that parses must print
//      in canonical form and parse again to the same 32 bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "fuzz/sealed_text_util.h"
#include "storage/keys.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

CUSTOS_FUZZ_INIT

namespace {

bool SameSlot(const KeySlot& a, const KeySlot& b) {
  bool same = a.id == b.id && a.kind == b.kind && a.label == b.label && a.created == b.created &&
              a.host == b.host && a.user == b.user && a.salt == b.salt && a.wrapped == b.wrapped;
  if (a.kind == SlotKind::kPassphrase) same = same && a.kdf.ops == b.kdf.ops && a.kdf.mem_bytes == b.kdf.mem_bytes;
  return same;
}

void DecodeBody(const std::string& body) {
  auto slot = DecodeKeySlotBody(body);
  if (!slot.ok()) return;
  FUZZ_CHECK(slot->id.size() == 32 && slot->salt.size() == 16 && slot->wrapped.size() == 32 + kBoxOverhead);
  auto again = DecodeKeySlotBody(EncodeKeySlotBody(*slot));
  FUZZ_CHECK(again.ok() && SameSlot(*again, *slot));
  if (slot->kind == SlotKind::kRecovery) {
    // Cheap (no Argon2id): a wrong recovery key must not open the slot.
    auto master = UnwrapMaster(*slot, std::string(64, 'a'), "not a recovery key");
    FUZZ_CHECK(!master.ok());
  }
}

// The canonical text of a recovery key (storage/keys.cc MakeRecoveryKey):
// 32 bytes and the first 2 bytes of their SHA-256, base32, groups of 5.
std::string RecoveryText(const Key32& k) {
  static constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  uint8_t raw[34];
  std::memcpy(raw, k.data(), 32);
  Id sum = Sha256(ByteView(raw, 32));
  raw[32] = sum.bytes[0];
  raw[33] = sum.bytes[1];
  std::string out;
  uint32_t acc = 0;
  int bits = 0, chars = 0;
  auto put = [&](uint32_t v) {
    if (chars && chars % 5 == 0) out += '-';
    out += kBase32[v & 31];
    ++chars;
  };
  for (uint8_t b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      put(acc >> (bits - 5));
      bits -= 5;
    }
  }
  if (bits > 0) put(acc << (5 - bits));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 3) {
    case 0:
      if (auto body = fuzz::ParseFile(in.Rest(), "key slot")) DecodeBody(*body);
      break;
    case 1:
      if (auto body = fuzz::SealAndParse(in.Rest(), "key slot")) DecodeBody(*body);
      break;
    case 2: {
      std::string text(AsString(in.Rest()));
      auto key = ParseRecoveryKey(text);
      if (!key) break;
      std::string canonical = RecoveryText(*key);
      FUZZ_CHECK(canonical.size() == 11 * 5 + 10);
      auto again = ParseRecoveryKey(canonical);
      FUZZ_CHECK(again && *again == *key);
      break;
    }
  }
  return 0;
}
