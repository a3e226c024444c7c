// Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with
// normalised chunking, over a gear table derived from a repository secret.
//
// Gear hash: h = (h << 1) + gear[byte]; the top bits of h depend on the
// last 64 bytes only. A cut is made where the top `bits` of h are all zero.
// Before the average size the test uses avg_bits+2 bits (cuts are rarer),
// after it avg_bits-2 (cuts are likelier): normalisation level 2, which
// concentrates chunk sizes around the average. No cut before `min`; a
// forced cut at `max`.
//
// Parameters (doc/formats/snapshot.md, "Chunking"): min 512 KiB, average
// 1 MiB, max 8 MiB. Large chunks keep the index small (a 1 TB server is
// about a million chunks, 45 MB of index) and the per-chunk overhead low;
// files smaller than min (most files of a source tree) are one chunk each,
// so dedup of small files is per whole file, as in restic.
//
// Why a secret gear table: with a public table, chunk boundaries (visible
// as blob sizes in the repository) leak which known files a backup
// contains. The table is derived from the repository's chunker subkey, so
// boundaries differ per repository.
//
// Thread-safety: a Chunker is immutable after construction; FindCut is
// const and may be called from many threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/crypto.h"

namespace custos::snapshot {

struct ChunkerParams {
  uint32_t min = 512u << 10;
  uint32_t avg = 1u << 20;
  uint32_t max = 8u << 20;
};

class Chunker {
 public:
  Chunker(const Key32& chunker_key, const ChunkerParams& params);

  // Returns the length of the next chunk at the start of data[0..n), or 0
  // when more data is needed to decide (n < max and not eof). With eof, a
  // chunk always ends at n at the latest.
  size_t FindCut(const uint8_t* data, size_t n, bool eof) const;

  // Streaming form of FindCut: the same cuts, found as data arrives, so
  // that a reader needs to hold only the current chunk.
  struct State {
    uint64_t h = 0;
    size_t pos = 0;  // bytes of the current chunk seen so far
  };
  // Scans data[0..n) as the continuation of the current chunk. Returns k > 0
  // when the chunk ends after data[k-1] (the state is reset for the next
  // chunk), or 0 when it does not end within data.
  size_t Scan(State& s, const uint8_t* data, size_t n) const;

  const ChunkerParams& params() const { return params_; }

 private:
  std::array<uint64_t, 256> gear_;
  ChunkerParams params_;
  uint64_t mask_small_, mask_large_;
};

}  // namespace custos::snapshot
