// custos dump, custos export
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdio>

#include "base/bytes.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "restore/exporter.h"
#include "restore/report.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"

namespace custos::cli {

using nlohmann::json;

namespace {

// "SNAPSHOT[:PATH]" -> (snapshot spec, path inside it, "/" by default).
std::pair<std::string, std::string> SplitSpec(const std::string& spec) {
  auto colon = spec.find(':');
  if (colon == std::string::npos) return {spec, "/"};
  std::string path = spec.substr(colon + 1);
  return {spec.substr(0, colon), path.empty() ? "/" : path};
}

void PrintProblems(const restore::ExportResult& r) {
  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", EscapeForDisplay(w.Describe()).c_str());
  for (const auto& f : r.failures) std::fprintf(stderr, "error: %s\n", EscapeForDisplay(f.Describe()).c_str());
}

json ProblemsJson(const std::vector<restore::ExportProblem>& v) {
  json a = json::array();
  for (const auto& p : v) {
    a.push_back(json{{"path", restore::JsonSafe(p.path)}, {"reason", restore::JsonSafe(p.reason)}});
  }
  return a;
}

}  // namespace

void AddExportCommands(CLI::App& app, Globals& g, int& rc) {
  // ---- dump
  auto* dump = app.add_subcommand("dump", "Write one file of a snapshot to stdout, or a directory as a tar stream");
  dump->footer(R"(
SNAPSHOT is an ID, a unique ID prefix or 'latest' (with --host: the newest of
that host). PATH is an absolute path inside the snapshot.

A regular file is written to stdout as its exact bytes, e.g.
  custos dump latest /etc/hosts > hosts
Anything else is written as a pax tar stream: a directory with everything
below it, its names relative to PATH (etc/hosts for PATH /), e.g.
  custos dump latest /etc | tar -xpf - -C /tmp/etc
The stream keeps what 'custos export --format pax' keeps (see 'custos export
--help'). Sparse holes are written as zeros.

Every file is checked against the SHA-256 recorded at backup time while it
streams. stdout cannot be taken back: when a blob cannot be read or a file
does not match, the missing bytes are zeros, the file is named on stderr and
the exit code is 3. A tar stream is refused when stdout is a terminal.
Use 'custos export -o FILE' for an archive that is published only when
complete.

Exit code 1 when PATH is not in the snapshot; 3 when some file failed.)");
  static std::string d_snap, d_path, d_host;
  dump->add_option("SNAPSHOT", d_snap, "Snapshot: ID, ID prefix or 'latest'")->required();
  dump->add_option("PATH", d_path, "Path inside the snapshot")->required();
  dump->add_option("--host", d_host, "With 'latest': only snapshots of this host");
  dump->callback([&] {
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    auto snap = snapshot::FindSnapshot(repo, d_snap, snapshot::SnapshotFilter{d_host, {}, {}});
    if (!snap.ok()) { rc = Fail(snap.status()); return; }
    if (::isatty(STDOUT_FILENO)) {
      auto node = snapshot::FindPath(repo, snap->manifest.tree, d_path);
      if (node.ok() && node->type != snapshot::NodeType::kFile) {
        rc = Fail(InvalidArgumentError("dump: " + d_path + " is not a file: refusing to write a tar stream to a "
                                       "terminal (redirect stdout or pipe it into tar)"),
                  kExitUsage);
        return;
      }
    }
    auto atimes = snapshot::LoadAtimes(repo, snap->manifest);
    if (!atimes.ok()) { rc = Fail(atimes.status().Annotate("dump")); return; }
    auto res = restore::Dump(repo, snap->manifest.tree, d_path, STDOUT_FILENO, *atimes);
    if (!res.ok()) { rc = Fail(res.status().Annotate("dump")); return; }
    PrintProblems(*res);
    if (!res->ok()) rc = kExitPartial;
  });

  // ---- export
  auto* ex = app.add_subcommand("export", "Write a snapshot (or part of it) as a tar, pax or zip archive");
  ex->footer(R"(
SNAPSHOT is an ID, a unique ID prefix or 'latest' (with --host: the newest of
that host); SNAPSHOT:/some/path exports only that subtree. Names in the
archive are relative to that path (etc/hosts when exporting /, hosts when
exporting /etc); the path itself has no entry, unless it is not a directory.
-o - writes the archive to stdout (never to a terminal).

FORMATS
  pax (default)  POSIX pax: owners (ids and names), modes, mtime, atime and
                 ctime to the ns, hard links, symlinks, fifos, devices and
                 extended attributes, POSIX ACLs among them (as the
                 system.posix_acl_* xattrs). 'tar --xattrs
                 --xattrs-include=* -xpf FILE' (GNU tar) restores all but
                 atime; 'bsdtar -xpf FILE' all but ACLs (bsdtar reads ACLs
                 only from SCHILY.acl records, which are not written).
  tar            GNU tar format: as pax, but mtime in whole seconds and no
                 xattrs, ACLs, atime or ctime.
  zip            modes, uid/gid, mtime in seconds, symlinks. Hard links are
                 stored as copies; fifos and devices are skipped, each named
                 in a warning; no xattrs or owner names. 'unzip -X -K'
                 restores uid/gid and setuid/setgid bits.
Sockets are never exported. Sparse holes are written as zeros: sizes and
content are right, the extracted files are not sparse.

NAMES are the recorded bytes, never converted. Names that are valid UTF-8 are
marked so (pax path records, the zip UTF-8 flag); others are stored raw (pax
hdrcharset=BINARY, which GNU tar reads but warns about; zip without the flag).
bsdtar needs a UTF-8 locale (LC_ALL=C.UTF-8) to extract UTF-8 names; unzip
drops control bytes such as a newline from names.

Every file is checked against the SHA-256 recorded at backup time while it
streams. The archive is written to an unnamed file in FILE's directory,
synced, and renamed over FILE only when every file was exported and
verified: a failed or interrupted export never leaves a partial archive
under FILE or a temporary beside it, and an existing FILE stays as it was.
FILE is created with mode 0600: it may hold anyone's data.

Prints a summary (entries, files, bytes, warnings, failures; with --json one
JSON object, "complete" true when every file was exported and verified; on
stderr with -o -). Exit code 1 when the path is not in the
snapshot or FILE cannot be written; 3 when some file failed (each is named
with the reason, and FILE is not written); 2 for an unknown --format.)");
  static std::string e_spec, e_output, e_host, e_format = "pax";
  ex->add_option("SNAPSHOT", e_spec, "Snapshot[:path] to export")->required();
  ex->add_option("-o,--output", e_output, "FILE: the archive to write, or - for stdout")->required();
  ex->add_option("--format", e_format, "tar, pax (default) or zip")->check(CLI::IsMember({"tar", "pax", "zip"}));
  ex->add_option("--host", e_host, "With 'latest': only snapshots of this host");
  ex->callback([&] {
    auto format = restore::ParseArchiveFormat(e_format);
    if (!format.ok()) { rc = Fail(format.status(), kExitUsage); return; }
    bool to_stdout = e_output == "-";
    if (to_stdout && ::isatty(STDOUT_FILENO)) {
      rc = Fail(InvalidArgumentError("export: refusing to write an archive to a terminal (redirect stdout)"),
                kExitUsage);
      return;
    }
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    auto [snap_spec, subpath] = SplitSpec(e_spec);
    auto snap = snapshot::FindSnapshot(repo, snap_spec, snapshot::SnapshotFilter{e_host, {}, {}});
    if (!snap.ok()) { rc = Fail(snap.status()); return; }
    restore::ExportOptions o;
    o.format = *format;
    o.subpath = subpath;
    auto atimes = snapshot::LoadAtimes(repo, snap->manifest);
    if (!atimes.ok()) { rc = Fail(atimes.status().Annotate("export")); return; }
    o.atimes = *atimes;
    auto res = to_stdout ? restore::ExportToFd(repo, snap->manifest.tree, o, STDOUT_FILENO)
                         : restore::ExportToFile(repo, snap->manifest.tree, o, e_output);
    if (!res.ok()) { rc = Fail(res.status().Annotate("export")); return; }
    const restore::ExportResult& r = *res;
    bool complete = r.ok();  // every file exported and verified; with -o FILE: FILE was written
    FILE* report = to_stdout ? stderr : stdout;  // stdout is the archive with -o -
    if (g.json) {
      std::string text = json{{"snapshot_id", snap->id.Hex()},
                              {"host", snap->manifest.host},
                              {"path", restore::JsonSafe(subpath)},
                              {"format", restore::ArchiveFormatName(o.format)},
                              {"output", restore::JsonSafe(e_output)},
                              {"complete", complete},
                              {"entries", r.entries},
                              {"files", r.files},
                              {"dirs", r.dirs},
                              {"symlinks", r.symlinks},
                              {"hardlinks", r.hardlinks},
                              {"specials", r.specials},
                              {"bytes", r.bytes},
                              {"xattrs_dropped", r.xattrs_dropped},
                              {"duration_s", r.duration_s},
                              {"skipped", r.skipped},
                              {"warnings", ProblemsJson(r.warnings)},
                              {"failures", ProblemsJson(r.failures)}}
                             .dump(-1, ' ', false, json::error_handler_t::replace);
      std::fprintf(report, "%s\n", text.c_str());
    } else {
      PrintProblems(r);
      if (!g.quiet) {
        std::fprintf(report,
                     "exported %llu entries: %llu files (%s), %llu dirs, %llu symlinks, %llu hard links, %llu special; "
                     "%llu skipped; %llu failed; in %s\n",
                     (unsigned long long)r.entries, (unsigned long long)r.files, HumanBytes(r.bytes).c_str(),
                     (unsigned long long)r.dirs, (unsigned long long)r.symlinks, (unsigned long long)r.hardlinks,
                     (unsigned long long)r.specials, (unsigned long long)r.skipped,
                     (unsigned long long)r.failures.size(), HumanDuration(r.duration_s).c_str());
        if (r.xattrs_dropped > 0) {
          std::fprintf(report, "note: the %s format cannot hold extended attributes or ACLs: dropped on %llu entries "
                               "(use --format pax)\n",
                       restore::ArchiveFormatName(o.format), (unsigned long long)r.xattrs_dropped);
        }
        if (to_stdout) {
          if (!complete) std::fprintf(report, "the archive on stdout is INCOMPLETE: the failed files hold zeros\n");
        } else {
          std::string shown = EscapeForDisplay(e_output);
          if (complete) {
            std::fprintf(report, "wrote %s (%s), every file verified against its SHA-256\n", shown.c_str(),
                         restore::ArchiveFormatName(o.format));
          } else {
            std::fprintf(report, "nothing was written to %s\n", shown.c_str());
          }
        }
      }
    }
    if (!r.ok()) rc = kExitPartial;
  });
}

}  // namespace custos::cli
