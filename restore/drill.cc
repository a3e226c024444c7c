#include "restore/drill.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/browse.h"

namespace custos::restore {

using nlohmann::json;

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Empties the directory open at `fd` (which it closes), depth first.
Status EmptyDir(int fd, const std::string& path) {
  ::fchmod(fd, 0700);  // restored directories may be read-only; ours to remove
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int e = errno;
    ::close(fd);
    return ErrnoStatus(path, e);
  }
  std::vector<std::pair<std::string, bool>> entries;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    entries.emplace_back(n, S_ISDIR(st.st_mode));
  }
  Status result = Status::Ok();
  for (const auto& [name, is_dir] : entries) {
    std::string child = path + "/" + name;
    if (is_dir) {
      int sub = ::openat(::dirfd(d), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        result = ErrnoStatus(child, errno);
        continue;
      }
      Status st = EmptyDir(sub, child);
      if (!st.ok()) result = st;
    }
    if (::unlinkat(::dirfd(d), name.c_str(), is_dir ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
      result = ErrnoStatus(child + ": remove", errno);
    }
  }
  ::closedir(d);
  return result;
}

}  // namespace

Status RemoveTree(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Status::Ok() : ErrnoStatus(dir, errno);
  RETURN_IF_ERROR(EmptyDir(fd, dir));
  if (::rmdir(dir.c_str()) != 0) return ErrnoStatus(dir + ": remove", errno);
  return Status::Ok();
}

Result<DrillResult> RunDrill(storage::Repository& repo, const snapshot::SnapshotInfo& snap,
                             const DrillOptions& options) {
  // 1. The snapshot's files: how many and how big, and the sample.
  struct FileEntry {
    std::string path;
    uint64_t size;
  };
  std::vector<FileEntry> files;
  uint64_t snapshot_bytes = 0;
  RETURN_IF_ERROR(snapshot::WalkTree(repo, snap.manifest.tree, "/", [&](const std::string& path, const snapshot::Node& n) {
    if (n.type == snapshot::NodeType::kFile) {
      files.push_back({path, n.size});
      snapshot_bytes += n.size;
    }
    return Status::Ok();
  }).Annotate("drill: reading snapshot " + snap.id.Short()));
  const uint64_t snapshot_files = files.size();

  RestoreOptions ro;
  ro.verify = true;
  ro.overwrite = OverwritePolicy::kAlways;
  ro.progress = options.progress;
  bool sampled = options.sample > 0 && options.sample < files.size();
  uint64_t bytes_to_restore = snapshot_bytes;
  if (sampled) {
    uint64_t seed = options.seed;
    if (seed == 0) RandomBytes(&seed, sizeof seed);
    std::mt19937_64 rng(seed);
    // Partial Fisher-Yates: the first `sample` entries become a uniform sample.
    for (uint64_t i = 0; i < options.sample; ++i) {
      std::uniform_int_distribution<uint64_t> pick(i, files.size() - 1);
      std::swap(files[i], files[pick(rng)]);
    }
    files.resize(options.sample);
    bytes_to_restore = 0;
    for (const auto& f : files) {
      ro.paths.push_back(f.path);
      bytes_to_restore += f.size;
    }
  }

  // 2. A fresh scratch directory with room for the data.
  std::string parent = options.scratch_parent.empty() ? "/var/tmp" : options.scratch_parent;
  struct statvfs vfs;
  if (::statvfs(parent.c_str(), &vfs) != 0) return ErrnoStatus(parent + ": scratch directory", errno);
  uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
  // Room for the data plus directories and metadata (a generous 64 KiB a file
  // is not needed; 4 KiB a file plus 1% covers block rounding).
  uint64_t needed = bytes_to_restore + bytes_to_restore / 100 + 4096 * (sampled ? files.size() : snapshot_files);
  if (free_bytes < needed) {
    return Status(Code::kNoSpace, "drill: " + parent + " has " + std::to_string(free_bytes >> 20) +
                                      " MiB free, the drill needs about " + std::to_string(needed >> 20) +
                                      " MiB; choose another place with --scratch or drill a sample with --sample N");
  }
  std::string tmpl = parent + "/custos-drill-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) return ErrnoStatus(parent + ": create scratch directory", errno);
  std::string scratch = buf.data();
  ro.target = scratch;

  // 3. Restore with verification, timed.
  DrillResult out;
  ReportContext ctx;
  ctx.repository_id = repo.config().id;
  ctx.snapshot = snap;
  ctx.target = scratch;
  LoadAtimesFor(repo, snap.manifest, &ro);
  ctx.options = ro;
  ctx.started = snapshot::FormatTimeNs(NowNs());
  auto res = Restore(repo, snap.manifest.tree, ro);
  ctx.finished = snapshot::FormatTimeNs(NowNs());
  std::string error;
  if (res.ok()) {
    out.restore = std::move(res).value();
  } else {
    error = res.status().ToString();
  }

  // 4. Remove the scratch data (unless asked to keep it).
  bool removed = false;
  Status remove_status = Status::Ok();
  if (!options.keep_scratch) {
    remove_status = RemoveTree(scratch);
    removed = remove_status.ok();
  }

  // 5. The report.
  json body = RestoreReportBody(ctx, out.restore, error);
  body["type"] = kDrillReportType;
  body["kind"] = "drill";
  const auto& r = out.restore;
  uint64_t bytes_restored = 0;
  for (const auto& f : files) bytes_restored += f.size;
  if (!sampled) bytes_restored = snapshot_bytes;
  double rate = r.duration_s > 0 ? double(bytes_restored) / r.duration_s : 0;
  double files_rate = r.duration_s > 0 ? double(r.files_restored) / r.duration_s : 0;
  // A full restore costs about the time per byte plus the time per file,
  // whichever estimate is larger bounds it better for small-file trees.
  double est = r.duration_s;
  if (sampled) {
    double by_bytes = rate > 0 ? double(snapshot_bytes) / rate : 0;
    double by_files = files_rate > 0 ? double(snapshot_files) / files_rate : 0;
    est = std::max(by_bytes, by_files);
  }
  body["drill"] = json{{"mode", sampled ? "sample" : "all"},
                       {"files_sampled", sampled ? files.size() : snapshot_files},
                       {"bytes_sampled", bytes_restored},
                       {"snapshot_files", snapshot_files},
                       {"snapshot_bytes", snapshot_bytes},
                       {"throughput_bytes_per_s", rate},
                       {"estimated_full_restore_s", est},
                       {"scratch", JsonSafe(scratch)},
                       {"scratch_removed", removed}};
  if (!remove_status.ok()) body["drill"]["scratch_error"] = JsonSafe(remove_status.ToString());
  bool ok = error.empty() && r.ok() && r.files_verified == r.files_restored && remove_status.ok();
  if (error.empty() && !ok) body["result"] = "partial";
  out.body = body;
  auto id = SaveReport(repo, body);
  if (id.ok()) {
    out.report_id = *id;
  } else {
    out.report_status = id.status();
  }
  return out;
}

}  // namespace custos::restore
