// The content-defined chunker: deterministic per key, keyed (different keys
// give different boundaries), bounded (min/max), streaming-consistent, and
// resynchronising after an insertion.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "base/crypto.h"
#include "snapshot/chunker.h"
#include "tests/test_util.h"

using namespace custos;
using custos::snapshot::Chunker;
using custos::snapshot::ChunkerParams;

namespace {

Key32 KeyOf(uint8_t seed) {
  Key32 k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(seed * 31 + i);
  return k;
}

// Chunk lengths of `data` with the whole buffer available (eof).
std::vector<size_t> Chunks(const Chunker& c, const Bytes& data) {
  std::vector<size_t> out;
  size_t off = 0;
  while (off < data.size()) {
    size_t cut = c.FindCut(data.data() + off, data.size() - off, true);
    REQUIRE(cut > 0);
    REQUIRE(cut <= data.size() - off);
    out.push_back(cut);
    off += cut;
  }
  return out;
}

// Chunk lengths as a reader sees them: a window of at most `window` bytes
// past the current start, refilled in steps of `step` bytes, eof only at
// the end of the data.
std::vector<size_t> StreamChunks(const Chunker& c, const Bytes& data, size_t step) {
  std::vector<size_t> out;
  size_t start = 0, avail = 0;
  while (start < data.size()) {
    bool eof = avail == data.size();
    size_t cut = c.FindCut(data.data() + start, avail - start, eof);
    if (cut == 0) {
      REQUIRE(!eof);
      avail = std::min(data.size(), avail + step);
      continue;
    }
    out.push_back(cut);
    start += cut;
  }
  return out;
}

// Cut offsets (the end of each chunk) from lengths.
std::vector<size_t> Offsets(const std::vector<size_t>& lens) {
  std::vector<size_t> out;
  size_t off = 0;
  for (size_t l : lens) out.push_back(off += l);
  return out;
}

const Bytes& Random50MiB() {
  static const Bytes data = test::RandomBytes(50u << 20, 0xC4A1);
  return data;
}

}  // namespace

TEST_CASE("chunker: the same key gives the same boundaries, in every instance", "[chunker]") {
  const Bytes& data = Random50MiB();
  Chunker a(KeyOf(1), ChunkerParams{});
  Chunker b(KeyOf(1), ChunkerParams{});
  auto ca = Chunks(a, data);
  auto cb = Chunks(b, data);
  REQUIRE(ca.size() > 10);
  REQUIRE(ca == cb);
  // And again with the same instance (FindCut is const and stateless).
  REQUIRE(Chunks(a, data) == ca);
}

TEST_CASE("chunker: different keys give different boundaries", "[chunker]") {
  const Bytes& data = Random50MiB();
  auto c1 = Offsets(Chunks(Chunker(KeyOf(1), ChunkerParams{}), data));
  auto c2 = Offsets(Chunks(Chunker(KeyOf(2), ChunkerParams{}), data));
  REQUIRE(c1 != c2);
  // Not merely shifted by one cut: almost no interior boundary is shared.
  std::set<size_t> s1(c1.begin(), c1.end() - 1);
  size_t shared = 0;
  for (size_t i = 0; i + 1 < c2.size(); ++i) shared += s1.count(c2[i]);
  INFO("chunks " << c1.size() << " / " << c2.size() << ", shared interior cuts " << shared);
  REQUIRE(shared * 10 < std::min(c1.size(), c2.size()));
}

TEST_CASE("chunker: every chunk respects min and max, and the average is near the target", "[chunker]") {
  const Bytes& data = Random50MiB();
  SECTION("default parameters (512 KiB / 1 MiB / 8 MiB)") {
    ChunkerParams p;
    auto lens = Chunks(Chunker(KeyOf(3), p), data);
    for (size_t i = 0; i < lens.size(); ++i) {
      INFO("chunk " << i << " of " << lens.size() << ": " << lens[i]);
      if (i + 1 < lens.size()) REQUIRE(lens[i] > p.min);
      REQUIRE(lens[i] <= p.max);
    }
    double mean = double(data.size()) / double(lens.size());
    INFO("mean chunk " << mean);
    REQUIRE(mean >= 0.75 * p.avg);
    REQUIRE(mean <= 2.0 * p.avg);
  }
  SECTION("small parameters, many chunks") {
    ChunkerParams p{256, 1024, 4096};
    Bytes small(data.begin(), data.begin() + (4u << 20));
    auto lens = Chunks(Chunker(KeyOf(4), p), small);
    REQUIRE(lens.size() > 1000);
    for (size_t i = 0; i + 1 < lens.size(); ++i) {
      REQUIRE(lens[i] > p.min);
      REQUIRE(lens[i] <= p.max);
    }
  }
  SECTION("data with no natural cut points is cut at max") {
    // A long run of one byte value: the gear hash becomes a constant, so
    // either every position cuts (right after min) or none does (cut at max).
    ChunkerParams p{256, 1024, 4096};
    Bytes zeros(1u << 20, 0);
    auto lens = Chunks(Chunker(KeyOf(5), p), zeros);
    for (size_t i = 0; i + 1 < lens.size(); ++i) {
      REQUIRE(lens[i] > p.min);
      REQUIRE(lens[i] <= p.max);
    }
    REQUIRE(std::accumulate(lens.begin(), lens.end(), size_t(0)) == zeros.size());
  }
}

