#include "snapshot/archiver.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/file_util.h"
#include "snapshot/atimes.h"
#include "snapshot/chunker.h"
#include "snapshot/target.h"
#include "snapshot/tree.h"
#include "storage/blob.h"

namespace custos::snapshot {

using storage::BlobType;
using storage::Repository;

std::string NormalizePath(const std::string& path) {
  std::string abs = path;
  if (abs.empty() || abs[0] != '/') {
    char buf[PATH_MAX];
    std::string cwd = ::getcwd(buf, sizeof buf) ? buf : "/";
    abs = cwd + "/" + abs;
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= abs.size()) {
    size_t j = abs.find('/', i);
    if (j == std::string::npos) j = abs.size();
    std::string c = abs.substr(i, j - i);
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) out += "/" + p;
  return out.empty() ? "/" : out;
}

bool MatchesExclude(const std::vector<std::string>& patterns, const std::string& path,
                    const std::string& name) {
  for (const auto& p : patterns) {
    if (p.empty()) continue;
    if (p.find('/') == std::string::npos) {
      if (fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
    } else if (fnmatch(p.c_str(), path.c_str(), FNM_PATHNAME) == 0) {
      return true;
    }
  }
  return false;
}

namespace {

constexpr size_t kMaxFileJobs = 256;
// Chunks waiting for an encoder: enough to keep the encoders busy while a
// reader blocks on I/O, small enough to keep peak memory low.
constexpr size_t kMaxEncodeBytes = 4u << 20;
constexpr size_t kMaxErrorSamples = 20;
// Directories nested deeper than this are kept without their contents (an
// item error: the snapshot is partial). The walker recurses once per level,
// so this bounds its stack (1 to 1.5 KiB a level, 8 KiB with sanitizers) and
// its open descriptors; a hostile tree can be nested arbitrarily deep.
constexpr int kMaxDepth = 2048;
// The walker's own stack: room for kMaxDepth levels whatever thread calls
// Backup (reserved address space; only the pages used are touched).
constexpr size_t kWalkerStack = 64u << 20;
constexpr char kCacheTagSignature[] = "Signature: 8a477f597d28d172789f06886806bc55";

// A queue bounded by item count and by bytes; Push blocks while full,
// Pop blocks while empty until Close.
template <typename T>
class BoundedQueue {
 public:
  BoundedQueue(size_t max_items, size_t max_bytes) : max_items_(max_items), max_bytes_(max_bytes) {}
  void Push(T item, size_t bytes) {
    std::unique_lock<std::mutex> l(mu_);
    ++push_waiters_;
    not_full_.wait(l, [&] {
      return closed_ || q_.empty() || (q_.size() < max_items_ && bytes_ + bytes <= max_bytes_);
    });
    --push_waiters_;
    q_.emplace_back(std::move(item), bytes);
    bytes_ += bytes;
    // Wake a consumer only if one sleeps: most pushes find them busy, and a
    // needless futex wake per file costs more than the file's metadata.
    if (pop_waiters_ > 0) not_empty_.notify_one();
  }
  bool Pop(T* out) {
    std::unique_lock<std::mutex> l(mu_);
    ++pop_waiters_;
    not_empty_.wait(l, [&] { return closed_ || !q_.empty(); });
    --pop_waiters_;
    if (q_.empty()) return false;
    *out = std::move(q_.front().first);
    bytes_ -= q_.front().second;
    q_.pop_front();
    // One wake per pop suffices: an empty queue always admits a push.
    if (push_waiters_ > 0) not_full_.notify_one();
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<std::pair<T, size_t>> q_;
  size_t bytes_ = 0;
  int push_waiters_ = 0, pop_waiters_ = 0;
  size_t max_items_, max_bytes_;
  bool closed_ = false;
};

struct DirState {
  std::vector<Node> nodes;
  std::vector<uint8_t> keep;
  std::atomic<int> pending{1};  // the walker's reference + one per outstanding child
  DirState* parent = nullptr;
  size_t slot = 0;
  int depth = 0;  // directory levels below "/"
};

struct FileJob {
  std::shared_ptr<Fd> dir;
  std::string name;
  std::string path;
  DirState* owner = nullptr;
  size_t slot = 0;
  struct stat st;
  bool had_parent = false;
};

struct EncodeJob {
  Id id;
  std::unique_ptr<uint8_t[]> data;
  size_t size = 0;
};

// The virtual directories above the backup paths: "/srv/www" and "/etc"
// make "/" hold "etc" and "srv", and "srv" hold "www".
struct VDir {
  std::map<std::string, VDir> children;
  bool target = false;
};

class NameCache {
 public:
  std::string User(uid_t uid) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = users_.find(uid);
    if (it != users_.end()) return it->second;
    std::string name;
    passwd pw, *res = nullptr;
    std::vector<char> buf(4096);  // not on the stack: this is inlined into the recursive walker
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) name = res->pw_name;
    users_[uid] = name;
    return name;
  }
  std::string Group(gid_t gid) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = groups_.find(gid);
    if (it != groups_.end()) return it->second;
    std::string name;
    group gr, *res = nullptr;
    std::vector<char> buf(4096);
    if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &res) == 0 && res) name = res->gr_name;
    groups_[gid] = name;
    return name;
  }

 private:
  std::mutex mu_;
  std::unordered_map<uid_t, std::string> users_;
  std::unordered_map<gid_t, std::string> groups_;
};

