// Nodes and trees: the snapshot's file-system metadata.
//
// A tree is one directory's listing: nodes sorted by name bytes, encoded
// into one tree blob (doc/formats/snapshot.md, "Tree blobs"). A node holds
// everything needed to restore one entry exactly: type, mode, ownership
// with names, ns times, xattrs (POSIX ACLs are the system.posix_acl_*
// xattrs), link target, device numbers, hard-link identity, sparse holes,
// the content as a list of chunk IDs and sizes, and the whole-file SHA-256.
// Names are exact bytes: any byte but '/' and NUL.
//
// Thread-safety: values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::snapshot {

enum class NodeType : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kFifo = 4,
  kSocket = 5,
  kCharDev = 6,
  kBlockDev = 7,
};
const char* NodeTypeName(NodeType t);

// Flags recorded on a node.
enum NodeFlags : uint32_t {
  kFlagChangedWhileRead = 1u << 0,  // metadata differed before and after reading
  kFlagReadError = 1u << 1,         // content could not be read completely
  kFlagExcludedContents = 1u << 2,  // directory kept, contents excluded (cache dir, other fs)
};

struct Timestamp {
  int64_t sec = 0;
  uint32_t nsec = 0;
  auto operator<=>(const Timestamp&) const = default;
};

struct ChunkRef {
  Id id;
  uint32_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

struct Node {
  std::string name;  // exact bytes
  NodeType type = NodeType::kFile;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (no type bits)
  uint32_t uid = 0, gid = 0;
  std::string user, group;  // names at backup time, empty if unknown
  Timestamp atime, mtime, ctime;
  uint64_t size = 0;  // bytes of content (files), 0 otherwise
  uint64_t dev = 0, inode = 0;
  uint32_t nlink = 0;
  uint64_t rdev = 0;          // device nodes
  std::string link_target;    // symlinks: exact bytes
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name
  std::vector<std::pair<uint64_t, uint64_t>> holes;  // sparse files: (offset, length)
  std::vector<ChunkRef> content;  // files
  Id file_sha256;                 // files: SHA-256 of the whole content
  Id subtree;                     // dirs: the tree blob of its listing
  uint32_t flags = 0;

  bool operator==(const Node&) const = default;
};

struct Tree {
  std::vector<Node> nodes;  // sorted by name, unique
};

// Encodes a tree; nodes must be sorted by name and unique (aborts if not: a bug).
Bytes EncodeTree(const Tree& tree);
// Corruption on any malformed byte; names are validated (no '/', no NUL,
// not "." or "..", not empty) so that no tree can direct a restore outside
// its target.
Result<Tree> DecodeTree(ByteView blob);

// Whether a name is a safe single path component.
bool IsSafeName(std::string_view name);

}  // namespace custos::snapshot
