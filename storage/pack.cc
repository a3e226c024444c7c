#include "storage/pack.h"

#include "storage/format.h"

namespace custos::storage {

PackBuilder::PackBuilder() { bytes_.assign(kPackMagic.begin(), kPackMagic.end()); }

void PackBuilder::Add(EncodedBlob blob) {
  blob.entry.offset = uint32_t(bytes_.size());
  blob.entry.stored_length = uint32_t(blob.box.size());
  Append(bytes_, blob.box);
  entries_.push_back(blob.entry);
}

void EncodeEntries(const std::vector<PackEntry>& entries, Bytes& out) {
  for (const auto& e : entries) {
    out.push_back(uint8_t(e.type));
    out.push_back(uint8_t(e.compression));
    PutU16(out, 0);
    PutU32(out, e.offset);
    PutU32(out, e.stored_length);
    PutU32(out, e.raw_length);
    Append(out, e.id.bytes);
  }
}

Result<std::vector<PackEntry>> DecodeEntries(ByteReader& r, uint32_t count) {
  if (uint64_t(count) * kPackEntrySize > r.remaining()) {
    return CorruptionError("entry count " + std::to_string(count) + " exceeds the data");
  }
  std::vector<PackEntry> entries(count);
  for (auto& e : entries) {
    uint8_t type, comp;
    uint16_t reserved;
    r.GetU8(&type);
    r.GetU8(&comp);
    r.GetU16(&reserved);
    r.GetU32(&e.offset);
    r.GetU32(&e.stored_length);
    r.GetU32(&e.raw_length);
    r.GetArray(&e.id.bytes);
    if (r.failed()) return CorruptionError("entry truncated");
    if (type > 1) return CorruptionError("entry has unknown blob type " + std::to_string(type));
    if (comp > 1) return CorruptionError("entry has unknown compression " + std::to_string(comp));
    if (reserved != 0) return CorruptionError("entry has non-zero reserved field");
    if (e.raw_length > kMaxBlobSize) return CorruptionError("entry raw length exceeds the format limit");
    if (e.stored_length < kBoxOverhead) return CorruptionError("entry stored length below box overhead");
    e.type = BlobType(type);
    e.compression = Compression(comp);
  }
  return entries;
}

Bytes EncodePackTail(const Key32& data_key, const std::vector<PackEntry>& entries) {
  Bytes header;
  PutU32(header, kFormatVersion);
  PutU32(header, uint32_t(entries.size()));
  EncodeEntries(entries, header);
  Bytes tail;
  SealAppend(data_key, header, AsBytes(kPackHeaderAd), tail);
  PutU32(tail, uint32_t(tail.size()));
  Append(tail, AsBytes(kPackEndMagic));
  return tail;
}

PackWriter::PackWriter(std::unique_ptr<FileWriter> out) : out_(std::move(out)) {
  status_ = out_->Append(AsBytes(kPackMagic));
  hash_.Update(AsBytes(kPackMagic));
  size_ = kPackMagic.size();
}

Status PackWriter::Add(EncodedBlob blob) {
  RETURN_IF_ERROR(status_);
  blob.entry.offset = uint32_t(size_);
  blob.entry.stored_length = uint32_t(blob.box.size());
  status_ = out_->Append(blob.box);
  RETURN_IF_ERROR(status_);
  hash_.Update(blob.box);
  size_ += blob.box.size();
  entries_.push_back(blob.entry);
  return Status::Ok();
}

Result<PackWriter::Finished> PackWriter::Finish(const Key32& data_key) {
  RETURN_IF_ERROR(status_);
  Bytes tail = EncodePackTail(data_key, entries_);
  RETURN_IF_ERROR(out_->Append(tail));
  hash_.Update(tail);
  Finished f{hash_.Finish(), std::move(entries_)};
  Status st = out_->Commit(f.id.Hex());
  if (!st.ok() && st.code() != Code::kAlreadyExists) return st;
  return f;
}

PackBuilder::Finished PackBuilder::Finish(const Key32& data_key) {
  Append(bytes_, EncodePackTail(data_key, entries_));
  Finished f;
  f.id = Sha256(bytes_);
  f.bytes = std::move(bytes_);
  f.entries = std::move(entries_);
  bytes_.assign(kPackMagic.begin(), kPackMagic.end());
  entries_.clear();
  return f;
}

Result<uint64_t> PackTailLength(ByteView tail, uint64_t pack_size) {
  if (pack_size < kPackMagic.size() + kBoxOverhead + kPackTrailerSize || tail.size() < kPackTrailerSize) {
    return CorruptionError("pack too short (" + std::to_string(pack_size) + " bytes)");
  }
  const uint8_t* t = tail.data() + tail.size() - kPackTrailerSize;
  if (AsString(ByteView(t + 4, 8)) != kPackEndMagic) return CorruptionError("pack trailer magic missing");
  uint64_t header_len = GetU32(t);
  if (header_len < kBoxOverhead + 8 || header_len + kPackTrailerSize + kPackMagic.size() > pack_size) {
    return CorruptionError("pack header length " + std::to_string(header_len) + " out of range");
  }
  return header_len + kPackTrailerSize;
}

Result<std::vector<PackEntry>> ParsePackHeader(const Key32& data_key, ByteView tail,
                                               uint64_t pack_size) {
  ASSIGN_OR_RETURN(uint64_t need, PackTailLength(tail, pack_size));
  if (tail.size() < need) return CorruptionError("pack tail shorter than its header");
  ByteView box = tail.subspan(tail.size() - need, need - kPackTrailerSize);
  auto plain = Open(data_key, box, AsBytes(kPackHeaderAd));
  if (!plain.ok()) return plain.status().Annotate("pack header");
  ByteReader r(*plain);
  uint32_t version = 0, count = 0;
  if (!r.GetU32(&version) || !r.GetU32(&count)) return CorruptionError("pack header truncated");
  if (version != kFormatVersion) {
    return NotSupportedError("pack header version " + std::to_string(version));
  }
  auto entries = DecodeEntries(r, count);
  if (!entries.ok()) return entries.status().Annotate("pack header");
  if (r.remaining() != 0) return CorruptionError("pack header has trailing bytes");
  uint64_t pos = kPackMagic.size();
  for (const auto& e : *entries) {
    if (e.offset != pos) return CorruptionError("pack header: blob " + e.id.Short() + " offset mismatch");
    pos += e.stored_length;
  }
  if (pos != pack_size - need) return CorruptionError("pack header: blobs do not fill the pack");
  return entries;
}

}  // namespace custos::storage
