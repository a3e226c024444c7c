// Fuzzes tree blobs (DecodeTree in snapshot/tree.h): the listing a restore
// trusts to decide which paths to create, so names must never escape.
//
// Input: the plaintext of a tree blob. A tree that decodes must have safe,
// sorted, unique names and re-encode to the same bytes (the format is
// canonical).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "snapshot/tree.h"

using namespace custos;
using namespace custos::snapshot;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView blob(data, size);
  auto tree = DecodeTree(blob);
  if (!tree.ok()) return 0;
  for (size_t i = 0; i < tree->nodes.size(); ++i) {
    const Node& n = tree->nodes[i];
    FUZZ_CHECK(IsSafeName(n.name));
    FUZZ_CHECK(n.name != "." && n.name != ".." && n.name.find('/') == std::string::npos);
    if (i > 0) FUZZ_CHECK(tree->nodes[i - 1].name < n.name);
  }
  Bytes again = EncodeTree(*tree);  // aborts on unsorted names: the decoder must refuse them
  FUZZ_CHECK(fuzz::SameBytes(again, blob));
  return 0;
}
