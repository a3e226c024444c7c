#include "base/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/crypto.h"

namespace custos {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

std::string Dirname(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

Status WriteAll(int fd, ByteView data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(what + ": write", errno);
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Status ReadAt(int fd, uint64_t offset, size_t length, uint8_t* out, const std::string& what) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, out + done, length - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(what + ": read", errno);
    }
    if (n == 0) {
      return CorruptionError(what + ": file ends at " + std::to_string(offset + done) +
                             ", expected " + std::to_string(offset + length) + " bytes");
    }
    done += size_t(n);
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(dir + ": open directory", errno);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(dir + ": fsync directory", errno);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, ByteView data, int mode, Overwrite overwrite) {
  std::string dir = Dirname(path);
  uint8_t rnd[8];
  RandomBytes(rnd, sizeof rnd);
  std::string tmp = JoinPath(dir, std::string(kTempPrefix) + ToHex(rnd));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return ErrnoStatus(path + ": create temporary", errno);
  Status st = WriteAll(fd.get(), data, path);
  if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoStatus(path + ": fsync", errno);
  if (st.ok() && ::close(fd.release()) != 0) st = ErrnoStatus(path + ": close", errno);
  if (st.ok()) {
    if (overwrite == Overwrite::kYes) {
      if (::rename(tmp.c_str(), path.c_str()) != 0) st = ErrnoStatus(path + ": rename", errno);
    } else {
      // link(2) fails with EEXIST instead of replacing: no window in which an
      // existing file could be overwritten.
      if (::link(tmp.c_str(), path.c_str()) != 0) {
        st = errno == EEXIST ? AlreadyExistsError(path + ": already exists")
                             : ErrnoStatus(path + ": link", errno);
      }
      ::unlink(tmp.c_str());
    }
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(dir);
}

Result<Bytes> ReadFile(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  struct stat sb;
  if (::fstat(fd.get(), &sb) != 0) return ErrnoStatus(path + ": stat", errno);
  Bytes out(size_t(sb.st_size));
  RETURN_IF_ERROR(ReadAt(fd.get(), 0, out.size(), out.data(), path));
  return out;
}

Status MakeDirs(const std::string& path, int mode) {
  if (path.empty() || path == "/" || path == ".") return Status::Ok();
  struct stat sb;
  if (::stat(path.c_str(), &sb) == 0) {
    if (S_ISDIR(sb.st_mode)) return Status::Ok();
    return AlreadyExistsError(path + ": exists and is not a directory");
  }
  std::string parent = Dirname(path);
  RETURN_IF_ERROR(MakeDirs(parent, mode));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(path + ": mkdir", errno);
  }
  return FsyncDir(parent);
}

}  // namespace custos
