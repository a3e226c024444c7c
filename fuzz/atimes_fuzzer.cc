// Fuzzes atime tables (AtimeTable::Decode in snapshot/atimes.h): restore and
// ls read them from the repository and apply them to trees.
//
// Input: the concatenated plaintext of a snapshot's atime table blobs. A
// table that decodes must re-encode to the same bytes (the format is
// canonical), and applying it to a tree must either fit or be refused.
#include <cstddef>
#include <cstdint>

#include "base/crypto.h"
#include "fuzz/fuzz_util.h"
#include "snapshot/atimes.h"

using namespace custos;
using namespace custos::snapshot;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView in(data, size);
  auto table = AtimeTable::Decode(in);
  if (!table.ok()) return 0;
  FUZZ_CHECK(fuzz::SameBytes(table->Encode(), in));
  // Apply to a small tree under the ID of the first entry (if any): the
  // counts either match or the call reports corruption; never a crash.
  if (size >= 52) {
    Id id = Id::FromView(ByteView(data + 16, 32));
    Tree t;
    for (int i = 0; i < 3; ++i) {
      Node n;
      n.name = std::string(1, char('a' + i));
      n.type = NodeType::kFile;
      t.nodes.push_back(n);
    }
    Status st = table->Apply(id, &t);
    FUZZ_CHECK(st.ok() || st.code() == Code::kCorruption);
  }
  return 0;
}
