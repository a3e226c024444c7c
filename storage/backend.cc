#include "storage/backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>

#include "base/crypto.h"
#include "base/file_util.h"

namespace custos::storage {

const char* FileTypeName(FileType t) {
  switch (t) {
    case FileType::kConfig: return "config";
    case FileType::kKey: return "key";
    case FileType::kPack: return "pack";
    case FileType::kIndex: return "index";
    case FileType::kSnapshot: return "snapshot";
    case FileType::kReport: return "report";
    case FileType::kHold: return "hold";
    case FileType::kMark: return "mark";
  }
  return "?";
}

Status ValidateName(FileType type, const std::string& name) {
  if (type == FileType::kConfig) return Status::Ok();
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-')) ok = false;
  }
  if (type == FileType::kPack && name.size() < 2) ok = false;
  if (!ok) {
    return InvalidArgumentError(std::string(FileTypeName(type)) + " name '" + name +
                                "' is not valid (1..128 of [0-9a-z-])");
  }
  return Status::Ok();
}

namespace {

// ---------------------------------------------------------------- local

class LocalLock : public WriterLock {
 public:
  explicit LocalLock(Fd fd) : fd_(std::move(fd)) {}
  ~LocalLock() override {
    // Clear the holder description first so that nobody reads a stale one;
    // closing the descriptor releases the flock.
    if (::ftruncate(fd_.get(), 0) != 0) {
      // Nothing to do: the lock is released by close below regardless.
    }
  }

 private:
  Fd fd_;
};

class LocalWriter : public FileWriter {
 public:
  LocalWriter(Fd fd, std::string tmp, FileType type, std::function<std::string(const std::string&)> final_path)
      : fd_(std::move(fd)), tmp_(std::move(tmp)), type_(type), final_path_(std::move(final_path)) {}
  ~LocalWriter() override {
    if (!committed_) ::unlink(tmp_.c_str());
  }
  // Small appends (one blob each) are gathered into 1 MiB writes.
  Status Append(ByteView data) override {
    if (buf_.size() + data.size() > kBufferSize) RETURN_IF_ERROR(FlushBuffer());
    if (data.size() >= kBufferSize) {
      RETURN_IF_ERROR(WriteAll(fd_.get(), data, tmp_));
    } else {
      buf_.insert(buf_.end(), data.begin(), data.end());
    }
    size_ += data.size();
    return Status::Ok();
  }
  Status Commit(const std::string& name) override {
    RETURN_IF_ERROR(ValidateName(type_, name));
    RETURN_IF_ERROR(FlushBuffer());
    std::string path = final_path_(name);
    if (::fsync(fd_.get()) != 0) return ErrnoStatus(path + ": fsync", errno);
    if (::close(fd_.release()) != 0) return ErrnoStatus(path + ": close", errno);
    // data/XX may be missing in a copied repository (tools skip empty dirs).
    RETURN_IF_ERROR(MakeDirs(Dirname(path)));
    int rc = ::link(tmp_.c_str(), path.c_str());
    int err = errno;
    ::unlink(tmp_.c_str());
    committed_ = true;
    if (rc != 0) {
      return err == EEXIST ? AlreadyExistsError(path + ": already exists") : ErrnoStatus(path + ": link", err);
    }
    return FsyncDir(Dirname(path));
  }
  uint64_t size() const override { return size_; }

 private:
  static constexpr size_t kBufferSize = 1u << 20;
  Status FlushBuffer() {
    if (buf_.empty()) return Status::Ok();
    Status st = WriteAll(fd_.get(), buf_, tmp_);
    buf_.clear();
    return st;
  }

  Bytes buf_;
  Fd fd_;
  std::string tmp_;
  FileType type_;
  std::function<std::string(const std::string&)> final_path_;
  uint64_t size_ = 0;
  bool committed_ = false;
};

class LocalBackend : public Backend {
 public:
  explicit LocalBackend(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  }

  std::string Location() const override { return root_; }

