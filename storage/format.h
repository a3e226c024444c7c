// Constants of the repository format, version 1. The format itself is
// specified in doc/formats/repository.md; this header only names its
// constants (the doc is the authority when they disagree).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace custos::storage {

constexpr uint32_t kFormatVersion = 1;

// Magic numbers: 8 bytes at the start of each binary file.
constexpr std::string_view kPackMagic{"CSTPACK\x01", 8};
constexpr std::string_view kPackEndMagic{"CSTPEND\x01", 8};
constexpr std::string_view kIndexMagic{"CSTINDX\x01", 8};
constexpr std::string_view kSnapshotMagic{"CSTSNAP\x01", 8};
constexpr std::string_view kReportMagic{"CSTRPRT\x01", 8};
constexpr std::string_view kHoldMagic{"CSTHOLD\x01", 8};
constexpr std::string_view kMarkMagic{"CSTMARK\x01", 8};

// Associated data that binds each box to its role (doc: "Boxes and AD").
constexpr std::string_view kBlobAd = "custos.blob.v1";
constexpr std::string_view kPackHeaderAd = "custos.pack-header.v1";
constexpr std::string_view kIndexAd = "custos.index.v1";
constexpr std::string_view kSnapshotAd = "custos.snapshot.v1";
constexpr std::string_view kReportAd = "custos.report.v1";
constexpr std::string_view kHoldAd = "custos.hold.v1";
constexpr std::string_view kMarkAd = "custos.mark.v1";
constexpr std::string_view kKeySlotAd = "custos.keyslot.v1";

// Text magic of the JSON files (config, key slots).
constexpr std::string_view kConfigMagic = "custos-repository";
constexpr std::string_view kKeySlotMagic = "custos-key";

// Pack header entry: type u8, compression u8, reserved u16, offset u32,
// stored length u32, raw length u32, blob id 32 bytes.
constexpr size_t kPackEntrySize = 48;
// Pack trailer: header box length u32, then kPackEndMagic.
constexpr size_t kPackTrailerSize = 12;

// Upper bound on one blob's plaintext. Chunks are at most 8 MiB; tree blobs
// of huge directories are split by the snapshot layer before this bound.
constexpr uint32_t kMaxBlobSize = 256u << 20;
// Default target size of a pack: "tens of MiB" (ARCHITECTURE.md) keeps the
// file count low (79 000 files of source compress into about ten packs)
// while an interrupted backup loses at most this much unfinished work.
constexpr uint32_t kDefaultPackSize = 32u << 20;
// Packs stay well below 4 GiB so that u32 offsets suffice.
constexpr uint32_t kMaxPackSize = 1u << 30;

// zstd level 3 (zstd's default): about 400 MB/s per core with a ratio near
// 5.5 on source text (DEPENDENCIES.md).
constexpr int kDefaultZstdLevel = 3;

}  // namespace custos::storage
