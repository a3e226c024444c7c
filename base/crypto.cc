#include "base/crypto.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace custos {
namespace {

constexpr std::string_view kBoxContext = "custos.box.v1";

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

// One cipher context per thread, reused: allocating a context per blob costs
// more than encrypting a small blob.
EVP_CIPHER_CTX* ThreadCipherCtx() {
  thread_local std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  if (!ctx) std::abort();
  return ctx.get();
}

Key32 BoxSubkey(const Key32& key, const uint8_t* n1) {
  uint8_t msg[kBoxContext.size() + 12];
  std::memcpy(msg, kBoxContext.data(), kBoxContext.size());
  std::memcpy(msg + kBoxContext.size(), n1, 12);
  Key32 sub;
  crypto_generichash(sub.data(), sub.size(), msg, sizeof msg, key.data(), key.size());
  return sub;
}

}  // namespace

void CryptoInit() {
  if (sodium_init() < 0) std::abort();
}

Id Sha256(ByteView data) {
  Id id;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), id.bytes.data(), &len, EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
  return id;
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    std::abort();
  }
}
Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Sha256Stream::Update(ByteView data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}
Id Sha256Stream::Finish() {
  Id id;
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), id.bytes.data(), &len);
  return id;
}

namespace {

// Random bytes are served from a per-thread buffer refilled from the
// kernel 4 KiB at a time: a backup draws a 24-byte nonce per blob, and one
// getrandom call per blob was a measurable cost. A forked child must never
// serve the bytes its parent will also serve (nonce reuse): the fork
// generation invalidates every buffer in the child.
std::atomic<uint64_t> g_fork_generation{0};
void OnFork() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
const bool g_atfork_registered = [] {
  ::pthread_atfork(nullptr, nullptr, &OnFork);
  return true;
}();

struct RandomPool {
  uint8_t bytes[4096];
  size_t pos = sizeof bytes;  // empty
  uint64_t generation = 0;
};

}  // namespace

void RandomBytes(void* out, size_t n) {
  (void)g_atfork_registered;
  thread_local RandomPool pool;
  uint64_t gen = g_fork_generation.load(std::memory_order_relaxed);
  if (pool.generation != gen) {
    sodium_memzero(pool.bytes, sizeof pool.bytes);
    pool.pos = sizeof pool.bytes;
    pool.generation = gen;
  }
  if (n > 24) {  // keys (32 bytes) and larger requests: straight from the kernel; nonces from the pool
    randombytes_buf(out, n);
    return;
  }
  auto* o = static_cast<uint8_t*>(out);
  while (n > 0) {
    if (pool.pos == sizeof pool.bytes) {
      randombytes_buf(pool.bytes, sizeof pool.bytes);
      pool.pos = 0;
    }
    size_t k = std::min(n, sizeof pool.bytes - pool.pos);
    std::memcpy(o, pool.bytes + pool.pos, k);
    sodium_memzero(pool.bytes + pool.pos, k);  // served bytes do not linger
    pool.pos += k;
    o += k;
    n -= k;
  }
}

Key32 RandomKey() {
  Key32 k;
  RandomBytes(k.data(), k.size());
  return k;
}

void SealAppend(const Key32& key, ByteView plaintext, ByteView ad, Bytes& out) {
  size_t start = out.size();
  out.resize(start + kBoxOverhead + plaintext.size());
  uint8_t* nonce = out.data() + start;
  RandomBytes(nonce, kBoxNonceSize);
  Key32 sub = BoxSubkey(key, nonce);
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  int len = 0;
  bool ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx, nullptr, nullptr, sub.data(), nonce + 12) == 1 &&
            (ad.empty() ||
             EVP_EncryptUpdate(ctx, nullptr, &len, ad.data(), int(ad.size())) == 1);
  uint8_t* ct = nonce + kBoxNonceSize;
  size_t done = 0;
  // EVP takes int lengths: feed at most 1 GiB at a time.
  while (ok && done < plaintext.size()) {
    size_t n = std::min<size_t>(plaintext.size() - done, 1u << 30);
    ok = EVP_EncryptUpdate(ctx, ct + done, &len, plaintext.data() + done, int(n)) == 1;
    done += n;
  }
  ok = ok && EVP_EncryptFinal_ex(ctx, ct + done, &len) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kBoxTagSize, ct + plaintext.size()) == 1;
  SecureWipe(sub.data(), sub.size());
  if (!ok) std::abort();  // encryption cannot fail on valid input
}

