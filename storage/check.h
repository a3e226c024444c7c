// Repository check: structure, and optionally every byte of data.
//
// Structure: config and key slot MACs; every index file hashes to its name
// and decrypts; every pack an index names exists, its header decrypts and
// agrees with the index; every snapshot hashes to its name and decrypts.
// Packs on disk that no index names are reported as warnings (an
// interrupted writer leaves them; the next writer indexes them), except
// packs named by superseded index files (retired by a prune: counted).
// Read-data: every selected pack is read whole, must hash to its name, and
// every blob in it must decrypt, decompress and hash to its ID. Subset N/M
// selects packs whose ID's first 32 bits modulo M equal N-1, so M runs with
// N = 1..M read every pack exactly once.
//
// Thread-safety: Check may run while a writer works (it sees a consistent
// set of complete files); it uses its own worker threads.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/repository.h"

namespace custos::storage {

struct CheckOptions {
  bool read_data = false;
  uint32_t subset_n = 1;  // 1-based
  uint32_t subset_m = 1;
  int threads = 0;  // 0: hardware concurrency
  // Called from worker threads after each pack read (read-data only).
  std::function<void(uint64_t packs_done, uint64_t packs_total, uint64_t bytes_done)> progress;
};

struct CheckProblem {
  std::string object;              // "pack 3fa2...", "index ab12...", "key 77aa...", "snapshot ..."
  std::string message;             // what is wrong
  std::vector<std::string> blobs;  // affected blob IDs (hex), when known
};

struct CheckReport {
  uint64_t key_slots = 0, index_files = 0, packs = 0, blobs = 0, snapshots = 0, reports = 0, holds = 0;
  uint64_t packs_read = 0, blobs_read = 0, bytes_read = 0;
  uint64_t retired_packs = 0;  // replaced by a prune, deleted after its grace period
  std::vector<CheckProblem> errors;
  std::vector<CheckProblem> warnings;
  bool ok() const { return errors.empty(); }
};

// InvalidArgument for a bad subset; other failures of the check itself
// (not of the data) as their Status. Damage goes into the report.
Result<CheckReport> Check(Repository& repo, const CheckOptions& options);

// Whether a pack is in subset n of m.
bool PackInSubset(const Id& pack, uint32_t n, uint32_t m);

}  // namespace custos::storage
