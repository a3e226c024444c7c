// custosd's saved job state (appliance/job_state.h): what lets a backup
// continue after a clean restart, and keeps a failed job's blobs for the
// host's next run. Round trip, and every kind of damage refused.
#include <catch2/catch.hpp>

#include "appliance/job_state.h"
#include "base/crypto.h"
#include "base/file_util.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::appliance;

TEST_CASE("job state: round trip, canonical bytes, damage refused", "[appliance]") {
  JobState s;
  s.data_blobs = 7;
  s.tree_blobs = 2;
  s.bytes_stored = 1 << 20;
  s.rejected = 1;
  for (int i = 0; i < 50; ++i) s.received.insert(Sha256(AsBytes(std::to_string(i))));
  Bytes enc = EncodeJobState(s);
  REQUIRE(enc.size() == 8 + 40 + 50 * 32 + 32);
  auto back = DecodeJobState(enc);
  REQUIRE(back.ok());
  REQUIRE(back->data_blobs == 7);
  REQUIRE(back->tree_blobs == 2);
  REQUIRE(back->bytes_stored == (1u << 20));
  REQUIRE(back->rejected == 1);
  REQUIRE(back->received == s.received);
  REQUIRE(EncodeJobState(*back) == enc);  // canonical: IDs ascending

  // Any flipped byte, a cut, an extra byte: Corruption.
  for (size_t i = 0; i < enc.size(); i += 37) {
    Bytes bad = enc;
    bad[i] ^= 0x40;
    REQUIRE(DecodeJobState(bad).status().code() == Code::kCorruption);
  }
  Bytes cut(enc.begin(), enc.end() - 1);
  REQUIRE(DecodeJobState(cut).status().code() == Code::kCorruption);
  REQUIRE(DecodeJobState(ByteView()).status().code() == Code::kCorruption);

  // Saved atomically and read back; a missing file is NotFound.
  test::TempDir dir;
  std::string path = dir.path() + "/jobs/j-1.resume";
  REQUIRE(SaveJobState(path, s).ok());
  auto loaded = LoadJobState(path);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->received == s.received);
  REQUIRE(LoadJobState(dir.path() + "/jobs/none").status().code() == Code::kNotFound);
}
