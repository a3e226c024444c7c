// crash_writer: the workload that tests/storage/crash_test.cc kills at
// random moments to exercise the repository's crash-safety contract.
//
//   crash_writer REPO PASSWORD SEED [STATE_FILE]
//
// Opens the repository at REPO (the test creates it), takes the writer lock
// and then loops until killed: add a batch of blobs, then SaveSnapshot with a
// payload that lists every blob of the batch. Each commit is announced only
// after SaveSnapshot returned OK:
//   1. the snapshot ID is appended to STATE_FILE (one line, fsynced), then
//   2. "COMMITTED <snapshot-id-hex>" is printed to stdout and flushed.
// So every ID the test sees on stdout is also in STATE_FILE, and every ID in
// either must name a snapshot that survives the kill.
//
// Blob contents are a pure function of a 64-bit key (size, compressibility
// and bytes), so runs are reproducible from SEED. Keys come from three
// sources: fresh keys from (SEED, commit, position); keys reused from earlier
// in this run (duplicates inside one writer); and a small pool shared by all
// seeds (duplicates across writers, including blobs that a killed writer left
// in packs no index names yet).
//
// Payload (text, one item per line):
//   custos-crash-writer 1
//   seed <SEED>
//   commit <n>
//   blob <64 hex digits> <plaintext size>     (one line per blob of the batch)
//
// Exit status: never exits on its own while things work; 2 on a usage error,
// 1 on any storage error (with the Status on stderr).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/crypto.h"
#include "storage/repository.h"

using namespace custos;
using namespace custos::storage;

namespace {

// splitmix64 (Steele, Lea, Flood 2014): a fast, well-mixed generator whose
// output is a pure function of its state; enough for test contents.
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t s = a * 0x2545f4914f6cdd1dull + b;
  return SplitMix(s);
}

// Sizes from 100 B to 200 KiB, log-uniform so that both tiny blobs (several
// per pack) and blobs bigger than the 64 KiB test pack size are common.
constexpr double kMinBlob = 100, kMaxBlob = 200 * 1024;

Bytes BlobContent(uint64_t key) {
  uint64_t st = key;
  double u = double(SplitMix(st) >> 11) / double(1ull << 53);
  size_t size = size_t(kMinBlob * std::pow(kMaxBlob / kMinBlob, u));
  Bytes b(size);
  switch (SplitMix(st) % 3) {
    case 0: {  // random: incompressible, stored raw
      for (size_t i = 0; i < size; i += 8) {
        uint64_t v = SplitMix(st);
        for (size_t k = 0; k < 8 && i + k < size; ++k) b[i + k] = uint8_t(v >> (8 * k));
      }
      break;
    }
    case 1: {  // text-like: words from a small vocabulary, compresses well
      static const char* kWords[] = {"backup ", "restore ", "pack ",   "index ", "snapshot ",
                                     "blob ",   "custos ",  "verify ", "\n",     "0123 "};
      size_t i = 0;
      while (i < size) {
        const char* w = kWords[SplitMix(st) % 10];
        for (; *w && i < size; ++w) b[i++] = uint8_t(*w);
      }
      break;
    }
    default: {  // runs of one byte: compresses extremely well
      size_t i = 0;
      while (i < size) {
        uint8_t v = uint8_t(SplitMix(st));
        size_t run = 1 + SplitMix(st) % 4096;
        for (; run && i < size; --run) b[i++] = v;
      }
      break;
    }
  }
  return b;
}

// Keys of the pool shared by every seed.
constexpr uint64_t kSharedPoolSize = 40;
uint64_t SharedKey(uint64_t n) { return Mix(0x5ea7ed, n); }

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "crash_writer: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: crash_writer REPO PASSWORD SEED [STATE_FILE]\n");
    return 2;
  }
  CryptoInit();
  const std::string root = argv[1], password = argv[2];
  const uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  int state_fd = -1;
  if (argc == 5) {
    state_fd = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (state_fd < 0) {
      std::perror(argv[4]);
      return 1;
    }
  }

  auto repo = Repository::Open(NewLocalBackend(root), password);
  if (!repo.ok()) return Fail("open " + root, repo.status());
  Actor actor{"crash-host", "crash-user", "crash_writer " + std::to_string(seed)};
  // The previous writer was killed and reaped, so its flock is gone; retry
  // briefly anyway in case the test ever overlaps runs.
  Status locked = (*repo)->LockForWrite(actor);
  for (int i = 0; locked.code() == Code::kBusy && i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    locked = (*repo)->LockForWrite(actor);
  }
  if (!locked.ok()) return Fail("lock", locked);

  uint64_t rng = Mix(seed, 0xc0ffee);
  std::vector<uint64_t> used;  // keys of this run, for duplicates
  for (uint64_t commit = 0;; ++commit) {
    std::string payload =
        "custos-crash-writer 1\nseed " + std::to_string(seed) + "\ncommit " + std::to_string(commit) + "\n";
    int batch = 1 + int(SplitMix(rng) % 6);
    for (int j = 0; j < batch; ++j) {
      uint64_t pick = SplitMix(rng) % 100;
      uint64_t key;
      if (pick < 15 && !used.empty()) {
        key = used[SplitMix(rng) % used.size()];
      } else if (pick < 25) {
        key = SharedKey(SplitMix(rng) % kSharedPoolSize);
      } else {
        key = Mix(Mix(seed, commit), uint64_t(j) + 1);
      }
      used.push_back(key);
      Bytes content = BlobContent(key);
      auto added = (*repo)->AddBlob(BlobType::kData, content);
      if (!added.ok()) return Fail("add blob", added.status());
      payload += "blob " + Sha256(content).Hex() + " " + std::to_string(content.size()) + "\n";
    }
    auto snap = (*repo)->SaveSnapshot(AsBytes(payload));
    if (!snap.ok()) return Fail("save snapshot", snap.status());
    std::string hex = snap->Hex();
    if (state_fd >= 0) {
      std::string line = hex + "\n";
      if (::write(state_fd, line.data(), line.size()) != ssize_t(line.size()) || ::fsync(state_fd) != 0) {
        std::perror("state file");
        return 1;
      }
    }
    std::printf("COMMITTED %s\n", hex.c_str());
    std::fflush(stdout);
  }
}
