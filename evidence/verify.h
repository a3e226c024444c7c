// The standalone verifier of export bundles: needs nothing but the tar (no
// appliance, no repository, no key but the one in the bundle, or the one the
// verifier is told to expect).
//
// It reads the tar with libarchive under limits (member count and sizes;
// names that are absolute, contain "..", repeat, or are not regular files
// or folders are refused), then checks and reports, all at once:
//   - SHA256SUMS.sig with pubkey.pem; pubkey.pem's fingerprint against
//     --expect-key; every file listed in SHA256SUMS present with its hash,
//     no member left unlisted;
//   - every ledger line (strict grammar, v, type), seq numbering (a missing
//     or reordered record is named as such), the hash chain (an edited
//     record is named by the seq whose prev no longer matches it);
//   - every checkpoint: signature with the bundle's key, origin of this
//     case, root equal to the Merkle root of that many ledger lines, the
//     ledger's checkpoint record agreeing with the files, the RFC 3161
//     token when present (imprint, and signature against tsa-ca.pem);
//   - every object a record references present, hashing to its name;
//     timeline/<host>.body equal to that host's timeline objects;
//   - an earlier checkpoint given out of band (--checkpoint): same origin,
//     and the bundle's ledger holds it (its size is not beyond the ledger
//     and the Merkle root of that many lines is its root); its .sig, when
//     present beside it, verifies with the expected key.
//
// Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::evidence {

struct VerifyOptions {
  std::string expect_key;          // "sha256:<hex>"; "" accepts the bundle's key
  std::string earlier_checkpoint;  // checkpoint text given out of band; "" none
  std::string earlier_signature;   // its raw signature (64 bytes) if known; "" none
  // Limits (a hostile tar must not exhaust memory or time).
  uint64_t max_members = 1u << 20;
  uint64_t max_ledger_bytes = 4ull << 30;
  uint64_t max_small_file_bytes = 256u << 20;  // SHA256SUMS, checkpoints, pem, tsr
};

struct VerifyReport {
  bool ok() const { return problems.empty(); }
  std::vector<std::string> problems;  // each names the file/record and what is wrong
  std::vector<std::string> notes;     // things checked that are worth saying (TSA times)
  std::string case_id;
  std::string key_fingerprint;
  uint64_t records = 0;
  uint64_t checkpoints = 0;
  uint64_t timestamps = 0;
  uint64_t objects = 0;
  uint64_t latest_size = 0;
  std::string latest_root;  // base64
};

// Verifies the bundle in `tar_path`. The Status is an error only when the
// bundle cannot be read at all (the file does not open); everything wrong with
// its content, including a tar that does not parse, is a problem in the
// report.
Result<VerifyReport> VerifyBundleFile(const std::string& tar_path, const VerifyOptions& options);
// The same over tar bytes in memory (the fuzz target).
VerifyReport VerifyBundleBytes(ByteView tar, const VerifyOptions& options);

}  // namespace custos::evidence
