// Writes small valid inputs for each fuzz target: make_seeds OUT_DIR
// creates OUT_DIR/<target>/<name> files. Each seed starts with the target's
// selector byte (see the comment at the top of each *_fuzzer.cc), and every
// sealed seed uses the fuzzers' fixed key. The committed corpus under
// fuzz/corpus/ was made with this program; .ci/run adds a fresh set to a
// temporary copy before fuzzing, so the seeds follow format changes.
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "base/crypto.h"
#include "base/file_util.h"
#include "fuzz/fuzz_util.h"
#include "storage/format.h"
#include "storage/index_file.h"
#include "storage/keys.h"
#include "evidence/case_store.h"
#include "evidence/checkpoint.h"
#include "evidence/ledger.h"
#include "restore/report.h"
#include "snapshot/manifest.h"
#include "snapshot/atimes.h"
#include "snapshot/tree.h"
#include "storage/blob.h"
#include "storage/pack.h"

using namespace custos;
using namespace custos::storage;
using custos::fuzz::FixedKey;

namespace {

std::string g_out;

// Writes one seed; selector < 0 writes the body alone (targets without modes).
void Write(const std::string& target, const std::string& name, int selector, ByteView body) {
  std::string dir = g_out + "/" + target;
  ::mkdir(g_out.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::perror(path.c_str());
    std::exit(1);
  }
  if (selector >= 0) std::fputc(selector, f);
  if (!body.empty() && std::fwrite(body.data(), 1, body.size(), f) != body.size()) std::exit(1);
  if (std::fclose(f) != 0) std::exit(1);
}

// A seed that does not parse is a bug in this program or in the parser.
void Expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "make_seeds: %s does not parse\n", what);
    std::exit(1);
  }
}

Bytes Concat(std::initializer_list<ByteView> parts) {
  Bytes out;
  for (ByteView p : parts) Append(out, p);
  return out;
}

Bytes U16(uint16_t v) { Bytes b; PutU16(b, v); return b; }
Bytes U32(uint32_t v) { Bytes b; PutU32(b, v); return b; }
Bytes U64(uint64_t v) { Bytes b; PutU64(b, v); return b; }

const std::string kSmall = "hello, custos";
const std::string kText(200, 'a');  // compresses

PackBuilder::Finished SmallPack() {
  PackBuilder b;
  b.Add(EncodeBlob(FixedKey(), BlobType::kData, AsBytes(kSmall), 3));
  b.Add(EncodeBlob(FixedKey(), BlobType::kTree, AsBytes(kText), 3));
  return b.Finish(FixedKey());
}

void PackSeeds() {
  const std::string t = "pack_header_fuzzer";
  auto pack = SmallPack();
  Expect(ParsePackHeader(FixedKey(), pack.bytes, pack.bytes.size()).ok(), "pack");
  Write(t, "whole-pack", 0, pack.bytes);
  Write(t, "tail-and-size", 1, Concat({U64(pack.bytes.size()), pack.bytes}));
  Bytes header;
  PutU32(header, kFormatVersion);
  PutU32(header, uint32_t(pack.entries.size()));
  EncodeEntries(pack.entries, header);
  uint32_t filler = 0;
  for (const auto& e : pack.entries) filler += e.stored_length;
  Write(t, "header-plaintext", 2, Concat({U16(uint16_t(filler)), header}));
  Bytes entries;
  EncodeEntries(pack.entries, entries);
  Write(t, "entries", 3, Concat({U32(uint32_t(pack.entries.size())), entries}));
}

void IndexSeeds() {
  const std::string t = "index_file_fuzzer";
  auto pack = SmallPack();
  IndexFile index;
  index.supersedes.push_back(Sha256(AsBytes("an older index file")));
  index.packs.push_back({pack.id, pack.entries});
  index.packs.push_back({Sha256(AsBytes("an empty pack")), {}});
  Bytes file = EncodeIndexFile(FixedKey(), index);
  Expect(DecodeIndexFile(FixedKey(), file).ok(), "index file");
  Write(t, "index-file", 0, file);
  auto plain = Open(FixedKey(), ByteView(file).subspan(kIndexMagic.size()), AsBytes(kIndexAd));
  Expect(plain.ok(), "index box");
  Write(t, "index-plaintext", 1, *plain);
  Bytes entries;
  EncodeEntries(pack.entries, entries);
  Write(t, "entries", 2, Concat({U32(uint32_t(pack.entries.size())), entries}));
}

