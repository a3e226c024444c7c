// Fuzzes snapshot manifests (DecodeManifest in snapshot/manifest.h), the
// JSON payload inside a snapshot envelope.
//
// Input: the payload. A manifest that decodes must re-encode to bytes that
// decode again and re-encode to the same bytes (encoding is a fixpoint).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "snapshot/manifest.h"

using namespace custos;
using namespace custos::snapshot;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto manifest = DecodeManifest(ByteView(data, size));
  if (!manifest.ok()) return 0;
  Bytes once = EncodeManifest(*manifest);
  auto again = DecodeManifest(once);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(fuzz::SameBytes(EncodeManifest(*again), once));
  FUZZ_CHECK(again->tree == manifest->tree && again->paths == manifest->paths && again->tags == manifest->tags);
  return 0;
}
