#include "snapshot/browse.h"

#include <algorithm>

#include "snapshot/manifest.h"

namespace custos::snapshot {

Result<Tree> LoadTree(storage::Repository& repo, const Id& id, const AtimeTable* atimes) {
  auto blob = repo.ReadBlob(id);
  if (!blob.ok()) return blob.status().Annotate("tree " + id.Short());
  auto tree = DecodeTree(*blob);
  if (!tree.ok()) return tree.status().Annotate("tree " + id.Short());
  if (atimes) RETURN_IF_ERROR(atimes->Apply(id, &*tree));
  return tree;
}

static std::string JoinPath(const std::string& a, const std::string& b) {
  return a == "/" ? "/" + b : a + "/" + b;
}

Status WalkTree(storage::Repository& repo, const Id& tree, const std::string& prefix,
                const std::function<Status(const std::string&, const Node&)>& fn, const AtimeTable* atimes) {
  ASSIGN_OR_RETURN(Tree t, LoadTree(repo, tree, atimes));
  for (const auto& n : t.nodes) {
    std::string p = JoinPath(prefix, n.name);
    RETURN_IF_ERROR(fn(p, n));
    if (n.type == NodeType::kDir && !n.subtree.IsZero()) RETURN_IF_ERROR(WalkTree(repo, n.subtree, p, fn, atimes));
  }
  return Status::Ok();
}

Result<Node> FindPath(storage::Repository& repo, const Id& root, const std::string& path,
                      const AtimeTable* atimes) {
  return FindPath([&](const Id& id) { return LoadTree(repo, id, atimes); }, root, path);
}

Result<Node> FindPath(const TreeLoader& load, const Id& root, const std::string& path) {
  Node cur;
  cur.name = "/";
  cur.type = NodeType::kDir;
  cur.subtree = root;
  cur.mode = 0755;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string comp = path.substr(i, j - i);
    i = j + 1;
    if (comp.empty() || comp == ".") continue;
    if (cur.type != NodeType::kDir) return NotFoundError(path + ": not a directory in the snapshot");
    ASSIGN_OR_RETURN(Tree t, load(cur.subtree));
    auto it = std::lower_bound(t.nodes.begin(), t.nodes.end(), comp,
                               [](const Node& n, const std::string& k) { return n.name < k; });
    if (it == t.nodes.end() || it->name != comp) return NotFoundError(path + ": not in the snapshot");
    cur = *it;
  }
  return cur;
}

const char* ChangeSymbol(Change c) {
  switch (c) {
    case Change::kAdded: return "+";
    case Change::kRemoved: return "-";
    case Change::kContent: return "M";
    case Change::kMetadata: return "U";
    case Change::kType: return "T";
  }
  return "?";
}

namespace {

bool SameMetadata(const Node& a, const Node& b) {
  return a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.mtime == b.mtime && a.xattrs == b.xattrs &&
         a.link_target == b.link_target && a.rdev == b.rdev && a.user == b.user && a.group == b.group;
}

Status EmitAll(storage::Repository& repo, const Node& n, const std::string& path, Change c,
               const std::function<void(const DiffEntry&)>& fn) {
  fn(DiffEntry{path, c});
  if (n.type == NodeType::kDir && !n.subtree.IsZero()) {
    return WalkTree(repo, n.subtree, path, [&](const std::string& p, const Node&) {
      fn(DiffEntry{p, c});
      return Status::Ok();
    });
  }
  return Status::Ok();
}

}  // namespace

Status DiffTrees(storage::Repository& repo, const Id& a, const Id& b, const std::string& prefix,
                 const std::function<void(const DiffEntry&)>& fn) {
  if (a == b) return Status::Ok();
  ASSIGN_OR_RETURN(Tree ta, LoadTree(repo, a));
  ASSIGN_OR_RETURN(Tree tb, LoadTree(repo, b));
  size_t i = 0, j = 0;
  while (i < ta.nodes.size() || j < tb.nodes.size()) {
    if (j >= tb.nodes.size() || (i < ta.nodes.size() && ta.nodes[i].name < tb.nodes[j].name)) {
      RETURN_IF_ERROR(EmitAll(repo, ta.nodes[i], JoinPath(prefix, ta.nodes[i].name), Change::kRemoved, fn));
      ++i;
      continue;
    }
    if (i >= ta.nodes.size() || tb.nodes[j].name < ta.nodes[i].name) {
      RETURN_IF_ERROR(EmitAll(repo, tb.nodes[j], JoinPath(prefix, tb.nodes[j].name), Change::kAdded, fn));
      ++j;
      continue;
    }
    const Node& x = ta.nodes[i++];
    const Node& y = tb.nodes[j++];
    std::string p = JoinPath(prefix, x.name);
    if (x.type != y.type) {
      fn(DiffEntry{p, Change::kType});
      continue;
    }
    if (x.type == NodeType::kFile && (x.file_sha256 != y.file_sha256 || x.size != y.size)) {
      fn(DiffEntry{p, Change::kContent});
    } else if (!SameMetadata(x, y)) {
      fn(DiffEntry{p, Change::kMetadata});
    }
    if (x.type == NodeType::kDir) RETURN_IF_ERROR(DiffTrees(repo, x.subtree, y.subtree, p, fn));
  }
  return Status::Ok();
}

Status CollectBlobs(storage::Repository& repo, const Id& tree, std::unordered_map<Id, uint64_t, IdHash>* blobs) {
  if (blobs->count(tree)) return Status::Ok();
  auto raw = repo.ReadBlob(tree);
  if (!raw.ok()) return raw.status().Annotate("tree " + tree.Short());
  (*blobs)[tree] = raw->size();
  ASSIGN_OR_RETURN(Tree t, DecodeTree(*raw));
  for (const auto& n : t.nodes) {
    for (const auto& c : n.content) (*blobs)[c.id] = c.size;
    if (n.type == NodeType::kDir && !n.subtree.IsZero()) RETURN_IF_ERROR(CollectBlobs(repo, n.subtree, blobs));
  }
  return Status::Ok();
}

Status CollectSnapshotBlobs(storage::Repository& repo, const Manifest& m,
                            std::unordered_map<Id, uint64_t, IdHash>* blobs) {
  RETURN_IF_ERROR(CollectBlobs(repo, m.tree, blobs));
  for (const Id& id : m.atimes) {
    if (blobs->count(id)) continue;
    auto raw = repo.ReadBlob(id);
    if (!raw.ok()) return raw.status().Annotate("atime table blob " + id.Short());
    (*blobs)[id] = raw->size();
  }
  return Status::Ok();
}

Result<std::unordered_set<Id, IdHash>> ReferencedBlobs(storage::Repository& repo) {
  std::vector<Status> damaged;
  ASSIGN_OR_RETURN(auto snapshots, LoadSnapshots(repo, &damaged));
  if (!damaged.empty()) {
    return damaged[0].Annotate("a snapshot does not load, so its blobs are unknown: refused (" +
                               std::to_string(damaged.size()) + " damaged)");
  }
  std::unordered_map<Id, uint64_t, IdHash> blobs;
  for (const auto& s : snapshots) {
    Status st = CollectSnapshotBlobs(repo, s.manifest, &blobs);
    if (!st.ok()) return st.Annotate("snapshot " + s.id.Hex());
  }
  std::unordered_set<Id, IdHash> out;
  out.reserve(blobs.size());
  for (const auto& [id, size] : blobs) out.insert(id);
  return out;
}

}  // namespace custos::snapshot
