#include "storage/keys.h"

#include <nlohmann/json.hpp>

#include "base/internal/json_int.h"

#include <ctime>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "storage/format.h"

namespace custos::storage {

using nlohmann::json;

MasterKeys MasterKeys::FromMaster(const Key32& master) {
  MasterKeys k;
  k.master = master;
  k.data = DeriveKey(master, "data");
  k.mac = DeriveKey(master, "mac");
  k.chunker = DeriveKey(master, "chunker");
  k.signing_seed = DeriveKey(master, "signing");
  return k;
}

MasterKeys::~MasterKeys() {
  for (Key32* k : {&master, &data, &mac, &chunker, &signing_seed}) SecureWipe(k->data(), k->size());
}

std::string NowRfc3339() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
  return buf;
}

std::string EncodeSealedText(const std::string& body, const Key32& mac_key) {
  Key32 mac = KeyedHash(mac_key, AsBytes(body));
  return body + "\nsha256 " + Sha256(AsBytes(body)).Hex() + "\nmac " + ToHex(mac) + "\n";
}

Result<SealedText> ParseSealedText(ByteView file, const std::string& what) {
  std::string_view s = AsString(file);
  // body \n "sha256 " 64 hex \n "mac " 64 hex \n
  constexpr size_t kTail = 1 + 7 + 64 + 1 + 4 + 64 + 1;
  if (s.size() < kTail + 2) return CorruptionError(what + ": too short");
  std::string_view body = s.substr(0, s.size() - kTail);
  std::string_view tail = s.substr(s.size() - kTail);
  if (tail.substr(0, 8) != "\nsha256 " || tail.substr(72, 5) != "\nmac " || tail.back() != '\n' ||
      !IsLowerHex(tail.substr(8, 64)) || !IsLowerHex(tail.substr(77, 64))) {
    return CorruptionError(what + ": checksum lines malformed");
  }
  if (body.find('\n') != std::string_view::npos) return CorruptionError(what + ": body spans lines");
  if (Sha256(AsBytes(body)).Hex() != tail.substr(8, 64)) {
    return CorruptionError(what + ": content does not match its sha256 line (damaged)");
  }
  return SealedText{std::string(body), std::string(tail.substr(77, 64))};
}

Status VerifySealedTextMac(const SealedText& t, const Key32& mac_key, const std::string& what) {
  Key32 mac = KeyedHash(mac_key, AsBytes(t.body));
  auto expect = FromHex(t.mac_hex);
  if (!expect || !ConstantTimeEqual(mac, *expect)) {
    return IntegrityError(what + ": MAC does not verify (altered, or from another repository)");
  }
  return Status::Ok();
}

namespace {

template <typename F>
auto Guard(const std::string& what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return CorruptionError(what + ": malformed: " + e.what());
  }
}


}  // namespace