Bytes Seal(const Key32& key, ByteView plaintext, ByteView ad) {
  Bytes out;
  out.reserve(plaintext.size() + kBoxOverhead);
  SealAppend(key, plaintext, ad, out);
  return out;
}

Result<Bytes> Open(const Key32& key, ByteView box, ByteView ad) {
  if (box.size() < kBoxOverhead) return CorruptionError("box too short");
  const uint8_t* nonce = box.data();
  size_t ct_len = box.size() - kBoxOverhead;
  const uint8_t* ct = nonce + kBoxNonceSize;
  Key32 sub = BoxSubkey(key, nonce);
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  Bytes out(ct_len);
  int len = 0;
  uint8_t tag[kBoxTagSize];
  std::memcpy(tag, ct + ct_len, kBoxTagSize);
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx, nullptr, nullptr, sub.data(), nonce + 12) == 1 &&
            (ad.empty() ||
             EVP_DecryptUpdate(ctx, nullptr, &len, ad.data(), int(ad.size())) == 1);
  size_t done = 0;
  while (ok && done < ct_len) {
    size_t n = std::min<size_t>(ct_len - done, 1u << 30);
    ok = EVP_DecryptUpdate(ctx, out.data() + done, &len, ct + done, int(n)) == 1;
    done += n;
  }
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kBoxTagSize, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx, out.data() + done, &len) == 1;
  SecureWipe(sub.data(), sub.size());
  if (!ok) {
    SecureWipe(out.data(), out.size());
    return CorruptionError("authentication failed (wrong key or damaged bytes)");
  }
  return out;
}

Key32 KeyedHash(const Key32& key, ByteView data) {
  Key32 out;
  crypto_generichash(out.data(), out.size(), data.data(), data.size(), key.data(), key.size());
  return out;
}

Key32 DeriveKey(const Key32& master, std::string_view purpose) {
  std::string msg = "custos.kdf.v1:";
  msg += purpose;
  return KeyedHash(master, AsBytes(msg));
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<Key32> Argon2id(std::string_view passphrase, ByteView salt16, const Argon2Params& p) {
  if (salt16.size() != crypto_pwhash_SALTBYTES) return InvalidArgumentError("argon2id: salt must be 16 bytes");
  if (p.ops < crypto_pwhash_OPSLIMIT_MIN || p.ops > 20 || p.mem_bytes < crypto_pwhash_MEMLIMIT_MIN ||
      p.mem_bytes > (2ull << 30)) {
    return InvalidArgumentError("argon2id: parameters out of range (ops " + std::to_string(p.ops) +
                                ", memory " + std::to_string(p.mem_bytes) + " bytes)");
  }
  Key32 out;
  if (crypto_pwhash(out.data(), out.size(), passphrase.data(), passphrase.size(), salt16.data(),
                    p.ops, size_t(p.mem_bytes), crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return UnavailableError("argon2id: out of memory for " + std::to_string(p.mem_bytes) + " bytes");
  }
  return out;
}

SigningKey SigningKeyFromSeed(const Key32& seed) {
  SigningKey k;
  crypto_sign_seed_keypair(k.public_key.data(), k.secret_key.data(), seed.data());
  return k;
}

std::array<uint8_t, 64> Sign(const SigningKey& key, ByteView message) {
  std::array<uint8_t, 64> sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), key.secret_key.data());
  return sig;
}

bool VerifySignature(ByteView public_key32, ByteView message, ByteView signature64) {
  if (public_key32.size() != 32 || signature64.size() != 64) return false;
  return crypto_sign_verify_detached(signature64.data(), message.data(), message.size(),
                                     public_key32.data()) == 0;
}

Bytes PublicKeyDer(ByteView public_key32) {
  // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed 12-byte DER prefix
  // followed by the 32-byte key.
  static const uint8_t kPrefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                      0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
  Bytes der(sizeof kPrefix + public_key32.size());
  std::memcpy(der.data(), kPrefix, sizeof kPrefix);
  if (!public_key32.empty()) std::memcpy(der.data() + sizeof kPrefix, public_key32.data(), public_key32.size());
  return der;
}

std::string PublicKeyPem(ByteView public_key32) {
  return "-----BEGIN PUBLIC KEY-----\n" + Base64Encode(PublicKeyDer(public_key32)) + "\n-----END PUBLIC KEY-----\n";
}

}  // namespace custos
