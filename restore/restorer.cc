#include "restore/restorer.h"

#include "restore/source.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/manifest.h"
#include "storage/format.h"

namespace custos::restore {

using snapshot::Node;
using snapshot::NodeType;

namespace {

constexpr char kTmpPrefix[] = ".custos-restore-";

// Temporary names: a random 64-bit base per process, then a counter
// (unique within a restore, unpredictable across restores, and no
// getrandom call per file).
std::string TmpName() {
  static const uint64_t base = [] {
    uint64_t b;
    RandomBytes(&b, sizeof b);
    return b;
  }();
  static std::atomic<uint64_t> counter{0};
  uint64_t v = base + counter++;
  uint8_t r[8];
  for (int i = 0; i < 8; ++i) r[i] = uint8_t(v >> (56 - 8 * i));
  return std::string(kTmpPrefix) + ToHex(ByteView(r, 8));
}

// The read-back buffer of each worker thread (no allocation per file).
uint8_t* VerifyBuffer(size_t* size) {
  constexpr size_t kSize = 256 << 10;
  thread_local std::unique_ptr<uint8_t[]> buf(new uint8_t[kSize]);
  *size = kSize;
  return buf.get();
}

timespec ToTs(const snapshot::Timestamp& t) { return timespec{time_t(t.sec), long(t.nsec)}; }
// An atime of 0 was not recorded (directories; a snapshot whose atime table
// could not be read): the restored entry keeps the one it has.
timespec ToAtime(const snapshot::Timestamp& t) {
  return t == snapshot::Timestamp{} ? timespec{0, UTIME_OMIT} : ToTs(t);
}

struct FileTask {
  std::shared_ptr<Fd> dir;
  std::string name, path, tmp;
  Node node;
  std::atomic<uint64_t> remaining{0};
  std::atomic<bool> failed{false};
  std::string error;  // first failure, under the restorer's mutex
  bool done = false;
  // The temporary is created by the first worker that writes to it (in
  // parallel, not during the walk); `created` under `mu`.
  std::mutex mu;
  bool created = false;
};

// The first of a set of hard links: a file task, or a file already correct
// in the target (task == kNoTask).
constexpr size_t kNoTask = ~size_t(0);
struct LinkSource {
  size_t task = kNoTask;
  std::shared_ptr<Fd> dir;
  std::string name, path;
};

struct LinkTask {
  std::shared_ptr<Fd> dir;
  std::string name, path;
  LinkSource source;
};

struct DirTask {
  std::shared_ptr<Fd> fd;
  std::string path;
  Node node;
};

struct Use {
  size_t file;
  uint64_t offset;
};

class Restorer {
 public:
  Restorer(RestoreSource& source, const RestoreOptions& o)
      : src_(source), opts_(o), paths_(o.paths.begin(), o.paths.end()) {}
  Result<RestoreResult> Run(const Id& root_tree);

 private:
  bool Selected(const std::string& path) const;
  // `fresh`: `dir` was created by this restore, so nothing is in it yet
  // (no existing names to check, no stale temporaries).
  void Walk(const std::shared_ptr<Fd>& dir, const std::string& path, const Id& tree, bool selected_parent,
            bool fresh);
  void Entry(const std::shared_ptr<Fd>& dir, const std::string& path, const Node& n, bool selected_parent,
             bool fresh);
  // Returns the new file task's index, or kNoTask when the file was
  // skipped (already correct) or failed.
  size_t PlanFile(const std::shared_ptr<Fd>& dir, const std::string& path, const Node& n, bool fresh);
  // Opens the file's temporary read-write, creating it (full size) on
  // first use; -1 after FailFile.
  int OpenTemp(FileTask& f);
  void Fail(const std::string& path, const std::string& why);
  void FailFile(FileTask& f, const std::string& why);
  void WriteChunk(FileTask& f, uint64_t offset, ByteView data);
  // `fd`: the temporary open read-write, or -1 (opened here). Closes it.
  void Finalize(FileTask& f, int fd = -1);
  Status ApplyMetadata(int fd, const Node& n, bool is_dir, const std::string& path);
  void ApplySymlinkMetadata(int dirfd, const std::string& name, const Node& n);
  // A tree from the source with the snapshot's atimes applied.
  Result<snapshot::Tree> LoadTree(const Id& id);
  // The source's sink: writes one blob to every file that uses it.
  void Deliver(const Id& id, const Result<Bytes>& plain);
  void Progress();

