#include "restore/exporter.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <utility>

#include "base/crypto.h"
#include "base/file_util.h"
#include "snapshot/archiver.h"
#include "snapshot/browse.h"
#include "snapshot/tree.h"

namespace custos::restore {

using snapshot::Node;
using snapshot::NodeType;

namespace {

constexpr char kExportTmpPrefix[] = ".custos-export-";
// Zeros written in place of an unreadable chunk or a short content list,
// this much at a time.
constexpr size_t kZeroBlock = 64 << 10;
// Output is written in 10240-byte records: the tar convention (blocking
// factor 20, the default of GNU tar and libarchive).
constexpr int kBytesPerBlock = 10240;

// The calling thread's LC_CTYPE while an archive is written, put back at
// the end. libarchive converts names between the locale's charset and
// UTF-8 (pax headers) and sets the zip UTF-8 flag when the locale's charset
// is UTF-8. Under the C locale no non-ASCII name converts, so pax would mark
// every one hdrcharset=BINARY; under C.UTF-8 valid UTF-8 names are written
// as standard UTF-8 and only the others fall back to raw bytes with
// hdrcharset=BINARY. zip sets its flag without checking the bytes, so each
// zip entry is written under C.UTF-8 only when its name is valid UTF-8
// (raw bytes without the flag otherwise). The bytes are the snapshot's
// either way.
class ThreadCtype {
 public:
  ThreadCtype()
      : utf8_(::newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(0))),
        c_(::newlocale(LC_CTYPE_MASK, "C", locale_t(0))),
        old_(::uselocale(locale_t(0))) {}
  ~ThreadCtype() {
    ::uselocale(old_);
    if (utf8_) ::freelocale(utf8_);
    if (c_) ::freelocale(c_);
  }
  ThreadCtype(const ThreadCtype&) = delete;
  ThreadCtype& operator=(const ThreadCtype&) = delete;
  void Use(bool utf8) {
    locale_t l = utf8 ? utf8_ : c_;
    if (l) ::uselocale(l);
  }

 private:
  locale_t utf8_, c_, old_;
};

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// Where the archive bytes go: an fd, written in full; the first error is
// kept so that the Status says what failed rather than libarchive's text.
struct Sink {
  int fd = -1;
  Status error;
};

la_ssize_t SinkWrite(struct archive* a, void* client, const void* buf, size_t n) {
  auto* sink = static_cast<Sink*>(client);
  Status st = WriteAll(sink->fd, ByteView(static_cast<const uint8_t*>(buf), n), "export output");
  if (!st.ok()) {
    if (sink->error.ok()) sink->error = st;
    archive_set_error(a, EIO, "%s", st.message().c_str());
    return -1;
  }
  return la_ssize_t(n);
}

// Streams a file's content (its chunks in order, one read ahead on a helper
// thread) to `out`, hashing what it writes. Exactly node.size bytes reach
// `out` whatever happens: an unreadable chunk or a content list that does
// not add up is replaced by zeros and reported. Returns the reason for a
// per-file failure ("" when the content matched its recorded SHA-256); a
// Status error from `out` is fatal and returned through `fatal`.
std::string StreamContent(storage::Repository& repo, const Node& n,
                          const std::function<Status(ByteView)>& out, Status* fatal) {
  Sha256Stream hash;
  std::string failure;
  uint64_t written = 0;
  static const Bytes zeros(kZeroBlock, 0);
  auto emit = [&](ByteView data) -> bool {
    uint64_t room = n.size - written;
    if (data.size() > room) {
      if (failure.empty()) failure = "content is longer than its recorded size " + std::to_string(n.size);
      data = data.subspan(0, size_t(room));
    }
    if (data.empty()) return true;
    hash.Update(data);
    written += data.size();
    *fatal = out(data);
    return fatal->ok();
  };
  auto emit_zeros = [&](uint64_t count) -> bool {
    while (count > 0) {
      size_t k = size_t(std::min<uint64_t>(count, zeros.size()));
      if (!emit(ByteView(zeros.data(), k))) return false;
      count -= k;
    }
    return true;
  };
  std::future<Result<Bytes>> ahead;
  auto read = [&repo](Id id) { return repo.ReadBlob(id); };
  for (size_t i = 0; i < n.content.size(); ++i) {
    const snapshot::ChunkRef& c = n.content[i];
    Result<Bytes> data = i == 0 ? read(c.id) : ahead.get();
    if (i + 1 < n.content.size()) ahead = std::async(std::launch::async, read, n.content[i + 1].id);
    bool go;
    if (!data.ok()) {
      if (failure.empty()) failure = "blob " + c.id.Short() + ": " + data.status().ToString();
      go = emit_zeros(c.size);
    } else if (data->size() != c.size) {
      if (failure.empty()) {
        failure = "blob " + c.id.Short() + ": " + std::to_string(data->size()) + " bytes, the tree says " +
                  std::to_string(c.size);
      }
      go = emit(*data);
    } else {
      go = emit(*data);
    }
    if (!go) return failure;  // `ahead`, if any, is joined by its destructor
  }
  if (written < n.size) {
    if (failure.empty()) failure = "content is shorter than its recorded size " + std::to_string(n.size);
    if (!emit_zeros(n.size - written)) return failure;
  }
  if (failure.empty() && hash.Finish() != n.file_sha256) {
    failure = "content does not match the recorded SHA-256 " + n.file_sha256.Short();
  }
  return failure;
}

class ArchiveWriter {
 public:
  ArchiveWriter(storage::Repository& repo, ArchiveFormat format, const snapshot::AtimeTable* atimes, int fd,
                ThreadCtype* ctype)
      : repo_(repo), format_(format), atimes_(atimes), ctype_(ctype) {
    sink_.fd = fd;
  }
  ~ArchiveWriter() {
    if (a_) archive_write_free(a_);
  }
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  Status Open();
  // Exports the node at snapshot path `path` as archive name `name`, and
  // for a directory everything below it. Per-item problems go to the
  // result; a non-OK Status means the stream is broken.
  Status Add(const std::string& path, const std::string& name, const Node& n);
  Status AddChildren(const std::string& path, const std::string& name, const Id& tree);
  Status Close();
  ExportResult& result() { return result_; }

