// What custosd keeps of a backup job across its own restart, and of the
// blobs an agent delivered in jobs that failed (doc/protocols/cap.md,
// section 7): a set of blob IDs with the job's counters.
//
// File layout (little-endian):
//   "CUSTOSJ1" || u64 data_blobs || u64 tree_blobs || u64 bytes_stored ||
//   u64 rejected || u64 n || n x 32-octet blob IDs, ascending ||
//   SHA-256 of everything before
// Written atomically (temp + fsync + rename) in the data directory.
//
// Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::appliance {

struct JobState {
  uint64_t data_blobs = 0, tree_blobs = 0, bytes_stored = 0, rejected = 0;
  std::unordered_set<Id, IdHash> received;
};

Bytes EncodeJobState(const JobState& s);
// Corruption on anything that is not exactly one encoded state (fuzzed:
// fuzz/job_state_fuzzer.cc).
Result<JobState> DecodeJobState(ByteView data);

Status SaveJobState(const std::string& path, const JobState& s);
// NotFound when there is no file; Corruption when it is damaged.
Result<JobState> LoadJobState(const std::string& path);

}  // namespace custos::appliance
