#include "snapshot/target.h"

#include "storage/repository.h"

namespace custos::snapshot {

const Key32& LocalTarget::chunker_key() const { return repo_.keys().chunker; }

ChunkerParams LocalTarget::chunker_params() const {
  return ChunkerParams{repo_.config().chunk_min, repo_.config().chunk_avg, repo_.config().chunk_max};
}

Status LocalTarget::Ready() const {
  if (!repo_.HasWriterLock()) return InvalidArgumentError("backup: the repository writer lock is not held");
  return Status::Ok();
}

bool LocalTarget::Knows(const Id& id) const { return repo_.KnowsBlob(id); }

Result<bool> LocalTarget::Put(storage::BlobType type, const Id& id, ByteView plaintext, uint64_t* stored) {
  auto encoded = storage::EncodeBlob(repo_.keys().data, type, plaintext, id, repo_.config().zstd_level);
  size_t size = encoded.box.size();
  ASSIGN_OR_RETURN(bool added, repo_.AddEncodedBlob(std::move(encoded)));
  if (added) *stored += size;
  return added;
}

Result<std::optional<SnapshotInfo>> LocalTarget::FindParent(const std::optional<Id>& explicit_parent,
                                                            const std::string& host,
                                                            const std::vector<std::string>& paths) {
  std::optional<Id> parent = explicit_parent;
  if (!parent) {
    auto all = LoadSnapshots(repo_);
    if (all.ok()) {
      SnapshotFilter f;
      f.host = host;
      f.paths = paths;
      for (auto it = all->rbegin(); it != all->rend(); ++it) {
        if (Matches(it->manifest, f)) return std::optional<SnapshotInfo>(*it);
      }
    }
    return std::optional<SnapshotInfo>();
  }
  auto payload = repo_.LoadSnapshot(*parent);
  if (!payload.ok()) return payload.status().Annotate("parent snapshot");
  ASSIGN_OR_RETURN(Manifest pm, DecodeManifest(*payload));
  return std::optional<SnapshotInfo>(SnapshotInfo{*parent, std::move(pm)});
}

std::optional<Tree> LocalTarget::ReadTree(const Id& id) {
  auto blob = repo_.ReadBlob(id);
  if (!blob.ok()) return std::nullopt;
  auto tree = DecodeTree(*blob);
  if (!tree.ok()) return std::nullopt;
  return std::move(tree).value();
}

Result<Id> LocalTarget::Commit(Manifest* m) { return repo_.SaveSnapshot(EncodeManifest(*m)); }

}  // namespace custos::snapshot
