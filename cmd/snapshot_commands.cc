// custos backup | snapshots | ls | diff | stats
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>

#include "cmd/cli_util.h"
#include "cmd/common.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "storage/check.h"

namespace custos::cli {

using nlohmann::json;
using snapshot::Node;
using snapshot::NodeType;

namespace {

// A string field that may hold any bytes: as text when valid UTF-8, else
// base64 under "<key>_base64".
void PutText(json& j, const std::string& key, const std::string& value) {
  if (IsValidUtf8(value)) j[key] = value;
  else j[key + "_base64"] = Base64Encode(AsBytes(value));
}

std::string ModeString(const Node& n) {
  char t = '-';
  switch (n.type) {
    case NodeType::kDir: t = 'd'; break;
    case NodeType::kSymlink: t = 'l'; break;
    case NodeType::kFifo: t = 'p'; break;
    case NodeType::kSocket: t = 's'; break;
    case NodeType::kCharDev: t = 'c'; break;
    case NodeType::kBlockDev: t = 'b'; break;
    default: break;
  }
  std::string s(1, t);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (n.mode & (0400 >> i)) ? rwx[i] : '-';
  if (n.mode & 04000) s[3] = (n.mode & 0100) ? 's' : 'S';
  if (n.mode & 02000) s[6] = (n.mode & 0010) ? 's' : 'S';
  if (n.mode & 01000) s[9] = (n.mode & 0001) ? 't' : 'T';
  return s;
}

std::string TimeString(const snapshot::Timestamp& t) {
  return snapshot::FormatTimeNs(t.sec * 1000000000 + t.nsec);
}

json NodeJson(const std::string& path, const Node& n) {
  json j;
  PutText(j, "path", path);
  PutText(j, "name", n.name);
  j["type"] = snapshot::NodeTypeName(n.type);
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", n.mode);
  j["mode"] = mode;
  j["uid"] = n.uid;
  j["gid"] = n.gid;
  PutText(j, "user", n.user);
  PutText(j, "group", n.group);
  j["size"] = n.size;
  j["atime"] = TimeString(n.atime);
  j["mtime"] = TimeString(n.mtime);
  j["ctime"] = TimeString(n.ctime);
  j["mtime_ns"] = n.mtime.sec * 1000000000 + n.mtime.nsec;
  j["atime_ns"] = n.atime.sec * 1000000000 + n.atime.nsec;
  j["inode"] = n.inode;
  j["dev"] = n.dev;
  j["nlink"] = n.nlink;
  if (n.type == NodeType::kCharDev || n.type == NodeType::kBlockDev) j["rdev"] = n.rdev;
  if (n.type == NodeType::kSymlink) PutText(j, "link_target", n.link_target);
  if (!n.xattrs.empty()) {
    json x = json::object();
    for (const auto& [k, v] : n.xattrs) x[IsValidUtf8(k) ? k : "base64:" + Base64Encode(AsBytes(k))] = Base64Encode(AsBytes(v));
    j["xattrs"] = x;
  }
  if (!n.holes.empty()) {
    json h = json::array();
    for (const auto& [off, len] : n.holes) h.push_back({off, len});
    j["holes"] = h;
  }
  if (n.type == NodeType::kFile) {
    j["sha256"] = n.file_sha256.Hex();
    j["chunks"] = n.content.size();
  }
  json flags = json::array();
  if (n.flags & snapshot::kFlagChangedWhileRead) flags.push_back("changed_while_read");
  if (n.flags & snapshot::kFlagReadError) flags.push_back("read_error");
  if (n.flags & snapshot::kFlagExcludedContents) flags.push_back("contents_excluded");
  if (!flags.empty()) j["flags"] = flags;
  return j;
}


json ManifestJson(const snapshot::SnapshotInfo& s) {
  // The manifest's own JSON (one encoding of paths, summary and all), plus the ID.
  json j = json::parse(AsString(snapshot::EncodeManifest(s.manifest)));
  j["id"] = s.id.Hex();
  j["short_id"] = s.id.Short();
  return j;
}

Result<std::vector<std::string>> ReadPatternFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("exclude file " + path + ": cannot be opened");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    out.push_back(line);
  }
  return out;
}

}  // namespace

