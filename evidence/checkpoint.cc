#include "evidence/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace custos::evidence {

namespace {

bool IsPrintableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace

std::string OriginForCase(std::string_view case_id) { return std::string(kOriginPrefix) + std::string(case_id); }

std::string FormatCheckpoint(const Checkpoint& c) {
  return c.origin + "\n" + std::to_string(c.size) + "\n" + Base64Encode(c.root.bytes) + "\n" + c.time + "\n";
}

Result<Checkpoint> ParseCheckpoint(std::string_view text) {
  if (text.size() > kMaxCheckpointBytes) return CorruptionError("checkpoint: longer than 4096 bytes");
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return CorruptionError("checkpoint: last line does not end with a newline");
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.size() != 4) return CorruptionError("checkpoint: " + std::to_string(lines.size()) + " lines, expected 4 (origin, size, root, time)");
  Checkpoint c;
  if (lines[0].rfind(kOriginPrefix, 0) != 0 || lines[0].size() == kOriginPrefix.size() || !IsPrintableAscii(lines[0])) {
    return CorruptionError("checkpoint: origin is not custos.evidence/<case id>");
  }
  c.origin = std::string(lines[0]);
  std::string_view size = lines[1];
  if (size.empty() || size.size() > 20 || !std::all_of(size.begin(), size.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
      (size.size() > 1 && size[0] == '0')) {
    return CorruptionError("checkpoint: size is not a canonical decimal number");
  }
  uint64_t n = 0;
  for (char ch : size) {
    uint64_t d = uint64_t(ch - '0');
    if (n > (UINT64_MAX - d) / 10) return CorruptionError("checkpoint: size out of range");
    n = n * 10 + d;
  }
  c.size = n;
  auto root = Base64Decode(lines[2]);
  if (!root || root->size() != 32 || Base64Encode(*root) != lines[2]) {
    return CorruptionError("checkpoint: root is not the base64 of 32 bytes");
  }
  c.root = Id::FromView(*root);
  if (lines[3].empty() || lines[3].size() > 64 || !IsPrintableAscii(lines[3])) return CorruptionError("checkpoint: bad time line");
  c.time = std::string(lines[3]);
  return c;
}

SignedCheckpoint SignCheckpoint(const SigningKey& key, const Checkpoint& c) {
  SignedCheckpoint s;
  s.checkpoint = c;
  s.text = FormatCheckpoint(c);
  s.signature = Sign(key, AsBytes(s.text));
  return s;
}

std::string KeyFingerprint(ByteView public_key32) { return "sha256:" + Sha256(PublicKeyDer(public_key32)).Hex(); }

Result<std::array<uint8_t, 32>> ParsePublicKeyPem(std::string_view pem) {
  static constexpr std::string_view kBegin = "-----BEGIN PUBLIC KEY-----";
  static constexpr std::string_view kEnd = "-----END PUBLIC KEY-----";
  size_t b = pem.find(kBegin), e = pem.find(kEnd);
  if (b == std::string_view::npos || e == std::string_view::npos || e < b) {
    return CorruptionError("public key: not a PEM PUBLIC KEY block");
  }
  std::string body;
  for (char ch : pem.substr(b + kBegin.size(), e - b - kBegin.size())) {
    if (ch != '\n' && ch != '\r' && ch != ' ' && ch != '\t') body.push_back(ch);
  }
  auto der = Base64Decode(body);
  std::array<uint8_t, 32> key{};
  if (!der || der->size() != 44) return CorruptionError("public key: not an Ed25519 SubjectPublicKeyInfo");
  std::copy(der->begin() + 12, der->end(), key.begin());
  Bytes expect = PublicKeyDer(key);
  if (expect != *der) return CorruptionError("public key: not an Ed25519 SubjectPublicKeyInfo");
  return key;
}

std::string CheckpointBaseName(uint64_t size) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "checkpoints/%08llu", static_cast<unsigned long long>(size));
  return buf;
}

}  // namespace custos::evidence
