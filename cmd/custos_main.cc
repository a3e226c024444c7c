// custos: the operator's command-line tool. With no daemon it opens a local
// repository directly (the embedded mode). Thin: parses flags, calls the
// modules, prints text or JSON, maps Status to documented exit codes.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <malloc.h>

#include <charconv>
#include <cstdio>
#include <iostream>

#include "base/crypto.h"
#include "base/file_util.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "storage/backend.h"
#include "storage/check.h"
#include "storage/format.h"
#include "storage/repository.h"

using nlohmann::json;
using namespace custos;
using namespace custos::cli;
using custos::storage::Repository;

namespace {


constexpr const char* kExitCodes = R"(
EXIT CODES
  0    success
  1    error (including damage found by check)
  2    usage error (bad flags or arguments)
  3    partial: finished, but some items failed
  4    evidence verify: the bundle does not verify
  10   no repository at that path
  11   repository locked by another writer
  12   wrong passphrase (no key slot opens)
  13   no custosd answers on the control socket (agent, status)
  130  interrupted (SIGINT/SIGTERM)

ENVIRONMENT
  CUSTOS_REPOSITORY      repository path (instead of --repo)
  CUSTOS_DATA_DIR        custosd's data directory (instead of --data-dir)
  CUSTOS_PASSWORD        the passphrase (prefer a file: environments leak)
  CUSTOS_PASSWORD_FILE   file whose first line is the passphrase
)";

Argon2Params KdfFrom(uint64_t ops, uint64_t mem_mib) {
  Argon2Params p;
  if (ops) p.ops = ops;
  if (mem_mib) p.mem_bytes = mem_mib << 20;
  return p;
}

