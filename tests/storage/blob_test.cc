// VerifyFrame: the appliance's check of every zstd blob an agent sends
// (issue 5). It must accept exactly one frame of the declared size whose
// plaintext hashes to the ID, and say why it refuses anything else.
#include <catch2/catch.hpp>

#include <string>

#include "base/crypto.h"
#include "storage/blob.h"

using namespace custos;

namespace {

Bytes Sample(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t((i / 7) * 31 + seed);  // compressible, not constant
  return b;
}

Bytes Frame(const Bytes& plain) {
  Bytes f;
  REQUIRE(storage::ZstdCompress(plain, 3, &f));
  return f;
}

}  // namespace

TEST_CASE("VerifyFrame accepts a frame of the declared size that hashes to its ID", "[storage][blob]") {
  for (size_t n : {size_t(4096), size_t(1) << 20, size_t(3) << 20}) {
    Bytes plain = Sample(n, 1);
    CHECK(storage::VerifyFrame(Frame(plain), n, Sha256(plain)).ok());
  }
  // The reused buffer shrinks nothing: a small blob after a large one.
  Bytes small = Sample(5000, 2);
  CHECK(storage::VerifyFrame(Frame(small), small.size(), Sha256(small)).ok());
}

TEST_CASE("VerifyFrame refuses a wrong ID, size or frame with the reason", "[storage][blob]") {
  Bytes plain = Sample(200000, 3);
  Bytes frame = Frame(plain);
  Id id = Sha256(plain);

  Bytes other = plain;
  other[1000] ^= 1;
  Status st = storage::VerifyFrame(frame, plain.size(), Sha256(other));
  CHECK(st.code() == Code::kIntegrity);
  CHECK(st.message() == "content does not hash to its ID");

  st = storage::VerifyFrame(frame, plain.size() - 1, id);
  CHECK(st.code() == Code::kCorruption);
  CHECK(st.message().find("size") != std::string::npos);

  Bytes truncated(frame.begin(), frame.end() - 10);
  CHECK(storage::VerifyFrame(truncated, plain.size(), id).code() == Code::kCorruption);

  Bytes twice = frame;
  twice.insert(twice.end(), frame.begin(), frame.end());
  CHECK(!storage::VerifyFrame(twice, plain.size(), id).ok());
  CHECK(!storage::VerifyFrame(twice, 2 * plain.size(), id).ok());

  CHECK(storage::VerifyFrame(plain, plain.size(), id).code() == Code::kCorruption);  // not zstd
  CHECK(storage::VerifyFrame(ByteView(), 0, id).code() == Code::kCorruption);

  // Any flipped byte is refused, as corruption or as a wrong hash.
  for (size_t i = 0; i < frame.size(); i += 97) {
    Bytes bad = frame;
    bad[i] ^= 0x40;
    CHECK(!storage::VerifyFrame(bad, plain.size(), id).ok());
  }
  // Still fine afterwards (the thread's decompression context recovers).
  CHECK(storage::VerifyFrame(frame, plain.size(), id).ok());
}
