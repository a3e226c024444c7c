// custos restore
#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <iostream>

#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "restore/report.h"
#include "restore/restorer.h"
#include "snapshot/manifest.h"

namespace custos::cli {

using nlohmann::json;

namespace {

// "2026-11-20T02:00:00Z", "2026-11-20 02:00[:00]" (local time), "2026-11-20"
// (local midnight), or with a numeric offset "+07:00". Returns Unix ns.
std::optional<int64_t> ParseTime(const std::string& s) {
  const char* formats[] = {"%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                           "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"};
  std::string t = s;
  bool utc = !t.empty() && (t.back() == 'Z' || t.back() == 'z');
  if (utc) t.pop_back();
  for (const char* f : formats) {
    tm tmv{};
    tmv.tm_isdst = -1;
    const char* end = strptime(t.c_str(), f, &tmv);
    if (!end || *end != '\0') continue;
    bool has_zone = std::string(f).find("%z") != std::string::npos;
    time_t secs;
    if (utc || has_zone) {
      long off = has_zone ? tmv.tm_gmtoff : 0;
      secs = timegm(&tmv) - off;
    } else {
      secs = mktime(&tmv);
    }
    return int64_t(secs) * 1000000000;
  }
  return std::nullopt;
}

}  // namespace

void AddRestoreCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cmd = app.add_subcommand("restore", "Restore a snapshot into a directory and verify every file");
  cmd->footer(R"(
SNAPSHOT is an ID, a unique ID prefix or 'latest'; SNAPSHOT:/some/path restores
only that subtree. Instead of SNAPSHOT, --before TIME picks the newest snapshot
taken before TIME (the last clean point before an incident); add --host to
choose the server. TIME: 2026-11-20T02:00:00Z, '2026-11-20 02:00' (local
time), 2026-11-20, or with an offset such as 2026-11-20T02:00:00+07:00.

Every file is written under a temporary name, read back and compared with the
SHA-256 recorded at backup time (unless --verify none), and only then renamed
into place: an interrupted restore never leaves a truncated file under a real
name, and running the same restore again finishes the job, skipping files that
are already correct. Nothing is ever written outside --target: names are
checked and no symlink in the target is followed. Ownership is restored when
running as root; device nodes need root.

Every restore records a signed report in the repository (snapshot, target,
counts, bytes, failures with reasons, durations, verification result); see
'custos reports'. The report is saved even when the restore cannot start
(target locked or unwritable). --json prints a summary with the report's ID.

Through an agent: --agent NAME restores on that enrolled server. The CLI asks
the running custosd (--data-dir or $CUSTOS_DATA_DIR; no repository options), which
sends the agent only the blobs of this snapshot path; the agent writes them
with the same rules and checks, and custosd keeps the signed report. --target
is a directory on the agent's server (absolute). 'latest' means the agent's
own newest snapshot unless --host names another.

  custos restore latest:/etc --agent db01 --target /var/lib/custos-agent/restore/etc

Exit code 3 when some files could not be restored (each is named, with the
reason) or the report could not be saved; 11 when another restore is writing
into the same target; with --agent, 1 when the job failed and 13 when no
custosd answers.)");
  static std::string spec, target, before, host, overwrite = "if-changed", verify = "hash";
  static std::vector<std::string> includes, excludes;
  static bool no_report = false;
  static std::string agent;
  cmd->add_option("SNAPSHOT", spec, "Snapshot[:path] to restore");
  cmd->add_option("-t,--target", target, "Directory to restore into (created if missing)")->required();
  cmd->add_option("--include", includes, "Restore only paths matching PATTERN (repeatable)");
  cmd->add_option("--exclude", excludes, "Do not restore paths matching PATTERN (repeatable)");
  cmd->add_option("--overwrite", overwrite, "Existing files: never, if-changed (default), always")
      ->check(CLI::IsMember({"never", "if-changed", "always"}));
  cmd->add_option("--verify", verify, "hash (default): read back and compare SHA-256; none: skip")
      ->check(CLI::IsMember({"none", "hash"}));
  cmd->add_option("--before", before, "Pick the newest snapshot taken before TIME");
  cmd->add_option("--host", host, "With --before or 'latest': only snapshots of this host");
  cmd->add_flag("--no-report", no_report, "Do not record a signed restore report in the repository");
  cmd->add_option("--agent", agent,
                  "Restore on this enrolled agent's server, through the appliance (custosd must run)");
  cmd->callback([&] {
    if (!agent.empty()) {
      if (spec.empty() || !before.empty() || no_report) {
        rc = Fail(InvalidArgumentError("restore --agent: give SNAPSHOT[:PATH] (--before and --no-report are local only)"),
                  kExitUsage);
        return;
      }
      if (target.empty() || target[0] != '/') {
        rc = Fail(InvalidArgumentError("restore --agent: --target must be an absolute path on the agent's server"),
                  kExitUsage);
        return;
      }
      RemoteRestoreRequest q;
      q.agent = agent;
      q.snapshot = spec.substr(0, spec.find(':'));
      q.subpath = spec.find(':') == std::string::npos ? "/" : spec.substr(spec.find(':') + 1);
      if (q.subpath.empty()) q.subpath = "/";
      q.target = target;
      q.overwrite = overwrite;
      q.verify = verify == "hash";
      q.includes = includes;
      q.excludes = excludes;
      q.host = host;
      rc = RemoteRestore(g, q);
      return;
    }
    if (spec.empty() == before.empty()) {
      rc = Fail(InvalidArgumentError("give either SNAPSHOT or --before TIME"), kExitUsage);
      return;
    }
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    std::string snap_spec = spec, subpath = "/";
    if (auto colon = spec.find(':'); colon != std::string::npos) {
      snap_spec = spec.substr(0, colon);
      subpath = spec.substr(colon + 1);
      if (subpath.empty()) subpath = "/";
    }
    snapshot::SnapshotInfo chosen;
    if (!before.empty()) {
      auto t = ParseTime(before);
      if (!t) { rc = Fail(InvalidArgumentError("--before: cannot read time '" + before + "'"), kExitUsage); return; }
      auto all = snapshot::LoadSnapshots(repo);
      if (!all.ok()) { rc = Fail(all.status()); return; }
      bool found = false;
      for (auto it = all->rbegin(); it != all->rend(); ++it) {
        if (it->manifest.time_ns < *t && (host.empty() || it->manifest.host == host)) {
          chosen = *it;
          found = true;
          break;
        }
      }
      if (!found) {
        rc = Fail(NotFoundError("no snapshot" + (host.empty() ? "" : " of host " + host) + " was taken before " +
                                snapshot::FormatTimeNs(*t)));
        return;
      }
      if (!g.json && !g.quiet) {
        std::printf("picked snapshot %s taken %s on %s (the newest before %s)\n", chosen.id.Short().c_str(),
                    chosen.manifest.time.c_str(), chosen.manifest.host.c_str(), snapshot::FormatTimeNs(*t).c_str());
      }
    } else {
      auto s = snapshot::FindSnapshot(repo, snap_spec, snapshot::SnapshotFilter{host, {}, {}});
      if (!s.ok()) { rc = Fail(s.status()); return; }
      chosen = *s;
    }
    restore::RestoreOptions o;
    o.target = target;
    o.subpath = subpath;
    o.includes = includes;
    o.excludes = excludes;
    o.overwrite = overwrite == "never" ? restore::OverwritePolicy::kNever
                  : overwrite == "always" ? restore::OverwritePolicy::kAlways
                                          : restore::OverwritePolicy::kIfChanged;
    o.verify = verify == "hash";
    bool tty = StderrIsTty() && !g.quiet && !g.json;
    if (tty) o.progress = TtyProgress;
    restore::ReportContext ctx;
    ctx.repository_id = repo.config().id;
    ctx.snapshot = chosen;
    ctx.subpath = subpath;
    ctx.target = target;
    restore::LoadAtimesFor(repo, chosen.manifest, &o);
    ctx.options = o;
    ctx.started = snapshot::FormatTimeNs(NowNs());
    auto res = restore::Restore(repo, chosen.manifest.tree, o);
    ctx.finished = snapshot::FormatTimeNs(NowNs());
    if (tty) std::fprintf(stderr, "\r\033[K");
    // Every restore leaves a signed report, also one that could not start.
    restore::RestoreResult empty;
    json body = restore::RestoreReportBody(ctx, res.ok() ? *res : empty,
                                           res.ok() ? "" : res.status().ToString());
    auto report_id = no_report ? Result<Id>(UnavailableError("not requested")) : restore::SaveReport(repo, body);
    if (!no_report && !report_id.ok()) {
      PrintError("the restore report could not be saved in the repository: " + report_id.status().ToString());
    }
    if (!res.ok()) { rc = Fail(res.status().Annotate("restore")); return; }
    if (g.json) {
      std::cout << json{{"snapshot_id", chosen.id.Hex()},
                        {"host", chosen.manifest.host},
                        {"target", target},
                        {"files_restored", res->files_restored},
                        {"files_skipped", res->files_skipped},
                        {"files_verified", res->files_verified},
                        {"files_failed", res->files_failed},
                        {"dirs", res->dirs},
                        {"links", res->links},
                        {"specials", res->specials},
                        {"bytes_written", res->bytes_written},
                        {"duration_s", res->duration_s},
                        {"verified", o.verify},
                        {"failures", body["failures"]},
                        {"report_id", report_id.ok() ? json(report_id->Hex()) : json(nullptr)}}
                       .dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
    } else {
      for (const auto& f : res->failures) std::fprintf(stderr, "error: %s\n", EscapeForDisplay(f.Describe()).c_str());
      if (!g.quiet) {
        std::printf("restored %llu files (%s), %llu dirs, %llu links, %llu special; %llu already correct; %llu failed; in %s\n",
                    (unsigned long long)res->files_restored, HumanBytes(res->bytes_written).c_str(),
                    (unsigned long long)res->dirs, (unsigned long long)res->links, (unsigned long long)res->specials,
                    (unsigned long long)res->files_skipped, (unsigned long long)res->files_failed,
                    HumanDuration(res->duration_s).c_str());
        if (o.verify) {
          std::printf("verification: %llu files match their recorded SHA-256\n", (unsigned long long)res->files_verified);
        } else {
          std::printf("verification: off\n");
        }
        if (report_id.ok()) std::printf("report %s saved (custos reports show %s)\n", report_id->Short().c_str(),
                                        report_id->Short().c_str());
      }
    }
    if (!res->ok()) rc = kExitPartial;
    if (!no_report && !report_id.ok() && rc == kExitOk) rc = kExitPartial;
  });
}

}  // namespace custos::cli
