// Cryptographic primitives used by Custos, wrapped so that no OpenSSL or
// libsodium type appears in a public header.
//
// - SHA-256 (OpenSSL EVP: SHA-NI where the CPU has it).
// - The box: authenticated encryption with a 192-bit random nonce.
//   Construction (doc/formats/repository.md, "The box"): nonce n = n1||n2,
//   each 96 bits; subkey = BLAKE2b-256(key=K, msg="custos.box.v1"||n1);
//   AES-256-GCM(subkey, nonce=n2, ad). Layout: n (24) || ciphertext || tag (16).
//   Random 192-bit nonces never collide in practice, so one key can seal any
//   number of boxes (plain AES-GCM with random 96-bit nonces is limited to
//   about 2^32 messages per key).
// - Keyed BLAKE2b-256 for MACs and key derivation; Argon2id for passphrases;
//   Ed25519 for signatures (libsodium).
//
// Thread-safety: all functions are safe to call from many threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace custos {

using Key32 = std::array<uint8_t, 32>;

// Call once before any other function here (initialises libsodium).
// Aborts if the library cannot be initialised.
void CryptoInit();

Id Sha256(ByteView data);

// Incremental SHA-256.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(ByteView data);
  Id Finish();  // may be called once

 private:
  void* ctx_;
};

void RandomBytes(void* out, size_t n);
Key32 RandomKey();

constexpr size_t kBoxNonceSize = 24;
constexpr size_t kBoxTagSize = 16;
constexpr size_t kBoxOverhead = kBoxNonceSize + kBoxTagSize;

// Appends the box of `plaintext` to `out`.
void SealAppend(const Key32& key, ByteView plaintext, ByteView ad, Bytes& out);
Bytes Seal(const Key32& key, ByteView plaintext, ByteView ad);
// Corruption if the box is too short or does not authenticate under key and ad.
Result<Bytes> Open(const Key32& key, ByteView box, ByteView ad);

// BLAKE2b-256 keyed with `key` over `data`.
Key32 KeyedHash(const Key32& key, ByteView data);
// A subkey for one purpose: KeyedHash(master, "custos.kdf.v1:" + purpose).
Key32 DeriveKey(const Key32& master, std::string_view purpose);
bool ConstantTimeEqual(ByteView a, ByteView b);

struct Argon2Params {
  // 8 passes over 24 MiB: the same memory-time product (192 MiB-passes)
  // as RFC 9106's second recommendation (3 passes, 64 MiB) at 3/8 of the
  // peak memory, five times OWASP's floor (2 passes, 19 MiB), so that
  // opening a repository stays cheap on a small appliance (doc/design.md,
  // "Pack size, compression, KDF defaults").
  uint64_t ops = 8;
  uint64_t mem_bytes = 24ull << 20;
};
// InvalidArgument when the parameters are out of libsodium's range,
// Unavailable when the memory cannot be allocated.
Result<Key32> Argon2id(std::string_view passphrase, ByteView salt16, const Argon2Params& p);

struct SigningKey {
  std::array<uint8_t, 32> public_key{};
  std::array<uint8_t, 64> secret_key{};  // libsodium layout: seed || public key
};
SigningKey SigningKeyFromSeed(const Key32& seed);
std::array<uint8_t, 64> Sign(const SigningKey& key, ByteView message);
bool VerifySignature(ByteView public_key32, ByteView message, ByteView signature64);
// The public key as a DER SubjectPublicKeyInfo (RFC 8410: a fixed 12-byte
// prefix and the 32-byte key), and as the PEM block of that DER, the form
// `openssl pkeyutl -pubin` reads.
Bytes PublicKeyDer(ByteView public_key32);
std::string PublicKeyPem(ByteView public_key32);

}  // namespace custos