TEST_CASE("chunker: FindCut asks for more data until it can decide", "[chunker]") {
  ChunkerParams p{1024, 4096, 16384};
  Chunker c(KeyOf(6), p);
  Bytes data = test::RandomBytes(100000, 7);
  // Not enough to decide: below max without eof.
  REQUIRE(c.FindCut(data.data(), 100, false) == 0);
  REQUIRE(c.FindCut(data.data(), p.max - 1, false) == 0);
  // With eof, a short tail is one chunk.
  REQUIRE(c.FindCut(data.data(), 100, true) == 100);
  REQUIRE(c.FindCut(data.data(), p.min, true) == p.min);
  // With max bytes available the cut is decided, and the same with or without eof.
  size_t cut = c.FindCut(data.data(), p.max, false);
  REQUIRE(cut > p.min);
  REQUIRE(cut <= p.max);
  REQUIRE(c.FindCut(data.data(), p.max, true) == cut);
  REQUIRE(c.FindCut(data.data(), data.size(), true) == cut);
  // Streaming in odd-sized steps gives the same chunks as the whole buffer.
  REQUIRE(StreamChunks(c, data, 777) == Chunks(c, data));
  REQUIRE(StreamChunks(c, data, 1) == Chunks(c, data));
}

// Chunk lengths from the streaming Scan, fed pieces of `piece` bytes (the
// last chunk is what remains at the end of the data).
std::vector<size_t> ScanChunks(const Chunker& c, const Bytes& data, size_t piece) {
  std::vector<size_t> out;
  Chunker::State st;
  size_t chunk_start = 0;
  for (size_t off = 0; off < data.size(); off += piece) {
    size_t end = std::min(data.size(), off + piece);
    size_t p = off;
    while (p < end) {
      size_t k = c.Scan(st, data.data() + p, end - p);
      if (k == 0) break;
      p += k;
      out.push_back(p - chunk_start);
      chunk_start = p;
    }
  }
  if (chunk_start < data.size()) out.push_back(data.size() - chunk_start);
  return out;
}

TEST_CASE("chunker: the streaming Scan finds the same cuts as FindCut", "[chunker]") {
  SECTION("default parameters, 20 MiB in odd pieces") {
    Bytes data(Random50MiB().begin(), Random50MiB().begin() + (20u << 20) + 777);
    Chunker c(KeyOf(10), ChunkerParams{});
    auto want = Chunks(c, data);
    REQUIRE(want.size() > 5);
    REQUIRE(ScanChunks(c, data, (1u << 20) + 13) == want);
    REQUIRE(ScanChunks(c, data, 65536) == want);
    REQUIRE(ScanChunks(c, data, data.size()) == want);
  }
  SECTION("small parameters, byte by byte") {
    Chunker c(KeyOf(11), ChunkerParams{64, 256, 1024});
    Bytes data = test::RandomBytes(200000, 12);
    auto want = Chunks(c, data);
    REQUIRE(want.size() > 100);
    REQUIRE(ScanChunks(c, data, 1) == want);
    REQUIRE(ScanChunks(c, data, 333) == want);
  }
  SECTION("runs of one value reach the forced cut at max identically") {
    Chunker c(KeyOf(13), ChunkerParams{64, 256, 1024});
    Bytes data(100000, 0xAB);
    REQUIRE(ScanChunks(c, data, 100) == Chunks(c, data));
  }
}

TEST_CASE("chunker: boundaries resynchronise after an insertion near the start", "[chunker]") {
  const Bytes& data = Random50MiB();
  Chunker c(KeyOf(8), ChunkerParams{});
  auto before = Offsets(Chunks(c, data));

  const size_t at = 100000, n = 1234;
  Bytes edited(data.begin(), data.begin() + at);
  Bytes ins = test::RandomBytes(n, 9);
  edited.insert(edited.end(), ins.begin(), ins.end());
  edited.insert(edited.end(), data.begin() + at, data.end());
  auto after = Offsets(Chunks(c, edited));

  // Cuts after the insertion, mapped back to the original coordinates.
  std::set<size_t> orig(before.begin(), before.end());
  size_t differing = 0;
  for (size_t off : after) {
    if (off <= at || !orig.count(off - n)) ++differing;
  }
  INFO("chunks before " << before.size() << ", after " << after.size() << ", differing cuts " << differing);
  REQUIRE(before.size() > 20);
  REQUIRE(differing <= 2);
  // And the chunk contents: all but the first one or two chunks are identical.
  std::set<Id> ids_before;
  for (size_t i = 0, off = 0; i < before.size(); off = before[i], ++i) {
    ids_before.insert(Sha256(ByteView(data.data() + off, before[i] - off)));
  }
  size_t new_chunks = 0;
  for (size_t i = 0, off = 0; i < after.size(); off = after[i], ++i) {
    new_chunks += !ids_before.count(Sha256(ByteView(edited.data() + off, after[i] - off)));
  }
  REQUIRE(new_chunks >= 1);
  REQUIRE(new_chunks <= 2);
}
