// Reading snapshots back: walking trees, resolving paths, comparing two
// snapshots, collecting the blobs a snapshot references.
//
// Thread-safety: functions read the repository; safe alongside a writer.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>

#include "base/status.h"
#include "snapshot/tree.h"
#include "storage/repository.h"

namespace custos::snapshot {

Result<Tree> LoadTree(storage::Repository& repo, const Id& id);

// Calls fn(path, node) for every node below `tree`, depth first, in name
// order; `prefix` is the path of `tree` itself ("/" for a snapshot root).
// fn returning an error stops the walk. Paths are exact bytes joined by '/'.
Status WalkTree(storage::Repository& repo, const Id& tree, const std::string& prefix,
                const std::function<Status(const std::string& path, const Node& node)>& fn);

// Resolves an absolute path inside a snapshot ("/" is the root). Returns the
// node, or for "/" a synthetic directory node whose subtree is `root`.
Result<Node> FindPath(storage::Repository& repo, const Id& root, const std::string& path);

enum class Change { kAdded, kRemoved, kContent, kMetadata, kType };
const char* ChangeSymbol(Change c);  // "+", "-", "M", "U", "T"

struct DiffEntry {
  std::string path;
  Change change;
};
// Compares two trees. A file whose content differs is kContent; same
// content with other metadata is kMetadata; directories are compared by
// their listing and metadata; unchanged subtrees (same ID) are skipped.
Status DiffTrees(storage::Repository& repo, const Id& a, const Id& b, const std::string& prefix,
                 const std::function<void(const DiffEntry&)>& fn);

// Every blob a tree references (data chunks with their sizes, and trees),
// added to `blobs` (id -> plaintext size; trees get their encoded size).
Status CollectBlobs(storage::Repository& repo, const Id& tree, std::unordered_map<Id, uint64_t, IdHash>* blobs);

}  // namespace custos::snapshot