std::string EncodeConfigBody(const RepoConfig& c) {
  json j = {{"magic", kConfigMagic},
            {"version", c.version},
            {"id", c.id},
            {"created", c.created},
            {"pack_size", c.pack_size},
            {"compression", {{"algorithm", "zstd"}, {"level", c.zstd_level}}},
            {"chunker", {{"algorithm", "fastcdc"}, {"min", c.chunk_min}, {"avg", c.chunk_avg}, {"max", c.chunk_max}}},
            {"cipher", "custos.box.v1"}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<RepoConfig> DecodeConfigBody(const std::string& body) {
  return Guard("config", [&]() -> Result<RepoConfig> {
    json j = json::parse(body);
    if (j.at("magic").get<std::string>() != kConfigMagic) return CorruptionError("config: wrong magic");
    RepoConfig c;
    c.version = internal::JsonIntAt<uint32_t>(j, "version");
    if (c.version != kFormatVersion) {
      return NotSupportedError("config: repository format version " + std::to_string(c.version) +
                               " (this build reads version " + std::to_string(kFormatVersion) + ")");
    }
    c.id = j.at("id").get<std::string>();
    if (c.id.size() != 64 || !IsLowerHex(c.id)) return CorruptionError("config: bad repository id");
    c.created = j.at("created").get<std::string>();
    c.pack_size = internal::JsonIntAt<uint32_t>(j, "pack_size");
    if (c.pack_size < 4096 || c.pack_size > kMaxPackSize) return CorruptionError("config: pack_size out of range");
    c.zstd_level = internal::JsonIntAt<int>(j.at("compression"), "level");
    if (c.zstd_level < 0 || c.zstd_level > 19) return CorruptionError("config: zstd level out of range");
    const json& ch = j.at("chunker");
    c.chunk_min = internal::JsonIntAt<uint32_t>(ch, "min");
    c.chunk_avg = internal::JsonIntAt<uint32_t>(ch, "avg");
    c.chunk_max = internal::JsonIntAt<uint32_t>(ch, "max");
    if (!(c.chunk_min > 0 && c.chunk_min <= c.chunk_avg && c.chunk_avg <= c.chunk_max &&
          c.chunk_max <= (64u << 20))) {
      return CorruptionError("config: chunker bounds out of range");
    }
    if (j.at("cipher").get<std::string>() != "custos.box.v1") return NotSupportedError("config: unknown cipher");
    return c;
  });
}

std::string EncodeKeySlotBody(const KeySlot& s) {
  json j = {{"magic", kKeySlotMagic},
            {"version", kFormatVersion},
            {"id", s.id},
            {"kind", s.kind == SlotKind::kRecovery ? "recovery" : "passphrase"},
            {"label", s.label},
            {"created", s.created},
            {"host", s.host},
            {"user", s.user},
            {"salt", Base64Encode(s.salt)},
            {"wrapped", Base64Encode(s.wrapped)}};
  if (s.kind == SlotKind::kPassphrase) {
    j["kdf"] = {{"algorithm", "argon2id"}, {"ops", s.kdf.ops}, {"memory", s.kdf.mem_bytes}};
  } else {
    j["kdf"] = {{"algorithm", "blake2b"}};
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<KeySlot> DecodeKeySlotBody(const std::string& body) {
  return Guard("key slot", [&]() -> Result<KeySlot> {
    json j = json::parse(body);
    if (j.at("magic").get<std::string>() != kKeySlotMagic) return CorruptionError("key slot: wrong magic");
    if (internal::JsonIntAt<uint32_t>(j, "version") != kFormatVersion) return NotSupportedError("key slot: unknown version");
    KeySlot s;
    s.id = j.at("id").get<std::string>();
    if (s.id.size() != 32 || !IsLowerHex(s.id)) return CorruptionError("key slot: bad id");
    std::string kind = j.at("kind").get<std::string>();
    if (kind == "passphrase") {
      s.kind = SlotKind::kPassphrase;
      const json& k = j.at("kdf");
      if (k.at("algorithm").get<std::string>() != "argon2id") return NotSupportedError("key slot: unknown kdf");
      s.kdf.ops = internal::JsonIntAt<uint64_t>(k, "ops");
      s.kdf.mem_bytes = internal::JsonIntAt<uint64_t>(k, "memory");
    } else if (kind == "recovery") {
      s.kind = SlotKind::kRecovery;
    } else {
      return NotSupportedError("key slot: unknown kind '" + kind + "'");
    }
    s.label = j.at("label").get<std::string>();
    s.created = j.at("created").get<std::string>();
    s.host = j.at("host").get<std::string>();
    s.user = j.at("user").get<std::string>();
    auto salt = Base64Decode(j.at("salt").get<std::string>());
    auto wrapped = Base64Decode(j.at("wrapped").get<std::string>());
    if (!salt || salt->size() != 16) return CorruptionError("key slot: bad salt");
    if (!wrapped || wrapped->size() != 32 + kBoxOverhead) return CorruptionError("key slot: bad wrapped key");
    s.salt = *salt;
    s.wrapped = *wrapped;
    return s;
  });
}

namespace {

Bytes SlotAd(const std::string& repo_id, const KeySlot& s) {
  std::string ad = std::string(kKeySlotAd) + ":" + repo_id + ":" + s.id + ":" +
                   (s.kind == SlotKind::kRecovery ? "recovery" : "passphrase");
  return Bytes(ad.begin(), ad.end());
}

Result<Key32> SlotKek(const KeySlot& s, const std::string& secret) {
  if (s.kind == SlotKind::kPassphrase) return Argon2id(secret, s.salt, s.kdf);
  auto r = ParseRecoveryKey(secret);
  if (!r) return UnauthenticatedError("not a recovery key");
  Key32 kek = DeriveKey(*r, "recovery:" + ToHex(s.salt));
  SecureWipe(r->data(), r->size());
  return kek;
}

constexpr char kBase32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

}  // namespace

Result<KeySlot> WrapMaster(const Key32& master, const std::string& repo_id, SlotKind kind,
                           const std::string& secret, const Argon2Params& kdf, KeySlot meta) {
  KeySlot s = std::move(meta);
  uint8_t id[16];
  RandomBytes(id, sizeof id);
  s.id = ToHex(ByteView(id, 16));
  s.kind = kind;
  s.kdf = kdf;
  s.salt.resize(16);
  RandomBytes(s.salt.data(), 16);
  ASSIGN_OR_RETURN(Key32 kek, SlotKek(s, secret));
  s.wrapped = Seal(kek, master, SlotAd(repo_id, s));
  SecureWipe(kek.data(), kek.size());
  return s;
}

Result<Key32> UnwrapMaster(const KeySlot& slot, const std::string& repo_id, const std::string& secret) {
  ASSIGN_OR_RETURN(Key32 kek, SlotKek(slot, secret));
  auto plain = Open(kek, slot.wrapped, SlotAd(repo_id, slot));
  SecureWipe(kek.data(), kek.size());
  if (!plain.ok() || plain->size() != 32) return UnauthenticatedError("key slot " + slot.id + " does not open");
  Key32 master;
  std::memcpy(master.data(), plain->data(), 32);
  SecureWipe(plain->data(), plain->size());
  return master;
}

std::string MakeRecoveryKey() {
  uint8_t raw[34];
  RandomBytes(raw, 32);
  Id sum = Sha256(ByteView(raw, 32));
  raw[32] = sum.bytes[0];
  raw[33] = sum.bytes[1];
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  int chars = 0;
  for (uint8_t b : raw) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      if (chars && chars % 5 == 0) out += '-';
      out += kBase32[(acc >> (bits - 5)) & 31];
      bits -= 5;
      ++chars;
    }
  }
  if (bits > 0) {
    if (chars % 5 == 0) out += '-';
    out += kBase32[(acc << (5 - bits)) & 31];
  }
  SecureWipe(raw, sizeof raw);
  return out;
}

bool LooksLikeRecoveryKey(const std::string& text) {
  size_t n = 0;
  for (char c : text) {
    if (c == '-' || c == ' ') continue;
    char u = char(std::toupper(static_cast<unsigned char>(c)));
    if (!std::strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ23456701", u) || u == '\0') return false;
    ++n;
  }
  return n == 55;
}

std::optional<Key32> ParseRecoveryKey(const std::string& text) {
  std::vector<uint8_t> vals;
  for (char c : text) {
    if (c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    char u = char(std::toupper(static_cast<unsigned char>(c)));
    if (u == '0') u = 'O';
    if (u == '1') u = 'I';
    if (u == '8') u = 'B';
    const char* p = std::strchr(kBase32, u);
    if (!p || u == '\0') return std::nullopt;
    vals.push_back(uint8_t(p - kBase32));
  }
  if (vals.size() != 55) return std::nullopt;
  uint8_t raw[35] = {};
  uint32_t acc = 0;
  int bits = 0;
  size_t n = 0;
  for (uint8_t v : vals) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      raw[n++] = uint8_t(acc >> (bits - 8));
      bits -= 8;
    }
  }
  if (n < 34) return std::nullopt;
  Id sum = Sha256(ByteView(raw, 32));
  if (sum.bytes[0] != raw[32] || sum.bytes[1] != raw[33]) return std::nullopt;
  Key32 k;
  std::memcpy(k.data(), raw, 32);
  SecureWipe(raw, sizeof raw);
  return k;
}

}  // namespace custos::storage
