// Where a restore reads from: the seam between the restorer (walk, plan,
// write, verify: restore/restorer.h) and the blobs it needs, as
// snapshot/target.h is for backups. The local source is a repository this
// process opened (`custos restore`); the agent's source asks the appliance
// for each blob over CAP/1 (agent/remote_source.h), so a remote restore runs
// exactly the same restorer, with the same safety rules, as a local one.
//
// Contract shared by every source:
//   - LoadTree returns the tree as stored (atimes are applied by the caller).
//   - Fetch delivers every requested blob exactly once to `sink`, as its
//     plaintext or as the reason it cannot be had; a delivered plaintext
//     hashes to its ID (the source checks, whatever it read from).
//   - A blob the source cannot give fails only the files that use it.
//
// Thread-safety: LoadTree and PrefetchTrees from the restorer's walking
// thread; Fetch from one thread at a time, which it blocks; `sink` is called
// from up to `workers` threads at once.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"
#include "snapshot/atimes.h"
#include "snapshot/tree.h"

namespace custos::storage {
class Repository;
}

namespace custos::restore {

class RestoreSource {
 public:
  virtual ~RestoreSource() = default;
  // One tree, decoded. Errors name the tree.
  virtual Result<snapshot::Tree> LoadTree(const Id& id) = 0;
  // A hint that these trees will be loaded soon (the subtrees of a
  // directory just read): a remote source asks for them now, so that a
  // depth-first walk does not wait one round trip per directory.
  virtual void PrefetchTrees(const std::vector<Id>& /*ids*/) {}
  // Delivers each blob of `ids` (unique) to `sink` exactly once and returns
  // when all were delivered. `workers`: how many threads may decode and
  // call `sink` at once. `sink` receives the plaintext or the reason it
  // could not be had (naming the blob).
  using Sink = std::function<void(const Id& id, const Result<Bytes>& plaintext)>;
  virtual void Fetch(const std::vector<Id>& ids, int workers, const Sink& sink) = 0;
};

// A repository opened by this process: trees by ReadBlob, data blobs
// grouped by pack and read pack by pack in offset order (nearby blobs in
// one request of at most 4 MiB), each decoded once.
class LocalSource : public RestoreSource {
 public:
  explicit LocalSource(storage::Repository& repo) : repo_(repo) {}
  Result<snapshot::Tree> LoadTree(const Id& id) override;
  void Fetch(const std::vector<Id>& ids, int workers, const Sink& sink) override;

 private:
  storage::Repository& repo_;
};

// The atime table made of the blobs `ids` (in order), read through
// `source`; nullptr when `ids` is empty (a snapshot whose trees hold their
// atimes). Corruption if the pieces do not decode.
Result<std::shared_ptr<const snapshot::AtimeTable>> LoadAtimes(RestoreSource& source, const std::vector<Id>& ids);

}  // namespace custos::restore