void MarkSeeds() {
  const std::string t = "mark_file_fuzzer";
  MarkFile mark;
  mark.time_ns = 1800000000000000000;
  mark.packs.push_back({Sha256(AsBytes("a pack")), {Sha256(AsBytes("blob 1")), Sha256(AsBytes("blob 2"))}});
  mark.packs.push_back({Sha256(AsBytes("another pack")), {}});
  mark.retired_packs.push_back(Sha256(AsBytes("a repacked pack")));
  Bytes file = EncodeMarkFile(FixedKey(), mark);
  Expect(DecodeMarkFile(FixedKey(), file).ok(), "mark file");
  Write(t, "mark-file", 0, file);
  auto plain = Open(FixedKey(), ByteView(file).subspan(kMarkMagic.size()), AsBytes(kMarkAd));
  Expect(plain.ok(), "mark box");
  Write(t, "mark-plaintext", 1, *plain);
}

void KeySlotSeeds() {
  const std::string t = "key_slot_fuzzer";
  std::string repo_id(64, 'a');
  std::string recovery = MakeRecoveryKey();
  KeySlot meta;
  meta.label = "recovery";
  meta.created = "2024-01-02T03:04:05Z";
  meta.host = "office";
  meta.user = "admin";
  auto rslot = WrapMaster(FixedKey(), repo_id, SlotKind::kRecovery, recovery, {}, meta);
  meta.label = "alice";
  auto pslot = WrapMaster(FixedKey(), repo_id, SlotKind::kPassphrase, "pw", Argon2Params{1, 8 << 10}, meta);
  Expect(rslot.ok() && pslot.ok(), "new key slots");
  for (const auto* s : {&*rslot, &*pslot}) {
    std::string kind = s->kind == SlotKind::kRecovery ? "recovery" : "passphrase";
    std::string body = EncodeKeySlotBody(*s);
    Expect(DecodeKeySlotBody(body).ok(), "key slot");
    Write(t, kind + "-file", 0, AsBytes(EncodeSealedText(body, FixedKey())));
    Write(t, kind + "-body", 1, AsBytes(body));
  }
  Expect(ParseRecoveryKey(recovery).has_value(), "recovery key");
  Write(t, "recovery-key", 2, AsBytes(recovery));
}

void ConfigSeeds() {
  const std::string t = "config_fuzzer";
  RepoConfig c;
  c.id = std::string(64, 'b');
  c.created = "2024-01-02T03:04:05Z";
  c.pack_size = kDefaultPackSize;
  c.zstd_level = kDefaultZstdLevel;
  c.chunk_min = 512 << 10;
  c.chunk_avg = 1 << 20;
  c.chunk_max = 8 << 20;
  std::string body = EncodeConfigBody(c);
  Expect(DecodeConfigBody(body).ok(), "config");
  Write(t, "config-file", 0, AsBytes(EncodeSealedText(body, FixedKey())));
  Write(t, "config-body", 1, AsBytes(body));
}

void SnapshotSeeds() {
  const std::string t = "snapshot_fuzzer";
  std::string payload = R"({"time":"2024-01-02T03:04:05Z","tree":"00"})";
  Bytes file = EncodeSnapshotFile(FixedKey(), AsBytes(payload));
  Expect(DecodeSnapshotFile(FixedKey(), file).ok(), "snapshot");
  Write(t, "snapshot-file", 0, file);
  Write(t, "snapshot-plaintext", 1, Concat({U32(kFormatVersion), AsBytes(payload)}));
  Write(t, "payload", 2, AsBytes(payload));
}