 private:
  Status Fatal(const std::string& what);
  // `binary_names`: some string of the entry (name, link target, owner
  // names) is not valid UTF-8.
  // `both_xattrs`: write LIBARCHIVE.xattr records besides SCHILY.xattr (pax).
  Status WriteHeader(archive_entry* e, const std::string& path, bool binary_names, bool both_xattrs, bool* written);
  // pax xattr records: SCHILY.xattr only (what GNU tar reads; it warns
  // about LIBARCHIVE.xattr), or both.
  Status XattrHeaders(bool both);

  storage::Repository& repo_;
  ArchiveFormat format_;
  const snapshot::AtimeTable* atimes_;
  ThreadCtype* ctype_;
  Sink sink_;
  struct archive* a_ = nullptr;
  ExportResult result_;
  std::map<std::pair<uint64_t, uint64_t>, std::string> first_name_;  // (dev, inode) -> archive name
};

Status ArchiveWriter::Fatal(const std::string& what) {
  if (!sink_.error.ok()) return sink_.error;
  const char* msg = a_ ? archive_error_string(a_) : nullptr;
  return IOError("export: " + what + ": " + (msg ? msg : "libarchive error"));
}

Status ArchiveWriter::Open() {
  a_ = archive_write_new();
  if (!a_) return IOError("export: libarchive: out of memory");
  int r = ARCHIVE_OK;
  switch (format_) {
    case ArchiveFormat::kTar: r = archive_write_set_format_gnutar(a_); break;
    case ArchiveFormat::kPax: r = archive_write_set_format_pax(a_); break;
    case ArchiveFormat::kZip: r = archive_write_set_format_zip(a_); break;
  }
  if (r != ARCHIVE_OK) return Fatal("set format");
  if (format_ == ArchiveFormat::kPax) RETURN_IF_ERROR(XattrHeaders(false));
  archive_write_set_bytes_per_block(a_, kBytesPerBlock);
  // A tar stream ends with a full record; a zip file ends right after its
  // central directory.
  archive_write_set_bytes_in_last_block(a_, format_ == ArchiveFormat::kZip ? 1 : kBytesPerBlock);
  if (archive_write_open2(a_, &sink_, nullptr, SinkWrite, nullptr, nullptr) != ARCHIVE_OK) return Fatal("open");
  return Status::Ok();
}

Status ArchiveWriter::XattrHeaders(bool both) {
  if (archive_write_set_format_option(a_, "pax", "xattrheader", both ? "ALL" : "SCHILY") != ARCHIVE_OK) {
    return Fatal("pax option xattrheader");
  }
  return Status::Ok();
}

Status ArchiveWriter::WriteHeader(archive_entry* e, const std::string& path, bool binary_names, bool both_xattrs,
                                  bool* written) {
  if (both_xattrs) RETURN_IF_ERROR(XattrHeaders(true));
  if (format_ == ArchiveFormat::kZip) ctype_->Use(!binary_names);
  int r = archive_write_header(a_, e);
  if (format_ == ArchiveFormat::kZip) ctype_->Use(true);
  if (both_xattrs) RETURN_IF_ERROR(XattrHeaders(false));
  *written = r == ARCHIVE_OK || r == ARCHIVE_WARN;
  if (r == ARCHIVE_FATAL) return Fatal(path);
  const char* msg = archive_error_string(a_);
  std::string why = msg ? msg : "libarchive error";
  if (r == ARCHIVE_FAILED) result_.failures.push_back({path, "not written to the archive: " + why});
  // pax reports the expected fallback to hdrcharset=BINARY for names that
  // are not UTF-8 as a warning; the entry holds the exact bytes.
  if (r == ARCHIVE_WARN && !(format_ == ArchiveFormat::kPax && binary_names)) {
    result_.warnings.push_back({path, why});
  }
  if (*written) ++result_.entries;
  return Status::Ok();
}

Status ArchiveWriter::Add(const std::string& path, const std::string& name, const Node& n) {
  if (!snapshot::IsSafeName(n.name)) {  // DecodeTree refuses these; never trust one layer alone
    result_.failures.push_back({path, "unsafe name refused"});
    return Status::Ok();
  }
  unsigned type = 0;
  switch (n.type) {
    case NodeType::kFile: type = AE_IFREG; break;
    case NodeType::kDir: type = AE_IFDIR; break;
    case NodeType::kSymlink: type = AE_IFLNK; break;
    case NodeType::kFifo: type = AE_IFIFO; break;
    case NodeType::kCharDev: type = AE_IFCHR; break;
    case NodeType::kBlockDev: type = AE_IFBLK; break;
    case NodeType::kSocket:
      ++result_.skipped;
      result_.warnings.push_back({path, "a socket cannot be archived; skipped"});
      return Status::Ok();
  }
  if (format_ == ArchiveFormat::kZip && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
    ++result_.skipped;
    result_.warnings.push_back(
        {path, "zip cannot hold a " + std::string(snapshot::NodeTypeName(n.type)) + "; skipped"});
    return Status::Ok();
  }
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(), archive_entry_free);
  if (!entry) return IOError("export: libarchive: out of memory");
  archive_entry* e = entry.get();
  // The snapshot's bytes, never converted: see ThreadCtype for how each
  // format marks them.
  archive_entry_copy_pathname(e, type == AE_IFDIR ? (name + "/").c_str() : name.c_str());
  archive_entry_set_filetype(e, type);
  archive_entry_set_perm(e, n.mode & 07777);
  archive_entry_set_uid(e, n.uid);
  archive_entry_set_gid(e, n.gid);
  if (!n.user.empty()) archive_entry_copy_uname(e, n.user.c_str());
  if (!n.group.empty()) archive_entry_copy_gname(e, n.group.c_str());
  archive_entry_set_mtime(e, time_t(n.mtime.sec), long(n.mtime.nsec));
  archive_entry_set_atime(e, time_t(n.atime.sec), long(n.atime.nsec));
  archive_entry_set_ctime(e, time_t(n.ctime.sec), long(n.ctime.nsec));
  if (n.type == NodeType::kSymlink) archive_entry_copy_symlink(e, n.link_target.c_str());
  if (n.type == NodeType::kCharDev || n.type == NodeType::kBlockDev) {
    archive_entry_set_rdevmajor(e, major(dev_t(n.rdev)));
    archive_entry_set_rdevminor(e, minor(dev_t(n.rdev)));
  }
  bool both_xattrs = false;
  if (!n.xattrs.empty()) {
    if (format_ == ArchiveFormat::kPax) {
      for (const auto& [k, v] : n.xattrs) {
        archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
        // "SCHILY.xattr.NAME=VALUE" cannot hold a NAME with '=': such an
        // entry gets the URL-encoded LIBARCHIVE.xattr records too.
        both_xattrs = both_xattrs || k.find('=') != std::string::npos;
      }
    } else {
      ++result_.xattrs_dropped;
    }
  }
  bool content = n.type == NodeType::kFile;
  std::string hardlink_target;
  if (content && n.nlink > 1) {
    auto key = std::make_pair(n.dev, n.inode);
    auto it = first_name_.find(key);
    if (it == first_name_.end()) {
      first_name_.emplace(key, name);
    } else if (format_ != ArchiveFormat::kZip) {  // zip has no hard links: the data again
      hardlink_target = it->second;
      archive_entry_set_hardlink(e, hardlink_target.c_str());
      content = false;
    }
  }
  archive_entry_set_size(e, content ? int64_t(n.size) : 0);
  bool binary_names = !IsValidUtf8(name) || !IsValidUtf8(n.user) || !IsValidUtf8(n.group) ||
                      !IsValidUtf8(hardlink_target) || (n.type == NodeType::kSymlink && !IsValidUtf8(n.link_target));
  bool written = false;
  RETURN_IF_ERROR(WriteHeader(e, path, binary_names, both_xattrs, &written));
  if (!written) return Status::Ok();
  switch (n.type) {
    case NodeType::kDir: ++result_.dirs; break;
    case NodeType::kSymlink: ++result_.symlinks; break;
    case NodeType::kFile: ++(content ? result_.files : result_.hardlinks); break;
    default: ++result_.specials; break;
  }
  if (content) {
    Status fatal;
    auto out = [&](ByteView data) -> Status {
      la_ssize_t w = archive_write_data(a_, data.data(), data.size());
      if (w < 0 || size_t(w) != data.size()) return Fatal(path);
      result_.bytes += data.size();
      return Status::Ok();
    };
    std::string why = StreamContent(repo_, n, out, &fatal);
    if (!fatal.ok()) return fatal;
    if (!why.empty()) result_.failures.push_back({path, why});
  }
  if (archive_write_finish_entry(a_) == ARCHIVE_FATAL) return Fatal(path);
  if (n.type == NodeType::kDir && !n.subtree.IsZero()) return AddChildren(path, name, n.subtree);
  return Status::Ok();
}

