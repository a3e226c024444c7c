#include "base/bytes.h"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace custos {

std::string ToHex(ByteView b) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  s.resize(b.size() * 2);
  for (size_t i = 0; i < b.size(); ++i) {
    s[2 * i] = kDigits[b[i] >> 4];
    s[2 * i + 1] = kDigits[b[i] & 15];
  }
  return s;
}

static int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes s (even length) into out[0, s.size()/2); false on a non-hex digit.
static bool DecodeHex(std::string_view s, uint8_t* out) {
  for (size_t i = 0; i < s.size() / 2; ++i) {
    int hi = HexValue(s[2 * i]), lo = HexValue(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = uint8_t(hi << 4 | lo);
  }
  return true;
}

std::optional<Bytes> FromHex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  Bytes out(s.size() / 2);
  if (!DecodeHex(s, out.data())) return std::nullopt;
  return out;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Base64Encode(ByteView b) {
  std::string out(sodium_base64_encoded_len(b.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), b.data(), b.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<Bytes> Base64Decode(std::string_view s) {
  Bytes out(s.size() / 4 * 3 + 3);
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), s.data(), s.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != s.data() + s.size()) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

std::optional<Id> Id::FromHex(std::string_view hex) {
  Id id;  // decoded in place: IDs arrive by the hundred thousand on the wire
  if (hex.size() != 2 * kSize || !DecodeHex(hex, id.bytes.data())) return std::nullopt;
  return id;
}

Id Id::FromView(ByteView b) {
  if (b.size() != kSize) std::abort();
  Id id;
  std::memcpy(id.bytes.data(), b.data(), kSize);
  return id;
}

bool Id::IsZero() const {
  for (uint8_t c : bytes) {
    if (c) return false;
  }
  return true;
}

bool IsValidUtf8(std::string_view s) {
  // RFC 3629: no overlong forms, no surrogates (U+D800..DFFF), nothing above
  // U+10FFFF. JSON writers reject (or replace) anything else, so a name
  // passing here must be exactly representable as a JSON string.
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    unsigned char c1 = static_cast<unsigned char>(s[i + 1]);
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c == 0xe0) lo = 0xa0;            // overlong 3-byte
    if (c == 0xed) hi = 0x9f;            // surrogates
    if (c == 0xf0) lo = 0x90;            // overlong 4-byte
    if (c == 0xf4) hi = 0x8f;            // above U+10FFFF
    if (c1 < lo || c1 > hi) return false;
    for (size_t k = 2; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

std::string EscapeForDisplay(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += char(c);
    }
  }
  return out;
}

void SecureWipe(void* p, size_t n) { sodium_memzero(p, n); }

std::string HumanBytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace custos
