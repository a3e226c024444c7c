#include "evidence/verify.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>

#include "base/crypto.h"
#include "base/file_util.h"
#include "evidence/bundle.h"
#include "evidence/checkpoint.h"
#include "evidence/ledger.h"
#include "evidence/merkle.h"
#include "evidence/timestamp.h"

namespace custos::evidence {

using nlohmann::json;

namespace {

constexpr size_t kReadBlock = 1 << 16;
constexpr size_t kMaxNameBytes = 4096;

struct Member {
  uint64_t size = 0;
  Hash sha256;
  bool kept = false;
  std::string data;  // for the files the checks read (not objects, timelines)
};

// Files whose bytes the verifier keeps (all small but the ledger).
bool KeepBytes(const std::string& inner) {
  return inner == "ledger.jsonl" || inner == "SHA256SUMS" || inner == "SHA256SUMS.sig" || inner == "pubkey.pem" ||
         inner == "tsa-ca.pem" || inner.rfind("checkpoints/", 0) == 0;
}

// Rejects names a bundle never has and an extractor must not follow.
std::string BadName(const std::string& name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxNameBytes) return "name longer than 4096 bytes";
  if (name[0] == '/') return "absolute name";
  if (!IsValidUtf8(name)) return "name is not UTF-8";
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    if (slash == std::string::npos) slash = name.size();
    std::string_view part(name.data() + pos, slash - pos);
    if (part == "..") return "name contains \"..\"";
    if (part == "." ) return "name contains \".\"";
    if (part.empty() && slash != name.size()) return "name contains an empty component";
    for (char c : part) {
      if (uint8_t(c) < 0x20 || c == 0x7f || c == '\\') return "name contains a control character or backslash";
    }
    pos = slash + 1;
  }
  return "";
}

class Verifier {
 public:
  Verifier(const VerifyOptions& o, VerifyReport& r) : opt_(o), rep_(r) {}

  void Problem(std::string s) { rep_.problems.push_back(std::move(s)); }