Status ArchiveWriter::AddChildren(const std::string& path, const std::string& name, const Id& tree) {
  auto t = snapshot::LoadTree(repo_, tree, atimes_);
  if (!t.ok()) {
    result_.failures.push_back({path, "tree unreadable: " + t.status().ToString()});
    return Status::Ok();
  }
  for (const auto& c : t->nodes) {
    RETURN_IF_ERROR(Add(path == "/" ? "/" + c.name : path + "/" + c.name, Join(name, c.name), c));
  }
  return Status::Ok();
}

Status ArchiveWriter::Close() {
  if (archive_write_close(a_) != ARCHIVE_OK) return Fatal("close");
  return Status::Ok();
}

// The last component of a normalised absolute path ("/" for the root).
std::string BaseName(const std::string& path) {
  if (path == "/") return path;
  return path.substr(path.find_last_of('/') + 1);
}

std::string NormalizedSubpath(const std::string& subpath) {
  return snapshot::NormalizePath(subpath.empty() || subpath[0] != '/' ? "/" + subpath : subpath);
}

}  // namespace

Result<ArchiveFormat> ParseArchiveFormat(std::string_view name) {
  if (name == "tar") return ArchiveFormat::kTar;
  if (name == "pax") return ArchiveFormat::kPax;
  if (name == "zip") return ArchiveFormat::kZip;
  return InvalidArgumentError("unknown archive format '" + std::string(name) + "' (tar, pax or zip)");
}

