// Signed checkpoints of a case ledger, in the style of C2SP tlog-checkpoint:
//
//   custos.evidence/<case id>\n        origin
//   <tree size, decimal>\n             records covered (ledger lines 0..size-1)
//   <base64 of the 32-byte root>\n     RFC 9162 MTH of those lines
//   <time, RFC 3339 UTC>\n             the appliance clock when signed
//
// The signature is plain Ed25519 (no pre-hash) over exactly these bytes,
// stored raw (64 bytes), so that
//   openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in X.txt -sigfile X.sig
// checks it. Unlike C2SP notes, the signature is not appended to the text:
// a separate file is what openssl verifies. The origin's "custos.evidence/"
// prefix keeps a checkpoint from ever being read as any other document the
// appliance key signs (reports are JSON objects; SHA256SUMS starts with hex).
//
// Key fingerprint: "sha256:" + hex SHA-256 of the DER SubjectPublicKeyInfo,
// i.e. `openssl pkey -pubin -in pubkey.pem -outform DER | sha256sum`.
//
// Format: doc/formats/evidence.md, "Checkpoints".
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"
#include "evidence/merkle.h"

namespace custos::evidence {

inline constexpr std::string_view kOriginPrefix = "custos.evidence/";
// Checkpoint texts longer than this are refused by the parser.
inline constexpr size_t kMaxCheckpointBytes = 4096;

struct Checkpoint {
  std::string origin;  // kOriginPrefix + case id
  uint64_t size = 0;
  Hash root;
  std::string time;    // RFC 3339 UTC
};

std::string OriginForCase(std::string_view case_id);

// The exact text (four lines, each ending "\n").
std::string FormatCheckpoint(const Checkpoint& c);
// Strict parse of FormatCheckpoint's output: exactly four lines, an origin
// with kOriginPrefix and printable ASCII, a canonical decimal size, base64
// of exactly 32 bytes, a non-empty time. Corruption otherwise (fuzzed with
// the ledger line fuzzer).
Result<Checkpoint> ParseCheckpoint(std::string_view text);

struct SignedCheckpoint {
  Checkpoint checkpoint;
  std::string text;                     // FormatCheckpoint(checkpoint)
  std::array<uint8_t, 64> signature{};  // Ed25519 over text
};
SignedCheckpoint SignCheckpoint(const SigningKey& key, const Checkpoint& c);

// The DER SubjectPublicKeyInfo's fingerprint, "sha256:<64 hex>".
std::string KeyFingerprint(ByteView public_key32);
// The raw 32-byte Ed25519 key from an SPKI PEM block (PublicKeyPem's form,
// what pubkey.pem holds); Corruption if it is anything else.
Result<std::array<uint8_t, 32>> ParsePublicKeyPem(std::string_view pem);

// Checkpoint file names inside a case directory and a bundle:
// "checkpoints/00000012.txt" for size 12 (at least 8 digits), .sig, .tsr.
std::string CheckpointBaseName(uint64_t size);

}  // namespace custos::evidence
