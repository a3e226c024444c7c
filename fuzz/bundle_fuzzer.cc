// Fuzzes the standalone bundle verifier (evidence/verify.h) with arbitrary
// tar bytes: libarchive's reader under the verifier's limits, member name
// checks, SHA256SUMS, ledger, checkpoint, timestamp and object checks.
//
// Input: the tar (no selector byte). A bundle that verifies must carry a
// case id and a key, and its counts must be consistent.
#include <cstddef>
#include <cstdint>

#include "evidence/verify.h"
#include "fuzz/fuzz_util.h"

using namespace custos;
using namespace custos::evidence;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  VerifyOptions o;
  // Small limits, so the fuzzer explores the checks rather than big inputs.
  o.max_members = 256;
  o.max_ledger_bytes = 1 << 20;
  o.max_small_file_bytes = 1 << 16;
  VerifyReport r = VerifyBundleBytes(ByteView(data, size), o);
  if (r.ok()) {
    FUZZ_CHECK(!r.case_id.empty() && !r.key_fingerprint.empty());
    FUZZ_CHECK(r.checkpoints > 0 && r.latest_size <= r.records);
  }
  return 0;
}