Timestamp Ts(const timespec& t) { return Timestamp{int64_t(t.tv_sec), uint32_t(t.tv_nsec)}; }

bool SameFileState(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec && a.st_ino == b.st_ino;
}

// Reads all xattrs through `list` and `get` (fd- or path-based variants).
template <typename List, typename Get>
Status ReadXattrs(List list, Get get, std::vector<std::pair<std::string, std::string>>* out) {
  std::vector<char> names(1024);
  ssize_t n;
  while ((n = list(names.data(), names.size())) < 0 && errno == ERANGE) {
    ssize_t need = list(nullptr, 0);
    if (need < 0) break;
    names.resize(size_t(need) + 256);
  }
  if (n < 0) {
    if (errno == ENOTSUP || errno == ENODATA) return Status::Ok();
    return ErrnoStatus("list xattrs", errno);
  }
  for (ssize_t i = 0; i < n;) {
    std::string name(names.data() + i);
    i += ssize_t(name.size()) + 1;
    std::vector<char> value(256);
    ssize_t v;
    while ((v = get(name.c_str(), value.data(), value.size())) < 0 && errno == ERANGE) {
      ssize_t need = get(name.c_str(), nullptr, 0);
      if (need < 0) break;
      value.resize(size_t(need) + 64);
    }
    if (v < 0) {
      if (errno == ENODATA) continue;  // removed meanwhile
      return ErrnoStatus("read xattr " + name, errno);
    }
    out->emplace_back(name, std::string(value.data(), size_t(v)));
  }
  std::sort(out->begin(), out->end());
  return Status::Ok();
}

Status FdXattrs(int fd, std::vector<std::pair<std::string, std::string>>* out) {
  return ReadXattrs([&](char* b, size_t s) { return flistxattr(fd, b, s); },
                    [&](const char* n, char* b, size_t s) { return fgetxattr(fd, n, b, s); }, out);
}

Status AtXattrs(int dirfd, const std::string& name, std::vector<std::pair<std::string, std::string>>* out) {
  // Path-based calls through /proc keep paths short whatever the depth.
  std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  return ReadXattrs([&](char* b, size_t s) { return llistxattr(p.c_str(), b, s); },
                    [&](const char* n, char* b, size_t s) { return lgetxattr(p.c_str(), n, b, s); }, out);
}


// Runs fn on a new thread with a stack of `bytes` and waits for it; on this
// thread if no such thread can be made.
void RunWithStack(size_t bytes, const std::function<void()>& fn) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return fn();
  pthread_t t;
  auto body = [](void* f) -> void* {
    (*static_cast<const std::function<void()>*>(f))();
    return nullptr;
  };
  bool started = pthread_attr_setstacksize(&attr, bytes) == 0 &&
                 pthread_create(&t, &attr, body, const_cast<std::function<void()>*>(&fn)) == 0;
  pthread_attr_destroy(&attr);
  if (started) pthread_join(t, nullptr);
  else fn();
}