  RestoreSource& src_;
  RestoreOptions opts_;
  std::unordered_set<std::string> paths_;  // opts_.paths
  bool root_ = ::geteuid() == 0;
  std::mutex mu_;
  RestoreResult result_;
  std::vector<std::unique_ptr<FileTask>> files_;
  std::vector<LinkTask> links_;
  std::vector<DirTask> dirs_;
  std::map<std::pair<uint64_t, uint64_t>, LinkSource> hardlinks_;  // (dev, inode) -> first link
  std::unordered_map<Id, std::vector<Use>, IdHash> uses_;
  std::atomic<uint64_t> files_done_{0}, bytes_done_{0};
  std::atomic<int64_t> last_progress_ms_{0};
  uint64_t bytes_total_ = 0;
};

bool Restorer::Selected(const std::string& path) const {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (snapshot::MatchesExclude(opts_.excludes, path, name)) return false;
  if (!paths_.empty() && !paths_.count(path)) return false;
  if (opts_.includes.empty()) return true;
  // An include matches the path itself or one of its parents.
  std::string p = path;
  while (!p.empty() && p != "/") {
    std::string base = p.substr(p.find_last_of('/') + 1);
    if (snapshot::MatchesExclude(opts_.includes, p, base)) return true;
    p = p.substr(0, p.find_last_of('/'));
  }
  return false;
}

void Restorer::Fail(const std::string& path, const std::string& why) {
  std::lock_guard<std::mutex> g(mu_);
  result_.failures.push_back({path, why});
}

void Restorer::FailFile(FileTask& f, const std::string& why) {
  bool expected = false;
  if (f.failed.compare_exchange_strong(expected, true)) {
    std::lock_guard<std::mutex> g(mu_);
    f.error = why;
  }
}

// Extended attributes of a symlink or special file, which have no fd to
// set them through: by /proc/self/fd/DIRFD/NAME, so the name is resolved
// in `dirfd` and its final component (a symlink) is not followed.
Status SetXattrsAt(int dirfd, const std::string& name, const Node& n) {
  if (n.xattrs.empty()) return Status::Ok();
  std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  for (const auto& [k, v] : n.xattrs) {
    if (::lsetxattr(p.c_str(), k.c_str(), v.data(), v.size(), 0) != 0 && errno != ENOTSUP && errno != EPERM) {
      return ErrnoStatus("set xattr " + k, errno);
    }
  }
  return Status::Ok();
}

// Whether `name` is one of our temporaries: the prefix and 16 hex digits.
bool IsTmpName(std::string_view name) {
  constexpr size_t kLen = sizeof kTmpPrefix - 1;
  if (name.size() != kLen + 16 || name.substr(0, kLen) != kTmpPrefix) return false;
  return std::all_of(name.begin() + kLen, name.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// Removes the temporaries an interrupted restore left in `dirfd` (we hold
// the target lock: no other restore is writing them). Names the snapshot
// itself holds are kept.
void RemoveStaleTemporaries(int dirfd, const snapshot::Tree& t) {
  int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return;
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return;
  }
  std::vector<std::string> stale;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (!IsTmpName(name)) continue;
    auto it = std::lower_bound(t.nodes.begin(), t.nodes.end(), name,
                               [](const Node& n, const std::string& k) { return n.name < k; });
    if (it != t.nodes.end() && it->name == name) continue;
    stale.push_back(std::move(name));
  }
  ::closedir(d);
  for (const auto& name : stale) ::unlinkat(dirfd, name.c_str(), 0);  // never a directory
}

void Restorer::Walk(const std::shared_ptr<Fd>& dir, const std::string& path, const Id& tree, bool selected_parent,
                    bool fresh) {
  auto t = LoadTree(tree);
  if (!t.ok()) {
    Fail(path, "tree unreadable: " + t.status().ToString());
    return;
  }
  std::vector<Id> subtrees;
  for (const auto& n : t->nodes) {
    if (n.type == NodeType::kDir && !n.subtree.IsZero()) subtrees.push_back(n.subtree);
  }
  if (!subtrees.empty()) src_.PrefetchTrees(subtrees);
  if (!fresh) RemoveStaleTemporaries(dir->get(), *t);
  for (const auto& n : t->nodes) {
    Entry(dir, path == "/" ? "/" + n.name : path + "/" + n.name, n, selected_parent, fresh);
  }
}

void Restorer::Entry(const std::shared_ptr<Fd>& dir, const std::string& path, const Node& n, bool selected_parent,
                     bool fresh) {
  if (!snapshot::IsSafeName(n.name)) {  // DecodeTree already refuses these; never trust one layer alone
    Fail(path, "unsafe name refused");
    return;
  }
  bool excluded = snapshot::MatchesExclude(opts_.excludes, path, n.name);
  if (excluded) return;
  bool selected = selected_parent || Selected(path);
  const char* name = n.name.c_str();
  int dfd = dir->get();
  if (n.type == NodeType::kDir) {
    bool made = false;
    if (selected) {
      made = ::mkdirat(dfd, name, 0700) == 0;
      if (!made && errno != EEXIST) {
        Fail(path, std::string("create directory: ") + std::strerror(errno));
        return;
      }
    }
    auto sub = std::make_shared<Fd>(::openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub->valid()) {
      if (!selected && errno == ENOENT) {
        // Not created: restore below only if something is selected there.
        // Create it now (lazily) and retry; empty directories of unselected
        // subtrees are removed again at the end.
        if (::mkdirat(dfd, name, 0700) != 0) return;
        sub = std::make_shared<Fd>(::openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub->valid()) return;
        auto planned = [&] { return files_.size() + links_.size() + dirs_.size() + result_.specials; };
        size_t before = planned();
        Walk(sub, path, n.subtree, false, true);
        // We made it: remove it again if nothing inside was selected (files
        // are created later, by the workers, so emptiness is not the test).
        if (planned() == before && ::unlinkat(dfd, name, AT_REMOVEDIR) == 0) return;
        ++result_.dirs;
        dirs_.push_back(DirTask{sub, path, n});
        return;
      }
      Fail(path, errno == ELOOP || errno == ENOTDIR ? "exists in the target as a non-directory or symlink; refusing to follow it"
                                                     : std::string("open directory: ") + std::strerror(errno));
      return;
    }
    ++result_.dirs;
    Walk(sub, path, n.subtree, selected, made);
    dirs_.push_back(DirTask{sub, path, n});
    return;
  }
  if (!selected) return;
  if (n.type == NodeType::kFile) {
    if (n.nlink > 1) {
      auto key = std::make_pair(n.dev, n.inode);
      auto it = hardlinks_.find(key);
      if (it != hardlinks_.end()) {
        links_.push_back(LinkTask{dir, n.name, path, it->second});
        return;
      }
      size_t task = PlanFile(dir, path, n, fresh);
      hardlinks_[key] = LinkSource{task, dir, n.name, path};
      return;
    }
    PlanFile(dir, path, n, fresh);
    return;
  }
  // Symlinks, fifos, devices: made under a temporary name, renamed into place.
  struct stat st;
  bool exists = !fresh && ::fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && opts_.overwrite == OverwritePolicy::kNever) {
    ++result_.files_skipped;
    return;
  }
  if (exists && S_ISDIR(st.st_mode)) {
    Fail(path, "exists in the target as a directory");
    return;
  }
  std::string tmp = TmpName();
  int rc = -1;
  switch (n.type) {
    case NodeType::kSymlink: rc = ::symlinkat(n.link_target.c_str(), dfd, tmp.c_str()); break;
    case NodeType::kFifo: rc = ::mkfifoat(dfd, tmp.c_str(), 0600); break;
    case NodeType::kCharDev:
    case NodeType::kBlockDev:
      if (!root_) {
        Fail(path, "device nodes need root to restore; skipped");
        return;
      }
      rc = ::mknodat(dfd, tmp.c_str(), (n.type == NodeType::kCharDev ? S_IFCHR : S_IFBLK) | 0600, dev_t(n.rdev));
      break;
    case NodeType::kSocket:
      ++result_.specials;  // a socket is made by the program that listens on it
      return;
    default: return;
  }
  if (rc != 0) {
    Fail(path, std::string("create: ") + std::strerror(errno));
    return;
  }
  if (n.type == NodeType::kSymlink) {
    ApplySymlinkMetadata(dfd, tmp, n);
  } else {
    Fd fd(::openat(dfd, tmp.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    // Metadata on special files through the path (fchmod needs a real fd).
    if (root_) ::fchownat(dfd, tmp.c_str(), n.uid, n.gid, AT_SYMLINK_NOFOLLOW);
    ::fchmodat(dfd, tmp.c_str(), n.mode, 0);
    timespec ts[2] = {ToAtime(n.atime), ToTs(n.mtime)};
    ::utimensat(dfd, tmp.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }
  if (Status xs = SetXattrsAt(dfd, tmp, n); !xs.ok()) {
    ::unlinkat(dfd, tmp.c_str(), 0);
    Fail(path, xs.message());
    return;
  }
  if (::renameat(dfd, tmp.c_str(), dfd, name) != 0) {
    Fail(path, std::string("rename into place: ") + std::strerror(errno));
    ::unlinkat(dfd, tmp.c_str(), 0);
    return;
  }
  ++result_.specials;
}

size_t Restorer::PlanFile(const std::shared_ptr<Fd>& dir, const std::string& path, const Node& n, bool fresh) {
  int dfd = dir->get();
  struct stat st;
  if (!fresh && ::fstatat(dfd, n.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode)) {
      Fail(path, "exists in the target as a directory");
      return kNoTask;
    }
    if (opts_.overwrite == OverwritePolicy::kNever) {
      ++result_.files_skipped;
      return kNoTask;
    }
    if (opts_.overwrite == OverwritePolicy::kIfChanged && S_ISREG(st.st_mode) && uint64_t(st.st_size) == n.size) {
      Fd fd(::openat(dfd, n.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (fd.valid()) {
        Sha256Stream h;
        size_t bsize;
        uint8_t* buf = VerifyBuffer(&bsize);
        ssize_t r;
        while ((r = ::read(fd.get(), buf, bsize)) > 0) h.Update(ByteView(buf, size_t(r)));
        if (r == 0 && h.Finish() == n.file_sha256) {
          // The content is right; put the metadata right too (reading it
          // just now may also have moved its atime).
          Status ms = ApplyMetadata(fd.get(), n, false, path);
          if (!ms.ok()) Fail(path, ms.message());
          ++result_.files_skipped;
          files_done_++;
          return kNoTask;
        }
      }
    }
  }
  auto f = std::make_unique<FileTask>();
  f->dir = dir;
  f->name = n.name;
  f->path = path;
  f->node = n;
  f->tmp = TmpName();
  f->remaining = n.content.size();
  size_t idx = files_.size();
  uint64_t off = 0;
  for (const auto& c : n.content) {
    uses_[c.id].push_back(Use{idx, off});
    off += c.size;
  }
  bytes_total_ += n.size;
  files_.push_back(std::move(f));
  return idx;
}

void Restorer::WriteChunk(FileTask& f, uint64_t offset, ByteView data) {
  if (!f.failed) {
    // The pieces to write: the chunk minus the file's recorded holes (when
    // those bytes are zero, as they should be), so sparse files stay sparse.
    std::vector<std::pair<uint64_t, uint64_t>> pieces;  // (offset in chunk, length)
    uint64_t pos = 0, end = data.size();
    for (const auto& [hoff, hlen] : f.node.holes) {
      uint64_t hs = std::max(hoff, offset), he = std::min(hoff + hlen, offset + end);
      if (hs >= he) continue;
      uint64_t s = hs - offset, e = he - offset;
      bool zero = std::all_of(data.begin() + long(s), data.begin() + long(e), [](uint8_t b) { return b == 0; });
      if (!zero) continue;
      if (s > pos) pieces.emplace_back(pos, s - pos);
      pos = std::max(pos, e);
    }
    if (pos < end) pieces.emplace_back(pos, end - pos);
    Fd fd(OpenTemp(f));
    if (fd.valid()) {
      for (const auto& [po, pl] : pieces) {
        size_t done = 0;
        while (fd.valid() && done < pl) {
          ssize_t w = ::pwrite(fd.get(), data.data() + po + done, pl - done, off_t(offset + po + done));
          if (w < 0) {
            if (errno == EINTR) continue;
            FailFile(f, std::string("write: ") + std::strerror(errno));
            break;
          }
          done += size_t(w);
        }
        if (f.failed) break;
      }
    }
    bytes_done_ += data.size();
    // The last piece of a file: finish it on the same descriptor.
    if (--f.remaining == 0) {
      Finalize(f, fd.release());
    }
    return;
  }
  if (--f.remaining == 0) Finalize(f);
}

int Restorer::OpenTemp(FileTask& f) {
  if (f.failed) return -1;
  std::lock_guard<std::mutex> g(f.mu);
  int dfd = f.dir->get();
  if (f.created) {
    int fd = ::openat(dfd, f.tmp.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) FailFile(f, std::string("open for writing: ") + std::strerror(errno));
    return fd;
  }
  // Created with its final permission bits (less the umask; never setuid,
  // setgid or sticky, which ApplyMetadata sets; always owner-writable, so
  // that xattrs can be set), so that the usual file needs no chmod later.
  int fd = ::openat(dfd, f.tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    mode_t((f.node.mode & 0777) | 0200));
  if (fd < 0) {
    FailFile(f, std::string("create: ") + std::strerror(errno));
    return -1;
  }
  f.created = true;
  // Full size first when the file has holes: holes stay holes (all-zero
  // chunks in holes are not written). Without holes the writes make the size.
  if ((!f.node.holes.empty() || f.node.content.empty()) && ::ftruncate(fd, off_t(f.node.size)) != 0) {
    FailFile(f, std::string("allocate: ") + std::strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

Status Restorer::ApplyMetadata(int fd, const Node& n, bool is_dir, const std::string& path) {
  // chown only to change (a chown journals the inode; a stat does not).
  struct stat st;
  bool same = ::fstat(fd, &st) == 0 && st.st_uid == n.uid && st.st_gid == n.gid;
  if (root_ && !same && ::fchown(fd, n.uid, n.gid) != 0) return ErrnoStatus("chown", errno);
  bool mode_ok = same && (st.st_mode & 07777) == n.mode;
  for (const auto& [k, v] : n.xattrs) {
    if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0 && errno != ENOTSUP && errno != EPERM) {
      return ErrnoStatus("set xattr " + k, errno);
    }
  }
  // chmod after chown: chown clears setuid/setgid.
  if (!mode_ok && ::fchmod(fd, n.mode) != 0) return ErrnoStatus("chmod", errno);
  timespec ts[2] = {ToAtime(n.atime), ToTs(n.mtime)};
  if (::futimens(fd, ts) != 0) return ErrnoStatus("set times", errno);
  return Status::Ok();
}

void Restorer::ApplySymlinkMetadata(int dirfd, const std::string& name, const Node& n) {
  if (root_) ::fchownat(dirfd, name.c_str(), n.uid, n.gid, AT_SYMLINK_NOFOLLOW);
  timespec ts[2] = {ToAtime(n.atime), ToTs(n.mtime)};
  ::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

void Restorer::Finalize(FileTask& f, int fd_in) {
  Fd fd(fd_in);
  int dfd = f.dir->get();
  files_done_++;
  if (!f.failed) {
    if (!fd.valid()) fd = Fd(OpenTemp(f));  // empty files, and files whose blobs all failed
    if (fd.valid()) {
      if (opts_.verify) {
        Sha256Stream h;
        size_t bsize;
        uint8_t* buf = VerifyBuffer(&bsize);
        ssize_t r;
        uint64_t total = 0;
        // Asking for one byte more than the rest finds the end of a small
        // file in one call.
        for (;;) {
          uint64_t want = std::min<uint64_t>(bsize, f.node.size >= total ? f.node.size - total + 1 : 1);
          r = ::pread(fd.get(), buf, size_t(want), off_t(total));
          if (r <= 0) break;
          h.Update(ByteView(buf, size_t(r)));
          total += uint64_t(r);
          if (uint64_t(r) < want) {
            r = 0;  // short read: the end of the file
            break;
          }
        }
        if (r < 0) FailFile(f, std::string("read back: ") + std::strerror(errno));
        else if (total != f.node.size || h.Finish() != f.node.file_sha256) {
          FailFile(f, "verification failed: content does not match the recorded SHA-256");
        }
      }
      if (!f.failed) {
        Status st = ApplyMetadata(fd.get(), f.node, false, f.path);
        if (!st.ok()) FailFile(f, st.message());
      }
    }
  }
  if (!f.failed && ::renameat(dfd, f.tmp.c_str(), dfd, f.name.c_str()) != 0) {
    FailFile(f, std::string("rename into place: ") + std::strerror(errno));
  }
  fd = Fd();
  if (f.failed) {
    bool created;
    {
      std::lock_guard<std::mutex> g(f.mu);
      created = f.created;
    }
    if (created) ::unlinkat(dfd, f.tmp.c_str(), 0);
  } else {
    std::lock_guard<std::mutex> g(mu_);
    ++result_.files_restored;
    if (opts_.verify) ++result_.files_verified;
    result_.bytes_written += f.node.size;
  }
  f.done = true;
  // Close the directory once no file needs it (hard-link sources keep it).
  if (f.node.nlink <= 1) f.dir.reset();
}

Result<snapshot::Tree> Restorer::LoadTree(const Id& id) {
  auto t = src_.LoadTree(id);
  if (t.ok() && opts_.atimes) RETURN_IF_ERROR(opts_.atimes->Apply(id, &*t).Annotate("tree " + id.Short()));
  return t;
}

void Restorer::Deliver(const Id& id, const Result<Bytes>& plain) {
  auto& uses = uses_.at(id);
  for (const auto& u : uses) {
    FileTask& f = *files_[u.file];
    if (!plain.ok()) {
      FailFile(f, plain.status().message());
      if (--f.remaining == 0) Finalize(f);
    } else {
      WriteChunk(f, u.offset, *plain);
    }
  }
  Progress();
}

// At most every 100 ms, from whichever worker gets there first.
void Restorer::Progress() {
  if (!opts_.progress) return;
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t last = last_progress_ms_.load();
  if (now - last < 100 || !last_progress_ms_.compare_exchange_strong(last, now)) return;
  opts_.progress(files_done_, files_.size() + result_.files_skipped, bytes_done_, bytes_total_);
}

Result<RestoreResult> Restorer::Run(const Id& root_tree) {
  auto start = std::chrono::steady_clock::now();
  if (opts_.target.empty()) return InvalidArgumentError("restore: no target directory");
  // Directories stay open until their metadata is applied at the end.
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  RETURN_IF_ERROR(MakeDirs(opts_.target, 0700).Annotate("restore target " + opts_.target));
  auto target = std::make_shared<Fd>(::open(opts_.target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!target->valid()) return ErrnoStatus("restore target " + opts_.target, errno);
  if (::flock(target->get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return BusyError("restore target " + opts_.target + " is in use by another restore");
    return ErrnoStatus("restore target " + opts_.target + ": lock", errno);
  }
  // Writable at all? A read-only target fails here, clearly, before any work.
  {
    std::string probe = TmpName();
    Fd fd(::openat(target->get(), probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus("restore target " + opts_.target + ": cannot write", errno);
    ::unlinkat(target->get(), probe.c_str(), 0);
  }
  // A path inside the snapshot, never relative to the working directory.
  std::string subpath = opts_.subpath.empty() || opts_.subpath[0] != '/' ? "/" + opts_.subpath : opts_.subpath;
  ASSIGN_OR_RETURN(Node start_node,
                   snapshot::FindPath([this](const Id& id) { return LoadTree(id); }, root_tree, subpath));
  std::string base = snapshot::NormalizePath(subpath);
  if (!opts_.atimes_error.empty()) Fail("/", "access times not restored: " + opts_.atimes_error);
  if (start_node.type == NodeType::kDir) {
    Walk(target, base, start_node.subtree, false, false);
    if (base != "/") dirs_.push_back(DirTask{target, base, start_node});
  } else {
    Entry(target, base, start_node, false, false);
  }
  // Empty files finish now; the others as their blobs arrive.
  for (auto& f : files_) {
    if (f->node.content.empty()) Finalize(*f);
  }
  std::vector<Id> ids;
  ids.reserve(uses_.size());
  for (const auto& [id, uses] : uses_) ids.push_back(id);
  int workers = opts_.workers > 0 ? opts_.workers : int(2 * std::max(1u, std::thread::hardware_concurrency()));
  src_.Fetch(ids, workers, [this](const Id& id, const Result<Bytes>& plain) { Deliver(id, plain); });
  if (opts_.progress) opts_.progress(files_done_, files_.size() + result_.files_skipped, bytes_done_, bytes_total_);
  // Hard links to files restored above.
  for (const auto& l : links_) {
    const LinkSource& src = l.source;
    struct stat existing;
    if (opts_.overwrite == OverwritePolicy::kNever &&
        ::fstatat(l.dir->get(), l.name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
      ++result_.files_skipped;  // kept as it is, like any other existing name
      continue;
    }
    if (src.task != kNoTask && (!files_[src.task]->done || files_[src.task]->failed)) {
      Fail(l.path, "hard link target " + src.path + " was not restored");
      continue;
    }
    struct stat a, b;
    if (::fstatat(src.dir->get(), src.name.c_str(), &a, AT_SYMLINK_NOFOLLOW) != 0) {
      Fail(l.path, "hard link target " + src.path + " is missing");
      continue;
    }
    if (::fstatat(l.dir->get(), l.name.c_str(), &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino) {
      ++result_.files_skipped;  // already linked
      continue;
    }
    std::string tmp = TmpName();
    // The link's source is the file already in place under its real name.
    if (::linkat(src.dir->get(), src.name.c_str(), l.dir->get(), tmp.c_str(), 0) != 0) {
      Fail(l.path, std::string("hard link: ") + std::strerror(errno));
      continue;
    }
    if (::renameat(l.dir->get(), tmp.c_str(), l.dir->get(), l.name.c_str()) != 0) {
      ::unlinkat(l.dir->get(), tmp.c_str(), 0);
      Fail(l.path, std::string("rename into place: ") + std::strerror(errno));
      continue;
    }
    ++result_.links;
  }
  // Directory metadata last, deepest first, so that writing into them does
  // not change their times afterwards.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    Status st = ApplyMetadata(it->fd->get(), it->node, true, it->path);
    if (!st.ok()) Fail(it->path, st.message());
  }
  for (auto& f : files_) {
    if (f->failed) {
      result_.files_failed++;
      result_.failures.push_back({f->path, f->error});
    }
  }
  result_.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result_;
}

}  // namespace

Result<RestoreResult> Restore(RestoreSource& source, const Id& root_tree, const RestoreOptions& options) {
  Restorer r(source, options);
  return r.Run(root_tree);
}

Result<RestoreResult> Restore(storage::Repository& repo, const Id& root_tree, const RestoreOptions& options) {
  LocalSource source(repo);
  return Restore(source, root_tree, options);
}

Result<RestoreResult> Restore(storage::Repository& repo, const snapshot::Manifest& snapshot, RestoreOptions options) {
  LoadAtimesFor(repo, snapshot, &options);
  return Restore(repo, snapshot.tree, options);
}

void LoadAtimesFor(storage::Repository& repo, const snapshot::Manifest& m, RestoreOptions* options) {
  auto t = snapshot::LoadAtimes(repo, m);
  if (t.ok()) {
    options->atimes = *t;
  } else {
    options->atimes = nullptr;
    options->atimes_error = t.status().ToString();
  }
}

}  // namespace custos::restore
