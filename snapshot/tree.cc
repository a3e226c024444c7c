#include "snapshot/tree.h"

#include <cstdlib>

namespace custos::snapshot {
namespace {

constexpr uint32_t kTreeVersion = 1;
constexpr char kTreeMagic[8] = {'C', 'S', 'T', 'T', 'R', 'E', 'E', '1'};
// Bounds that keep a hostile tree blob from asking for absurd allocations.
constexpr uint32_t kMaxString = 1u << 20;       // names, targets, xattr values
constexpr uint32_t kMaxList = 1u << 24;
// Encoding-only flag: the file has one chunk and its whole-file SHA-256 is
// that chunk's ID (the same bytes), so the 32 bytes are not repeated. This
// saves 32 incompressible bytes per small file in every tree blob.
constexpr uint32_t kFlagShaIsChunk = 1u << 31;

void PutString(Bytes& out, std::string_view s) {
  PutU32(out, uint32_t(s.size()));
  Append(out, AsBytes(s));
}
void PutTime(Bytes& out, const Timestamp& t) {
  PutU64(out, uint64_t(t.sec));
  PutU32(out, t.nsec);
}

bool GetString(ByteReader& r, std::string* s) {
  uint32_t n;
  ByteView v;
  if (!r.GetU32(&n) || n > kMaxString || !r.GetBytes(n, &v)) return false;
  s->assign(reinterpret_cast<const char*>(v.data()), v.size());
  return true;
}
bool GetTime(ByteReader& r, Timestamp* t) {
  uint64_t sec;
  if (!r.GetU64(&sec) || !r.GetU32(&t->nsec)) return false;
  t->sec = int64_t(sec);
  return t->nsec < 1000000000u;
}

}  // namespace

const char* NodeTypeName(NodeType t) {
  switch (t) {
    case NodeType::kFile: return "file";
    case NodeType::kDir: return "dir";
    case NodeType::kSymlink: return "symlink";
    case NodeType::kFifo: return "fifo";
    case NodeType::kSocket: return "socket";
    case NodeType::kCharDev: return "chardev";
    case NodeType::kBlockDev: return "blockdev";
  }
  return "unknown";
}

bool IsSafeName(std::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == '\0') return false;
  }
  return true;
}

Bytes EncodeTree(const Tree& tree) {
  Bytes out(kTreeMagic, kTreeMagic + 8);
  PutU32(out, kTreeVersion);
  PutU32(out, uint32_t(tree.nodes.size()));
  for (size_t i = 0; i < tree.nodes.size(); ++i) {
    const Node& n = tree.nodes[i];
    if (i > 0 && !(tree.nodes[i - 1].name < n.name)) std::abort();  // unsorted or duplicate: a bug
    PutString(out, n.name);
    out.push_back(uint8_t(n.type));
    bool sha_is_chunk = n.type == NodeType::kFile && n.content.size() == 1 && n.content[0].id == n.file_sha256;
    PutU32(out, (n.flags & ~kFlagShaIsChunk) | (sha_is_chunk ? kFlagShaIsChunk : 0));
    PutU32(out, n.mode);
    PutU32(out, n.uid);
    PutU32(out, n.gid);
    PutString(out, n.user);
    PutString(out, n.group);
    PutTime(out, n.atime);
    PutTime(out, n.mtime);
    PutTime(out, n.ctime);
    PutU64(out, n.size);
    PutU64(out, n.dev);
    PutU64(out, n.inode);
    PutU32(out, n.nlink);
    PutU64(out, n.rdev);
    PutString(out, n.link_target);
    PutU32(out, uint32_t(n.xattrs.size()));
    for (const auto& [k, v] : n.xattrs) {
      PutString(out, k);
      PutString(out, v);
    }
    PutU32(out, uint32_t(n.holes.size()));
    for (const auto& [off, len] : n.holes) {
      PutU64(out, off);
      PutU64(out, len);
    }
    PutU32(out, uint32_t(n.content.size()));
    for (const auto& c : n.content) {
      Append(out, c.id.bytes);
      PutU32(out, c.size);
    }
    if (!sha_is_chunk) Append(out, n.file_sha256.bytes);
    Append(out, n.subtree.bytes);
  }
  return out;
}

