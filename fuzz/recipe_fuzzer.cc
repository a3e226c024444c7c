// Fuzzes artifact recipes (evidence::ParseRecipe): an operator's
// `custos case collect --recipe FILE` on the appliance, and the JOB params
// an agent receives. A recipe that parses must hash its exact text and
// parse again to the same steps.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/crypto.h"
#include "evidence/recipe.h"
#include "fuzz/fuzz_util.h"

using namespace custos;
using namespace custos::evidence;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (64u << 10) + 16) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  auto r = ParseRecipe(text);
  if (!r.ok()) return 0;
  FUZZ_CHECK(r->text == text);
  FUZZ_CHECK(r->sha256 == Sha256(AsBytes(text)).Hex());
  FUZZ_CHECK(!r->steps.empty() && r->steps.size() <= 256);
  auto again = ParseRecipe(r->text);
  FUZZ_CHECK(again.ok() && again->steps.size() == r->steps.size());
  for (const auto& s : r->steps) {
    FUZZ_CHECK(!s.artifact.empty());
    if (s.kind != StepKind::kCmd) {
      for (const auto& p : s.args) FUZZ_CHECK(!p.empty() && p[0] == '/');
    }
  }
  return 0;
}