  // Reads every member; false if the tar itself is unusable.
  bool ReadTar(struct archive* a) {
    archive_entry* e = nullptr;
    uint64_t count = 0;
    for (;;) {
      int r = archive_read_next_header(a, &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        Problem(std::string("the tar does not parse: ") + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
        return false;
      }
      if (++count > opt_.max_members) {
        Problem("the tar has more than " + std::to_string(opt_.max_members) + " members");
        return false;
      }
      const char* p = archive_entry_pathname(e);
      std::string name = p ? p : "";
      bool dir = archive_entry_filetype(e) == AE_IFDIR;
      if (dir && !name.empty() && name.back() == '/') name.pop_back();
      std::string bad = BadName(name);
      if (!bad.empty()) {
        Problem("tar member '" + EscapeForDisplay(name) + "': " + bad);
        return false;
      }
      auto slash = name.find('/');
      std::string top = name.substr(0, slash);
      if (root_.empty()) root_ = top;
      if (top != root_) {
        Problem("tar member '" + EscapeForDisplay(name) + "' is outside the bundle folder " + root_ + "/");
        return false;
      }
      if (dir) continue;
      if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || archive_entry_symlink(e)) {
        Problem("tar member '" + EscapeForDisplay(name) + "' is not a regular file");
        return false;
      }
      if (slash == std::string::npos) {
        Problem("tar member '" + EscapeForDisplay(name) + "' is outside the bundle folder");
        return false;
      }
      std::string inner = name.substr(slash + 1);
      if (members_.count(inner)) {
        Problem("tar member '" + EscapeForDisplay(name) + "' appears twice");
        return false;
      }
      Member& m = members_[inner];
      m.kept = KeepBytes(inner);
      uint64_t limit = inner == "ledger.jsonl" ? opt_.max_ledger_bytes : opt_.max_small_file_bytes;
      if (m.kept && archive_entry_size_is_set(e) && uint64_t(archive_entry_size(e)) > limit) {
        Problem(inner + ": larger than the verifier's limit of " + std::to_string(limit) + " bytes");
        return false;
      }
      Sha256Stream h;
      Bytes buf(kReadBlock);
      for (;;) {
        la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
        if (n < 0) {
          Problem(inner + ": unreadable in the tar: " + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
          return false;
        }
        if (n == 0) break;
        ByteView chunk(buf.data(), size_t(n));
        h.Update(chunk);
        m.size += uint64_t(n);
        if (m.kept) {
          if (m.size > limit) {
            Problem(inner + ": larger than the verifier's limit of " + std::to_string(limit) + " bytes");
            return false;
          }
          m.data.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
        }
      }
      m.sha256 = h.Finish();
    }
    if (root_.empty() || members_.empty()) {
      Problem("the tar holds no bundle (no files)");
      return false;
    }
    return true;
  }

  void Check() {
    if (root_.rfind("custos-case-", 0) == 0) rep_.case_id = root_.substr(12);
    else Problem("bundle folder '" + EscapeForDisplay(root_) + "' is not custos-case-<id>");
    for (const char* f : {"ledger.jsonl", "SHA256SUMS", "SHA256SUMS.sig", "pubkey.pem"}) {
      if (!members_.count(f)) Problem(std::string(f) + " is missing from the bundle");
    }
    CheckKey();
    CheckSums();
    CheckLedger();
    PrecomputeRoots();
    CheckCheckpoints();
    CheckObjects();
    CheckEarlier();
  }

 private:
  const Member* Find(const std::string& inner) const {
    auto it = members_.find(inner);
    return it == members_.end() ? nullptr : &it->second;
  }

  void CheckKey() {
    const Member* pem = Find("pubkey.pem");
    if (!pem) return;
    auto key = ParsePublicKeyPem(pem->data);
    if (!key.ok()) {
      Problem("pubkey.pem: " + key.status().message());
      return;
    }
    key_ = *key;
    have_key_ = true;
    rep_.key_fingerprint = KeyFingerprint(key_);
    if (!opt_.expect_key.empty() && opt_.expect_key != rep_.key_fingerprint) {
      Problem("signed by key " + rep_.key_fingerprint + ", not the expected " + opt_.expect_key +
              " (a checkpoint or bundle signed by another key)");
    }
  }

  bool SigOk(std::string_view data, const std::string& sig) const {
    return have_key_ && sig.size() == 64 && VerifySignature(key_, AsBytes(data), AsBytes(sig));
  }

  void CheckSums() {
    const Member* sums = Find("SHA256SUMS");
    const Member* sig = Find("SHA256SUMS.sig");
    if (!sums) return;
    if (sig && have_key_ && !SigOk(sums->data, sig->data)) {
      Problem("SHA256SUMS.sig: does not verify with pubkey.pem (SHA256SUMS altered, or signed by another key)");
    }
    std::set<std::string> listed;
    size_t pos = 0, lineno = 0;
    const std::string& d = sums->data;
    while (pos < d.size()) {
      size_t nl = d.find('\n', pos);
      if (nl == std::string::npos) nl = d.size();
      std::string line = d.substr(pos, nl - pos);
      pos = nl + 1;
      ++lineno;
      if (line.size() < 67 || line[64] != ' ' || line[65] != ' ' || !IsLowerHex(line.substr(0, 64))) {
        Problem("SHA256SUMS line " + std::to_string(lineno) + " is not \"<sha256>  <path>\"");
        continue;
      }
      std::string path = line.substr(66);
      if (!listed.insert(path).second) Problem("SHA256SUMS lists " + EscapeForDisplay(path) + " twice");
      const Member* m = Find(path);
      if (!m) {
        Problem(EscapeForDisplay(path) + ": listed in SHA256SUMS but missing from the bundle (deleted)");
        continue;
      }
      if (m->sha256.Hex() != line.substr(0, 64)) {
        Problem(EscapeForDisplay(path) + ": SHA-256 " + m->sha256.Hex() + " differs from SHA256SUMS (file altered or swapped)");
      }
    }
    for (const auto& [name, m] : members_) {
      if (name == "SHA256SUMS" || name == "SHA256SUMS.sig") continue;
      if (!listed.count(name)) Problem(EscapeForDisplay(name) + ": not listed in SHA256SUMS (added to the bundle)");
    }
  }

  void CheckLedger() {
    const Member* l = Find("ledger.jsonl");
    if (!l) return;
    const std::string& d = l->data;
    // Leaf hashes of every newline-terminated line, whatever it holds, so
    // checkpoints can still be compared after a record that does not parse.
    for (size_t pos = 0; pos < d.size();) {
      size_t nl = d.find('\n', pos);
      if (nl == std::string::npos) break;
      leaves_.push_back(LeafHash(AsBytes(std::string_view(d).substr(pos, nl - pos))));
      pos = nl + 1;
    }
    ScanOptions opts;
    opts.on_record = [&](const Record& r, std::string_view) -> Status {
      for (const auto& o : ObjectReferences(r.body)) refs_.emplace(o, r.header.seq);
      if (r.header.type == "checkpoint") cp_records_.push_back({r.header.seq, r.body});
      if (r.header.type == "case.open") {
        auto it = r.body.find("appliance_key");
        if (it != r.body.end() && it->is_string() && rep_.key_fingerprint.size() && *it != rep_.key_fingerprint) {
          Problem("ledger record " + std::to_string(r.header.seq) + ": case opened under appliance key " +
                  it->get<std::string>() + ", but the bundle is signed by " + rep_.key_fingerprint);
        }
      }
      return Status::Ok();
    };
    auto scan = ScanLedger(d, opts);
    if (!scan.ok()) {
      Problem("ledger.jsonl: " + scan.status().message());
      ledger_ok_ = false;
    } else {
      rep_.records = scan->records;
      if (scan->torn_bytes) Problem("ledger.jsonl: the last line has no newline (torn or cut)");
    }
  }

  void CheckCheckpoints() {
    std::map<uint64_t, std::string> by_size;  // size -> base name
    for (const auto& [name, m] : members_) {
      if (name.rfind("checkpoints/", 0) != 0) continue;
      auto dot = name.rfind('.');
      std::string ext = dot == std::string::npos ? "" : name.substr(dot);
      std::string base = name.substr(0, dot);
      if (ext != ".txt" && ext != ".sig" && ext != ".tsr") {
        Problem(EscapeForDisplay(name) + ": not a checkpoint file (.txt, .sig, .tsr)");
        continue;
      }
      if (ext != ".txt") {
        if (!Find(base + ".txt")) Problem(EscapeForDisplay(name) + ": no checkpoint text beside it");
        continue;
      }
      auto cp = ParseCheckpoint(m.data);
      if (!cp.ok()) {
        Problem(name + ": " + cp.status().message());
        continue;
      }
      ++rep_.checkpoints;
      if (base != CheckpointBaseName(cp->size)) Problem(name + ": named for another size than its " + std::to_string(cp->size));
      if (!rep_.case_id.empty() && cp->origin != OriginForCase(rep_.case_id)) {
        Problem(name + ": origin " + EscapeForDisplay(cp->origin) + " is not this case's (" + OriginForCase(rep_.case_id) + ")");
      }
      const Member* sig = Find(base + ".sig");
      if (!sig) {
        Problem(base + ".sig is missing");
      } else if (have_key_ && !SigOk(m.data, sig->data)) {
        Problem(base + ".sig: does not verify with the bundle's key (checkpoint altered, or signed by another key)");
      }
      if (const Member* tsr = Find(base + ".tsr")) {
        const Member* ca = Find("tsa-ca.pem");
        auto ts = CheckTimestamp(AsBytes(tsr->data), AsBytes(m.data), ca ? std::string_view(ca->data) : "");
        if (!ts.ok()) {
          Problem(base + ".tsr: " + ts.status().message());
        } else {
          ++rep_.timestamps;
          rep_.notes.push_back(base + ".tsr: timestamped " + ts->time + (ca ? " (token verified against tsa-ca.pem)" : " (no tsa-ca.pem: signature not checked)"));
        }
      }
      if (cp->size > leaves_.size()) {
        Problem(name + " covers " + std::to_string(cp->size) + " records but ledger.jsonl has " +
                std::to_string(leaves_.size()) + " (ledger cut short)");
      } else if (RootAt(cp->size) != cp->root) {
        Problem(name + ": root is not the Merkle root of the first " + std::to_string(cp->size) +
                " ledger lines (records altered, removed or reordered)");
      }
      by_size[cp->size] = base;
      if (cp->size >= rep_.latest_size) {
        rep_.latest_size = cp->size;
        rep_.latest_root = Base64Encode(cp->root.bytes);
      }
    }
    if (rep_.checkpoints == 0) Problem("the bundle holds no checkpoint");
    // The ledger's checkpoint records and the files must agree.
    std::set<uint64_t> recorded;
    for (const auto& [seq, body] : cp_records_) {
      auto size_it = body.find("size");
      if (size_it == body.end() || !size_it->is_number_unsigned()) {
        Problem("ledger record " + std::to_string(seq) + ": checkpoint record without a size");
        continue;
      }
      uint64_t size = size_it->get<uint64_t>();
      recorded.insert(size);
      if (size != seq) Problem("ledger record " + std::to_string(seq) + ": checkpoint of size " + std::to_string(size) + " recorded out of place");
      auto it = by_size.find(size);
      if (it == by_size.end()) {
        Problem("ledger record " + std::to_string(seq) + ": names checkpoint " + CheckpointBaseName(size) + ".txt, missing from the bundle");
        continue;
      }
      const Member* txt = Find(it->second + ".txt");
      auto cp = ParseCheckpoint(txt->data);
      auto root = body.find("root");
      if (cp.ok() && (root == body.end() || !root->is_string() || *root != Base64Encode(cp->root.bytes))) {
        Problem("ledger record " + std::to_string(seq) + ": root differs from " + it->second + ".txt");
      }
      auto sig = body.find("signature");
      const Member* sig_file = Find(it->second + ".sig");
      if (sig_file && (sig == body.end() || !sig->is_string() || *sig != Base64Encode(AsBytes(sig_file->data)))) {
        Problem("ledger record " + std::to_string(seq) + ": signature differs from " + it->second + ".sig (signature replaced)");
      }
    }
    if (ledger_ok_) {
      for (const auto& [size, base] : by_size) {
        if (!recorded.count(size)) Problem(base + ".txt: no checkpoint record in the ledger names it");
      }
    }
  }

  void CheckObjects() {
    std::set<std::string> referenced;
    for (const auto& [obj, seq] : refs_) {
      if (!referenced.insert(obj).second) continue;
      const Member* m = Find("objects/" + obj);
      if (!m) Problem("ledger record " + std::to_string(seq) + " references object " + obj + ", missing from the bundle");
    }
    for (const auto& [name, m] : members_) {
      if (name.rfind("objects/", 0) != 0) continue;
      std::string hex = name.substr(8);
      ++rep_.objects;
      if (m.sha256.Hex() != hex) {
        Problem(name + ": content hashes to " + m.sha256.Hex() + ", not its name (evidence object swapped or altered)");
      }
      if (!referenced.count(hex)) rep_.notes.push_back(name + ": no record references it");
    }
  }

  void CheckEarlier() {
    if (opt_.earlier_checkpoint.empty()) return;
    auto cp = ParseCheckpoint(opt_.earlier_checkpoint);
    if (!cp.ok()) {
      Problem("the given checkpoint: " + cp.status().message());
      return;
    }
    std::string what = "the given checkpoint (size " + std::to_string(cp->size) + ")";
    if (!rep_.case_id.empty() && cp->origin != OriginForCase(rep_.case_id)) {
      Problem(what + " is of " + EscapeForDisplay(cp->origin) + ", not of this case");
      return;
    }
    if (!opt_.earlier_signature.empty() && have_key_ && !SigOk(opt_.earlier_checkpoint, opt_.earlier_signature)) {
      Problem(what + ": its signature does not verify with the bundle's key (the bundle is signed by another key, or the checkpoint was altered)");
    }
    if (cp->size > leaves_.size()) {
      Problem("ledger cut short: " + what + " covers " + std::to_string(cp->size) + " records, the bundle's ledger has only " +
              std::to_string(leaves_.size()));
    } else if (RootAt(cp->size) != cp->root) {
      Problem("the bundle's ledger does not contain " + what + ": its first " + std::to_string(cp->size) +
              " records hash to another root (history rewritten)");
    } else {
      rep_.notes.push_back(what + " is contained in the bundle's ledger");
    }
  }

  // The Merkle roots at every size a checkpoint names, in one pass over the
  // leaves (a bundle may hold a checkpoint per task: one pass each would be
  // quadratic).
  void PrecomputeRoots() {
    std::set<uint64_t> sizes;
    for (const auto& [name, m] : members_) {
      if (name.rfind("checkpoints/", 0) != 0 || name.size() < 4 || name.substr(name.size() - 4) != ".txt") continue;
      if (auto cp = ParseCheckpoint(m.data); cp.ok()) sizes.insert(cp->size);
    }
    if (auto cp = ParseCheckpoint(opt_.earlier_checkpoint); cp.ok()) sizes.insert(cp->size);
    MerkleTree tree;
    auto next = sizes.begin();
    while (next != sizes.end() && *next == 0) roots_[*next++] = tree.Root();
    for (size_t i = 0; i < leaves_.size() && next != sizes.end(); ++i) {
      tree.AppendLeafHash(leaves_[i]);
      while (next != sizes.end() && *next == tree.size()) roots_[*next++] = tree.Root();
    }
  }

  Hash RootAt(uint64_t size) {
    auto it = roots_.find(size);
    if (it != roots_.end()) return it->second;
    Hash r = RootFromLeafHashes(std::span<const Hash>(leaves_.data(), size_t(size)));
    roots_[size] = r;
    return r;
  }

  const VerifyOptions& opt_;
  VerifyReport& rep_;
  std::string root_;
  std::map<std::string, Member> members_;
  std::array<uint8_t, 32> key_{};
  bool have_key_ = false;
  bool ledger_ok_ = true;
  std::vector<Hash> leaves_;
  std::map<uint64_t, Hash> roots_;
  std::multimap<std::string, uint64_t> refs_;
  std::vector<std::pair<uint64_t, json>> cp_records_;
};

VerifyReport Run(struct archive* a, const VerifyOptions& options) {
  VerifyReport rep;
  Verifier v(options, rep);
  if (v.ReadTar(a)) v.Check();
  return rep;
}

struct archive* NewReader() {
  struct archive* a = archive_read_new();
  if (!a) return nullptr;
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  return a;
}

}  // namespace

Result<VerifyReport> VerifyBundleFile(const std::string& tar_path, const VerifyOptions& options) {
  Fd fd(::open(tar_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(tar_path, errno);
  struct archive* a = NewReader();
  if (!a) return IOError("libarchive: out of memory");
  std::unique_ptr<struct archive, int (*)(struct archive*)> guard(a, archive_read_free);
  if (archive_read_open_fd(a, fd.get(), 1 << 16) != ARCHIVE_OK) {
    VerifyReport rep;
    rep.problems.push_back(std::string("the tar does not open: ") + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
    return rep;
  }
  return Run(a, options);
}

VerifyReport VerifyBundleBytes(ByteView tar, const VerifyOptions& options) {
  struct archive* a = NewReader();
  if (!a) return VerifyReport{{"libarchive: out of memory"}};
  std::unique_ptr<struct archive, int (*)(struct archive*)> guard(a, archive_read_free);
  if (archive_read_open_memory(a, tar.data(), tar.size()) != ARCHIVE_OK) {
    VerifyReport rep;
    rep.problems.push_back(std::string("the tar does not open: ") + (archive_error_string(a) ? archive_error_string(a) : "libarchive error"));
    return rep;
  }
  return Run(a, options);
}

}  // namespace custos::evidence
