// Shared pieces of the libFuzzer targets: the fixed key, a property check
// that aborts (so libFuzzer records the input as a crash), and a small
// cursor that splits a fuzz input into a selector, fixed fields and the rest.
//
// Every target takes one selector byte first and runs one of a few modes:
// the raw bytes as a file, the bytes sealed with the fixed key so that the
// parser behind the AEAD sees them, or a lower-level parser directly.
// Where the format is canonical a successful parse is re-encoded and must
// give back the same bytes (or the same values): a round-trip property.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/bytes.h"
#include "base/crypto.h"

namespace custos::fuzz {

// The fixed key every target uses as the repository's data and MAC key.
// Seeds made by make_seeds are sealed under it.
inline const Key32& FixedKey() {
  static const Key32 key = [] {
    Key32 k;
    for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(0xC0 + i);
    return k;
  }();
  return key;
}

// A broken property: print it and abort so libFuzzer saves the input.
#define FUZZ_CHECK(cond)                                                             \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// Reads fields from the front of a fuzz input; missing bytes read as zero
// so that every input, however short, selects some path.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() { return uint16_t(U8() | (U8() << 8)); }
  uint32_t U32() { return uint32_t(U16()) | (uint32_t(U16()) << 16); }
  uint64_t U64() { return uint64_t(U32()) | (uint64_t(U32()) << 32); }
  void Array(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = U8();
  }
  ByteView Rest() const { return pos_ < size_ ? ByteView(data_ + pos_, size_ - pos_) : ByteView(); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

inline bool SameBytes(ByteView a, ByteView b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace custos::fuzz

// libFuzzer calls this once before the first input.
#define CUSTOS_FUZZ_INIT                                            \
  extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {    \
    custos::CryptoInit();                                           \
    return 0;                                                       \
  }
