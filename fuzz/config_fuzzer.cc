// Fuzzes the repository config file (ParseSealedText + DecodeConfigBody in
// storage/keys.h).
//
// Input: one selector byte, then
//   0: a whole config file: ParseSealedText, then DecodeConfigBody.
//   1: a config body (one JSON line): sealed with the fixed MAC key, parsed
//      back, decoded. A decoded config must re-encode and decode to the
//      same values.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "fuzz/sealed_text_util.h"
#include "storage/format.h"
#include "storage/keys.h"

using namespace custos;
using namespace custos::storage;

CUSTOS_FUZZ_INIT

namespace {

bool SameConfig(const RepoConfig& a, const RepoConfig& b) {
  return a.version == b.version && a.id == b.id && a.created == b.created && a.pack_size == b.pack_size &&
         a.zstd_level == b.zstd_level && a.chunk_min == b.chunk_min && a.chunk_avg == b.chunk_avg &&
         a.chunk_max == b.chunk_max;
}

void DecodeBody(const std::string& body) {
  auto config = DecodeConfigBody(body);
  if (!config.ok()) return;
  FUZZ_CHECK(config->version == kFormatVersion && config->id.size() == 64);
  FUZZ_CHECK(config->pack_size >= 4096 && config->pack_size <= kMaxPackSize);
  FUZZ_CHECK(config->chunk_min > 0 && config->chunk_min <= config->chunk_avg &&
             config->chunk_avg <= config->chunk_max);
  auto again = DecodeConfigBody(EncodeConfigBody(*config));
  FUZZ_CHECK(again.ok() && SameConfig(*again, *config));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  switch (in.U8() % 2) {
    case 0:
      if (auto body = fuzz::ParseFile(in.Rest(), "config")) DecodeBody(*body);
      break;
    case 1:
      if (auto body = fuzz::SealAndParse(in.Rest(), "config")) DecodeBody(*body);
      break;
  }
  return 0;
}
