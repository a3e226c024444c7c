// custos evidence verify: the standalone verifier of evidence export bundles.
// Needs no appliance and no repository: only the tar.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "base/file_util.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "evidence/verify.h"

namespace custos::cli {

using nlohmann::json;

namespace {

void AddVerify(CLI::App& evidence, Globals& g, int& rc) {
  auto* verify = evidence.add_subcommand("verify", "Verify an evidence export bundle (no appliance needed)");
  verify->footer(R"(
Checks a bundle written by 'custos case export' with nothing but the tar:
the signature over SHA256SUMS and every file's hash, every ledger record
(grammar, sequence, hash chain), every signed checkpoint against the Merkle
root of the ledger lines it covers, RFC 3161 timestamps, and every evidence
object the ledger references. Each problem is named: an edited, deleted or
reordered record, a ledger cut short, a swapped object, an altered signature,
a checkpoint signed by another key.

--expect-key pins the appliance key (its fingerprint, as 'sha256:<hex>' of
the DER public key: openssl pkey -pubin -in pubkey.pem -outform DER |
sha256sum). Without it, a bundle forged whole under a new key verifies.
--checkpoint gives an earlier checkpoint text received out of band (FILE.sig
beside it is checked too); the bundle's ledger must contain it.

Exit codes: 0 verified; 4 the bundle does not verify (each problem is
printed); 1 the bundle or checkpoint file cannot be read; 2 usage.)");
  static std::string file, expect_key, checkpoint;
  verify->add_option("FILE", file, "The bundle (.tar)")->required();
  verify->add_option("--expect-key", expect_key, "The appliance key fingerprint the bundle must be signed with");
  verify->add_option("--checkpoint", checkpoint, "An earlier checkpoint text the ledger must contain");
  verify->callback([&] {
    evidence::VerifyOptions o;
    if (!expect_key.empty()) {
      if (expect_key.size() != 71 || expect_key.rfind("sha256:", 0) != 0 || !IsLowerHex(expect_key.substr(7))) {
        rc = Fail(InvalidArgumentError("--expect-key must be sha256:<64 lowercase hex>"), kExitUsage);
        return;
      }
      o.expect_key = expect_key;
    }
    if (!checkpoint.empty()) {
      auto text = ReadFile(checkpoint);
      if (!text.ok()) { rc = Fail(text.status().Annotate("--checkpoint"), kExitError); return; }
      o.earlier_checkpoint.assign(text->begin(), text->end());
      std::string sig_path = checkpoint.size() > 4 && checkpoint.substr(checkpoint.size() - 4) == ".txt"
                                 ? checkpoint.substr(0, checkpoint.size() - 4) + ".sig"
                                 : checkpoint + ".sig";
      if (auto sig = ReadFile(sig_path); sig.ok()) o.earlier_signature.assign(sig->begin(), sig->end());
    }
    auto rep = evidence::VerifyBundleFile(file, o);
    if (!rep.ok()) { rc = Fail(rep.status(), kExitError); return; }
    if (g.json) {
      json out{{"verified", rep->ok()},
               {"case", rep->case_id},
               {"key", rep->key_fingerprint},
               {"records", rep->records},
               {"checkpoints", rep->checkpoints},
               {"timestamps", rep->timestamps},
               {"objects", rep->objects},
               {"latest_checkpoint", {{"size", rep->latest_size}, {"root", rep->latest_root}}},
               {"problems", rep->problems},
               {"notes", rep->notes}};
      std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else {
      for (const auto& p : rep->problems) std::printf("FAILED: %s\n", EscapeForDisplay(p).c_str());
      if (!g.quiet) {
        for (const auto& n : rep->notes) std::printf("note: %s\n", EscapeForDisplay(n).c_str());
        std::printf("case %s, key %s\n", rep->case_id.c_str(), rep->key_fingerprint.c_str());
        std::printf("%llu records, %llu checkpoints (%llu timestamped), %llu objects; latest checkpoint covers %llu records, root %s\n",
                    (unsigned long long)rep->records, (unsigned long long)rep->checkpoints,
                    (unsigned long long)rep->timestamps, (unsigned long long)rep->objects,
                    (unsigned long long)rep->latest_size, rep->latest_root.c_str());
      }
      if (rep->ok() && !g.quiet) std::printf("OK: bundle verified%s\n", o.expect_key.empty() ? " (key not pinned: use --expect-key)" : "");
      if (!rep->ok()) std::printf("bundle does NOT verify: %zu problems\n", rep->problems.size());
    }
    if (!rep->ok()) rc = kExitNotVerified;
  });
}

}  // namespace

void AddEvidenceCommands(CLI::App& app, Globals& g, int& rc) {
  auto* evidence = app.add_subcommand("evidence", "Verify evidence export bundles");
  evidence->require_subcommand(1);
  AddVerify(*evidence, g, rc);
}

}  // namespace custos::cli