// Opens a directory without following symlinks and, where permitted,
// without changing its atime.
int OpenDir(int dirfd, const std::string& name) {
  int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(dirfd, name.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(dirfd, name.c_str(), flags);
  return fd;
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

class Archiver {
 public:
  Archiver(BackupTarget& target, const BackupOptions& o)
      : target_(target),
        opts_(o),
        chunker_(target.chunker_key(), target.chunker_params()),
        files_(kMaxFileJobs, SIZE_MAX),
        encode_(1024, kMaxEncodeBytes) {}

  Result<BackupResult> Run();

 private:
  void WalkDir(const std::shared_ptr<Fd>& dfd, const std::string& path, DirState* d, const VDir* v,
               const Tree* parent_tree, dev_t root_dev);
  // `requested`: the entry is a backup path or one of its parents (from
  // the virtual listing); `v`: its virtual children when it is a parent.
  void HandleEntry(const std::shared_ptr<Fd>& dfd, const std::string& dir_path, const std::string& name,
                   DirState* d, size_t slot, bool requested, const VDir* v, const Node* parent_node,
                   dev_t root_dev);
  void Finish(DirState* d);
  // Metadata prefetch: threads that list and stat subdirectories ahead of
  // the walker, so that a cold walk waits on several disk reads at once
  // instead of one (the walker itself stays sequential and ordered).
  void Prefetch(const std::shared_ptr<Fd>& parent, const std::string& name);
  void PrefetchLoop();
  void ReaderLoop();
  void EncoderLoop();
  void ReadOne(FileJob& job);
  bool ClaimChunk(const Id& id);
  void Error(const std::string& path, const std::string& what);
  void Warning(const std::string& path, const std::string& what);
  void Fatal(const Status& st);
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  std::optional<Tree> LoadTree(const Id& id);
  void Scan(int dfd, const std::string& path, const VDir* v, dev_t root_dev, int depth);
  BackupProgress Snapshot() const;

  BackupTarget& target_;
  BackupOptions opts_;
  Chunker chunker_;
  NameCache names_;
  BoundedQueue<FileJob> files_;
  BoundedQueue<EncodeJob> encode_;

  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<std::pair<std::shared_ptr<Fd>, std::string>> prefetch_;
  bool prefetch_stop_ = false;

  std::mutex seen_mu_;
  std::unordered_set<Id, IdHash> seen_;
  AtimeCollector atimes_;
  uint64_t atime_blobs_ = 0;

  std::mutex msg_mu_;
  std::vector<std::string> errors_, warnings_;
  std::atomic<bool> failed_{false};
  Status fatal_;

  std::mutex root_mu_;
  std::condition_variable root_cv_;
  bool root_done_ = false;
  Id root_tree_;

  Summary sum_;  // fields updated through the atomics below, copied at the end
  std::atomic<uint64_t> files_done_{0}, bytes_done_{0}, dirs_done_{0}, errors_n_{0};
  std::atomic<uint64_t> files_new_{0}, files_changed_{0}, files_unmodified_{0}, other_nodes_{0};
  std::atomic<uint64_t> data_blobs_{0}, tree_blobs_{0}, bytes_read_{0}, bytes_added_{0}, bytes_stored_{0};
  std::atomic<uint64_t> changed_during_read_{0};
  std::atomic<uint64_t> scan_files_{0}, scan_bytes_{0};
  std::atomic<bool> scan_done_{false};
  std::atomic<bool> stop_scan_{false};
  std::atomic<uint64_t> targets_found_{0};
  std::chrono::steady_clock::time_point start_;
  Id empty_tree_;
};

void Archiver::Error(const std::string& path, const std::string& what) {
  ++errors_n_;
  std::string msg = EscapeForDisplay(path) + ": " + what;
  if (opts_.warn) opts_.warn(msg);
  std::lock_guard<std::mutex> g(msg_mu_);
  errors_.push_back(std::move(msg));
}

void Archiver::Warning(const std::string& path, const std::string& what) {
  std::string msg = EscapeForDisplay(path) + ": " + what;
  if (opts_.warn) opts_.warn(msg);
  std::lock_guard<std::mutex> g(msg_mu_);
  warnings_.push_back(std::move(msg));
}

void Archiver::Fatal(const Status& st) {
  std::lock_guard<std::mutex> g(msg_mu_);
  if (!failed_) {
    fatal_ = st;
    failed_ = true;
  }
}

bool Archiver::ClaimChunk(const Id& id) {
  {
    std::lock_guard<std::mutex> g(seen_mu_);
    if (!seen_.insert(id).second) return false;
  }
  return !target_.Knows(id);
}

std::optional<Tree> Archiver::LoadTree(const Id& id) {
  return target_.ReadTree(id);  // nullopt: the parent is only a cache, read everything instead
}

void Archiver::Prefetch(const std::shared_ptr<Fd>& parent, const std::string& name) {
  std::lock_guard<std::mutex> g(prefetch_mu_);
  if (prefetch_stop_) return;
  // Newest first (the walker is depth-first); drop the oldest when full.
  if (prefetch_.size() >= 1024) prefetch_.pop_back();
  prefetch_.emplace_front(parent, name);
  prefetch_cv_.notify_one();
}

void Archiver::PrefetchLoop() {
  while (true) {
    std::pair<std::shared_ptr<Fd>, std::string> job;
    {
      std::unique_lock<std::mutex> l(prefetch_mu_);
      prefetch_cv_.wait(l, [&] { return prefetch_stop_ || !prefetch_.empty(); });
      if (prefetch_stop_) return;
      job = std::move(prefetch_.front());
      prefetch_.pop_front();
    }
    Fd fd(OpenDir(job.first->get(), job.second));
    job.first.reset();
    if (!fd.valid()) continue;
    int dup = ::dup(fd.get());
    DIR* dir = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!dir) {
      if (dup >= 0) ::close(dup);
      continue;
    }
    struct stat st;
    while (dirent* e = ::readdir(dir)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
      ::fstatat(fd.get(), e->d_name, &st, AT_SYMLINK_NOFOLLOW);
    }
    ::closedir(dir);
  }
}

void Archiver::Finish(DirState* d) {
  if (d->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Tree tree;
  tree.nodes.reserve(d->nodes.size());
  for (size_t i = 0; i < d->nodes.size(); ++i) {
    if (d->keep[i]) tree.nodes.push_back(std::move(d->nodes[i]));
  }
  std::vector<Timestamp> atimes;
  atimes_.Take(&tree, &atimes);  // atimes go to the snapshot's table, not the tree
  Bytes blob = EncodeTree(tree);
  Id id = Sha256(blob);
  atimes_.Add(id, std::move(atimes));
  if (ClaimChunk(id)) {
    uint64_t stored = 0;
    auto added = target_.Put(BlobType::kTree, id, blob, &stored);
    if (!added.ok()) Fatal(added.status());
    else if (*added) {
      ++tree_blobs_;
      bytes_added_ += blob.size();
      bytes_stored_ += stored;
    }
  }
  ++dirs_done_;
  DirState* parent = d->parent;
  size_t slot = d->slot;
  delete d;
  if (parent) {
    parent->nodes[slot].subtree = id;
    Finish(parent);
  } else {
    std::lock_guard<std::mutex> g(root_mu_);
    root_tree_ = id;
    root_done_ = true;
    root_cv_.notify_all();
  }
}

void Archiver::WalkDir(const std::shared_ptr<Fd>& dfd, const std::string& path, DirState* d, const VDir* v,
                       const Tree* parent_tree, dev_t root_dev) {
  std::vector<std::string> names;
  if (v) {
    for (const auto& [name, child] : v->children) names.push_back(name);
  } else {
    int dup = ::dup(dfd->get());
    DIR* dir = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!dir) {
      if (dup >= 0) ::close(dup);
      Error(path, std::string("list directory: ") + std::strerror(errno));
      return;
    }
    errno = 0;
    while (dirent* e = ::readdir(dir)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      if (e->d_type == DT_DIR) Prefetch(dfd, n);
      names.push_back(std::move(n));
    }
    if (errno != 0) Error(path, std::string("list directory: ") + std::strerror(errno));
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    if (opts_.exclude_caches && std::binary_search(names.begin(), names.end(), "CACHEDIR.TAG")) {
      char buf[sizeof kCacheTagSignature - 1];
      Fd tag(::openat(dfd->get(), "CACHEDIR.TAG", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
      if (tag.valid() && ::pread(tag.get(), buf, sizeof buf, 0) == ssize_t(sizeof buf) &&
          std::memcmp(buf, kCacheTagSignature, sizeof buf) == 0) {
        names = {"CACHEDIR.TAG"};
        if (d->parent) d->parent->nodes[d->slot].flags |= kFlagExcludedContents;
      }
    }
  }
  d->nodes.resize(names.size());
  d->keep.assign(names.size(), 0);
  for (size_t i = 0; i < names.size() && !failed(); ++i) {
    const Node* pn = nullptr;
    if (parent_tree) {
      auto it = std::lower_bound(parent_tree->nodes.begin(), parent_tree->nodes.end(), names[i],
                                 [](const Node& n, const std::string& key) { return n.name < key; });
      if (it != parent_tree->nodes.end() && it->name == names[i]) pn = &*it;
    }
    const VDir* child_v = nullptr;
    if (v) {
      const VDir& c = v->children.at(names[i]);
      child_v = c.target ? nullptr : &c;
    }
    HandleEntry(dfd, path, names[i], d, i, v != nullptr, child_v, pn, root_dev);
  }
}

void Archiver::HandleEntry(const std::shared_ptr<Fd>& dfd, const std::string& dir_path, const std::string& name,
                           DirState* d, size_t slot, bool requested, const VDir* v, const Node* pn,
                           dev_t root_dev) {
  std::string path = Join(dir_path, name);
  if (!requested && MatchesExclude(opts_.excludes, path, name)) return;
  struct stat st;
  if (::fstatat(dfd->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT && requested) {
      Error(path, "does not exist");
    } else if (errno == ENOENT) {
      Warning(path, "vanished before it could be read");
    } else {
      Error(path, std::string("stat: ") + std::strerror(errno));
    }
    return;
  }
  if (requested && !v) ++targets_found_;
  Node& n = d->nodes[slot];
  n.name = name;
  n.mode = st.st_mode & 07777;
  n.uid = st.st_uid;
  n.gid = st.st_gid;
  n.user = names_.User(st.st_uid);
  n.group = names_.Group(st.st_gid);
  // Directory atimes are not recorded: listing a directory (this backup,
  // rsync, any search) changes them, so recording them would make every
  // tree blob new every night. Files' atimes are kept (read with O_NOATIME).
  n.atime = S_ISDIR(st.st_mode) ? Timestamp{} : Ts(st.st_atim);
  n.mtime = Ts(st.st_mtim);
  n.ctime = Ts(st.st_ctim);
  n.dev = st.st_dev;
  n.inode = st.st_ino;
  n.nlink = uint32_t(st.st_nlink);

  if (v && !S_ISDIR(st.st_mode)) {
    Error(path, "is not a directory (a parent of a backup path)");
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    n.type = NodeType::kDir;
    n.subtree = empty_tree_;
    d->keep[slot] = 1;
    if (!requested && opts_.one_file_system && st.st_dev != root_dev) {
      n.flags |= kFlagExcludedContents;
      ++dirs_done_;
      return;
    }
    if (d->depth >= kMaxDepth) {
      n.flags |= kFlagReadError;
      Error(path, "nested more than " + std::to_string(kMaxDepth) + " directories deep: contents not backed up");
      ++dirs_done_;
      return;
    }
    auto sub = std::make_shared<Fd>(OpenDir(dfd->get(), name));
    if (!sub->valid()) {
      int err = errno;
      if (err == ENOTDIR || err == ELOOP) {
        d->keep[slot] = 0;
        Error(path, "changed type while the backup ran (was a directory)");
      } else {
        n.flags |= kFlagReadError;
        Error(path, std::string("open directory: ") + std::strerror(err));
      }
      return;
    }
    if (pn && pn->type == NodeType::kDir && pn->ctime == n.ctime && pn->inode == n.inode) {
      n.xattrs = pn->xattrs;  // unchanged ctime: unchanged xattrs
    } else {
      Status xs = FdXattrs(sub->get(), &n.xattrs);
      if (!xs.ok()) Error(path, xs.message());
    }
    std::optional<Tree> ptree;
    if (pn && pn->type == NodeType::kDir && !pn->subtree.IsZero()) ptree = LoadTree(pn->subtree);
    auto* child = new DirState();
    child->parent = d;
    child->slot = slot;
    child->depth = d->depth + 1;
    d->pending.fetch_add(1, std::memory_order_relaxed);
    WalkDir(sub, path, child, v, ptree ? &*ptree : nullptr, requested && !v ? st.st_dev : root_dev);
    Finish(child);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    Status xs = AtXattrs(dfd->get(), name, &n.xattrs);
    if (!xs.ok() && xs.code() != Code::kNotFound) Error(path, xs.message());
  }
  if (S_ISREG(st.st_mode)) {
    n.type = NodeType::kFile;
    n.size = uint64_t(st.st_size);
    d->keep[slot] = 1;
    if (opts_.use_parent && pn && pn->type == NodeType::kFile && pn->size == n.size && pn->mtime == n.mtime &&
        pn->ctime == n.ctime && pn->inode == n.inode && (pn->flags & (kFlagChangedWhileRead | kFlagReadError)) == 0) {
      bool all_known = std::all_of(pn->content.begin(), pn->content.end(),
                                   [&](const ChunkRef& c) { return target_.Knows(c.id); });
      if (all_known) {
        // Changing an xattr or ACL changes ctime: with ctime equal, the
        // parent's xattrs are current and need no syscall.
        n.xattrs = pn->xattrs;
        n.content = pn->content;
        n.file_sha256 = pn->file_sha256;
        n.holes = pn->holes;
        ++files_unmodified_;
        ++files_done_;
        bytes_done_ += n.size;
        return;
      }
    }
    FileJob job;
    job.dir = dfd;
    job.name = name;
    job.path = path;
    job.owner = d;
    job.slot = slot;
    job.st = st;
    job.had_parent = pn != nullptr;
    d->pending.fetch_add(1, std::memory_order_relaxed);
    files_.Push(std::move(job), 1);
    return;
  }
  d->keep[slot] = 1;
  ++other_nodes_;
  if (S_ISLNK(st.st_mode)) {
    n.type = NodeType::kSymlink;
    std::vector<char> buf(size_t(st.st_size > 0 ? st.st_size : 255) + 1);
    ssize_t len = ::readlinkat(dfd->get(), name.c_str(), buf.data(), buf.size());
    if (len < 0) {
      d->keep[slot] = 0;
      Error(path, std::string("read link: ") + std::strerror(errno));
      return;
    }
    n.link_target.assign(buf.data(), size_t(len));
  } else if (S_ISFIFO(st.st_mode)) {
    n.type = NodeType::kFifo;
  } else if (S_ISSOCK(st.st_mode)) {
    n.type = NodeType::kSocket;
  } else if (S_ISCHR(st.st_mode)) {
    n.type = NodeType::kCharDev;
    n.rdev = st.st_rdev;
  } else if (S_ISBLK(st.st_mode)) {
    n.type = NodeType::kBlockDev;
    n.rdev = st.st_rdev;
  } else {
    d->keep[slot] = 0;
    Error(path, "unknown file type");
  }
}

void Archiver::ReadOne(FileJob& job) {
  Node& n = job.owner->nodes[job.slot];
  int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  int fd = ::openat(job.dir->get(), job.name.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(job.dir->get(), job.name.c_str(), flags);
  Fd file(fd);
  if (!file.valid()) {
    int err = errno;
    if (err == ENOENT) {
      job.owner->keep[job.slot] = 0;
      Warning(job.path, "vanished before it could be read");
    } else {
      job.owner->keep[job.slot] = 0;
      Error(job.path, std::string("open: ") + std::strerror(err));
    }
    return;
  }
  struct stat before;
  if (::fstat(file.get(), &before) != 0 || !S_ISREG(before.st_mode)) {
    job.owner->keep[job.slot] = 0;
    Error(job.path, "changed type while the backup ran (was a regular file)");
    return;
  }
  Status xs = FdXattrs(file.get(), &n.xattrs);
  if (!xs.ok()) Error(job.path, xs.message());
  // Sparse files: record holes so that restore can recreate them.
  if (uint64_t(before.st_blocks) * 512 < uint64_t(before.st_size)) {
    off_t pos = 0;
    while (pos < before.st_size) {
      off_t hole = ::lseek(file.get(), pos, SEEK_HOLE);
      if (hole < 0 || hole >= before.st_size) break;
      off_t data = ::lseek(file.get(), hole, SEEK_DATA);
      off_t end = data < 0 ? before.st_size : data;
      n.holes.emplace_back(uint64_t(hole), uint64_t(end - hole));
      pos = end;
    }
    ::lseek(file.get(), 0, SEEK_SET);
  }

  // Streaming read: each chunk is read into its own buffer, which moves to
  // the encoder untouched when the chunk is new. A reader holds at most
  // one chunk (<= max, usually about avg) plus one read block; buffers are
  // uninitialised, so only bytes actually read touch memory.
  const size_t max = chunker_.params().max;
  constexpr size_t kBlock = 1u << 20;
  uint64_t expect = uint64_t(std::max<off_t>(before.st_size, 0));
  uint64_t total = 0;
  Chunker::State cs;
  Sha256Stream whole;
  bool streamed = false;
  auto alloc_size = [&](uint64_t consumed) {
    uint64_t remaining = expect > consumed ? expect - consumed : 0;
    return size_t(std::clamp<uint64_t>(remaining + 1, 4096, max));
  };
  size_t cap = alloc_size(0);
  std::unique_ptr<uint8_t[]> buf(new uint8_t[cap]);
  size_t len = 0;
  // Emits buf[0..clen) as a chunk; `last` when nothing follows it.
  auto emit = [&](size_t clen, bool last) {
    ByteView chunk(buf.get(), clen);
    Id id = Sha256(chunk);
    bool only = last && !streamed;
    if (only) {
      n.file_sha256 = id;
    } else {
      whole.Update(chunk);
      streamed = true;
    }
    n.content.push_back(ChunkRef{id, uint32_t(clen)});
    total += clen;
    bytes_read_ += clen;
    bytes_done_ += clen;
    if (ClaimChunk(id)) {
      encode_.Push(EncodeJob{id, std::move(buf), clen}, clen);
    }
  };
  bool eof = false;
  while (!eof && !failed()) {
    if (len == cap) {
      // The file is longer than it was at open: grow, up to one chunk.
      size_t ncap = std::min<size_t>(max, cap * 2);
      std::unique_ptr<uint8_t[]> bigger(new uint8_t[ncap]);
      std::memcpy(bigger.get(), buf.get(), len);
      buf = std::move(bigger);
      cap = ncap;
    }
    size_t want = std::min(cap - len, kBlock);
    ssize_t r = ::read(file.get(), buf.get() + len, want);
    if (r < 0) {
      if (errno == EINTR) continue;
      n.flags |= kFlagReadError;
      Error(job.path, std::string("read: ") + std::strerror(errno) + " after " + std::to_string(total + len) + " bytes");
      break;
    }
    if (r == 0) {
      eof = true;
      break;
    }
    size_t p = len, end = len + size_t(r);
    while (true) {
      size_t k = chunker_.Scan(cs, buf.get() + p, end - p);
      if (k == 0) {
        len = end;
        break;
      }
      size_t clen = p + k, rest = end - clen;
      size_t ncap = std::max(alloc_size(total + clen), rest);
      std::unique_ptr<uint8_t[]> next(new uint8_t[ncap]);
      std::memcpy(next.get(), buf.get() + clen, rest);
      emit(clen, false);
      buf = std::move(next);
      cap = ncap;
      p = 0;
      end = rest;
    }
    // A short read that reaches the size the file had at open is its end:
    // no second read() just to see 0. A file that grew meanwhile is caught
    // by the fstat after reading (flagged as changed while read).
    if (size_t(r) < want && total + len == expect) eof = true;
  }
  if (len > 0) emit(len, true);
  if (streamed) n.file_sha256 = whole.Finish();
  if (total == 0) n.file_sha256 = Sha256(ByteView());
  n.size = total;
  struct stat after;
  if (::fstat(file.get(), &after) == 0 && (!SameFileState(before, after) || !SameFileState(job.st, before))) {
    n.flags |= kFlagChangedWhileRead;
    ++changed_during_read_;
    Warning(job.path, "changed while it was read (the snapshot holds the bytes read)");
  }
  n.mtime = Ts(before.st_mtim);
  n.ctime = Ts(before.st_ctim);
  if (job.had_parent) ++files_changed_; else ++files_new_;
  ++files_done_;
}

void Archiver::ReaderLoop() {
  FileJob job;
  while (files_.Pop(&job)) {
    if (!failed()) ReadOne(job);
    DirState* owner = job.owner;
    job.dir.reset();
    Finish(owner);
  }
}

void Archiver::EncoderLoop() {
  EncodeJob job;
  while (encode_.Pop(&job)) {
    if (failed()) continue;
    uint64_t stored = 0;
    auto added = target_.Put(BlobType::kData, job.id, ByteView(job.data.get(), job.size), &stored);
    job.data.reset();
    if (!added.ok()) {
      Fatal(added.status());
    } else if (*added) {
      ++data_blobs_;
      bytes_added_ += job.size;
      bytes_stored_ += stored;
    }
  }
}

void Archiver::Scan(int dfd, const std::string& path, const VDir* v, dev_t root_dev, int depth) {
  if (stop_scan_ || depth > kMaxDepth) return;
  std::vector<std::string> names;
  if (v) {
    for (const auto& [name, c] : v->children) names.push_back(name);
  } else {
    int dup = ::dup(dfd);
    DIR* dir = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!dir) {
      if (dup >= 0) ::close(dup);
      return;
    }
    while (dirent* e = ::readdir(dir)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    ::closedir(dir);
  }
  for (const auto& name : names) {
    if (stop_scan_) return;
    std::string p = Join(path, name);
    const VDir* cv = nullptr;
    if (v) {
      const VDir& c = v->children.at(name);
      cv = c.target ? nullptr : &c;
    } else if (MatchesExclude(opts_.excludes, p, name)) {
      continue;
    }
    struct stat st;
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (!v && !cv && opts_.one_file_system && root_dev != 0 && st.st_dev != root_dev) continue;
      Fd sub(OpenDir(dfd, name));
      if (sub.valid()) Scan(sub.get(), p, cv, (v && !cv) ? st.st_dev : root_dev, depth + 1);
    } else if (S_ISREG(st.st_mode)) {
      ++scan_files_;
      scan_bytes_ += uint64_t(st.st_size);
    }
  }
}

BackupProgress Archiver::Snapshot() const {
  BackupProgress p;
  p.files_done = files_done_;
  p.bytes_done = bytes_done_;
  p.dirs_done = dirs_done_;
  p.files_total = scan_files_;
  p.bytes_total = scan_bytes_;
  p.scan_done = scan_done_;
  p.errors = errors_n_;
  p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return p;
}

Result<BackupResult> Archiver::Run() {
  start_ = std::chrono::steady_clock::now();
  if (opts_.paths.empty()) return InvalidArgumentError("backup: no paths given");
  RETURN_IF_ERROR(target_.Ready());
  // Raise the descriptor limit: the walker holds one per directory level
  // plus one per queued file's directory.
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::vector<std::string> roots = BackupRoots(opts_.paths);
  VDir vroot;
  bool whole_root = false;
  for (const auto& r : roots) {
    if (r == "/") {
      whole_root = true;
      continue;
    }
    VDir* cur = &vroot;
    size_t i = 1;
    while (i <= r.size()) {
      size_t j = r.find('/', i);
      if (j == std::string::npos) j = r.size();
      cur = &cur->children[r.substr(i, j - i)];
      i = j + 1;
    }
    cur->target = true;
  }

  std::string host = opts_.host;
  if (host.empty()) host = storage::Actor::FromProcess("").host;

  // The parent snapshot: given, or the newest of this host with the same paths.
  std::optional<Id> parent = opts_.parent;
  std::optional<Tree> parent_root;
  std::optional<Summary> parent_summary;
  if (opts_.use_parent) {
    ASSIGN_OR_RETURN(std::optional<SnapshotInfo> p, target_.FindParent(opts_.parent, host, roots));
    if (p) {
      parent = p->id;
      parent_root = LoadTree(p->manifest.tree);
      parent_summary = p->manifest.summary;
    }
  }

  // The empty tree, for directories whose contents are not walked.
  {
    Bytes empty = EncodeTree(Tree{});
    empty_tree_ = Sha256(empty);
    if (ClaimChunk(empty_tree_)) {
      uint64_t stored = 0;
      auto added = target_.Put(BlobType::kTree, empty_tree_, empty, &stored);
      if (!added.ok()) return added.status();
    }
  }

  auto root_fd = std::make_shared<Fd>(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd->valid()) return ErrnoStatus("open /", errno);
  struct stat root_st;
  ::fstat(root_fd->get(), &root_st);

  int readers = opts_.readers > 0 ? opts_.readers : 4;
  int encoders = opts_.encoders > 0 ? opts_.encoders : int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int i = 0; i < readers; ++i) threads.emplace_back([this] { ReaderLoop(); });
  std::vector<std::thread> enc;
  for (int i = 0; i < encoders; ++i) enc.emplace_back([this] { EncoderLoop(); });
  // Metadata prefetchers: cold walks are bound by inode-read latency.
  constexpr int kPrefetchers = 4;
  std::vector<std::thread> prefetchers;
  for (int i = 0; i < kPrefetchers; ++i) prefetchers.emplace_back([this] { PrefetchLoop(); });
  // Totals for progress and ETA: from the parent snapshot when there is one
  // (a second walk would double the metadata reads of a nightly backup),
  // else from a scanner thread that walks ahead.
  std::thread scanner;
  if (parent_summary) {
    scan_files_ = parent_summary->total_files;
    scan_bytes_ = parent_summary->total_bytes;
    scan_done_ = true;
  } else if (opts_.progress) {
    scanner = std::thread([&] {
      Scan(root_fd->get(), "/", whole_root ? nullptr : &vroot, whole_root ? root_st.st_dev : 0, 0);
      scan_done_ = true;
    });
  }
  std::atomic<bool> stop_progress{false};
  std::thread progress;
  if (opts_.progress) {
    progress = std::thread([&] {
      while (!stop_progress) {
        for (int i = 0; i < opts_.progress_interval_ms / 10 && !stop_progress; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (!stop_progress) opts_.progress(Snapshot());
      }
    });
  }

  auto* root = new DirState();
  RunWithStack(kWalkerStack, [&] {
    WalkDir(root_fd, "/", root, whole_root ? nullptr : &vroot, parent_root ? &*parent_root : nullptr,
            root_st.st_dev);
    Finish(root);
  });
  {
    std::lock_guard<std::mutex> g(prefetch_mu_);
    prefetch_stop_ = true;
    prefetch_.clear();
    prefetch_cv_.notify_all();
  }
  for (auto& t : prefetchers) t.join();
  files_.Close();
  for (auto& t : threads) t.join();
  {
    std::unique_lock<std::mutex> l(root_mu_);
    root_cv_.wait(l, [&] { return root_done_; });
  }
  encode_.Close();
  for (auto& t : enc) t.join();
  stop_scan_ = true;
  if (scanner.joinable()) scanner.join();
  stop_progress = true;
  if (progress.joinable()) progress.join();
  if (failed()) return fatal_;

  Manifest m;
  m.time_ns = opts_.time_ns ? opts_.time_ns : NowNs();
  m.time = FormatTimeNs(m.time_ns);
  m.host = host;
  m.user = storage::Actor::FromProcess("").user;
  m.paths = roots;
  m.tags = opts_.tags;
  std::sort(m.tags.begin(), m.tags.end());
  m.tree = root_tree_;
  {
    Bytes table = atimes_.Encode();
    AddedBlobs added;
    ASSIGN_OR_RETURN(m.atimes, StoreAtimes(target_, chunker_, table, &added));
    atime_blobs_ = added.blobs;
    bytes_added_ += added.bytes;
    bytes_stored_ += added.stored;
  }
  m.parent = parent;
  m.program_version = opts_.program_version;
  BackupResult result;
  {
    std::lock_guard<std::mutex> g(msg_mu_);
    result.errors = errors_;
    result.warnings = warnings_;
  }
  m.partial = !result.errors.empty();
  for (size_t i = 0; i < result.errors.size() && i < kMaxErrorSamples; ++i) m.error_samples.push_back(result.errors[i]);
  Summary& s = m.summary;
  s.files_new = files_new_;
  s.files_changed = files_changed_;
  s.files_unmodified = files_unmodified_;
  s.dirs = dirs_done_;
  s.other_nodes = other_nodes_;
  s.data_blobs_added = data_blobs_;
  s.tree_blobs_added = tree_blobs_;
  s.atime_blobs_added = atime_blobs_;
  s.bytes_read = bytes_read_;
  s.bytes_added = bytes_added_;
  s.bytes_added_stored = bytes_stored_;
  s.total_files = files_done_;
  s.total_bytes = bytes_done_;
  s.files_changed_during_read = changed_during_read_;
  s.errors = errors_n_;
  // Every backup path failed: nothing worth a snapshot.
  if (targets_found_ == 0 && !whole_root) {
    return NotFoundError("backup: nothing could be read: " + result.errors.front());
  }
  s.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  ASSIGN_OR_RETURN(Id id, target_.Commit(&m));
  result.snapshot_id = id;
  result.manifest = std::move(m);
  return result;
}

}  // namespace

std::vector<std::string> BackupRoots(const std::vector<std::string>& paths) {
  std::vector<std::string> sorted;
  for (const auto& p : paths) sorted.push_back(NormalizePath(p));
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::vector<std::string> roots;
  for (const auto& p : sorted) {
    bool inside = std::any_of(roots.begin(), roots.end(), [&](const std::string& r) {
      return r == "/" || p.rfind(r + "/", 0) == 0;
    });
    if (!inside) roots.push_back(p);
  }
  return roots;
}

Result<BackupResult> Backup(BackupTarget& target, const BackupOptions& options) {
  Archiver a(target, options);
  return a.Run();
}

Result<BackupResult> Backup(storage::Repository& repo, const BackupOptions& options) {
  LocalTarget target(repo);
  return Backup(target, options);
}

}  // namespace custos::snapshot
