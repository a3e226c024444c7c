// custos reports list|show|verify|public-key, custos drill
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "base/file_util.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "restore/drill.h"
#include "restore/report.h"
#include "snapshot/manifest.h"

namespace custos::cli {

using nlohmann::json;

namespace {

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

void PrintJson(const json& j) { std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n"; }

// Writes report.json (the exact signed bytes), report.sig (64 raw bytes) and
// signing-key.pem into `dir`, for openssl pkeyutl -verify.
Status ExportReport(const restore::StoredReport& r, const std::string& dir) {
  RETURN_IF_ERROR(MakeDirs(dir));
  const auto& s = r.signed_report;
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/report.json", AsBytes(s.body), 0644, Overwrite::kYes));
  RETURN_IF_ERROR(WriteFileAtomic(dir + "/report.sig", ByteView(s.signature.data(), s.signature.size()), 0644,
                                  Overwrite::kYes));
  std::string pem = PublicKeyPem(ByteView(s.public_key.data(), s.public_key.size()));
  return WriteFileAtomic(dir + "/signing-key.pem", AsBytes(pem), 0644, Overwrite::kYes);
}

void AddReports(CLI::App& app, Globals& g, int& rc) {
  auto* reports = app.add_subcommand("reports", "List, show and verify the signed restore and drill reports");
  reports->require_subcommand(1);
  reports->footer(R"(
Every restore and every drill records a report in the repository: which
snapshot was restored, from which host, into which target, by whom, when, how
long it took, how many files and bytes, which files failed and why, and the
verification result. The report body is JSON signed with the repository's
Ed25519 key; anyone can check a report with standard tools:

  custos reports verify ID --export DIR
  openssl pkeyutl -verify -pubin -inkey DIR/signing-key.pem -rawin \
      -in DIR/report.json -sigfile DIR/report.sig

REPORT is an ID, a unique ID prefix, or 'latest'.

Exit codes: 0 ok; 1 a report is damaged or its signature does not verify;
10 no repository; 12 wrong passphrase.)");

  // ---- list
  auto* list = reports->add_subcommand("list", "List reports, oldest first");
  static std::string kind;
  list->add_option("--kind", kind, "Only 'restore' or 'drill' reports")->check(CLI::IsMember({"restore", "drill"}));
  list->callback([&] {
    Opened op = OpenRepo(g, false);
    if (!op.repo) { rc = op.exit_code; return; }
    std::vector<std::string> problems;
    auto all = restore::LoadReports(*op.repo, &problems);
    if (!all.ok()) { rc = Fail(all.status()); return; }
    json arr = json::array();
    if (!g.json) {
      std::printf("%-12s %-20s %-8s %-12s %-16s %-9s %s\n", "ID", "Finished", "Kind", "Snapshot", "Host", "Result",
                  "Target");
    }
    for (const auto& r : *all) {
      const json& b = r.body;
      if (!kind.empty() && Str(b, "kind") != kind) continue;
      json snap = b.value("snapshot", json::object());
      if (g.json) {
        arr.push_back(json{{"id", r.id.Hex()}, {"report", b}});
        continue;
      }
      std::string finished = Str(b, "finished").substr(0, 19);
      std::printf("%-12s %-20s %-8s %-12s %-16s %-9s %s\n", r.id.Short().c_str(), finished.c_str(),
                  Str(b, "kind").c_str(), Str(snap, "id").substr(0, 12).c_str(), Str(snap, "host").c_str(),
                  restore::ReportVerdict(b).c_str(), EscapeForDisplay(Str(b, "target")).c_str());
    }
    if (g.json) PrintJson(arr);
    for (const auto& p : problems) PrintError("warning: " + p);
    if (!problems.empty()) rc = kExitError;
  });

  // ---- show
  auto* show = reports->add_subcommand("show", "Show one report (human summary, or the signed JSON with --json)");
  static std::string show_id;
  show->add_option("REPORT", show_id, "Report ID, prefix or 'latest'")->required();
  show->callback([&] {
    Opened op = OpenRepo(g, false);
    if (!op.repo) { rc = op.exit_code; return; }
    auto id = restore::FindReport(*op.repo, show_id);
    if (!id.ok()) { rc = Fail(id.status()); return; }
    auto r = restore::LoadReport(*op.repo, *id);
    if (!r.ok()) { rc = Fail(r.status()); return; }
    if (g.json) {
      std::cout << r->signed_report.body << "\n";
      return;
    }
    std::printf("report %s (signature verified)\n%s", r->id.Hex().c_str(), restore::RenderReport(r->body).c_str());
  });

  // ---- verify
  auto* verify = reports->add_subcommand("verify", "Verify report signatures (one, or all)");
  static std::string verify_id, export_dir;
  verify->add_option("REPORT", verify_id, "Report ID, prefix or 'latest'; all reports when omitted");
  verify->add_option("--export", export_dir,
                     "Write report.json, report.sig and signing-key.pem into DIR for openssl (needs REPORT)");
  verify->callback([&] {
    if (!export_dir.empty() && verify_id.empty()) {
      rc = Fail(InvalidArgumentError("--export needs a REPORT"), kExitUsage);
      return;
    }
    Opened op = OpenRepo(g, false);
    if (!op.repo) { rc = op.exit_code; return; }
    std::vector<Id> ids;
    if (verify_id.empty()) {
      auto all = op.repo->ListReports();
      if (!all.ok()) { rc = Fail(all.status()); return; }
      ids = *all;
    } else {
      auto id = restore::FindReport(*op.repo, verify_id);
      if (!id.ok()) { rc = Fail(id.status()); return; }
      ids.push_back(*id);
    }
    json arr = json::array();
    size_t bad = 0;
    for (const Id& id : ids) {
      auto r = restore::LoadReport(*op.repo, id);
      if (!r.ok()) {
        ++bad;
        if (g.json) arr.push_back(json{{"id", id.Hex()}, {"valid", false}, {"error", r.status().ToString()}});
        else std::printf("%s  INVALID  %s\n", id.Short().c_str(), r.status().ToString().c_str());
        continue;
      }
      if (g.json) arr.push_back(json{{"id", id.Hex()}, {"valid", true}});
      else if (!g.quiet) std::printf("%s  ok  signature verified\n", id.Short().c_str());
      if (!export_dir.empty()) {
        Status st = ExportReport(*r, export_dir);
        if (!st.ok()) { rc = Fail(st.Annotate("export")); return; }
        if (!g.json && !g.quiet) {
          std::printf("wrote %s/report.json, report.sig and signing-key.pem; check with:\n"
                      "  openssl pkeyutl -verify -pubin -inkey %s/signing-key.pem -rawin -in %s/report.json "
                      "-sigfile %s/report.sig\n",
                      export_dir.c_str(), export_dir.c_str(), export_dir.c_str(), export_dir.c_str());
        }
      }
    }
    if (g.json) PrintJson(json{{"reports", arr}, {"valid", ids.size() - bad}, {"invalid", bad}});
    else if (!g.quiet) std::printf("%zu reports verified, %zu invalid\n", ids.size() - bad, bad);
    if (bad) rc = kExitError;
  });

  // ---- public-key
  auto* pub = reports->add_subcommand("public-key", "Print the repository's Ed25519 signing public key (PEM)");
  static std::string pub_out;
  pub->add_option("-o,--output", pub_out, "Write to FILE instead of stdout");
  pub->callback([&] {
    Opened op = OpenRepo(g, false);
    if (!op.repo) { rc = op.exit_code; return; }
    auto key = op.repo->signing_key();
    std::string pem = PublicKeyPem(ByteView(key.public_key.data(), key.public_key.size()));
    if (pub_out.empty()) {
      std::cout << pem;
      return;
    }
    Status st = WriteFileAtomic(pub_out, AsBytes(pem), 0644, Overwrite::kYes);
    if (!st.ok()) rc = Fail(st);
  });
}

void AddDrill(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("drill", "Rehearse a restore: restore into scratch space, verify, time, report");
  cmd->footer(R"(
A drill proves that a snapshot can be restored, and how long it takes, before
the office needs it. It restores SNAPSHOT (an ID, a unique prefix or 'latest')
into a fresh directory under --scratch (default /var/tmp), reads every
restored file back and compares it with the SHA-256 recorded at backup time,
measures the restore rate, records a signed drill report in the repository
(see 'custos reports') and removes the scratch data.

--all (the default) restores everything and measures the real time of a full
restore. --sample N restores N files chosen at random: cheaper, and the report
extrapolates the full restore time from the measured rate. The drill refuses
to start when the scratch file system lacks the room.

Exit codes: 0 drill passed; 3 some files failed to restore or verify (named in
the output and the report) or the report could not be saved; 1 the drill
could not run (no room, unreadable snapshot); 10 no repository; 12 wrong
passphrase.)");
  static std::string spec, host, scratch;
  static uint64_t sample = 0;
  static bool all = false, keep = false;
  cmd->add_option("SNAPSHOT", spec, "Snapshot to rehearse (ID, prefix or 'latest')")->required();
  auto* s = cmd->add_option("--sample", sample, "Restore N files chosen at random")->check(CLI::PositiveNumber);
  cmd->add_flag("--all", all, "Restore every file (the default)")->excludes(s);
  cmd->add_option("--host", host, "With 'latest': the newest snapshot of this host");
  cmd->add_option("--scratch", scratch, "Directory under which the scratch data goes (default /var/tmp)");
  cmd->add_flag("--keep", keep, "Keep the restored scratch data (its path is printed)");
  cmd->callback([&] {
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto snap = snapshot::FindSnapshot(*op.repo, spec, snapshot::SnapshotFilter{host, {}, {}});
    if (!snap.ok()) { rc = Fail(snap.status()); return; }
    restore::DrillOptions o;
    o.sample = all ? 0 : sample;
    o.scratch_parent = scratch;
    o.keep_scratch = keep;
    bool tty = StderrIsTty() && !g.quiet && !g.json;
    if (tty) o.progress = TtyProgress;
    auto res = restore::RunDrill(*op.repo, *snap, o);
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (!res.ok()) { rc = Fail(res.status()); return; }
    if (!res->report_id) {
      PrintError("the drill report could not be saved in the repository: " + res->report_status.ToString());
    }
    if (g.json) {
      json out = res->body;
      out["report_id"] = res->report_id ? json(res->report_id->Hex()) : json(nullptr);
      PrintJson(out);
    } else {
      for (const auto& f : res->restore.failures) {
        std::fprintf(stderr, "error: %s\n", EscapeForDisplay(f.Describe()).c_str());
      }
      if (!g.quiet) {
        std::printf("%s", restore::RenderReport(res->body).c_str());
        if (res->report_id) {
          std::printf("report %s saved (custos reports show %s)\n", res->report_id->Short().c_str(),
                      res->report_id->Short().c_str());
        }
      }
    }
    if (!res->ok() || !res->report_id) rc = kExitPartial;
  });
}

}  // namespace

void AddReportCommands(CLI::App& app, Globals& g, int& rc) {
  AddReports(app, g, rc);
  AddDrill(app, g, rc);
}

}  // namespace custos::cli
