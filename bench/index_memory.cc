// Measures the RAM the in-memory index needs per blob.
//
// Usage: index_memory [N]   (default 5,000,000 entries)
// Builds an index of N random entries both ways the repository does (bulk
// load at open, then incremental adds during a backup), and reports the
// resident-set growth and the index's own heap accounting, in bytes per
// blob, plus lookup speed. Target (issue 2): at most 48 bytes per blob.
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "storage/index.h"

using namespace custos;
using namespace custos::storage;

static size_t RssBytes() {
  std::ifstream f("/proc/self/statm");
  size_t pages = 0, rss = 0;
  f >> pages >> rss;
  return rss * size_t(sysconf(_SC_PAGESIZE));
}

static PackEntry Entry(std::mt19937_64& rng, uint32_t i) {
  PackEntry e;
  for (int k = 0; k < 4; ++k) {
    uint64_t v = rng();
    std::memcpy(e.id.bytes.data() + 8 * k, &v, 8);
  }
  e.offset = i * 1000;
  e.stored_length = 1000;
  e.compression = (i & 1) ? Compression::kZstd : Compression::kNone;
  return e;
}

int main(int argc, char** argv) {
  size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 5000000;
  std::printf("entries: %zu\n", n);
  for (int mode = 0; mode < 2; ++mode) {
    malloc_trim(0);
    size_t before = RssBytes();
    auto t0 = std::chrono::steady_clock::now();
    std::mt19937_64 rng(42);
    {
      Index index;
      uint32_t packs = uint32_t(n / 5000 + 1);
      for (uint32_t p = 0; p < packs; ++p) {
        Id pid;
        pid.bytes[0] = uint8_t(p);
        pid.bytes[1] = uint8_t(p >> 8);
        pid.bytes[2] = uint8_t(p >> 16);
        index.AddPack(pid);
      }
      if (mode == 0) {
        index.Reserve(n);
        for (size_t i = 0; i < n; ++i) index.AddUnsorted(uint32_t(i % packs), Entry(rng, uint32_t(i)));
      } else {
        for (size_t i = 0; i < n; ++i) index.Add(uint32_t(i % packs), Entry(rng, uint32_t(i)));
      }
      index.Finalize();
      auto t1 = std::chrono::steady_clock::now();
      malloc_trim(0);
      size_t after = RssBytes();
      // Lookups: every 5th inserted id (hits) and as many random ids (misses).
      std::mt19937_64 again(42);
      size_t hits = 0, lookups = 0;
      auto t2 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < n; ++i) {
        PackEntry e = Entry(again, uint32_t(i));
        if (i % 5 == 0) {
          hits += index.Has(e.id);
          ++lookups;
        }
      }
      for (size_t i = 0; i < n / 5; ++i) {
        hits += index.Has(Entry(again, 0).id);
        ++lookups;
      }
      auto t3 = std::chrono::steady_clock::now();
      double build_s = std::chrono::duration<double>(t1 - t0).count();
      double ns_per_lookup = std::chrono::duration<double, std::nano>(t3 - t2).count() / double(lookups);
      std::printf("%-12s rss %.1f bytes/blob, heap %.1f bytes/blob, build %.2f s, lookup %.0f ns, hits %zu/%zu\n",
                  mode == 0 ? "bulk-load" : "incremental", double(after - before) / double(n),
                  double(index.MemoryBytes()) / double(n), build_s, ns_per_lookup, hits, lookups / 2);
      if (hits != n / 5 + (n % 5 ? 1 : 0)) {
        std::printf("ERROR: lookups found %zu of %zu inserted ids\n", hits, n / 5);
        return 1;
      }
    }
  }
  return 0;
}