void BlobSeeds() {
  const std::string t = "blob_fuzzer";
  for (const auto& [name, text] : {std::pair{"small", kSmall}, std::pair{"zstd", kText}}) {
    EncodedBlob b = EncodeBlob(FixedKey(), BlobType::kData, AsBytes(text), 3);
    const PackEntry& e = b.entry;
    Expect(DecodeBlob(FixedKey(), e, b.box).ok(), "blob");
    Bytes head = {uint8_t(e.type), uint8_t(e.compression)};
    Write(t, std::string(name) + "-box", 0, Concat({head, U32(e.raw_length), e.id.bytes, b.box}));
    // The payload inside the box: the zstd frame or the plaintext.
    Bytes ad(kBlobAd.begin(), kBlobAd.end());
    ad.push_back(uint8_t(e.type));
    ad.push_back(uint8_t(e.compression));
    Append(ad, e.id.bytes);
    auto payload = Open(FixedKey(), b.box, ad);
    Expect(payload.ok(), "blob box");
    uint8_t flags = e.compression == Compression::kNone ? 2 : 1;
    Bytes head1 = {uint8_t(e.type), uint8_t(e.compression), flags};
    Write(t, std::string(name) + "-payload", 1, Concat({head1, U32(e.raw_length), *payload}));
    Bytes head2 = {uint8_t(BlobType::kData), 3};
    Write(t, std::string(name) + "-plaintext", 2, Concat({head2, AsBytes(text)}));
  }
  Bytes frame;
  Expect(ZstdCompress(AsBytes(kText), 3, &frame), "zstd frame");
  Expect(VerifyFrame(frame, kText.size(), Sha256(AsBytes(kText))).ok(), "wire frame");
  Write(t, "wire-frame", 3, Concat({Bytes{1}, U32(uint32_t(kText.size())), frame}));
}

void TreeSeeds() {
  using namespace custos::snapshot;
  Tree tree;
  Node dir;
  dir.name = "etc";
  dir.type = NodeType::kDir;
  dir.mode = 0755;
  dir.user = dir.group = "root";
  dir.mtime = {1700000000, 5};
  dir.subtree = Sha256(AsBytes("a subtree"));
  Node file;
  file.name = "hosts";
  file.type = NodeType::kFile;
  file.mode = 0644;
  file.uid = file.gid = 1000;
  file.user = file.group = "alice";
  file.size = 300;
  file.nlink = 1;
  file.content = {{Sha256(AsBytes("chunk 1")), 200}, {Sha256(AsBytes("chunk 2")), 100}};
  file.holes = {{4096, 4096}};
  file.xattrs = {{"user.note", "x"}};
  file.file_sha256 = Sha256(AsBytes("whole file"));
  Node link;
  link.name = "link";
  link.type = NodeType::kSymlink;
  link.mode = 0777;
  link.link_target = "../hosts";
  tree.nodes = {dir, file, link};
  Bytes blob = EncodeTree(tree);
  Expect(DecodeTree(blob).ok(), "tree");
  Write("tree_fuzzer", "three-nodes", -1, blob);
  Write("tree_fuzzer", "empty", -1, EncodeTree(Tree{}));

  AtimeCollector atimes;
  std::vector<Timestamp> taken;
  atimes.Take(&tree, &taken);
  atimes.Add(Sha256(EncodeTree(tree)), taken);
  atimes.Add(Sha256(AsBytes("another tree")), std::vector<Timestamp>{{1700000000, 1}, {1699999999, 999999999}});
  Bytes table = atimes.Encode();
  Expect(AtimeTable::Decode(table).ok(), "atime table");
  Write("atimes_fuzzer", "two-trees", -1, table);
}

void ManifestSeeds() {
  using namespace custos::snapshot;
  Manifest m;
  m.time_ns = 1700000000123456789;
  m.time = FormatTimeNs(m.time_ns);
  m.host = "office";
  m.user = "root";
  m.paths = {"/etc", std::string("/srv/\xff", 6)};  // the second is not UTF-8: base64 in JSON
  m.tags = {"nightly"};
  m.tree = Sha256(AsBytes("a tree"));
  m.parent = Sha256(AsBytes("the parent snapshot"));
  m.error_samples = {"/srv/locked: permission denied"};
  m.summary.files_new = 3;
  m.summary.bytes_read = 12345;
  m.summary.duration_s = 1.5;
  m.program_version = "0.1.0";
  Bytes payload = EncodeManifest(m);
  Expect(DecodeManifest(payload).ok(), "manifest");
  Write("manifest_fuzzer", "manifest", -1, payload);
}

