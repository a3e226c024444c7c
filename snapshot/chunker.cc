#include "snapshot/chunker.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace custos::snapshot {
namespace {

int Log2(uint32_t v) {
  int b = 0;
  while ((1u << (b + 1)) <= v) ++b;
  return b;
}

uint64_t TopBits(int n) { return n <= 0 ? 0 : (~uint64_t(0)) << (64 - n); }

}  // namespace

Chunker::Chunker(const Key32& chunker_key, const ChunkerParams& params) : params_(params) {
  for (int i = 0; i < 256; ++i) {
    std::string msg = "custos.gear.v1:" + std::to_string(i);
    Key32 h = KeyedHash(chunker_key, AsBytes(msg));
    std::memcpy(&gear_[size_t(i)], h.data(), 8);
  }
  int bits = Log2(params.avg);
  mask_small_ = TopBits(bits + 2);
  mask_large_ = TopBits(bits - 2);
}

size_t Chunker::FindCut(const uint8_t* data, size_t n, bool eof) const {
  if (n <= params_.min) return eof ? n : 0;
  if (n < params_.max && !eof) return 0;
  size_t end = n < params_.max ? n : params_.max;
  size_t normal = params_.avg < end ? params_.avg : end;
  uint64_t h = 0;
  size_t i = params_.min;
  for (; i < normal; ++i) {
    h = (h << 1) + gear_[data[i]];
    if ((h & mask_small_) == 0) return i + 1;
  }
  for (; i < end; ++i) {
    h = (h << 1) + gear_[data[i]];
    if ((h & mask_large_) == 0) return i + 1;
  }
  return end;
}

size_t Chunker::Scan(State& s, const uint8_t* data, size_t n) const {
  size_t i = 0;
  if (s.pos < params_.min) {
    size_t skip = std::min<size_t>(n, params_.min - s.pos);
    s.pos += skip;
    i = skip;
  }
  uint64_t h = s.h;
  size_t pos = s.pos;
  while (i < n) {
    h = (h << 1) + gear_[data[i]];
    uint64_t mask = pos < params_.avg ? mask_small_ : mask_large_;
    ++pos;
    ++i;
    if ((h & mask) == 0 || pos >= params_.max) {
      s = State{};
      return i;
    }
  }
  s.h = h;
  s.pos = pos;
  return 0;
}

}  // namespace custos::snapshot
