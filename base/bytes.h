// Byte buffers, fixed-width little-endian coding, hex, and the 32-byte Id.
//
// This is the one place where Custos encodes integers into bytes
// (leveldb's util/coding.h plays the same role). All on-disk and on-wire
// integers are little-endian.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace custos {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsString(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
inline void Append(Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); }

inline void PutU16(Bytes& out, uint16_t v) {
  out.push_back(uint8_t(v));
  out.push_back(uint8_t(v >> 8));
}
inline void PutU32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
inline void PutU64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
inline uint16_t GetU16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t GetU32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t GetU64(const uint8_t* p) {
  return uint64_t(GetU32(p)) | (uint64_t(GetU32(p + 4)) << 32);
}

// A bounds-checked reader over a byte span. Every Get* returns false
// (and leaves the reader failed) instead of reading past the end.
class ByteReader {
 public:
  explicit ByteReader(ByteView data) : data_(data) {}
  bool GetU8(uint8_t* v) { return Take(1, [&](const uint8_t* p) { *v = p[0]; }); }
  bool GetU16(uint16_t* v) { return Take(2, [&](const uint8_t* p) { *v = custos::GetU16(p); }); }
  bool GetU32(uint32_t* v) { return Take(4, [&](const uint8_t* p) { *v = custos::GetU32(p); }); }
  bool GetU64(uint64_t* v) { return Take(8, [&](const uint8_t* p) { *v = custos::GetU64(p); }); }
  bool GetBytes(size_t n, ByteView* v) {
    return Take(n, [&](const uint8_t* p) { *v = ByteView(p, n); });
  }
  template <size_t N>
  bool GetArray(std::array<uint8_t, N>* v) {
    return Take(N, [&](const uint8_t* p) { std::memcpy(v->data(), p, N); });
  }
  size_t remaining() const { return failed_ ? 0 : data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool failed() const { return failed_; }

 private:
  template <typename F>
  bool Take(size_t n, F f) {
    if (failed_ || data_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    f(data_.data() + pos_);
    pos_ += n;
    return true;
  }
  ByteView data_;
  size_t pos_ = 0;
  bool failed_ = false;
};

std::string ToHex(ByteView b);
// Decodes lowercase or uppercase hex; nullopt on odd length or a bad digit.
std::optional<Bytes> FromHex(std::string_view s);
bool IsLowerHex(std::string_view s);

std::string Base64Encode(ByteView b);
std::optional<Bytes> Base64Decode(std::string_view s);

// A 32-byte identifier: the SHA-256 of some bytes (blob, pack, index file).
struct Id {
  std::array<uint8_t, 32> bytes{};

  static constexpr size_t kSize = 32;
  std::string Hex() const { return ToHex(bytes); }
  std::string Short() const { return Hex().substr(0, 8); }
  static std::optional<Id> FromHex(std::string_view hex);
  static Id FromView(ByteView b);  // b.size() must be 32
  bool IsZero() const;

  auto operator<=>(const Id&) const = default;
};

struct IdHash {
  size_t operator()(const Id& id) const {
    uint64_t v;
    std::memcpy(&v, id.bytes.data(), 8);  // ids are hashes: any 8 bytes are uniform
    return size_t(v);
  }
};

// Whether s is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates
// or code points above U+10FFFF), i.e. whether it can go into JSON as a
// string unchanged.
bool IsValidUtf8(std::string_view s);

// Escapes control bytes as \xNN, so that a name holding a newline or an
// escape sequence prints as one harmless line.
std::string EscapeForDisplay(const std::string& s);

// "0 B", "512 B", "1.5 KiB", "3.2 GiB": sizes for people.
std::string HumanBytes(uint64_t b);

// Overwrites memory in a way the compiler may not elide (secrets).
void SecureWipe(void* p, size_t n);

}  // namespace custos
