// ingest_bench - what the appliance spends per blob it ingests from an agent
// (issue 5's throughput): zstd decompress, SHA-256 check and seal, each on
// its own and together, over the files of a real tree cut into blobs of at
// most 1 MiB and compressed at level 3 as an agent sends them.
//
// Usage: ingest_bench DIR [MAX_MIB]   (default MAX_MIB 400)
// Output: one line per phase: seconds, MiB/s of plaintext, microseconds per blob.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "storage/blob.h"

using namespace custos;
namespace fs = std::filesystem;

namespace {

struct Wire {
  Bytes frame;  // zstd frame, or empty when sent plain
  Bytes plain;
  uint32_t size = 0;
  Id id;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <typename F>
void Phase(const char* name, const std::vector<Wire>& blobs, uint64_t bytes, F&& f) {
  double t0 = Now();
  for (const auto& w : blobs) f(w);
  double t = Now() - t0;
  std::printf("%-28s %7.3f s %8.1f MiB/s %7.2f us/blob\n", name, t, bytes / t / 1048576.0, t * 1e6 / blobs.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ingest_bench DIR [MAX_MIB]\n");
    return 2;
  }
  CryptoInit();
  uint64_t max = (argc > 2 ? std::stoull(argv[2]) : 400) << 20;
  std::vector<Wire> blobs;
  uint64_t bytes = 0, wire = 0;
  for (auto it = fs::recursive_directory_iterator(argv[1]); it != fs::end(it) && bytes < max; ++it) {
    if (!it->is_regular_file() || it->is_symlink()) continue;
    auto data = ReadFile(it->path().string());
    if (!data.ok()) continue;
    for (size_t off = 0; off < data->size() || (off == 0 && data->empty()); off += 1 << 20) {
      ByteView piece(data->data() + off, std::min<size_t>(data->size() - off, 1 << 20));
      Wire w;
      w.size = uint32_t(piece.size());
      w.id = Sha256(piece);
      storage::ZstdCompress(piece, 3, &w.frame);
      w.plain.assign(piece.begin(), piece.end());
      wire += w.frame.empty() ? w.plain.size() : w.frame.size();
      bytes += piece.size();
      blobs.push_back(std::move(w));
      if (data->empty()) break;
    }
  }
  std::printf("%zu blobs, %.1f MiB plaintext, %.1f MiB on the wire\n", blobs.size(), bytes / 1048576.0,
              wire / 1048576.0);
  Key32 key = RandomKey();
  size_t sink = 0;
  Phase("decompress", blobs, bytes, [&](const Wire& w) {
    if (!w.frame.empty()) sink += storage::ZstdDecompress(w.frame, w.size)->size();
  });
  Phase("sha256 (one call)", blobs, bytes, [&](const Wire& w) {
    sink += Sha256(w.plain).bytes[0];
  });
  Phase("seal frame", blobs, bytes, [&](const Wire& w) {
    ByteView f = w.frame.empty() ? ByteView(w.plain) : ByteView(w.frame);
    sink += storage::EncodeCompressedBlob(key, storage::BlobType::kData, f, w.size, w.id).box.size();
  });
  Phase("decompress+sha256+seal", blobs, bytes, [&](const Wire& w) {
    if (w.frame.empty()) {
      if (Sha256(w.plain) != w.id) std::abort();
      sink += storage::EncodeBlob(key, storage::BlobType::kData, w.plain, w.id, 0).box.size();
      return;
    }
    auto plain = storage::ZstdDecompress(w.frame, w.size);
    if (Sha256(*plain) != w.id) std::abort();
    sink += storage::EncodeCompressedBlob(key, storage::BlobType::kData, w.frame, w.size, w.id).box.size();
  });
  Phase("verify (VerifyFrame)", blobs, bytes, [&](const Wire& w) {
    if (w.frame.empty()) return;
    if (!storage::VerifyFrame(w.frame, w.size, w.id).ok()) std::abort();
  });
  return sink == 42 ? 1 : 0;  // keeps the work from being optimised away
}
