// Reading snapshots back: walking trees, resolving paths, comparing two
// snapshots, collecting the blobs a snapshot references.
//
// Thread-safety: functions read the repository; safe alongside a writer.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "base/status.h"
#include "snapshot/atimes.h"
#include "snapshot/tree.h"
#include "storage/repository.h"

namespace custos::snapshot {

// `atimes`: the snapshot's atime table (LoadAtimes), applied to the tree;
// null for a snapshot whose trees hold their atimes, or when atimes do not
// matter to the caller.
Result<Tree> LoadTree(storage::Repository& repo, const Id& id, const AtimeTable* atimes = nullptr);

// Calls fn(path, node) for every node below `tree`, depth first, in name
// order; `prefix` is the path of `tree` itself ("/" for a snapshot root).
// fn returning an error stops the walk. Paths are exact bytes joined by '/'.
Status WalkTree(storage::Repository& repo, const Id& tree, const std::string& prefix,
                const std::function<Status(const std::string& path, const Node& node)>& fn,
                const AtimeTable* atimes = nullptr);

// Resolves an absolute path inside a snapshot ("/" is the root). Returns the
// node, or for "/" a synthetic directory node whose subtree is `root`.
Result<Node> FindPath(storage::Repository& repo, const Id& root, const std::string& path,
                      const AtimeTable* atimes = nullptr);
// The same over any tree loader (a restore source: restore/source.h); the
// loader applies atimes if the caller wants them.
using TreeLoader = std::function<Result<Tree>(const Id& id)>;
Result<Node> FindPath(const TreeLoader& load, const Id& root, const std::string& path);

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
// Every blob a snapshot references: its trees, their data and its atime table.
Status CollectSnapshotBlobs(storage::Repository& repo, const Manifest& m,
                            std::unordered_map<Id, uint64_t, IdHash>* blobs);

// Every blob any snapshot of the repository references (prune's referenced
// set, storage/prune.h); shared trees are walked once. Fails closed: a
// snapshot that does not load or a tree that does not read is an error
// (Corruption/NotFound naming it), since its blobs would otherwise count as
// garbage.
Result<std::unordered_set<Id, IdHash>> ReferencedBlobs(storage::Repository& repo);

}  // namespace custos::snapshot