void ReportSeeds() {
  using namespace custos::restore;
  Key32 seed{};
  seed[0] = 7;
  nlohmann::json body{{"type", kRestoreReportType}, {"kind", "drill"}, {"result", "partial"},
                      {"snapshot", {{"id", "ab"}, {"host", "office"}, {"paths", {"/etc"}}}},
                      {"counts", {{"files_restored", 3}, {"files_failed", 1}}},
                      {"failures", {{{"path", "/etc/x"}, {"reason", "blob damaged"}}}},
                      {"drill", {{"mode", "sample"}, {"files_sampled", 3}, {"estimated_full_restore_s", 12.5}}}};
  std::string payload = EncodeSignedReport(SignReport(SigningKeyFromSeed(seed), body));
  Expect(DecodeSignedReport(AsBytes(payload)).ok(), "report");
  Write("report_fuzzer", "report", -1, AsBytes(payload));
}

// Evidence: ledger lines, a checkpoint text, a whole ledger, and a small
// exported bundle (made in a temporary store with a fixed key and clock).
void EvidenceSeeds() {
  using namespace custos::evidence;
  char tmpl[] = "/tmp/custos-seeds-XXXXXX";
  if (!::mkdtemp(tmpl)) std::exit(1);
  std::string dir = tmpl;
  Key32 seed{};
  seed[0] = 9;
  StoreOptions o;
  int64_t t = 1795773600LL * 1000000000LL;
  o.clock = [&t] { return t += 1000000000LL; };
  o.appliance_name = "seed";
  {
    auto store = CaseStore::Open(dir + "/ev", SigningKeyFromSeed(seed), o);
    Expect(store.ok(), "evidence store");
    auto c = (*store)->OpenCase("seed case", "2026-11-27T08:00:00Z", "REF-1", evidence::Actor{"operator", "alice", ""});
    Expect(c.ok(), "case");
    auto w = (*store)->NewObject();
    Expect(w.ok() && (*w)->Write(AsBytes(std::string("0|/etc/passwd|1|r/rrw-r--r--|0|0|10|1|2|3|0\n"))).ok(), "object");
    auto obj = (*w)->Commit();
    Expect(obj.ok(), "object");
    evidence::Actor agent{"agent", "web01", "sha256:" + std::string(64, 'b')};
    Expect((*store)->Append(c->id, "item", nlohmann::json{{"host", "web01"}, {"artifact", "timeline"}, {"object", *obj}}, agent).ok(), "item");
    Expect((*store)->Append(c->id, "task.end", nlohmann::json{{"task", 1}}, agent).ok(), "task.end");
    Expect((*store)->Export(c->id, dir + "/b.tar", evidence::Actor{"operator", "alice", ""}).ok(), "export");
    std::string ledger_path = (*store)->CaseDir(c->id) + "/ledger.jsonl";
    auto ledger = ReadFile(ledger_path);
    Expect(ledger.ok(), "ledger");
    std::string text(ledger->begin(), ledger->end());
    Expect(ScanLedger(text).ok(), "ledger scan");
    Write("ledger_line_fuzzer", "line", 0, AsBytes(text.substr(0, text.find('\n'))));
    size_t second = text.find('\n') + 1;
    Write("ledger_line_fuzzer", "item-line", 0, AsBytes(text.substr(second, text.find('\n', second) - second)));
    auto cp = ReadFile((*store)->CaseDir(c->id) + "/checkpoints/00000001.txt");
    Expect(cp.ok() && ParseCheckpoint(AsString(*cp)).ok(), "checkpoint");
    Write("ledger_line_fuzzer", "checkpoint", 1, *cp);
    Write("ledger_line_fuzzer", "ledger", 2, *ledger);
    auto tar = ReadFile(dir + "/b.tar");
    Expect(tar.ok(), "bundle");
    Write("bundle_fuzzer", "bundle", -1, *tar);
  }
  std::string rm = "rm -rf '" + dir + "'";
  if (std::system(rm.c_str()) != 0) std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  CryptoInit();
  g_out = argv[1];
  PackSeeds();
  IndexSeeds();
  MarkSeeds();
  KeySlotSeeds();
  ConfigSeeds();
  SnapshotSeeds();
  BlobSeeds();
  TreeSeeds();
  ManifestSeeds();
  ReportSeeds();
  EvidenceSeeds();
  return 0;
}