  Status Create() override {
    struct stat sb;
    if (::stat(root_.c_str(), &sb) == 0) {
      if (!S_ISDIR(sb.st_mode)) return AlreadyExistsError(root_ + ": exists and is not a directory");
      if (::access(JoinPath(root_, "config").c_str(), F_OK) == 0) {
        return AlreadyExistsError(root_ + ": a repository already exists here");
      }
      // Empty, or the empty layout an interrupted init left: init may
      // proceed. Anything else is somebody's data.
      if (!IsEmptyLayout(root_, 0)) {
        return InvalidArgumentError(root_ + ": directory is not empty and holds no repository");
      }
    }
    RETURN_IF_ERROR(MakeDirs(root_));
    for (const char* sub : {"keys", "index", "snapshots", "reports", "holds", "marks", "data"}) {
      RETURN_IF_ERROR(MakeDirs(JoinPath(root_, sub)));
    }
    for (int i = 0; i < 256; ++i) {
      uint8_t b = uint8_t(i);
      std::string p = JoinPath(JoinPath(root_, "data"), ToHex(ByteView(&b, 1)));
      if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoStatus(p + ": mkdir", errno);
    }
    return FsyncDir(JoinPath(root_, "data"));
  }

  Status Save(FileType type, const std::string& name, ByteView data) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::string path = PathOf(type, name);
    // Layout directories may be missing in a copied repository (tools that
    // skip empty directories): recreate them on demand.
    RETURN_IF_ERROR(MakeDirs(Dirname(path)));
    return WriteFileAtomic(path, data, 0600, Overwrite::kNo);
  }

  Result<std::unique_ptr<FileWriter>> NewWriter(FileType type) override {
    uint8_t rnd[8];
    RandomBytes(rnd, sizeof rnd);
    std::string tmp = JoinPath(DirOf(type), std::string(kTempPrefix) + ToHex(rnd));
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus(tmp + ": create temporary", errno);
    return std::unique_ptr<FileWriter>(new LocalWriter(std::move(fd), tmp, type, [this, type](const std::string& name) {
      return PathOf(type, name);
    }));
  }

