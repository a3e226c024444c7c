// RFC 9162 Merkle trees (evidence/merkle.h): the Certificate Transparency
// reference vectors (roots of sizes 0-8, inclusion and consistency proofs),
// the incremental frontier against a from-the-definition recursive MTH, and
// every inclusion and consistency proof for all sizes up to 20, each also
// refused when any part of it is changed.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "base/crypto.h"
#include "evidence/merkle.h"

using namespace custos;
using namespace custos::evidence;

namespace {

Hash H(const std::string& hex) { return *Id::FromHex(hex); }

// The eight leaves of the CT reference tree (RFC 6962 test data).
std::vector<Bytes> CtLeaves() {
  std::vector<std::string> hex = {"",         "00",       "10",       "2021", "3031", "40414243",
                                  "5051525354555657", "606162636465666768696a6b6c6d6e6f"};
  std::vector<Bytes> out;
  for (const auto& h : hex) out.push_back(*FromHex(h));
  return out;
}

const char* kCtRoots[] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

std::vector<Hash> LeafHashes(const std::vector<Bytes>& leaves) {
  std::vector<Hash> out;
  for (const auto& l : leaves) out.push_back(LeafHash(l));
  return out;
}

// MTH straight from RFC 9162 2.1.1, with its own hashing (no NodeHash).
Hash ReferenceMth(const std::vector<Bytes>& d, size_t lo, size_t hi) {
  size_t n = hi - lo;
  if (n == 0) return Sha256(ByteView());
  if (n == 1) {
    Bytes b{0x00};
    Append(b, d[lo]);
    return Sha256(b);
  }
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  Hash l = ReferenceMth(d, lo, lo + k), r = ReferenceMth(d, lo + k, hi);
  Bytes b{0x01};
  Append(b, l.bytes);
  Append(b, r.bytes);
  return Sha256(b);
}

std::vector<Bytes> NumberedLeaves(size_t n) {
  std::vector<Bytes> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s = "{\"seq\":" + std::to_string(i) + "}";
    out.emplace_back(s.begin(), s.end());
  }
  return out;
}

Hash Flip(Hash h) {
  h.bytes[0] ^= 1;
  return h;
}

}  // namespace

TEST_CASE("merkle roots match the RFC 6962 reference tree for sizes 0 to 8", "[evidence][merkle]") {
  auto leaves = CtLeaves();
  MerkleTree t;
  CHECK(t.Root() == H(kCtRoots[0]));
  CHECK(EmptyTreeHash() == H(kCtRoots[0]));
  for (size_t n = 1; n <= 8; ++n) {
    t.AppendLeaf(leaves[n - 1]);
    INFO("size " << n);
    CHECK(t.Root() == H(kCtRoots[n]));
    auto hashes = LeafHashes(leaves);
    CHECK(RootFromLeafHashes(std::span<const Hash>(hashes.data(), n)) == H(kCtRoots[n]));
  }
}