json SlotJson(const storage::KeySlot& s, const std::string& current) {
  json j = {{"id", s.id},
            {"kind", s.kind == storage::SlotKind::kRecovery ? "recovery" : "passphrase"},
            {"label", s.label},
            {"created", s.created},
            {"host", s.host},
            {"user", s.user},
            {"current", s.id == current}};
  if (s.kind == storage::SlotKind::kPassphrase) {
    j["kdf"] = {{"algorithm", "argon2id"}, {"ops", s.kdf.ops}, {"memory_mib", s.kdf.mem_bytes >> 20}};
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  // Fixed malloc thresholds: large buffers (chunks, KDF memory) go back to
  // the system when freed instead of staying in an arena, and a few arenas
  // suffice for our handful of threads. Keeps peak RSS close to live data.
  mallopt(M_ARENA_MAX, 4);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CryptoInit();
  InstallInterruptHandler();
  Globals g;
  CLI::App app{
      "custos - encrypted, deduplicated backups, verified restores and signed evidence.\n\n"
      "Without a running appliance, custos works on a local repository directly\n"
      "(default " + DefaultRepository() + ").",
      "custos"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.fallthrough();  // subcommands inherit it: global flags work after the subcommand too
  app.set_version_flag("--version", std::string("custos ") + kVersion);
  app.add_option("-r,--repo", g.repo, "Repository directory (default: $CUSTOS_REPOSITORY, else the default path)");
  app.add_option("--data-dir", g.data_dir, "custosd's data directory, for agent and status (default: $CUSTOS_DATA_DIR)");
  app.add_option("-p,--password-file", g.password_file, "File whose first line is the passphrase (also $CUSTOS_PASSWORD_FILE)");
  app.add_flag("--json", g.json, "Print results as JSON on stdout");
  app.add_flag("-q,--quiet", g.quiet, "Print nothing but errors");

  int rc = kExitOk;

  // ---------------------------------------------------------------- init
  auto* init = app.add_subcommand("init", "Create a new repository");
  init->footer(R"(
Creates the repository directory (which must be absent or empty), a random
master key wrapped by your passphrase (Argon2id), and a printable recovery key
that opens the repository if every passphrase is lost. The recovery key is
shown once: print it or store it offline. With --recovery-key-file it is
written to that file (mode 0600) instead of the terminal.)");
  uint32_t pack_mib = 0;
  int zstd_level = -1;
  uint64_t kdf_ops = 0, kdf_mib = 0;
  std::string recovery_file;
  bool no_recovery = false;
  init->add_option("--pack-size", pack_mib, "Target pack size in MiB (default 24)")->check(CLI::Range(1, 1024));
  init->add_option("--compression", zstd_level, "zstd level 0-19, 0 stores uncompressed (default 3)")->check(CLI::Range(0, 19));
  init->add_option("--kdf-ops", kdf_ops, "Argon2id passes, at most 20 (default 8)")->check(CLI::Range(1, 20));
  init->add_option("--kdf-memory", kdf_mib, "Argon2id memory in MiB, at most 2048 (default 24)")->check(CLI::Range(1, 2048));
  init->add_option("--recovery-key-file", recovery_file, "Write the recovery key to this file instead of printing it");
  init->add_flag("--no-recovery-key", no_recovery, "Make no recovery key (not recommended)");
  init->callback([&] {
    std::string path = RepoPath(g);
    auto pass = GetPassphrase(g.password_file, true, "passphrase for the new repository");
    if (!pass.ok()) { rc = Fail(pass.status()); return; }
    if (pass->empty()) { rc = Fail(InvalidArgumentError("empty passphrase refused")); return; }
    storage::InitOptions opts;
    opts.pack_size = pack_mib << 20;
    opts.zstd_level = zstd_level;
    opts.kdf = KdfFrom(kdf_ops, kdf_mib);
    opts.make_recovery_key = !no_recovery;
    auto res = Repository::Init(storage::NewLocalBackend(path), *pass, opts,
                                storage::Actor::FromProcess("custos init"));
    SecureWipe(pass->data(), pass->size());
    if (!res.ok()) { rc = Fail(res.status()); return; }
    std::string rk = res->recovery_key;
    if (!recovery_file.empty() && !rk.empty()) {
      Status st = WriteFileAtomic(recovery_file, AsBytes(rk + "\n"), 0600, Overwrite::kNo);
      if (!st.ok()) {
        PrintError(st.ToString());
        std::cerr << "custos: the recovery key is printed below instead; store it now:\n" << rk << "\n";
        rc = kExitError;
        return;
      }
    }
    const auto& c = res->repo->config();
    if (g.json) {
      json j = {{"id", c.id}, {"location", path}, {"key_id", res->repo->current_key_id()},
                {"created", c.created}};
      if (!rk.empty()) {
        if (recovery_file.empty()) j["recovery_key"] = rk; else j["recovery_key_file"] = recovery_file;
      }
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else if (!g.quiet) {
      std::cout << "created repository " << c.id.substr(0, 8) << " at " << path << "\n";
      if (!rk.empty() && recovery_file.empty()) {
        std::cout << "\nRecovery key (opens the repository if every passphrase is lost; shown once):\n\n    "
                  << rk << "\n\nStore it offline, away from this machine.\n";
      } else if (!rk.empty()) {
        std::cout << "recovery key written to " << recovery_file << "\n";
      }
    } else if (!rk.empty() && recovery_file.empty()) {
      std::cout << rk << "\n";  // never lose the only copy, even with --quiet
    }
  });

  // ---------------------------------------------------------------- key
  auto* key = app.add_subcommand("key", "Manage the passphrases (key slots) of a repository");
  key->require_subcommand(1);
  key->footer(R"(
Each key slot wraps the same random master key under one passphrase
(Argon2id) or the recovery key. Any slot opens the repository. Adding or
removing a slot never re-encrypts data.)");
  auto* key_list = key->add_subcommand("list", "List key slots");
  key_list->callback([&] {
    Opened o = OpenRepo(g, false);
    if (!o.repo) { rc = o.exit_code; return; }
    auto listing = o.repo->ListKeys();
    if (!listing.ok()) { rc = Fail(listing.status()); return; }
    if (g.json) {
      json arr = json::array();
      for (const auto& s : listing->slots) arr.push_back(SlotJson(s, o.repo->current_key_id()));
      json probs = json::array();
      for (const auto& p : listing->problems) probs.push_back(p.ToString());
      std::cout << json{{"keys", arr}, {"problems", probs}}.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else {
      std::printf("%-3s %-10s %-10s %-20s %-22s %s\n", "", "ID", "KIND", "CREATED", "USER@HOST", "LABEL");
      for (const auto& s : listing->slots) {
        std::printf("%-3s %-10s %-10s %-20s %-22s %s\n", s.id == o.repo->current_key_id() ? "*" : "",
                    s.id.substr(0, 8).c_str(), s.kind == storage::SlotKind::kRecovery ? "recovery" : "passphrase",
                    s.created.c_str(), (s.user + "@" + s.host).c_str(), s.label.c_str());
      }
      for (const auto& p : listing->problems) PrintError("damaged key slot: " + p.ToString());
    }
    if (!listing->problems.empty()) rc = kExitError;
  });

  std::string new_password_file, key_label = "added";
  uint64_t key_ops = 0, key_mib = 0;
  auto* key_add = key->add_subcommand("add", "Add a passphrase");
  key_add->add_option("--new-password-file", new_password_file, "Read the new passphrase from this file instead of a prompt");
  key_add->add_option("--label", key_label, "A note to tell slots apart (for example the person's name)");
  key_add->add_option("--kdf-ops", key_ops, "Argon2id passes, at most 20 (default 8)")->check(CLI::Range(1, 20));
  key_add->add_option("--kdf-memory", key_mib, "Argon2id memory in MiB, at most 2048 (default 24)")->check(CLI::Range(1, 2048));
  key_add->callback([&] {
    Opened o = OpenRepo(g, false);
    if (!o.repo) { rc = o.exit_code; return; }
    auto np = GetNewPassphrase(new_password_file);
    if (!np.ok()) { rc = Fail(np.status()); return; }
    if (np->empty()) { rc = Fail(InvalidArgumentError("empty passphrase refused")); return; }
    auto actor = storage::Actor::FromProcess("custos key add");
    Status st = o.repo->LockForWrite(actor);
    if (!st.ok()) { rc = Fail(st); return; }
    auto slot = o.repo->AddKey(*np, KdfFrom(key_ops, key_mib), key_label, actor);
    SecureWipe(np->data(), np->size());
    if (!slot.ok()) { rc = Fail(slot.status()); return; }
    if (g.json) std::cout << SlotJson(*slot, o.repo->current_key_id()).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else if (!g.quiet) std::cout << "added key slot " << slot->id.substr(0, 8) << "\n";
  });

  std::string remove_id;
  auto* key_remove = key->add_subcommand("remove", "Remove a key slot (not the one in use)");
  key_remove->add_option("ID", remove_id, "Key slot ID or unique prefix")->required();
  key_remove->callback([&] {
    Opened o = OpenRepo(g, false);
    if (!o.repo) { rc = o.exit_code; return; }
    Status st = o.repo->LockForWrite(storage::Actor::FromProcess("custos key remove"));
    std::string removed;
    if (st.ok()) st = o.repo->RemoveKey(remove_id, &removed);
    if (!st.ok()) { rc = Fail(st); return; }
    if (g.json) std::cout << json{{"removed", removed}}.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else if (!g.quiet) std::cout << "removed key slot " << removed << "\n";
  });

  auto* key_passwd = key->add_subcommand("passwd", "Change the passphrase in use");
  key_passwd->add_option("--new-password-file", new_password_file, "Read the new passphrase from this file instead of a prompt");
  key_passwd->add_option("--kdf-ops", key_ops, "Argon2id passes, at most 20 (default 8)")->check(CLI::Range(1, 20));
  key_passwd->add_option("--kdf-memory", key_mib, "Argon2id memory in MiB, at most 2048 (default 24)")->check(CLI::Range(1, 2048));
  key_passwd->callback([&] {
    Opened o = OpenRepo(g, false);
    if (!o.repo) { rc = o.exit_code; return; }
    auto np = GetNewPassphrase(new_password_file);
    if (!np.ok()) { rc = Fail(np.status()); return; }
    if (np->empty()) { rc = Fail(InvalidArgumentError("empty passphrase refused")); return; }
    auto actor = storage::Actor::FromProcess("custos key passwd");
    Status st = o.repo->LockForWrite(actor);
    if (!st.ok()) { rc = Fail(st); return; }
    auto slot = o.repo->ChangePassphrase(*np, KdfFrom(key_ops, key_mib), actor);
    SecureWipe(np->data(), np->size());
    if (!slot.ok()) { rc = Fail(slot.status()); return; }
    if (g.json) std::cout << SlotJson(*slot, o.repo->current_key_id()).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else if (!g.quiet) std::cout << "passphrase changed; new key slot " << slot->id.substr(0, 8) << "\n";
  });

  // ---------------------------------------------------------------- check
  auto* check = app.add_subcommand("check", "Check the repository's structure and, optionally, every byte");
  check->footer(R"(
Without --read-data: every key slot and index file is intact, every pack the
index names exists and its header decrypts and agrees with the index, every
snapshot decrypts. With --read-data: also every pack is read whole, hashes to
its name, and every blob decrypts, decompresses and hashes to its ID.
--read-data-subset=N/M reads only packs whose ID (first 32 bits, big-endian)
modulo M is N-1, so M runs
(N = 1..M) cover every pack exactly once. Damage names the pack and blobs and
exits 1. Takes no lock: safe while a backup runs.)");
  bool read_data = false;
  std::string subset;
  check->add_flag("--read-data", read_data, "Read and verify every blob");
  check->add_option("--read-data-subset", subset, "Read and verify only part N of M (implies --read-data)");
  check->callback([&] {
    storage::CheckOptions opts;
    opts.read_data = read_data || !subset.empty();
    if (!subset.empty()) {
      // Digits only: sscanf's %u would take "-3" as 4294967293 and wrap overlong values.
      auto number = [](std::string_view s, uint32_t& v) {
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return !s.empty() && ec == std::errc() && end == s.data() + s.size();
      };
      uint32_t n = 0, m = 0;
      size_t slash = subset.find('/');
      if (slash == std::string::npos || !number(std::string_view(subset).substr(0, slash), n) ||
          !number(std::string_view(subset).substr(slash + 1), m) || n < 1 || m < 1 || n > m) {
        rc = Fail(InvalidArgumentError("--read-data-subset must be N/M with 1 <= N <= M, got '" + subset + "'"),
                  kExitUsage);
        return;
      }
      opts.subset_n = n;
      opts.subset_m = m;
    }
    Opened o = OpenRepo(g, true);
    if (!o.repo) { rc = o.exit_code; return; }
    bool show_progress = !g.quiet && !g.json && StderrIsTty();
    if (show_progress) {
      opts.progress = [](uint64_t done, uint64_t total, uint64_t bytes) {
        std::fprintf(stderr, "\rread %llu/%llu packs, %s   ", (unsigned long long)done,
                     (unsigned long long)total, HumanBytes(bytes).c_str());
      };
    }
    auto report = storage::Check(*o.repo, opts);
    if (show_progress && opts.read_data) std::fprintf(stderr, "\n");
    if (!report.ok()) { rc = Fail(report.status()); return; }
    auto problem_json = [](const storage::CheckProblem& p) {
      return json{{"object", p.object}, {"message", p.message}, {"blobs", p.blobs}};
    };
    if (g.json) {
      json errs = json::array(), warns = json::array();
      for (const auto& p : report->errors) errs.push_back(problem_json(p));
      for (const auto& p : report->warnings) warns.push_back(problem_json(p));
      std::cout << json{{"ok", report->ok()},
                        {"key_slots", report->key_slots},
                        {"index_files", report->index_files},
                        {"packs", report->packs},
                        {"blobs", report->blobs},
                        {"snapshots", report->snapshots},
                        {"reports", report->reports},
                        {"holds", report->holds},
                        {"read_data", opts.read_data},
                        {"subset", std::to_string(opts.subset_n) + "/" + std::to_string(opts.subset_m)},
                        {"packs_read", report->packs_read},
                        {"blobs_read", report->blobs_read},
                        {"bytes_read", report->bytes_read},
                        {"errors", errs},
                        {"warnings", warns}}
                       .dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
    } else {
      for (const auto& p : report->warnings) {
        if (!g.quiet) std::cerr << "warning: " << p.object << ": " << p.message << "\n";
      }
      for (const auto& p : report->errors) {
        std::cerr << "error: " << p.object << ": " << p.message << "\n";
        for (const auto& b : p.blobs) std::cerr << "    damaged blob " << b << "\n";
      }
      if (!g.quiet) {
        std::cout << "checked " << report->key_slots << " key slots, " << report->index_files << " index files, "
                  << report->packs << " packs, " << report->blobs << " blobs, " << report->snapshots
                  << " snapshots, " << report->reports << " reports, " << report->holds << " holds";
        if (opts.read_data) {
          std::cout << "; read " << report->packs_read << " packs (" << HumanBytes(report->bytes_read) << "), "
                    << report->blobs_read << " blobs verified";
        }
        std::cout << "\n" << (report->ok() ? "no errors were found" : "the repository is damaged") << "\n";
      }
    }
    if (!report->ok()) rc = kExitError;
  });

  AddSnapshotCommands(app, g, rc);
  AddRestoreCommands(app, g, rc);
  AddExportCommands(app, g, rc);
  AddReportCommands(app, g, rc);
  AddEvidenceCommands(app, g, rc);
  AddApplianceCommands(app, g, rc);
  AddRetentionCommands(app, g, rc);
  AddCaseCommands(app, g, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return rc;
}
