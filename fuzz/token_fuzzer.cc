// Fuzzes enrolment tokens (appliance::ParseToken), which arrive on the
// agent's command line from whoever handed the token over.
//
// Input: the token text. A token that parses must format back to a token
// that parses to the same key and secret.
#include <cstddef>
#include <cstdint>
#include <string>

#include "appliance/registry.h"
#include "fuzz/fuzz_util.h"

using namespace custos;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string token(reinterpret_cast<const char*>(data), size);
  appliance::CurveKey key;
  std::array<uint8_t, 16> secret;
  if (!appliance::ParseToken(token, &key, &secret).ok()) return 0;
  std::string again = appliance::FormatToken(key, secret);
  appliance::CurveKey key2;
  std::array<uint8_t, 16> secret2;
  FUZZ_CHECK(appliance::ParseToken(again, &key2, &secret2).ok());
  FUZZ_CHECK(key2 == key && secret2 == secret);
  return 0;
}
