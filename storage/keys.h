// Repository keys: the config file, key slots and the recovery key
// (doc/formats/repository.md, "Config" and "Key slots").
//
// The master secret is 32 random bytes made at init. It is stored only
// wrapped: in passphrase slots under an Argon2id-derived key, in a recovery
// slot under a key derived from the printable recovery key. Every purpose
// gets its own subkey (DeriveKey): data (all boxes), mac (config and key
// slot MACs), chunker (content-defined chunking gear table), signing
// (Ed25519 seed for reports and checkpoints).
//
// Config and key slots are "sealed text" files: one line of JSON, a line
// "sha256 <hex of the JSON line>" (detects damage without any key) and a
// line "mac <hex>" (keyed BLAKE2b of the JSON line under the mac subkey:
// detects tampering once the repository is open).
//
// Thread-safety: pure functions and values.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"

namespace custos::storage {

struct MasterKeys {
  Key32 master{};
  Key32 data{};
  Key32 mac{};
  Key32 chunker{};
  Key32 signing_seed{};
  static MasterKeys FromMaster(const Key32& master);
  ~MasterKeys();
};

struct SealedText {
  std::string body;  // the JSON line, exact bytes
  std::string mac_hex;
};
std::string EncodeSealedText(const std::string& body, const Key32& mac_key);
// Corruption when the layout is wrong or the body does not match its sha256 line.
Result<SealedText> ParseSealedText(ByteView file, const std::string& what);
// Integrity when the mac line does not match.
Status VerifySealedTextMac(const SealedText& t, const Key32& mac_key, const std::string& what);

struct RepoConfig {
  uint32_t version = 1;
  std::string id;       // 64 lowercase hex digits, random
  std::string created;  // RFC 3339 UTC
  uint32_t pack_size = 0;
  int zstd_level = 0;
  // Content-defined chunking bounds (used by the snapshot layer).
  uint32_t chunk_min = 0, chunk_avg = 0, chunk_max = 0;
};
std::string EncodeConfigBody(const RepoConfig& c);
// Corruption / NotSupported on a malformed or unknown-version body.
Result<RepoConfig> DecodeConfigBody(const std::string& body);

enum class SlotKind { kPassphrase, kRecovery };

struct KeySlot {
  std::string id;  // file name: 32 lowercase hex digits
  SlotKind kind = SlotKind::kPassphrase;
  std::string label, created, host, user;
  Argon2Params kdf;  // passphrase slots only
  Bytes salt;        // 16 bytes
  Bytes wrapped;     // box of the master secret
};
std::string EncodeKeySlotBody(const KeySlot& s);
Result<KeySlot> DecodeKeySlotBody(const std::string& body);

// Makes a slot that wraps `master`. For a recovery slot `secret` is the
// recovery key text (see MakeRecoveryKey).
Result<KeySlot> WrapMaster(const Key32& master, const std::string& repo_id, SlotKind kind,
                           const std::string& secret, const Argon2Params& kdf, KeySlot meta);
// Unauthenticated when `secret` does not open this slot.
Result<Key32> UnwrapMaster(const KeySlot& slot, const std::string& repo_id, const std::string& secret);

// A printable recovery key: 32 random bytes and a 2-byte checksum in
// RFC 4648 base32, 11 groups of 5 letters joined by '-'.
std::string MakeRecoveryKey();
// The 32 bytes behind a recovery key text, tolerant of case, spaces and
// dashes; nullopt when the text is not a well-formed recovery key.
std::optional<Key32> ParseRecoveryKey(const std::string& text);
// Whether text has the shape of a recovery key (55 base32 letters once
// spaces and dashes are dropped), whatever its checksum.
bool LooksLikeRecoveryKey(const std::string& text);

std::string NowRfc3339();

}  // namespace custos::storage
