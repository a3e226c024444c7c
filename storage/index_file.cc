#include "storage/index_file.h"

#include "storage/format.h"
#include "storage/pack.h"

namespace custos::storage {
namespace {

Result<Bytes> OpenEnvelope(const Key32& key, ByteView file, std::string_view magic,
                           std::string_view ad, const char* what) {
  if (file.size() < magic.size() || AsString(file.subspan(0, magic.size())) != magic) {
    return CorruptionError(std::string(what) + ": magic missing");
  }
  auto plain = Open(key, file.subspan(magic.size()), AsBytes(ad));
  if (!plain.ok()) return plain.status().Annotate(what);
  return plain;
}

Bytes SealEnvelope(const Key32& key, ByteView payload, std::string_view magic, std::string_view ad) {
  Bytes out(magic.begin(), magic.end());
  SealAppend(key, payload, AsBytes(ad), out);
  return out;
}

}  // namespace

Bytes EncodeIndexFile(const Key32& data_key, const IndexFile& index) {
  Bytes plain;
  PutU32(plain, kFormatVersion);
  PutU32(plain, uint32_t(index.supersedes.size()));
  for (const auto& id : index.supersedes) Append(plain, id.bytes);
  PutU32(plain, uint32_t(index.packs.size()));
  for (const auto& p : index.packs) {
    Append(plain, p.pack.bytes);
    PutU32(plain, uint32_t(p.entries.size()));
    EncodeEntries(p.entries, plain);
  }
  return SealEnvelope(data_key, plain, kIndexMagic, kIndexAd);
}

Result<IndexFile> DecodeIndexFile(const Key32& data_key, ByteView file) {
  ASSIGN_OR_RETURN(Bytes plain, OpenEnvelope(data_key, file, kIndexMagic, kIndexAd, "index file"));
  ByteReader r(plain);
  uint32_t version = 0, nsup = 0, npacks = 0;
  if (!r.GetU32(&version)) return CorruptionError("index file: truncated");
  if (version != kFormatVersion) return NotSupportedError("index file: version " + std::to_string(version));
  if (!r.GetU32(&nsup) || uint64_t(nsup) * 32 > r.remaining()) {
    return CorruptionError("index file: superseded list truncated");
  }
  IndexFile out;
  out.supersedes.resize(nsup);
  for (auto& id : out.supersedes) r.GetArray(&id.bytes);
  if (!r.GetU32(&npacks) || uint64_t(npacks) * 36 > r.remaining()) {
    return CorruptionError("index file: pack count exceeds the data");
  }
  out.packs.resize(npacks);
  for (auto& p : out.packs) {
    uint32_t n = 0;
    if (!r.GetArray(&p.pack.bytes) || !r.GetU32(&n)) return CorruptionError("index file: truncated");
    auto entries = DecodeEntries(r, n);
    if (!entries.ok()) return entries.status().Annotate("index file: pack " + p.pack.Short());
    p.entries = std::move(entries).value();
  }
  if (r.remaining() != 0) return CorruptionError("index file: trailing bytes");
  return out;
}

namespace {

// Snapshot and report files: magic || box(version u32 || payload).
Bytes EncodeVersionedEnvelope(const Key32& data_key, ByteView payload, std::string_view magic,
                              std::string_view ad) {
  Bytes plain;
  PutU32(plain, kFormatVersion);
  Append(plain, payload);
  return SealEnvelope(data_key, plain, magic, ad);
}

Result<Bytes> DecodeVersionedEnvelope(const Key32& data_key, ByteView file, std::string_view magic,
                                      std::string_view ad, const std::string& what) {
  ASSIGN_OR_RETURN(Bytes plain, OpenEnvelope(data_key, file, magic, ad, what.c_str()));
  if (plain.size() < 4) return CorruptionError(what + ": truncated");
  uint32_t version = GetU32(plain.data());
  if (version != kFormatVersion) return NotSupportedError(what + ": version " + std::to_string(version));
  return Bytes(plain.begin() + 4, plain.end());
}

}  // namespace

Bytes EncodeSnapshotFile(const Key32& data_key, ByteView payload) {
  return EncodeVersionedEnvelope(data_key, payload, kSnapshotMagic, kSnapshotAd);
}

Result<Bytes> DecodeSnapshotFile(const Key32& data_key, ByteView file) {
  return DecodeVersionedEnvelope(data_key, file, kSnapshotMagic, kSnapshotAd, "snapshot");
}

Bytes EncodeReportFile(const Key32& data_key, ByteView payload) {
  return EncodeVersionedEnvelope(data_key, payload, kReportMagic, kReportAd);
}

Result<Bytes> DecodeReportFile(const Key32& data_key, ByteView file) {
  return DecodeVersionedEnvelope(data_key, file, kReportMagic, kReportAd, "report");
}

Bytes EncodeHoldFile(const Key32& data_key, ByteView payload) {
  return EncodeVersionedEnvelope(data_key, payload, kHoldMagic, kHoldAd);
}

Result<Bytes> DecodeHoldFile(const Key32& data_key, ByteView file) {
  return DecodeVersionedEnvelope(data_key, file, kHoldMagic, kHoldAd, "hold");
}

Bytes EncodeMarkFile(const Key32& data_key, const MarkFile& mark) {
  Bytes plain;
  PutU32(plain, kFormatVersion);
  PutU64(plain, uint64_t(mark.time_ns));
  PutU32(plain, uint32_t(mark.packs.size()));
  for (const auto& p : mark.packs) {
    Append(plain, p.pack.bytes);
    PutU32(plain, uint32_t(p.blobs.size()));
    for (const auto& b : p.blobs) Append(plain, b.bytes);
  }
  PutU32(plain, uint32_t(mark.retired_packs.size()));
  for (const auto& p : mark.retired_packs) Append(plain, p.bytes);
  return SealEnvelope(data_key, plain, kMarkMagic, kMarkAd);
}

Result<MarkFile> DecodeMarkFile(const Key32& data_key, ByteView file) {
  ASSIGN_OR_RETURN(Bytes plain, OpenEnvelope(data_key, file, kMarkMagic, kMarkAd, "mark file"));
  ByteReader r(plain);
  uint32_t version = 0, npacks = 0, nretired = 0;
  uint64_t time = 0;
  if (!r.GetU32(&version)) return CorruptionError("mark file: truncated");
  if (version != kFormatVersion) return NotSupportedError("mark file: version " + std::to_string(version));
  if (!r.GetU64(&time) || time > uint64_t(INT64_MAX)) return CorruptionError("mark file: bad time");
  MarkFile out;
  out.time_ns = int64_t(time);
  if (!r.GetU32(&npacks) || uint64_t(npacks) * 36 > r.remaining()) {
    return CorruptionError("mark file: pack count exceeds the data");
  }
  out.packs.resize(npacks);
  for (auto& p : out.packs) {
    uint32_t n = 0;
    if (!r.GetArray(&p.pack.bytes) || !r.GetU32(&n) || uint64_t(n) * 32 > r.remaining()) {
      return CorruptionError("mark file: truncated pack record");
    }
    p.blobs.resize(n);
    for (auto& b : p.blobs) r.GetArray(&b.bytes);
  }
  if (!r.GetU32(&nretired) || uint64_t(nretired) * 32 != r.remaining()) {
    return CorruptionError("mark file: retired pack list does not fill the rest");
  }
  out.retired_packs.resize(nretired);
  for (auto& p : out.retired_packs) r.GetArray(&p.bytes);
  if (r.failed() || r.remaining() != 0) return CorruptionError("mark file: trailing bytes");
  return out;
}

}  // namespace custos::storage