Result<Tree> DecodeTree(ByteView blob) {
  ByteReader r(blob);
  ByteView magic;
  uint32_t version = 0, count = 0;
  if (!r.GetBytes(8, &magic) || std::memcmp(magic.data(), kTreeMagic, 8) != 0) {
    return CorruptionError("tree: magic missing");
  }
  if (!r.GetU32(&version) || version != kTreeVersion) return NotSupportedError("tree: unknown version");
  if (!r.GetU32(&count) || count > kMaxList || count > r.remaining() / 100) {
    return CorruptionError("tree: node count out of range");
  }
  Tree tree;
  tree.nodes.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    Node& n = tree.nodes[i];
    uint8_t type = 0;
    uint32_t nx = 0, nh = 0, nc = 0;
    bool ok = GetString(r, &n.name) && r.GetU8(&type) && r.GetU32(&n.flags) && r.GetU32(&n.mode) &&
              r.GetU32(&n.uid) && r.GetU32(&n.gid) && GetString(r, &n.user) && GetString(r, &n.group) &&
              GetTime(r, &n.atime) && GetTime(r, &n.mtime) && GetTime(r, &n.ctime) && r.GetU64(&n.size) &&
              r.GetU64(&n.dev) && r.GetU64(&n.inode) && r.GetU32(&n.nlink) && r.GetU64(&n.rdev) &&
              GetString(r, &n.link_target) && r.GetU32(&nx) && nx <= kMaxList && nx <= r.remaining() / 8;
    if (!ok) return CorruptionError("tree: node " + std::to_string(i) + " truncated or malformed");
    if (type < 1 || type > 7) return CorruptionError("tree: node " + std::to_string(i) + " has unknown type");
    n.type = NodeType(type);
    if (!IsSafeName(n.name)) return CorruptionError("tree: node " + std::to_string(i) + " has an unsafe name");
    if (i > 0 && !(tree.nodes[i - 1].name < n.name)) return CorruptionError("tree: names not sorted or not unique");
    if (n.mode > 07777) return CorruptionError("tree: node " + std::to_string(i) + " has mode bits out of range");
    n.xattrs.resize(nx);
    for (auto& [k, v] : n.xattrs) {
      if (!GetString(r, &k) || !GetString(r, &v)) return CorruptionError("tree: xattr truncated");
    }
    if (!r.GetU32(&nh) || nh > kMaxList || nh > r.remaining() / 16) return CorruptionError("tree: holes out of range");
    n.holes.resize(nh);
    for (auto& [off, len] : n.holes) {
      if (!r.GetU64(&off) || !r.GetU64(&len)) return CorruptionError("tree: hole truncated");
    }
    if (!r.GetU32(&nc) || nc > kMaxList || nc > r.remaining() / 36) return CorruptionError("tree: content out of range");
    n.content.resize(nc);
    uint64_t total = 0;
    for (auto& c : n.content) {
      if (!r.GetArray(&c.id.bytes) || !r.GetU32(&c.size)) return CorruptionError("tree: content truncated");
      total += c.size;
    }
    bool sha_is_chunk = (n.flags & kFlagShaIsChunk) != 0;
    n.flags &= ~kFlagShaIsChunk;
    if (sha_is_chunk) {
      if (n.type != NodeType::kFile || n.content.size() != 1) {
        return CorruptionError("tree: node " + std::to_string(i) + " claims a one-chunk hash but is not a one-chunk file");
      }
      n.file_sha256 = n.content[0].id;
    } else if (!r.GetArray(&n.file_sha256.bytes)) {
      return CorruptionError("tree: node " + std::to_string(i) + " truncated");
    }
    if (!r.GetArray(&n.subtree.bytes)) return CorruptionError("tree: node " + std::to_string(i) + " truncated");
    if (n.type == NodeType::kFile && total != n.size) {
      return CorruptionError("tree: node " + std::to_string(i) + " content sizes do not add up to its size");
    }
    if (n.type != NodeType::kFile && !n.content.empty()) {
      return CorruptionError("tree: node " + std::to_string(i) + " is not a file but has content");
    }
  }
  if (r.remaining() != 0) return CorruptionError("tree: trailing bytes");
  return tree;
}

}  // namespace custos::snapshot