  Result<Bytes> Load(FileType type, const std::string& name, uint64_t offset,
                     uint64_t length) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::string path = PathOf(type, name);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(path, errno);
    if (length == kWholeFile) {
      struct stat sb;
      if (::fstat(fd.get(), &sb) != 0) return ErrnoStatus(path + ": stat", errno);
      if (uint64_t(sb.st_size) < offset) {
        return CorruptionError(path + ": offset " + std::to_string(offset) + " beyond end");
      }
      length = uint64_t(sb.st_size) - offset;
    }
    if (length > (uint64_t(1) << 34)) return InvalidArgumentError(path + ": read too large");
    Bytes out(static_cast<size_t>(length));
    RETURN_IF_ERROR(ReadAt(fd.get(), offset, out.size(), out.data(), path));
    return out;
  }

  Result<uint64_t> Size(FileType type, const std::string& name) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::string path = PathOf(type, name);
    struct stat sb;
    if (::stat(path.c_str(), &sb) != 0) return ErrnoStatus(path, errno);
    return uint64_t(sb.st_size);
  }

  Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) override {
    if (type == FileType::kConfig) {
      auto size = Size(type, "");
      if (!size.ok()) return size.status().code() == Code::kNotFound ? Status::Ok() : size.status();
      return fn(FileInfo{"config", *size});
    }
    if (type != FileType::kPack) return ListDir(DirOf(type), type, fn);
    for (int i = 0; i < 256; ++i) {
      uint8_t b = uint8_t(i);
      RETURN_IF_ERROR(ListDir(JoinPath(JoinPath(root_, "data"), ToHex(ByteView(&b, 1))), type, fn));
    }
    return Status::Ok();
  }

  Status Remove(FileType type, const std::string& name) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::string path = PathOf(type, name);
    if (::unlink(path.c_str()) != 0) return ErrnoStatus(path + ": remove", errno);
    return FsyncDir(Dirname(path));
  }

  Result<std::unique_ptr<WriterLock>> LockWriter(const std::string& holder) override {
    std::string path = JoinPath(root_, "lock");
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus(path + ": open lock file", errno);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      if (err != EWOULDBLOCK) return ErrnoStatus(path + ": flock", err);
      std::string who;
      char buf[1024];
      ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
      if (n > 0) who.assign(buf, size_t(n));
      while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
      if (who.empty()) who = "another process (starting up)";
      return BusyError("repository " + root_ + " is locked by " + who);
    }
    if (::ftruncate(fd.get(), 0) != 0) return ErrnoStatus(path + ": truncate lock file", errno);
    std::string line = holder + "\n";
    if (::pwrite(fd.get(), line.data(), line.size(), 0) < 0) {
      return ErrnoStatus(path + ": write lock file", errno);
    }
    return std::unique_ptr<WriterLock>(new LocalLock(std::move(fd)));
  }

  Status RemoveStaleTemporaries() override {
    std::vector<std::string> dirs = {root_, JoinPath(root_, "keys"), JoinPath(root_, "index"),
                                     JoinPath(root_, "snapshots"), JoinPath(root_, "reports"), JoinPath(root_, "holds"),
                                     JoinPath(root_, "marks"),
                                     JoinPath(root_, "data")};
    for (int i = 0; i < 256; ++i) {
      uint8_t b = uint8_t(i);
      dirs.push_back(JoinPath(JoinPath(root_, "data"), ToHex(ByteView(&b, 1))));
    }
    for (const auto& dir : dirs) {
      DIR* d = ::opendir(dir.c_str());
      if (!d) continue;
      bool removed = false;
      while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.rfind(kTempPrefix, 0) == 0) {
          ::unlink(JoinPath(dir, n).c_str());
          removed = true;
        }
      }
      ::closedir(d);
      if (removed) RETURN_IF_ERROR(FsyncDir(dir));
    }
    return Status::Ok();
  }

 private:
  std::string DirOf(FileType type) const {
    switch (type) {
      case FileType::kConfig: return root_;
      case FileType::kKey: return JoinPath(root_, "keys");
      case FileType::kIndex: return JoinPath(root_, "index");
      case FileType::kSnapshot: return JoinPath(root_, "snapshots");
      case FileType::kReport: return JoinPath(root_, "reports");
      case FileType::kHold: return JoinPath(root_, "holds");
      case FileType::kMark: return JoinPath(root_, "marks");
      case FileType::kPack: return JoinPath(root_, "data");
    }
    return root_;
  }

  std::string PathOf(FileType type, const std::string& name) const {
    if (type == FileType::kConfig) return JoinPath(root_, "config");
    if (type == FileType::kPack) return JoinPath(JoinPath(DirOf(type), name.substr(0, 2)), name);
    return JoinPath(DirOf(type), name);
  }

  Status ListDir(const std::string& dir, FileType type,
                 const std::function<Status(const FileInfo&)>& fn) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT) return Status::Ok();
      return ErrnoStatus(dir, errno);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.empty() || n[0] == '.') continue;
      if (!ValidateName(type, n).ok()) continue;
      names.push_back(std::move(n));
    }
    ::closedir(d);
    for (const auto& n : names) {
      struct stat sb;
      std::string p = JoinPath(dir, n);
      if (::stat(p.c_str(), &sb) != 0) {
        if (errno == ENOENT) continue;  // removed meanwhile
        return ErrnoStatus(p, errno);
      }
      if (!S_ISREG(sb.st_mode)) continue;
      RETURN_IF_ERROR(fn(FileInfo{n, uint64_t(sb.st_size)}));
    }
    return Status::Ok();
  }

  // Whether `dir` holds nothing but (empty) repository layout directories,
  // the lock file and temporaries.
  static bool IsEmptyLayout(const std::string& dir, int depth) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return false;
    bool ok = true;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == ".." || n.rfind(kTempPrefix, 0) == 0) continue;
      bool layout_dir = depth == 0 ? (n == "keys" || n == "index" || n == "snapshots" || n == "reports" ||
                                                n == "holds" || n == "marks" || n == "data")
                                   : (depth == 1 && n.size() == 2 && IsLowerHex(n));
      if (depth == 0 && n == "lock") continue;
      if (!layout_dir || !IsEmptyLayout(JoinPath(dir, n), depth + 1)) {
        ok = false;
        break;
      }
    }
    ::closedir(d);
    return ok;
  }

  std::string root_;
};

// ---------------------------------------------------------------- memory

class MemoryBackend;

class MemoryLock : public WriterLock {
 public:
  MemoryLock(std::mutex* mu, bool* held) : mu_(mu), held_(held) {}
  ~MemoryLock() override {
    std::lock_guard<std::mutex> g(*mu_);
    *held_ = false;
  }

