// Measures the evidence ledger at scale: appending item records (the
// bodies the collection layer writes) and verifying the whole ledger as a
// stranger would (strict parse of every line, hash chain, RFC 9162 Merkle
// root, checkpoint signature).
//
// Usage: ledger_bench [N] [BATCH] [DIR]
//   N      records to append (default 1,000,000)
//   BATCH  records per group commit (one write + one fdatasync; default
//          1000). Also measured: 1000 records with one fdatasync each, the
//          cost of unbatched durable appends.
//   DIR    where the ledger goes (default a fresh directory under /var/tmp,
//          removed at the end)
// Not part of the test run (bench/, doc/design.md D39).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "evidence/checkpoint.h"
#include "evidence/ledger.h"

using namespace custos;
using namespace custos::evidence;
using nlohmann::json;

namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// An item record as collection writes it: a file with its statx before and after.
json ItemBody(uint64_t i) {
  std::string hex = Sha256(AsBytes(std::to_string(i))).Hex();
  json statx{{"mode", "0100644"}, {"uid", 33}, {"gid", 33}, {"size", 1000 + i % 5000}, {"ino", 100000 + i},
             {"mtime", "2026-11-20T03:14:15.926535897Z"}, {"ctime", "2026-11-20T03:14:15.926535897Z"},
             {"btime", "2026-01-02T10:00:00.000000000Z"}};
  return json{{"task", 3},
              {"host", "web01.office.example"},
              {"artifact", "file"},
              {"path", "/var/www/html/wp-content/uploads/2026/11/file-" + std::to_string(i) + ".php"},
              {"object", hex},
              {"size", 1000 + i % 5000},
              {"agent_sha256", hex},
              {"appliance_sha256", hex},
              {"before", statx},
              {"after", statx},
              {"changed", false}};
}

}  // namespace

int main(int argc, char** argv) {
  CryptoInit();
  uint64_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  uint64_t batch = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000;
  std::string dir;
  bool remove = false;
  if (argc > 3) {
    dir = argv[3];
  } else {
    char tmpl[] = "/var/tmp/custos-ledger-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir = tmpl;
    remove = true;
  }
  if (n == 0 || batch == 0) {
    std::fprintf(stderr, "usage: ledger_bench [N] [BATCH] [DIR]\n");
    return 2;
  }
  Actor agent{"agent", "web01.office.example", "sha256:" + Sha256(AsBytes(std::string("agent key"))).Hex()};
  int64_t now = 1795773600LL * 1000000000LL;

  // Unbatched durable appends: what one fdatasync per record costs here.
  {
    std::string path = dir + "/single.jsonl";
    auto l = Ledger::Create(path);
    if (!l.ok()) return std::fprintf(stderr, "%s\n", l.status().ToString().c_str()), 1;
    auto t = std::chrono::steady_clock::now();
    const uint64_t k = 1000;
    for (uint64_t i = 0; i < k; ++i) {
      if (!(*l)->Append("item", ItemBody(i), agent, now).ok()) return 1;
    }
    double s = Since(t);
    std::printf("append, one fdatasync per record: %llu records in %.2f s = %.0f records/s\n",
                (unsigned long long)k, s, k / s);
    ::unlink(path.c_str());
  }

  std::string path = dir + "/ledger.jsonl";
  auto l = Ledger::Create(path);
  if (!l.ok()) return std::fprintf(stderr, "%s\n", l.status().ToString().c_str()), 1;
  auto t = std::chrono::steady_clock::now();
  std::vector<NewRecord> records;
  for (uint64_t i = 0; i < n; i += batch) {
    records.clear();
    for (uint64_t j = i; j < std::min(n, i + batch); ++j) records.push_back({"item", ItemBody(j), agent});
    auto st = (*l)->AppendBatch(records, now + int64_t(i));
    if (!st.ok()) return std::fprintf(stderr, "%s\n", st.status().ToString().c_str()), 1;
  }
  double append_s = Since(t);
  struct stat sb;
  ::stat(path.c_str(), &sb);
  std::printf("append, batches of %llu: %llu records in %.2f s = %.0f records/s; ledger %.1f MiB (%.0f bytes/record)\n",
              (unsigned long long)batch, (unsigned long long)n, append_s, n / append_s, sb.st_size / 1048576.0,
              double(sb.st_size) / n);

  Key32 seed{};
  seed[0] = 1;
  SigningKey key = SigningKeyFromSeed(seed);
  Checkpoint cp{OriginForCase("2026-0001"), (*l)->size(), (*l)->root(), "2026-11-27T10:00:00.000000000Z"};
  SignedCheckpoint signed_cp = SignCheckpoint(key, cp);
  l->reset();

  // Verification as a stranger does it: from the bytes alone.
  t = std::chrono::steady_clock::now();
  auto data = ReadFile(path);
  if (!data.ok()) return 1;
  auto scan = ScanLedger(AsString(*data));
  if (!scan.ok()) return std::fprintf(stderr, "%s\n", scan.status().ToString().c_str()), 1;
  auto parsed = ParseCheckpoint(signed_cp.text);
  bool ok = parsed.ok() && parsed->size == scan->records && parsed->root == scan->root &&
            VerifySignature(key.public_key, AsBytes(signed_cp.text), signed_cp.signature);
  double verify_s = Since(t);
  std::printf("verify (read, strict parse, chain, Merkle root, checkpoint signature): %llu records in %.2f s = %.0f records/s (%.0f MiB/s): %s\n",
              (unsigned long long)scan->records, verify_s, scan->records / verify_s,
              sb.st_size / 1048576.0 / verify_s, ok ? "verified" : "FAILED");

  // Merkle root alone (leaf hashes over the same bytes), for scale.
  t = std::chrono::steady_clock::now();
  MerkleTree tree;
  std::string_view all = AsString(*data);
  for (size_t pos = 0; pos < all.size();) {
    size_t nl = all.find('\n', pos);
    tree.AppendLeaf(AsBytes(all.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  double merkle_s = Since(t);
  std::printf("Merkle root only: %.2f s = %.0f records/s\n", merkle_s, tree.size() / merkle_s);
  if (remove) {
    ::unlink(path.c_str());
    ::rmdir(dir.c_str());
  }
  return ok && tree.Root() == scan->root ? 0 : 1;
}
