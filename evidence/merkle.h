// RFC 9162 (Certificate Transparency 2.0) Merkle trees over the ledger's
// lines: the Merkle Tree Hash (section 2.1.1), inclusion proofs (2.1.3) and
// consistency proofs (2.1.4), with the verification algorithms of those
// sections. A pure algorithm core: no I/O.
//
//   leaf hash  = SHA-256(0x00 || line)      (the stored line bytes, no "\n")
//   node hash  = SHA-256(0x01 || left || right)
//   empty tree = SHA-256("")
// MTH(D[n]) splits at k, the largest power of two smaller than n.
//
// MerkleTree keeps only the frontier: the roots of the perfect subtrees
// that make up the tree so far (one per set bit of the size, so at most 64
// hashes), so appending is amortised one node hash per leaf and the root is
// O(log n). Proofs need the leaf hashes (ProofTree, or the span functions).
//
// Format: doc/formats/evidence.md, "Merkle tree".
// Thread-safety: the functions are pure; a MerkleTree is a value (one
// writer, or external locking).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/bytes.h"

namespace custos::evidence {

using Hash = Id;  // a SHA-256 value

Hash LeafHash(ByteView line);
Hash NodeHash(const Hash& left, const Hash& right);
Hash EmptyTreeHash();

// The Merkle Tree Hash of the leaves whose hashes are given (RFC 9162 2.1.1).
Hash RootFromLeafHashes(std::span<const Hash> leaf_hashes);

// Incremental tree: append leaf hashes, read the root at any time.
class MerkleTree {
 public:
  void AppendLeaf(ByteView line) { AppendLeafHash(LeafHash(line)); }
  void AppendLeafHash(const Hash& leaf_hash);
  uint64_t size() const { return size_; }
  // MTH of the leaves appended so far (EmptyTreeHash() when none).
  Hash Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<Hash> frontier_;  // perfect subtree roots, largest (leftmost) first
};

// Inclusion proof for leaf `index` in the tree of all `leaf_hashes`
// (RFC 9162 2.1.3.1). Requires index < leaf_hashes.size().
std::vector<Hash> InclusionProof(std::span<const Hash> leaf_hashes, uint64_t index);
// Consistency proof between the tree of the first `old_size` leaves and
// the tree of all of them (RFC 9162 2.1.4.1). Requires old_size <= size;
// empty when old_size is 0 or equals the size.
std::vector<Hash> ConsistencyProof(std::span<const Hash> leaf_hashes, uint64_t old_size);

// RFC 9162 2.1.3.2: whether `proof` shows leaf `index` with hash
// `leaf_hash` in a tree of `tree_size` leaves with root `root`.
bool VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash, std::span<const Hash> proof,
                     const Hash& root);
// RFC 9162 2.1.4.2: whether `proof` shows that the tree of `old_size`
// leaves with root `old_root` is a prefix of the tree of `new_size` leaves
// with root `new_root`. old_size == new_size needs an empty proof and equal
// roots; old_size 0 is consistent with anything (empty proof).
bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof);

}  // namespace custos::evidence
