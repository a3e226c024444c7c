// The sealed-text half shared by the key slot and config targets.
#pragma once

#include <optional>
#include <string>

#include "fuzz/fuzz_util.h"
#include "storage/keys.h"

namespace custos::fuzz {

// Mode "file": parses `file` as sealed text; returns the body if it parses.
inline std::optional<std::string> ParseFile(ByteView file, const std::string& what) {
  auto t = storage::ParseSealedText(file, what);
  if (!t.ok()) return std::nullopt;
  // The MAC under the fixed key may or may not verify; either way no crash.
  (void)storage::VerifySealedTextMac(*t, FixedKey(), what);
  return t->body;
}

// Mode "body": seals `body` with the fixed key and parses it back. Sealed
// text holds one line of at least two bytes; any such body round-trips and
// its MAC verifies.
inline std::optional<std::string> SealAndParse(ByteView body_bytes, const std::string& what) {
  std::string body(AsString(body_bytes));
  std::string file = storage::EncodeSealedText(body, FixedKey());
  auto t = storage::ParseSealedText(AsBytes(file), what);
  bool valid = body.size() >= 2 && body.find('\n') == std::string::npos;
  FUZZ_CHECK(t.ok() == valid);
  if (!t.ok()) return std::nullopt;
  FUZZ_CHECK(t->body == body);
  FUZZ_CHECK(storage::VerifySealedTextMac(*t, FixedKey(), what).ok());
  Key32 other = FixedKey();
  other[0] ^= 1;
  FUZZ_CHECK(!storage::VerifySealedTextMac(*t, other, what).ok());
  return t->body;
}

}  // namespace custos::fuzz
