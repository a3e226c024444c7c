// Index files: immutable, encrypted lists of (pack, entries), named by the
// SHA-256 of their bytes (doc/formats/repository.md, "Index files").
// An index file may name older index files it supersedes (written by a
// future compaction; a reader ignores superseded files).
//
// Thread-safety: pure functions.
#pragma once

#include <vector>

#include "base/bytes.h"
#include "base/crypto.h"
#include "base/status.h"
#include "storage/blob.h"

namespace custos::storage {

struct IndexPack {
  Id pack;
  std::vector<PackEntry> entries;
};

struct IndexFile {
  std::vector<Id> supersedes;
  std::vector<IndexPack> packs;
};

Bytes EncodeIndexFile(const Key32& data_key, const IndexFile& index);
// Corruption on bad magic, failed authentication or malformed contents.
Result<IndexFile> DecodeIndexFile(const Key32& data_key, ByteView file);

// Snapshot envelopes: kSnapshotMagic || box(payload). The payload's format
// belongs to the snapshot layer; storage only seals and opens it.
Bytes EncodeSnapshotFile(const Key32& data_key, ByteView payload);
Result<Bytes> DecodeSnapshotFile(const Key32& data_key, ByteView file);
// Report envelopes (restore and drill reports): the same shape with
// kReportMagic and kReportAd; the payload is a signed report
// (restore/report.h).
Bytes EncodeReportFile(const Key32& data_key, ByteView payload);
Result<Bytes> DecodeReportFile(const Key32& data_key, ByteView file);
// Hold envelopes (hold and release records): the same shape with kHoldMagic
// and kHoldAd; the payload belongs to the snapshot layer (snapshot/holds.h).
Bytes EncodeHoldFile(const Key32& data_key, ByteView payload);
Result<Bytes> DecodeHoldFile(const Key32& data_key, ByteView file);

// Mark files (prune's first phase, storage/prune.h): which blobs of which
// packs were found unreferenced at `time_ns`, and which packs a repack
// replaced (named only by superseded index files) and waits to delete.
// Write-once like every file; doc/formats/repository.md, "Mark files".
struct MarkedPack {
  Id pack;
  std::vector<Id> blobs;
};
struct MarkFile {
  int64_t time_ns = 0;  // Unix time in ns when the blobs were found unreferenced
  std::vector<MarkedPack> packs;
  std::vector<Id> retired_packs;
  bool empty() const { return packs.empty() && retired_packs.empty(); }
};
Bytes EncodeMarkFile(const Key32& data_key, const MarkFile& mark);
// Corruption on bad magic, failed authentication or malformed contents;
// NotSupported for another version.
Result<MarkFile> DecodeMarkFile(const Key32& data_key, ByteView file);

}  // namespace custos::storage