TEST_CASE("merkle inclusion and consistency proofs match the RFC 6962 reference vectors", "[evidence][merkle]") {
  auto hashes = LeafHashes(CtLeaves());
  struct Case {
    uint64_t index, size;
    std::vector<const char*> proof;
  };
  std::vector<Case> inclusion = {
      {0, 8, {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {5, 8, {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
      {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
      {1, 5, {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
  };
  for (const auto& c : inclusion) {
    INFO("inclusion of " << c.index << " in " << c.size);
    std::vector<Hash> want;
    for (auto* h : c.proof) want.push_back(H(h));
    auto got = InclusionProof(std::span<const Hash>(hashes.data(), c.size), c.index);
    CHECK(got == want);
    CHECK(VerifyInclusion(c.index, c.size, hashes[c.index], want, H(kCtRoots[c.size])));
  }
  std::vector<Case> consistency = {
      {1, 1, {}},
      {1, 8, {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {6, 8, {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
      {2, 5, {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
  };
  for (const auto& c : consistency) {
    uint64_t m = c.index, n = c.size;
    INFO("consistency " << m << " -> " << n);
    std::vector<Hash> want;
    for (auto* h : c.proof) want.push_back(H(h));
    CHECK(ConsistencyProof(std::span<const Hash>(hashes.data(), n), m) == want);
    CHECK(VerifyConsistency(m, n, H(kCtRoots[m]), H(kCtRoots[n]), want));
  }
}

TEST_CASE("merkle frontier root equals the recursive definition for every size to 130", "[evidence][merkle]") {
  auto leaves = NumberedLeaves(130);
  MerkleTree t;
  for (size_t n = 1; n <= leaves.size(); ++n) {
    t.AppendLeaf(leaves[n - 1]);
    INFO("size " << n);
    REQUIRE(t.size() == n);
    REQUIRE(t.Root() == ReferenceMth(leaves, 0, n));
  }
}

TEST_CASE("merkle inclusion proofs verify for every leaf of every size to 20 and fail when altered",
          "[evidence][merkle]") {
  auto leaves = NumberedLeaves(21);
  auto hashes = LeafHashes(leaves);
  for (uint64_t n = 1; n <= 20; ++n) {
    std::span<const Hash> tree(hashes.data(), n);
    Hash root = ReferenceMth(leaves, 0, n);
    for (uint64_t i = 0; i < n; ++i) {
      INFO("leaf " << i << " of " << n);
      auto proof = InclusionProof(tree, i);
      REQUIRE(VerifyInclusion(i, n, hashes[i], proof, root));
      CHECK_FALSE(VerifyInclusion(i, n, Flip(hashes[i]), proof, root));
      CHECK_FALSE(VerifyInclusion(i, n, hashes[i], proof, Flip(root)));
      // (The same proof may verify with another size of the same shape:
      // the signed checkpoint binds the size, not the proof.)
      CHECK_FALSE(VerifyInclusion(i, n + 1, hashes[i], proof, ReferenceMth(leaves, 0, n + 1)));
      CHECK_FALSE(VerifyInclusion(n, n, hashes[i], proof, root));
      if (n > 1) CHECK_FALSE(VerifyInclusion((i + 1) % n, n, hashes[i], proof, root));
      for (size_t k = 0; k < proof.size(); ++k) {
        auto bad = proof;
        bad[k] = Flip(bad[k]);
        CHECK_FALSE(VerifyInclusion(i, n, hashes[i], bad, root));
      }
      auto longer = proof;
      longer.push_back(root);
      CHECK_FALSE(VerifyInclusion(i, n, hashes[i], longer, root));
      if (!proof.empty()) {
        auto shorter = proof;
        shorter.pop_back();
        CHECK_FALSE(VerifyInclusion(i, n, hashes[i], shorter, root));
      }
    }
  }
}

TEST_CASE("merkle consistency proofs verify for every pair of sizes to 20 and fail when altered",
          "[evidence][merkle]") {
  auto leaves = NumberedLeaves(20);
  auto hashes = LeafHashes(leaves);
  std::vector<Hash> roots;
  for (size_t n = 0; n <= 20; ++n) roots.push_back(ReferenceMth(leaves, 0, n));
  for (uint64_t n = 1; n <= 20; ++n) {
    std::span<const Hash> tree(hashes.data(), n);
    for (uint64_t m = 1; m <= n; ++m) {
      INFO("consistency " << m << " -> " << n);
      auto proof = ConsistencyProof(tree, m);
      REQUIRE(VerifyConsistency(m, n, roots[m], roots[n], proof));
      CHECK_FALSE(VerifyConsistency(m, n, Flip(roots[m]), roots[n], proof));
      CHECK_FALSE(VerifyConsistency(m, n, roots[m], Flip(roots[n]), proof));
      for (size_t k = 0; k < proof.size(); ++k) {
        auto bad = proof;
        bad[k] = Flip(bad[k]);
        CHECK_FALSE(VerifyConsistency(m, n, roots[m], roots[n], bad));
      }
      if (m < n) {
        CHECK_FALSE(VerifyConsistency(m, n, roots[m], roots[n], {}));
        // A different history of the same size is not consistent.
        auto other = leaves;
        other[m - 1].push_back('x');
        CHECK_FALSE(VerifyConsistency(m, n, ReferenceMth(other, 0, m), roots[n], proof));
      }
    }
  }
  CHECK(VerifyConsistency(0, 5, roots[0], roots[5], {}));
  CHECK_FALSE(VerifyConsistency(6, 5, roots[6], roots[5], {}));
}
