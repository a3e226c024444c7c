#include <catch2/catch.hpp>

#include "base/crypto.h"

using namespace custos;

TEST_CASE("sha256 matches the FIPS 180-2 test vector", "[base][crypto]") {
  REQUIRE(Sha256(AsBytes("abc")).Hex() ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256Stream s;
  s.Update(AsBytes("a"));
  s.Update(AsBytes("bc"));
  REQUIRE(s.Finish() == Sha256(AsBytes("abc")));
}

TEST_CASE("a box opens only with its key and associated data", "[base][crypto]") {
  Key32 k = RandomKey(), other = RandomKey();
  Bytes box = Seal(k, AsBytes("secret text"), AsBytes("ad"));
  REQUIRE(box.size() == 11 + kBoxOverhead);
  auto plain = Open(k, box, AsBytes("ad"));
  REQUIRE(plain.ok());
  REQUIRE(AsString(*plain) == "secret text");
  REQUIRE(Open(other, box, AsBytes("ad")).status().code() == Code::kCorruption);
  REQUIRE(Open(k, box, AsBytes("AD")).status().code() == Code::kCorruption);
  for (size_t i = 0; i < box.size(); ++i) {
    Bytes bad = box;
    bad[i] ^= 0x01;
    REQUIRE_FALSE(Open(k, bad, AsBytes("ad")).ok());
  }
  REQUIRE_FALSE(Open(k, ByteView(box.data(), kBoxOverhead - 1), AsBytes("ad")).ok());
  // Two seals of the same plaintext differ (random nonce).
  REQUIRE(Seal(k, AsBytes("x"), {}) != Seal(k, AsBytes("x"), {}));
}

TEST_CASE("ed25519 signatures verify and reject tampering", "[base][crypto]") {
  SigningKey sk = SigningKeyFromSeed(RandomKey());
  auto sig = Sign(sk, AsBytes("report"));
  REQUIRE(VerifySignature(sk.public_key, AsBytes("report"), sig));
  REQUIRE_FALSE(VerifySignature(sk.public_key, AsBytes("rePort"), sig));
  REQUIRE(PublicKeyPem(sk.public_key).rfind("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA", 0) == 0);
}

TEST_CASE("argon2id is deterministic per salt and rejects bad parameters", "[base][crypto]") {
  Bytes salt(16, 7);
  Argon2Params p{1, 1 << 20};
  auto a = Argon2id("pw", salt, p), b = Argon2id("pw", salt, p), c = Argon2id("pW", salt, p);
  REQUIRE(a.ok());
  REQUIRE(*a == *b);
  REQUIRE(*a != *c);
  REQUIRE(Argon2id("pw", Bytes(15), p).status().code() == Code::kInvalidArgument);
  REQUIRE(Argon2id("pw", salt, Argon2Params{0, 1 << 20}).status().code() == Code::kInvalidArgument);
}

TEST_CASE("hex and base64 round trip and reject bad input", "[base]") {
  Bytes b = {0, 1, 0xfe, 0xff};
  REQUIRE(ToHex(b) == "0001feff");
  REQUIRE(*FromHex("0001FEff") == b);
  REQUIRE_FALSE(FromHex("abc").has_value());
  REQUIRE_FALSE(FromHex("zz").has_value());
  REQUIRE(*Base64Decode(Base64Encode(b)) == b);
  REQUIRE_FALSE(Base64Decode("!!!!").has_value());
  Id id = Sha256(b);
  REQUIRE(Id::FromHex(id.Hex()) == id);
  REQUIRE_FALSE(Id::FromHex(id.Hex().substr(2)).has_value());        // short
  REQUIRE_FALSE(Id::FromHex(id.Hex() + "00").has_value());           // long
  REQUIRE_FALSE(Id::FromHex("g" + id.Hex().substr(1)).has_value());  // not hex
}
