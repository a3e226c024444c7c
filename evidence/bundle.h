// Export bundles: one tar (POSIX pax/ustar, libarchive) that lets a stranger
// check a case with standard tools alone. Every member is under one folder,
// "custos-case-<id>/":
//
//   ledger.jsonl                  the ledger's exact bytes (up to the export's checkpoint record)
//   checkpoints/NNNNNNNN.txt      every checkpoint named by the ledger, .sig (raw Ed25519), .tsr
//   objects/<sha256>              every object a record references
//   timeline/<host>.body          Sleuth Kit 3.x bodyfile per host (timeline items' objects, concatenated)
//   pubkey.pem                    the appliance's Ed25519 public key (SPKI PEM)
//   tsa-ca.pem                    the configured TSA certificate(s), when any
//   README                        what is here and how to check it by hand
//   VERIFY.sh                     POSIX sh + sha256sum, openssl, sed, xxd: checks it all
//   SHA256SUMS                    GNU format ("<hex>  <path>") over every file above
//   SHA256SUMS.sig                raw Ed25519 over SHA256SUMS
//
// Streamed: objects go from disk to the archive in blocks, hashed on the
// way (a stored object whose bytes no longer match its name stops the
// export with Integrity). Written to a temporary beside the output, fsynced
// and renamed in only when complete.
//
// Format: doc/formats/evidence.md, "Bundle". Thread-safety: reentrant.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/status.h"

namespace custos::evidence {

struct BundleSource {
  std::string case_id;
  std::string ledger;                     // the ledger bytes to export (whole lines)
  std::string case_dir;                   // holds checkpoints/
  std::function<std::string(const std::string& hex)> object_path;  // objects/<2>/<64>
  std::string tsa_ca_pem;                 // "" when none
};

// The folder every member is under.
std::string BundleRoot(const std::string& case_id);

// Writes the bundle to `output_path`. Corruption/Integrity if the ledger
// does not scan or an object does not match its hash; NotFound for a
// missing object or checkpoint file; IOError for the output.
Status WriteBundle(const BundleSource& source, const SigningKey& key, const std::string& output_path);

// The texts of VERIFY.sh and README for a case (exposed for tests).
std::string VerifyScript();
std::string BundleReadme(const std::string& case_id, const std::string& key_fingerprint);

}  // namespace custos::evidence