void AddSnapshotCommands(CLI::App& app, Globals& g, int& rc) {
  // ---------------------------------------------------------------- backup
  auto* backup = app.add_subcommand("backup", "Back up files and directories into a new snapshot");
  backup->footer(R"(
Walks each PATH (never following symlinks), splits files into content-defined
chunks, and stores only chunks the repository does not have yet, compressed
and encrypted. Files whose size, mtime, ctime and inode match the parent
snapshot (the newest one of this host with the same paths, or --parent) are
not read again. Records full metadata: type, mode, owner and group (ids and
names), ns times, xattrs and POSIX ACLs, hard links, sparse holes, device
numbers, exact byte names, and each file's SHA-256.

An unreadable file or directory is reported, the backup goes on, the snapshot
is marked partial and the exit code is 3. A file that changes while it is
read is reported and flagged in the snapshot. Interrupting a backup leaves the
repository consistent; the next backup reuses what was already stored.

EXCLUDE PATTERNS
  A pattern without '/' matches a file or directory name anywhere
  (--exclude '*.tmp'); a pattern with '/' matches the absolute path or a
  parent of it (--exclude '/var/cache'). Shell globbing as in fnmatch(3).

EXAMPLES
  custos backup /etc /srv --exclude '*.log' --tag nightly
  custos backup --json /home | tail -1)");
  static std::vector<std::string> paths, excludes, exclude_files, tags;
  static std::string host, parent, agent;
  static bool exclude_caches = false, one_fs = false, force = false;
  static int readers = 0;
  backup->add_option("--agent", agent,
                     "Back up on this enrolled agent's server, through the appliance (custosd must run; "
                     "the snapshot's host is the agent's name)");
  backup->add_option("PATH", paths, "Files or directories to back up")->required();
  backup->add_option("-e,--exclude", excludes, "Exclude paths matching PATTERN (repeatable)");
  backup->add_option("--exclude-file", exclude_files, "Read exclude patterns from FILE, one per line (repeatable)");
  backup->add_flag("--exclude-caches", exclude_caches, "Skip the contents of directories holding a valid CACHEDIR.TAG");
  backup->add_flag("-x,--one-file-system", one_fs, "Do not cross file-system boundaries below each PATH");
  backup->add_option("--tag", tags, "Add a tag to the snapshot (repeatable)");
  backup->add_option("--host", host, "Record this host name (default: this machine's)");
  backup->add_option("--parent", parent, "Use this snapshot as the parent (default: found automatically)");
  backup->add_flag("--force", force, "Read every file, ignoring the parent snapshot");
  backup->add_option("--readers", readers, "Files read at once (default 4)")->check(CLI::Range(1, 64));
  backup->callback([&] {
    snapshot::BackupOptions o;
    o.paths = paths;
    o.excludes = excludes;
    for (const auto& f : exclude_files) {
      auto pats = ReadPatternFile(f);
      if (!pats.ok()) { rc = Fail(pats.status()); return; }
      o.excludes.insert(o.excludes.end(), pats->begin(), pats->end());
    }
    if (!agent.empty()) {
      if (!tags.empty() || !host.empty() || !parent.empty() || force || readers) {
        rc = Fail(InvalidArgumentError("backup --agent: --tag, --host, --parent, --force and --readers are not "
                                       "available through the appliance"),
                  kExitUsage);
        return;
      }
      for (const auto& p : paths) {
        if (p.empty() || p[0] != '/') {
          rc = Fail(InvalidArgumentError("backup --agent: paths on the agent's server must be absolute: " + p),
                    kExitUsage);
          return;
        }
      }
      rc = RemoteBackup(g, agent, paths, o.excludes, exclude_caches, one_fs);
      return;
    }
    o.exclude_caches = exclude_caches;
    o.one_file_system = one_fs;
    o.tags = tags;
    o.host = host;
    o.use_parent = !force;
    o.readers = readers;
    o.program_version = std::string("custos ") + kVersion;
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    Status st = repo.LockForWrite(storage::Actor::FromProcess("custos backup"));
    if (!st.ok()) { rc = Fail(st); return; }
    if (!parent.empty()) {
      auto p = snapshot::FindSnapshot(repo, parent);
      if (!p.ok()) { rc = Fail(p.status()); return; }
      o.parent = p->id;
    }
    bool tty = StderrIsTty() && !g.quiet && !g.json;
    static std::mutex out_mu;
    if (g.json) {
      o.progress_interval_ms = 1000;
      o.progress = [](const snapshot::BackupProgress& p) {
        json j = {{"message_type", "status"},
                  {"seconds_elapsed", p.elapsed_s},
                  {"files_done", p.files_done},
                  {"bytes_done", p.bytes_done},
                  {"total_files", p.files_total},
                  {"total_bytes", p.bytes_total},
                  {"scan_finished", p.scan_done},
                  {"errors", p.errors}};
        if (p.scan_done && p.bytes_total > 0) j["percent_done"] = double(p.bytes_done) / double(p.bytes_total);
        std::lock_guard<std::mutex> l(out_mu);
        std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
      };
      o.warn = [](const std::string& msg) {
        std::lock_guard<std::mutex> l(out_mu);
        std::cout << json{{"message_type", "error"}, {"message", msg}}.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
      };
    } else {
      if (tty) {
        o.progress = [](const snapshot::BackupProgress& p) {
          double rate = p.elapsed_s > 0 ? double(p.bytes_done) / p.elapsed_s : 0;
          std::string eta = "?";
          if (p.scan_done && rate > 0 && p.bytes_total >= p.bytes_done) {
            eta = HumanDuration(double(p.bytes_total - p.bytes_done) / rate);
          }
          std::lock_guard<std::mutex> l(out_mu);
          std::fprintf(stderr, "\r\033[K[%s] %llu/%llu%s files, %s/%s%s, %s/s, ETA %s%s",
                       HumanDuration(p.elapsed_s).c_str(), (unsigned long long)p.files_done,
                       (unsigned long long)p.files_total, p.scan_done ? "" : "+", HumanBytes(p.bytes_done).c_str(),
                       HumanBytes(p.bytes_total).c_str(), p.scan_done ? "" : "+", HumanBytes(uint64_t(rate)).c_str(),
                       eta.c_str(), p.errors ? (", " + std::to_string(p.errors) + " errors").c_str() : "");
        };
      }
      o.warn = [tty, &g](const std::string& msg) {
        if (g.quiet && false) return;
        std::lock_guard<std::mutex> l(out_mu);
        std::fprintf(stderr, "%swarning: %s\n", tty ? "\r\033[K" : "", msg.c_str());
      };
    }
    auto res = snapshot::Backup(repo, o);
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (!res.ok()) { rc = Fail(res.status().Annotate("backup")); return; }
    const auto& m = res->manifest;
    const auto& s = m.summary;
    if (g.json) {
      json j = ManifestJson(snapshot::SnapshotInfo{res->snapshot_id, m});
      j["message_type"] = "summary";
      j["snapshot_id"] = res->snapshot_id.Hex();
      j["summary"]["data_blobs_added"] = s.data_blobs_added;
      j["summary"]["tree_blobs_added"] = s.tree_blobs_added;
      j["summary"]["bytes_read"] = s.bytes_read;
      j["summary"]["files_changed_during_read"] = s.files_changed_during_read;
      std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
    } else if (!g.quiet) {
      std::printf("files: %llu new, %llu changed, %llu unmodified\n", (unsigned long long)s.files_new,
                  (unsigned long long)s.files_changed, (unsigned long long)s.files_unmodified);
      std::printf("dirs: %llu, other: %llu\n", (unsigned long long)s.dirs, (unsigned long long)s.other_nodes);
      std::printf("added to the repository: %s (%s stored)\n", HumanBytes(s.bytes_added).c_str(),
                  HumanBytes(s.bytes_added_stored).c_str());
      std::printf("processed %llu files, %s in %s\n", (unsigned long long)s.total_files,
                  HumanBytes(s.total_bytes).c_str(), HumanDuration(s.duration_s).c_str());
      if (s.files_changed_during_read) {
        std::printf("%llu file(s) changed while read (flagged in the snapshot)\n",
                    (unsigned long long)s.files_changed_during_read);
      }
      std::printf("snapshot %s saved%s\n", res->snapshot_id.Short().c_str(),
                  m.partial ? " (partial: some items could not be read, see the warnings above)" : "");
    }
    if (m.partial) rc = kExitPartial;
  });

  // ---------------------------------------------------------------- snapshots
  auto* snaps = app.add_subcommand("snapshots", "List snapshots");
  static std::string f_host;
  static std::vector<std::string> f_tags;
  snaps->add_option("--host", f_host, "Only snapshots of this host");
  snaps->add_option("--tag", f_tags, "Only snapshots with this tag (repeatable: all must match)");
  snaps->callback([&] {
    Opened op = OpenRepo(g, false);
    if (!op.repo) { rc = op.exit_code; return; }
    std::vector<Status> damaged;
    auto all = snapshot::LoadSnapshots(*op.repo, &damaged);
    if (!all.ok()) { rc = Fail(all.status()); return; }
    snapshot::SnapshotFilter f{f_host, f_tags, {}};
    json arr = json::array();
    if (!g.json) std::printf("%-9s %-20s %-16s %-16s %s\n", "ID", "TIME", "HOST", "TAGS", "PATHS");
    size_t n = 0;
    for (const auto& s : *all) {
      if (!snapshot::Matches(s.manifest, f)) continue;
      ++n;
      if (g.json) {
        arr.push_back(ManifestJson(s));
        continue;
      }
      std::string tagstr;
      for (const auto& t : s.manifest.tags) tagstr += (tagstr.empty() ? "" : ",") + t;
      std::string time = s.manifest.time.substr(0, 19);
      std::replace(time.begin(), time.end(), 'T', ' ');
      std::printf("%-9s %-20s %-16s %-16s %s%s\n", s.id.Short().c_str(), time.c_str(), s.manifest.host.c_str(),
                  tagstr.c_str(), s.manifest.paths.empty() ? "" : EscapeForDisplay(s.manifest.paths[0]).c_str(),
                  s.manifest.partial ? "  (partial)" : "");
      for (size_t i = 1; i < s.manifest.paths.size(); ++i) {
        std::printf("%-9s %-20s %-16s %-16s %s\n", "", "", "", "", EscapeForDisplay(s.manifest.paths[i]).c_str());
      }
    }
    if (g.json) std::cout << arr.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else std::printf("%zu snapshot(s)\n", n);
    for (const auto& d : damaged) PrintError("damaged: " + d.ToString());
    if (!damaged.empty()) rc = kExitError;
  });

  // ---------------------------------------------------------------- ls
  auto* ls = app.add_subcommand("ls", "List files in a snapshot");
  ls->footer("\nSNAPSHOT is an ID, a unique ID prefix, or 'latest'. PATH limits the listing to a\n"
             "subtree, e.g. /etc. --json prints one object per line with every metadata item.");
  static std::string ls_snap, ls_path;
  static bool ls_long = false;
  ls->add_option("SNAPSHOT", ls_snap, "Snapshot")->required();
  ls->add_option("PATH", ls_path, "Path inside the snapshot (default /)");
  ls->add_flag("-l,--long", ls_long, "Show mode, owner, size and time");
  ls->add_option("--host", f_host, "With 'latest': newest of this host");
  ls->callback([&] {
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    auto snap = snapshot::FindSnapshot(repo, ls_snap, snapshot::SnapshotFilter{f_host, {}, {}});
    if (!snap.ok()) { rc = Fail(snap.status()); return; }
    std::string base = ls_path.empty() ? "/" : ls_path;
    auto atimes = snapshot::LoadAtimes(repo, snap->manifest);
    if (!atimes.ok()) { rc = Fail(atimes.status()); return; }
    auto start = snapshot::FindPath(repo, snap->manifest.tree, base, atimes->get());
    if (!start.ok()) { rc = Fail(start.status()); return; }
    auto print = [&](const std::string& path, const Node& n) -> Status {
      if (g.json) {
        std::cout << NodeJson(path, n).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      } else if (ls_long) {
        std::string owner = (n.user.empty() ? std::to_string(n.uid) : n.user) + "/" +
                            (n.group.empty() ? std::to_string(n.gid) : n.group);
        std::string t = TimeString(n.mtime).substr(0, 19);
        std::replace(t.begin(), t.end(), 'T', ' ');
        std::printf("%s %-17s %12llu %s %s%s\n", ModeString(n).c_str(), owner.c_str(), (unsigned long long)n.size,
                    t.c_str(), EscapeForDisplay(path).c_str(),
                    n.type == NodeType::kSymlink ? (" -> " + EscapeForDisplay(n.link_target)).c_str() : "");
      } else {
        std::printf("%s\n", EscapeForDisplay(path).c_str());
      }
      return Status::Ok();
    };
    Status st;
    std::string norm = snapshot::NormalizePath(base);
    if (norm != "/") st = print(norm, *start);
    if (st.ok() && start->type == NodeType::kDir) st = snapshot::WalkTree(repo, start->subtree, norm, print, atimes->get());
    if (!st.ok()) rc = Fail(st);
  });

  // ---------------------------------------------------------------- diff
  auto* diff = app.add_subcommand("diff", "Show what changed between two snapshots");
  diff->footer("\nEach line: '+' added, '-' removed, 'M' content changed, 'U' metadata changed,\n"
               "'T' type changed, then the path.");
  static std::string da, db;
  diff->add_option("SNAPSHOT_A", da, "Older snapshot")->required();
  diff->add_option("SNAPSHOT_B", db, "Newer snapshot")->required();
  diff->callback([&] {
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    auto a = snapshot::FindSnapshot(repo, da);
    if (!a.ok()) { rc = Fail(a.status()); return; }
    auto b = snapshot::FindSnapshot(repo, db);
    if (!b.ok()) { rc = Fail(b.status()); return; }
    std::map<std::string, uint64_t> counts;
    Status st = snapshot::DiffTrees(repo, a->manifest.tree, b->manifest.tree, "/", [&](const snapshot::DiffEntry& e) {
      counts[snapshot::ChangeSymbol(e.change)]++;
      if (g.json) {
        json j = {{"change", snapshot::ChangeSymbol(e.change)}};
        PutText(j, "path", e.path);
        std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      } else {
        std::printf("%s    %s\n", snapshot::ChangeSymbol(e.change), EscapeForDisplay(e.path).c_str());
      }
    });
    if (!st.ok()) { rc = Fail(st); return; }
    if (!g.json && !g.quiet) {
      std::printf("\nadded: %llu, removed: %llu, content changed: %llu, metadata changed: %llu, type changed: %llu\n",
                  (unsigned long long)counts["+"], (unsigned long long)counts["-"], (unsigned long long)counts["M"],
                  (unsigned long long)counts["U"], (unsigned long long)counts["T"]);
    }
  });

  // ---------------------------------------------------------------- stats
  auto* stats = app.add_subcommand("stats", "Sizes: logical, stored, dedup and compression ratios");
  stats->footer("\nWith SNAPSHOT: that snapshot's files and the blobs it references. Without:\n"
                "every snapshot together, and the repository's size on disk.");
  static std::string stats_snap;
  stats->add_option("SNAPSHOT", stats_snap, "Snapshot (default: all)");
  stats->callback([&] {
    Opened op = OpenRepo(g, true);
    if (!op.repo) { rc = op.exit_code; return; }
    auto& repo = *op.repo;
    std::vector<snapshot::SnapshotInfo> which;
    if (!stats_snap.empty()) {
      auto s = snapshot::FindSnapshot(repo, stats_snap);
      if (!s.ok()) { rc = Fail(s.status()); return; }
      which.push_back(*s);
    } else {
      auto all = snapshot::LoadSnapshots(repo);
      if (!all.ok()) { rc = Fail(all.status()); return; }
      which = *all;
    }
    uint64_t logical = 0, files = 0;
    std::unordered_map<Id, uint64_t, IdHash> blobs;
    for (const auto& s : which) {
      Status st = snapshot::WalkTree(repo, s.manifest.tree, "/", [&](const std::string&, const Node& n) {
        if (n.type == NodeType::kFile) {
          logical += n.size;
          ++files;
        }
        return Status::Ok();
      });
      if (st.ok()) st = snapshot::CollectSnapshotBlobs(repo, s.manifest, &blobs);
      if (!st.ok()) { rc = Fail(st); return; }
    }
    uint64_t unique_raw = 0, stored = 0, missing = 0;
    for (const auto& [id, size] : blobs) {
      unique_raw += size;
      auto loc = repo.FindBlob(id);
      if (loc) stored += loc->entry.stored_length; else ++missing;
    }
    uint64_t on_disk = 0;
    Status st = repo.backend().List(storage::FileType::kPack, [&](const storage::FileInfo& fi) {
      on_disk += fi.size;
      return Status::Ok();
    });
    if (!st.ok()) { rc = Fail(st); return; }
    double dedup = unique_raw ? double(logical) / double(unique_raw) : 0;
    double comp = stored ? double(unique_raw) / double(stored) : 0;
    if (g.json) {
      std::cout << json{{"snapshots", which.size()},
                        {"files", files},
                        {"logical_bytes", logical},
                        {"unique_bytes", unique_raw},
                        {"stored_bytes", stored},
                        {"blobs", blobs.size()},
                        {"missing_blobs", missing},
                        {"dedup_ratio", dedup},
                        {"compression_ratio", comp},
                        {"total_ratio", stored ? double(logical) / double(stored) : 0},
                        {"repository_pack_bytes", on_disk}}
                       .dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
    } else {
      std::printf("snapshots:          %zu\n", which.size());
      std::printf("files:              %llu\n", (unsigned long long)files);
      std::printf("logical size:       %s\n", HumanBytes(logical).c_str());
      std::printf("unique data:        %s in %zu blobs\n", HumanBytes(unique_raw).c_str(), blobs.size());
      std::printf("stored size:        %s\n", HumanBytes(stored).c_str());
      std::printf("dedup ratio:        %.2fx\n", dedup);
      std::printf("compression ratio:  %.2fx\n", comp);
      std::printf("repository packs:   %s on disk\n", HumanBytes(on_disk).c_str());
    }
    if (missing) {
      PrintError(std::to_string(missing) + " referenced blob(s) are missing from the index: run 'custos check'");
      rc = kExitError;
    }
  });
}

}  // namespace custos::cli
