// Small POSIX file helpers: the durable-write rule lives here, once.
//
// WriteFileAtomic is the write-ordering primitive of the whole project:
// write to a temporary name in the same directory, fsync the file, rename it
// over the final name, fsync the directory. After it returns OK the file is
// complete under its final name and survives a crash; if it fails or the
// process dies, the final name is untouched (a temporary named
// ".tmp-<random>" may remain; writers remove those under their lock).
//
// Thread-safety: functions are reentrant; callers coordinate access to paths.
#pragma once

#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace custos {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

constexpr const char* kTempPrefix = ".tmp-";

enum class Overwrite { kNo, kYes };

// See the header comment. With Overwrite::kNo an existing final name gives
// AlreadyExists and is left alone (link(2) is used instead of rename(2)).
Status WriteFileAtomic(const std::string& path, ByteView data, int mode = 0600,
                       Overwrite overwrite = Overwrite::kYes);
Result<Bytes> ReadFile(const std::string& path);
// Reads exactly `length` bytes at `offset`; Corruption if the file is shorter.
Status ReadAt(int fd, uint64_t offset, size_t length, uint8_t* out, const std::string& what);
Status WriteAll(int fd, ByteView data, const std::string& what);
Status FsyncDir(const std::string& dir);
// mkdir -p; fsyncs each parent whose entry it created.
Status MakeDirs(const std::string& path, int mode = 0700);
std::string Dirname(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);

}  // namespace custos