 private:
  std::mutex* mu_;
  bool* held_;
};

class MemoryWriter : public FileWriter {
 public:
  MemoryWriter(Backend* b, FileType type) : backend_(b), type_(type) {}
  Status Append(ByteView data) override {
    custos::Append(bytes_, data);
    return Status::Ok();
  }
  Status Commit(const std::string& name) override { return backend_->Save(type_, name, bytes_); }
  uint64_t size() const override { return bytes_.size(); }

 private:
  Backend* backend_;
  FileType type_;
  Bytes bytes_;
};

class MemoryBackend : public Backend {
 public:
  Result<std::unique_ptr<FileWriter>> NewWriter(FileType type) override {
    return std::unique_ptr<FileWriter>(new MemoryWriter(this, type));
  }

  std::string Location() const override { return "memory"; }

  Status Create() override {
    std::lock_guard<std::mutex> g(mu_);
    if (files_.count({FileType::kConfig, ""})) return AlreadyExistsError("memory: a repository already exists");
    return Status::Ok();
  }

  Status Save(FileType type, const std::string& name, ByteView data) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::lock_guard<std::mutex> g(mu_);
    auto key = Key(type, name);
    if (files_.count(key)) return AlreadyExistsError(Describe(type, name) + ": already exists");
    files_[key] = Bytes(data.begin(), data.end());
    return Status::Ok();
  }

  Result<Bytes> Load(FileType type, const std::string& name, uint64_t offset,
                     uint64_t length) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::lock_guard<std::mutex> g(mu_);
    auto it = files_.find(Key(type, name));
    if (it == files_.end()) return NotFoundError(Describe(type, name) + ": not found");
    const Bytes& b = it->second;
    if (offset > b.size()) return CorruptionError(Describe(type, name) + ": offset beyond end");
    if (length == kWholeFile) length = b.size() - offset;
    if (length > b.size() - offset) {
      return CorruptionError(Describe(type, name) + ": file ends at " + std::to_string(b.size()) +
                             ", expected " + std::to_string(offset + length) + " bytes");
    }
    return Bytes(b.begin() + long(offset), b.begin() + long(offset + length));
  }

  Result<uint64_t> Size(FileType type, const std::string& name) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::lock_guard<std::mutex> g(mu_);
    auto it = files_.find(Key(type, name));
    if (it == files_.end()) return NotFoundError(Describe(type, name) + ": not found");
    return uint64_t(it->second.size());
  }

  Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) override {
    std::vector<FileInfo> infos;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (const auto& [k, v] : files_) {
        if (k.first == type) infos.push_back(FileInfo{type == FileType::kConfig ? "config" : k.second, v.size()});
      }
    }
    for (const auto& i : infos) RETURN_IF_ERROR(fn(i));
    return Status::Ok();
  }

  Status Remove(FileType type, const std::string& name) override {
    RETURN_IF_ERROR(ValidateName(type, name));
    std::lock_guard<std::mutex> g(mu_);
    if (files_.erase(Key(type, name)) == 0) return NotFoundError(Describe(type, name) + ": not found");
    return Status::Ok();
  }

  Result<std::unique_ptr<WriterLock>> LockWriter(const std::string& holder) override {
    std::lock_guard<std::mutex> g(mu_);
    if (lock_held_) return BusyError("repository memory is locked by " + lock_holder_);
    lock_held_ = true;
    lock_holder_ = holder;
    return std::unique_ptr<WriterLock>(new MemoryLock(&mu_, &lock_held_));
  }

  Status RemoveStaleTemporaries() override { return Status::Ok(); }

 private:
  static std::pair<FileType, std::string> Key(FileType type, const std::string& name) {
    return {type, type == FileType::kConfig ? "" : name};
  }
  static std::string Describe(FileType type, const std::string& name) {
    return std::string(FileTypeName(type)) + " " + name;
  }

  std::mutex mu_;
  std::map<std::pair<FileType, std::string>, Bytes> files_;
  bool lock_held_ = false;
  std::string lock_holder_;
};

}  // namespace

std::unique_ptr<Backend> NewLocalBackend(const std::string& root) {
  return std::make_unique<LocalBackend>(root);
}
std::unique_ptr<Backend> NewMemoryBackend() { return std::make_unique<MemoryBackend>(); }

}  // namespace custos::storage