const char* ArchiveFormatName(ArchiveFormat f) {
  switch (f) {
    case ArchiveFormat::kTar: return "tar";
    case ArchiveFormat::kPax: return "pax";
    case ArchiveFormat::kZip: return "zip";
  }
  return "?";
}

Result<ExportResult> ExportToFd(storage::Repository& repo, const Id& root_tree, const ExportOptions& options, int fd) {
  auto start = std::chrono::steady_clock::now();
  std::string base = NormalizedSubpath(options.subpath);
  ASSIGN_OR_RETURN(Node top, snapshot::FindPath(repo, root_tree, base, options.atimes.get()));
  ThreadCtype ctype;
  ctype.Use(true);
  ArchiveWriter w(repo, options.format, options.atimes.get(), fd, &ctype);
  RETURN_IF_ERROR(w.Open());
  // A directory's contents are named relative to it (the directory itself
  // has no entry); anything else is one entry named by its last component.
  if (top.type == NodeType::kDir) {
    if (!top.subtree.IsZero()) RETURN_IF_ERROR(w.AddChildren(base, "", top.subtree));
  } else {
    RETURN_IF_ERROR(w.Add(base, BaseName(base), top));
  }
  RETURN_IF_ERROR(w.Close());
  ExportResult res = std::move(w.result());
  res.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

Result<ExportResult> ExportToFile(storage::Repository& repo, const Id& root_tree, const ExportOptions& options,
                                  const std::string& path) {
  std::string dir = Dirname(path);
  // An unnamed file first: if the process dies, nothing is left behind.
  Fd fd(::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  std::string tmp;  // the named temporary, when O_TMPFILE is not supported
  if (!fd.valid()) {
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return ErrnoStatus(path + ": create", errno);
    uint8_t r[8];
    RandomBytes(r, sizeof r);
    tmp = JoinPath(dir, kExportTmpPrefix + ToHex(ByteView(r, sizeof r)));
    fd = Fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus(path + ": create temporary", errno);
  }
  auto discard = [&] {
    if (!tmp.empty()) ::unlink(tmp.c_str());
  };
  auto res = ExportToFd(repo, root_tree, options, fd.get());
  if (!res.ok() || !res->ok()) {
    discard();
    return res;
  }
  if (::fsync(fd.get()) != 0) {
    discard();
    return ErrnoStatus(path + ": fsync", errno);
  }
  if (tmp.empty()) {
    // Give the unnamed file a temporary name, then rename it into place.
    uint8_t r[8];
    RandomBytes(r, sizeof r);
    tmp = JoinPath(dir, kExportTmpPrefix + ToHex(ByteView(r, sizeof r)));
    std::string self = "/proc/self/fd/" + std::to_string(fd.get());
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      int err = errno;
      tmp.clear();
      return ErrnoStatus(path + ": name the finished file", err);
    }
  }
  if (::close(fd.release()) != 0) {
    discard();
    return ErrnoStatus(path + ": close", errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    discard();
    return ErrnoStatus(path + ": rename into place", err);
  }
  RETURN_IF_ERROR(FsyncDir(dir));
  return res;
}

Result<ExportResult> Dump(storage::Repository& repo, const Id& root_tree, const std::string& path, int fd,
                          std::shared_ptr<const snapshot::AtimeTable> atimes) {
  auto start = std::chrono::steady_clock::now();
  std::string base = NormalizedSubpath(path);
  ASSIGN_OR_RETURN(Node top, snapshot::FindPath(repo, root_tree, base));
  if (top.type != NodeType::kFile) {
    ExportOptions o;
    o.format = ArchiveFormat::kPax;
    o.subpath = base;
    o.atimes = std::move(atimes);
    return ExportToFd(repo, root_tree, o, fd);
  }
  ExportResult res;
  Status fatal;
  auto out = [&](ByteView data) -> Status {
    RETURN_IF_ERROR(WriteAll(fd, data, "dump output"));
    res.bytes += data.size();
    return Status::Ok();
  };
  std::string why = StreamContent(repo, top, out, &fatal);
  if (!fatal.ok()) return fatal;
  res.files = 1;
  if (!why.empty()) res.failures.push_back({base, why});
  res.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return res;
}

}  // namespace custos::restore
