#include "evidence/merkle.h"

#include <cstdlib>

#include "base/crypto.h"

namespace custos::evidence {

namespace {

// The largest power of two smaller than n (n >= 2): RFC 9162's split point.
uint64_t SplitPoint(uint64_t n) {
  uint64_t k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}

// MTH of a range of leaf hashes.
Hash Mth(std::span<const Hash> leaves) {
  MerkleTree t;
  for (const Hash& h : leaves) t.AppendLeafHash(h);
  return t.Root();
}

// PATH(m, D[n]), RFC 9162 2.1.3.1, appended to `out` leaf-side first.
void Path(uint64_t m, std::span<const Hash> d, std::vector<Hash>& out) {
  uint64_t n = d.size();
  if (n <= 1) return;
  uint64_t k = SplitPoint(n);
  if (m < k) {
    Path(m, d.subspan(0, k), out);
    out.push_back(Mth(d.subspan(k)));
  } else {
    Path(m - k, d.subspan(k), out);
    out.push_back(Mth(d.subspan(0, k)));
  }
}

// SUBPROOF(m, D[n], b), RFC 9162 2.1.4.1.
void SubProof(uint64_t m, std::span<const Hash> d, bool b, std::vector<Hash>& out) {
  uint64_t n = d.size();
  if (m == n) {
    if (!b) out.push_back(Mth(d));
    return;
  }
  uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(m, d.subspan(0, k), b, out);
    out.push_back(Mth(d.subspan(k)));
  } else {
    SubProof(m - k, d.subspan(k), false, out);
    out.push_back(Mth(d.subspan(0, k)));
  }
}

}  // namespace

Hash LeafHash(ByteView line) {
  Sha256Stream s;
  static const uint8_t kLeaf = 0x00;
  s.Update(ByteView(&kLeaf, 1));
  s.Update(line);
  return s.Finish();
}

Hash NodeHash(const Hash& left, const Hash& right) {
  uint8_t buf[1 + 2 * Hash::kSize];
  buf[0] = 0x01;
  std::memcpy(buf + 1, left.bytes.data(), Hash::kSize);
  std::memcpy(buf + 1 + Hash::kSize, right.bytes.data(), Hash::kSize);
  return Sha256(ByteView(buf, sizeof buf));
}

Hash EmptyTreeHash() { return Sha256(ByteView()); }

void MerkleTree::AppendLeafHash(const Hash& leaf_hash) {
  // Each set low bit of the old size is a perfect subtree that the new leaf
  // completes into one twice its size.
  Hash node = leaf_hash;
  for (uint64_t s = size_; s & 1; s >>= 1) {
    node = NodeHash(frontier_.back(), node);
    frontier_.pop_back();
  }
  frontier_.push_back(node);
  ++size_;
}

Hash MerkleTree::Root() const {
  if (frontier_.empty()) return EmptyTreeHash();
  Hash r = frontier_.back();
  for (size_t i = frontier_.size() - 1; i-- > 0;) r = NodeHash(frontier_[i], r);
  return r;
}

Hash RootFromLeafHashes(std::span<const Hash> leaf_hashes) { return Mth(leaf_hashes); }

std::vector<Hash> InclusionProof(std::span<const Hash> leaf_hashes, uint64_t index) {
  if (index >= leaf_hashes.size()) std::abort();  // a caller bug
  std::vector<Hash> out;
  Path(index, leaf_hashes, out);
  return out;
}

std::vector<Hash> ConsistencyProof(std::span<const Hash> leaf_hashes, uint64_t old_size) {
  if (old_size > leaf_hashes.size()) std::abort();  // a caller bug
  std::vector<Hash> out;
  if (old_size == 0 || old_size == leaf_hashes.size()) return out;
  SubProof(old_size, leaf_hashes, true, out);
  return out;
}

bool VerifyInclusion(uint64_t index, uint64_t tree_size, const Hash& leaf_hash, std::span<const Hash> proof,
                     const Hash& root) {
  if (index >= tree_size) return false;
  uint64_t fn = index, sn = tree_size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = NodeHash(p, r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root, const Hash& new_root,
                       std::span<const Hash> proof) {
  if (old_size > new_size) return false;
  if (old_size == new_size) return proof.empty() && old_root == new_root;
  if (old_size == 0) return proof.empty();
  if (proof.empty()) return false;
  std::vector<Hash> path;
  path.reserve(proof.size() + 1);
  // An old tree that is a perfect subtree is itself the first node.
  if ((old_size & (old_size - 1)) == 0) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = old_size - 1, sn = new_size - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0], sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == old_root && sr == new_root && sn == 0;
}

}  // namespace custos::evidence
