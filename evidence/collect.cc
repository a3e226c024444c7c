#include "evidence/collect.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <linux/magic.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "base/crypto.h"

namespace custos::evidence {

using nlohmann::json;

namespace {

// Programs are looked up here only, never through the agent's own PATH (a
// hacked server's environment must not choose what runs).
constexpr const char* kSafePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string Errno(int e) { return std::strerror(e); }

uint64_t Ns(const struct statx_timestamp& t) { return uint64_t(t.tv_sec) * 1000000000ull + t.tv_nsec; }

std::string TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "chardev";
    case S_IFBLK: return "blockdev";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
  }
  return "unknown";
}

json StatxJson(const struct statx& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", unsigned(st.stx_mode & 07777));
  json j = {{"type", TypeName(st.stx_mode)},
            {"mode", mode},
            {"uid", st.stx_uid},
            {"gid", st.stx_gid},
            {"size", st.stx_size},
            {"ino", st.stx_ino},
            {"dev", std::to_string(st.stx_dev_major) + ":" + std::to_string(st.stx_dev_minor)},
            {"nlink", st.stx_nlink},
            {"atime_ns", Ns(st.stx_atime)},
            {"mtime_ns", Ns(st.stx_mtime)},
            {"ctime_ns", Ns(st.stx_ctime)}};
  if (st.stx_mask & STATX_BTIME) j["btime_ns"] = Ns(st.stx_btime);
  return j;
}

constexpr unsigned kStatxMask = STATX_BASIC_STATS | STATX_BTIME;

bool Changed(const struct statx& a, const struct statx& b) {
  return a.stx_size != b.stx_size || a.stx_ino != b.stx_ino || Ns(a.stx_mtime) != Ns(b.stx_mtime) ||
         Ns(a.stx_ctime) != Ns(b.stx_ctime);
}

// Pseudo file systems: no timeline or tree goes into them (their "files"
// are kernel state, endless or harmful to read).
bool PseudoFs(long type) {
  switch (static_cast<unsigned long>(type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case PSTOREFS_MAGIC:
    case BPF_FS_MAGIC:
    case DEVPTS_SUPER_MAGIC:
    case 0x19800202:  // mqueue
    case HUGETLBFS_MAGIC:
    case SELINUX_MAGIC:
    case EFIVARFS_MAGIC:
    case BINFMTFS_MAGIC:
    case 0x62656570:  // configfs
    case 0x65735543:  // fusectl
      return true;
  }
  return false;
}

bool HasWildcard(const std::string& p) { return p.find_first_of("*?[") != std::string::npos; }

bool Excluded(const std::string& path, const std::vector<std::string>& excludes) {
  for (const auto& e : excludes) {
    if (path == e || (path.size() > e.size() && path.compare(0, e.size(), e) == 0 &&
                      (e.back() == '/' || path[e.size()] == '/'))) {
      return true;
    }
  }
  return false;
}

// A bodyfile name: '|' separates fields and a newline ends the line, so
// they (and other control bytes and the backslash) are written \xNN.
std::string BodyName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f || c == '|' || c == '\\') {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  return out;
}

// "r/rrw-r--r--" as Sleuth Kit's fls writes it.
std::string ModeString(mode_t m) {
  char t = '-';
  switch (m & S_IFMT) {
    case S_IFREG: t = 'r'; break;
    case S_IFDIR: t = 'd'; break;
    case S_IFLNK: t = 'l'; break;
    case S_IFCHR: t = 'c'; break;
    case S_IFBLK: t = 'b'; break;
    case S_IFIFO: t = 'p'; break;
    case S_IFSOCK: t = 'h'; break;
  }
  std::string s{t, '/', t};
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (m & (0400 >> i)) ? rwx[i] : '-';
  if (m & S_ISUID) s[5] = (m & S_IXUSR) ? 's' : 'S';
  if (m & S_ISGID) s[8] = (m & S_IXGRP) ? 's' : 'S';
  if (m & S_ISVTX) s[11] = (m & S_IXOTH) ? 't' : 'T';
  return s;
}

class Collector {
 public:
  Collector(const CollectOptions& o, CollectSink& sink) : o_(o), sink_(sink) {}

  Status Run(const Recipe& r) {
    RETURN_IF_ERROR(sink_.Footprint("custos-agent (pid " + std::to_string(::getpid()) +
                                    ") ran recipe " + r.name + " " + std::to_string(r.version) +
                                    "; its connection to the appliance appears in the network state"));
    for (const auto& step : r.steps) {
      switch (step.kind) {
        case StepKind::kCmd: RETURN_IF_ERROR(Command(step)); break;
        case StepKind::kProcesses: RETURN_IF_ERROR(Processes(step)); break;
        case StepKind::kFile: RETURN_IF_ERROR(Files(step, false)); break;
        case StepKind::kTree: RETURN_IF_ERROR(Files(step, true)); break;
        case StepKind::kTimeline: RETURN_IF_ERROR(Timeline(step)); break;
      }
    }
    // Items the receiver found damaged are read once more.
    std::set<std::pair<std::string, std::string>> retried;
    for (;;) {
      ASSIGN_OR_RETURN(auto again, sink_.Drain());
      bool any = false;
      for (const auto& r : again) {
        if (!retried.insert({r.artifact, r.path}).second) continue;  // once each
        any = true;
        ++c_.retried;
        RETURN_IF_ERROR(OneFile(r.artifact, r.path));
      }
      if (!any) break;
    }
    return Status::Ok();
  }

  CollectCounts counts() const { return c_; }

 private:
  const CollectOptions& o_;
  CollectSink& sink_;
  CollectCounts c_;

  Status Cancelled() const {
    if (o_.cancel && o_.cancel->load()) return CancelledError("collection cancelled");
    return Status::Ok();
  }
  void Progress() {
    if (o_.progress) o_.progress(c_.collected + c_.failed, c_.bytes);
  }

  Status Gap(const std::string& artifact, const std::string& path, const std::string& reason, bool absent = false) {
    if (absent) {
      ++c_.absent;
    } else {
      ++c_.planned;
      ++c_.failed;
    }
    Progress();
    return sink_.Gap(artifact, path, absent ? "absent: " + reason : reason);
  }

  // Streams `fd` to the sink as one item's content; `hash` and `size`
  // accumulate. A read error is returned as IOError (the caller aborts the
  // item and records a gap); a sink error as itself, in `sink_error`.
  Status Stream(int fd, Sha256Stream& hash, uint64_t* size, bool* sink_error, const std::string& what) {
    std::vector<uint8_t> buf(kChunkBytes);
    for (;;) {
      if (Status s = Cancelled(); !s.ok()) {
        *sink_error = true;
        return s;
      }
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return IOError(what + ": read: " + Errno(errno));
      }
      if (n == 0) return Status::Ok();
      ByteView chunk(buf.data(), size_t(n));
      hash.Update(chunk);
      *size += uint64_t(n);
      c_.bytes += uint64_t(n);
      if (o_.max_file_bytes && *size > o_.max_file_bytes) {
        return IOError("larger than the limit of " + std::to_string(o_.max_file_bytes) + " bytes");
      }
      if (Status s = sink_.Data(chunk); !s.ok()) {
        *sink_error = true;
        return s;
      }
    }
  }

  // One file (or symlink: its target is the content). Everything that
  // goes wrong with the file is a gap; only the sink's errors return.
  Status OneFile(const std::string& artifact, const std::string& path) {
    RETURN_IF_ERROR(Cancelled());
    struct statx before {};
    if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, kStatxMask, &before) != 0) {
      int e = errno;
      return Gap(artifact, path, Errno(e), e == ENOENT);
    }
    ItemStart start{artifact, "file", path, {}, StatxJson(before)};
    if (S_ISLNK(before.stx_mode)) {
      std::string target(4096, '\0');
      ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
      if (n < 0) return Gap(artifact, path, "readlink: " + Errno(errno));
      target.resize(size_t(n));
      start.kind = "symlink";
      ++c_.planned;
      RETURN_IF_ERROR(sink_.BeginItem(start));
      RETURN_IF_ERROR(sink_.Data(AsBytes(target)));
      ItemEnd end;
      end.size = target.size();
      end.sha256 = Sha256(AsBytes(target)).Hex();
      end.after = start.before;
      ++c_.collected;
      return sink_.EndItem(end);
    }
    if (!S_ISREG(before.stx_mode)) {
      return Gap(artifact, path, "not a regular file (" + TypeName(before.stx_mode) + "): metadata only, in the timeline");
    }
    if (o_.max_file_bytes && before.stx_size > o_.max_file_bytes) {
      return Gap(artifact, path, "larger than the limit of " + std::to_string(o_.max_file_bytes) + " bytes");
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_NOATIME | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool noatime = true;
    if (fd < 0 && errno == EPERM) {  // O_NOATIME needs ownership or CAP_FOWNER
      fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      noatime = false;
    }
    if (fd < 0) {
      int e = errno;
      return Gap(artifact, path, "open: " + Errno(e), e == ENOENT);
    }
    struct statx opened {};
    if (::statx(fd, "", AT_EMPTY_PATH, kStatxMask, &opened) != 0 || !S_ISREG(opened.stx_mode)) {
      ::close(fd);
      return Gap(artifact, path, "replaced while being opened");
    }
    if (!noatime) {
      RETURN_IF_ERROR(sink_.Footprint("read " + path + " without O_NOATIME (the agent does not own it and lacks "
                                      "CAP_FOWNER): its access time may have changed"));
    }
    start.before = StatxJson(opened);
    ++c_.planned;
    RETURN_IF_ERROR(sink_.BeginItem(start));
    Sha256Stream hash;
    uint64_t size = 0;
    bool sink_error = false;
    Status s = Stream(fd, hash, &size, &sink_error, path);
    struct statx after {};
    bool stat_ok = ::statx(fd, "", AT_EMPTY_PATH, kStatxMask, &after) == 0;
    ::close(fd);
    if (sink_error) return s;
    if (!s.ok()) {
      --c_.planned;  // Gap counts it
      RETURN_IF_ERROR(sink_.AbortItem(s.message()));
      return Gap(artifact, path, s.message());
    }
    ItemEnd end;
    end.size = size;
    end.sha256 = hash.Finish().Hex();
    if (stat_ok) {
      end.after = StatxJson(after);
      end.changed = Changed(opened, after) || size != after.stx_size;
    }
    ++c_.collected;
    Progress();
    return sink_.EndItem(end);
  }

  // Paths named by a step, globs expanded (sorted), absent ones as gaps.
  Status Expand(const Step& step, std::vector<std::string>* out) {
    for (const auto& p : step.args) {
      if (!HasWildcard(p)) {
        out->push_back(p);
        continue;
      }
      glob_t g{};
      int rc = ::glob(p.c_str(), GLOB_NOSORT, nullptr, &g);
      if (rc == GLOB_NOMATCH) {
        RETURN_IF_ERROR(Gap(step.artifact, p, "no file matches the pattern", true));
      } else if (rc != 0) {
        RETURN_IF_ERROR(Gap(step.artifact, p, "the pattern cannot be expanded"));
      } else {
        std::vector<std::string> m(g.gl_pathv, g.gl_pathv + g.gl_pathc);
        std::sort(m.begin(), m.end());
        out->insert(out->end(), m.begin(), m.end());
      }
      ::globfree(&g);
    }
    return Status::Ok();
  }

  // Depth-first walk below `root` (not following symlinks, not into pseudo
  // file systems or excluded subtrees), names sorted, visiting every node
  // with its statx. A directory that cannot be read is a gap.
  template <typename Visit>
  Status Walk(const std::string& artifact, const std::string& root, Visit&& visit) {
    struct statx st {};
    if (::statx(AT_FDCWD, root.c_str(), AT_SYMLINK_NOFOLLOW, kStatxMask, &st) != 0) {
      int e = errno;
      return Gap(artifact, root, Errno(e), e == ENOENT);
    }
    RETURN_IF_ERROR(visit(root, st));
    if (!S_ISDIR(st.stx_mode)) return Status::Ok();
    return WalkDir(artifact, root, visit);
  }

  template <typename Visit>
  Status WalkDir(const std::string& artifact, const std::string& dir, Visit& visit) {
    RETURN_IF_ERROR(Cancelled());
    if (Excluded(dir, o_.excludes)) return Status::Ok();
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC);
    if (fd < 0 && errno == EPERM) fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Gap(artifact, dir, "cannot open directory: " + Errno(errno));
    struct statfs sf {};
    if (::fstatfs(fd, &sf) == 0 && PseudoFs(sf.f_type)) {
      ::close(fd);
      return Status::Ok();
    }
    DIR* d = ::fdopendir(fd);
    if (!d) {
      ::close(fd);
      return Gap(artifact, dir, "cannot list directory: " + Errno(errno));
    }
    std::vector<std::pair<std::string, struct statx>> entries;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      struct statx st {};
      if (::statx(::dirfd(d), e->d_name, AT_SYMLINK_NOFOLLOW, kStatxMask, &st) != 0) {
        int err = errno;
        std::string p = JoinName(dir, n);
        if (err != ENOENT) RETURN_IF_ERROR(Gap(artifact, p, "stat: " + Errno(err)));
        continue;  // vanished since the listing: nothing to record
      }
      entries.emplace_back(std::string(n), st);
    }
    ::closedir(d);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [name, st] : entries) {
      std::string p = JoinName(dir, name);
      if (Excluded(p, o_.excludes)) continue;
      RETURN_IF_ERROR(visit(p, st));
      if (S_ISDIR(st.stx_mode)) RETURN_IF_ERROR(WalkDir(artifact, p, visit));
    }
    return Status::Ok();
  }

  static std::string JoinName(const std::string& dir, std::string_view name) {
    return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
  }

  Status Files(const Step& step, bool recursive) {
    std::vector<std::string> paths;
    RETURN_IF_ERROR(Expand(step, &paths));
    for (const auto& p : paths) {
      if (!recursive) {
        RETURN_IF_ERROR(OneFile(step.artifact, p));
        continue;
      }
      RETURN_IF_ERROR(Walk(step.artifact, p, [&](const std::string& path, const struct statx& st) -> Status {
        if (S_ISREG(st.stx_mode) || S_ISLNK(st.stx_mode)) return OneFile(step.artifact, path);
        return Status::Ok();
      }));
    }
    return Status::Ok();
  }

  // Buffers an item's content into chunks for the sink.
  struct Chunker {
    CollectSink& sink;
    Sha256Stream hash;
    std::string buf;
    uint64_t size = 0;
    Status Add(std::string_view s) {
      buf += s;
      if (buf.size() >= kChunkBytes / 2) return Flush();
      return Status::Ok();
    }
    Status Flush() {
      if (buf.empty()) return Status::Ok();
      hash.Update(AsBytes(buf));
      size += buf.size();
      Status s = sink.Data(AsBytes(buf));
      buf.clear();
      return s;
    }
  };

  Status Timeline(const Step& step) {
    ++c_.planned;
    ItemStart start{step.artifact, "timeline", "", {}, json::object()};
    start.before = {{"roots", step.args}, {"format", "bodyfile-3"}};
    RETURN_IF_ERROR(sink_.BeginItem(start));
    Chunker out{sink_};
    uint64_t nodes = 0;
    for (const auto& root : step.args) {
      RETURN_IF_ERROR(Walk(step.artifact, root, [&](const std::string& path, const struct statx& st) -> Status {
        std::string name = BodyName(path);
        if (S_ISLNK(st.stx_mode)) {
          std::string target(4096, '\0');
          ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
          if (n >= 0) name += " -> " + BodyName(std::string_view(target.data(), size_t(n)));
        }
        char line[256];
        std::snprintf(line, sizeof line, "|%llu|%s|%u|%u|%llu|%lld|%lld|%lld|%lld\n",
                      (unsigned long long)st.stx_ino, ModeString(st.stx_mode).c_str(), st.stx_uid, st.stx_gid,
                      (unsigned long long)st.stx_size, (long long)st.stx_atime.tv_sec,
                      (long long)st.stx_mtime.tv_sec, (long long)st.stx_ctime.tv_sec,
                      (st.stx_mask & STATX_BTIME) ? (long long)st.stx_btime.tv_sec : 0LL);
        ++nodes;
        RETURN_IF_ERROR(out.Add("0|"));
        RETURN_IF_ERROR(out.Add(name));
        return out.Add(line);
      }));
    }
    RETURN_IF_ERROR(out.Flush());
    ItemEnd end;
    end.size = out.size;
    end.sha256 = out.hash.Finish().Hex();
    end.after = {{"nodes", nodes}};
    c_.bytes += out.size;
    ++c_.collected;
    Progress();
    return sink_.EndItem(end);
  }

  static std::string ReadSmall(const std::string& path, size_t limit = 1u << 20) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string s;
    char buf[8192];
    ssize_t n;
    while (s.size() < limit && (n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, size_t(n));
    ::close(fd);
    return s;
  }

  Status Processes(const Step& step) {
    ++c_.planned;
    ItemStart start{step.artifact, "processes", "", {}, json::object()};
    start.before = {{"format", "json-lines"}};
    RETURN_IF_ERROR(sink_.BeginItem(start));
    Chunker out{sink_};
    long ticks = ::sysconf(_SC_CLK_TCK);
    long long btime = 0;
    {
      std::istringstream st(ReadSmall("/proc/stat"));
      std::string key;
      while (st >> key) {
        if (key == "btime") {
          st >> btime;
          break;
        }
      }
    }
    std::vector<long> pids;
    if (DIR* d = ::opendir("/proc")) {
      while (struct dirent* e = ::readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (end && *end == '\0' && pid > 0) pids.push_back(pid);
      }
      ::closedir(d);
    }
    std::sort(pids.begin(), pids.end());
    uint64_t count = 0;
    for (long pid : pids) {
      RETURN_IF_ERROR(Cancelled());
      std::string base = "/proc/" + std::to_string(pid);
      std::string stat = ReadSmall(base + "/stat");
      if (stat.empty()) continue;  // exited since the listing
      json p = {{"pid", pid}};
      size_t lp = stat.find('('), rp = stat.rfind(')');
      if (lp != std::string::npos && rp != std::string::npos && rp > lp) {
        p["comm"] = stat.substr(lp + 1, rp - lp - 1);
        std::istringstream rest(stat.substr(rp + 2));
        std::vector<std::string> f;
        std::string x;
        while (rest >> x) f.push_back(x);
        // After comm: state(3) ppid(4) ... starttime(22): f[0] is field 3.
        if (f.size() > 19) {
          p["state"] = f[0];
          p["ppid"] = std::stol(f[1]);
          long long start_ticks = std::stoll(f[19]);
          p["start_time"] = btime + (ticks > 0 ? start_ticks / ticks : 0);
        }
      }
      std::string cmd = ReadSmall(base + "/cmdline");
      // Invalid UTF-8 is replaced when the line is written (dump below).
      json args = json::array();
      for (size_t i = 0; i < cmd.size();) {
        size_t z = cmd.find('\0', i);
        if (z == std::string::npos) z = cmd.size();
        args.push_back(cmd.substr(i, z - i));
        i = z + 1;
      }
      p["cmdline"] = args;
      struct stat ps {};
      if (::stat(base.c_str(), &ps) == 0) {
        p["uid"] = ps.st_uid;
        struct passwd pw {}, *res = nullptr;
        char pwbuf[1024];
        if (::getpwuid_r(ps.st_uid, &pw, pwbuf, sizeof pwbuf, &res) == 0 && res) p["user"] = res->pw_name;
      }
      std::string exe(4096, '\0');
      ssize_t n = ::readlink((base + "/exe").c_str(), exe.data(), exe.size());
      if (n >= 0) {
        exe.resize(size_t(n));
        bool deleted = exe.size() > 10 && exe.compare(exe.size() - 10, 10, " (deleted)") == 0;
        p["exe"] = exe;
        p["exe_deleted"] = deleted;
        // The running image itself, through /proc: works for deleted files.
        int fd = ::open((base + "/exe").c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          Sha256Stream h;
          std::vector<uint8_t> buf(1 << 16);
          ssize_t r;
          uint64_t total = 0;
          while ((r = ::read(fd, buf.data(), buf.size())) > 0) {
            h.Update(ByteView(buf.data(), size_t(r)));
            total += uint64_t(r);
          }
          ::close(fd);
          if (r == 0) {
            p["exe_sha256"] = h.Finish().Hex();
            p["exe_size"] = total;
          } else {
            p["exe_error"] = "read: " + Errno(errno);
          }
        } else {
          p["exe_error"] = "open: " + Errno(errno);
        }
      } else if (errno != ENOENT) {
        p["exe_error"] = "readlink: " + Errno(errno);  // kernel threads have none (ENOENT)
      }
      RETURN_IF_ERROR(out.Add(p.dump(-1, ' ', false, json::error_handler_t::replace)));
      RETURN_IF_ERROR(out.Add("\n"));
      ++count;
    }
    RETURN_IF_ERROR(out.Flush());
    ItemEnd end;
    end.size = out.size;
    end.sha256 = out.hash.Finish().Hex();
    end.after = {{"processes", count}};
    c_.bytes += out.size;
    ++c_.collected;
    Progress();
    return sink_.EndItem(end);
  }

  static std::string FindProgram(const std::string& name) {
    if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
    std::string_view dirs = kSafePath;
    size_t i = 0;
    while (i <= dirs.size()) {
      size_t c = dirs.find(':', i);
      if (c == std::string_view::npos) c = dirs.size();
      std::string p = std::string(dirs.substr(i, c - i)) + "/" + name;
      struct stat st {};
      if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) return p;
      i = c + 1;
    }
    return "";
  }

  Status Command(const Step& step) {
    std::string prog = FindProgram(step.args[0]);
    if (prog.empty()) return Gap(step.artifact, "", "program not found: " + step.args[0], true);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return Gap(step.artifact, "", "pipe: " + Errno(errno));
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      return Gap(step.artifact, "", "pipe: " + Errno(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<char*> argv;
    std::vector<std::string> args = step.args;
    args[0] = prog;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string path_env = std::string("PATH=") + kSafePath;
    char lc[] = "LC_ALL=C", tz[] = "TZ=UTC", cols[] = "COLUMNS=4096", pager[] = "SYSTEMD_PAGER=";
    char* envp[] = {path_env.data(), lc, tz, cols, pager, nullptr};
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, prog.c_str(), &fa, nullptr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    ::close(err[1]);
    if (rc != 0) {
      ::close(out[0]);
      ::close(err[0]);
      return Gap(step.artifact, "", "cannot run " + prog + ": " + Errno(rc));
    }
    std::string cmdline;
    for (const auto& a : args) cmdline += (cmdline.empty() ? "" : " ") + a;
    RETURN_IF_ERROR(sink_.Footprint("ran " + cmdline + " (pid " + std::to_string(pid) +
                                    "): a short-lived process; its binary's access time may change"));
    ++c_.planned;
    ItemStart start{step.artifact, "cmd", "", args, json::object()};
    Status s = sink_.BeginItem(start);
    Sha256Stream hash;
    uint64_t size = 0;
    std::string errtext;
    bool killed = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o_.cmd_timeout_s);
    std::vector<uint8_t> buf(kChunkBytes);
    bool out_open = true, err_open = true;
    while (s.ok() && (out_open || err_open)) {
      if (!Cancelled().ok() || std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        killed = true;
        break;
      }
      struct pollfd pf[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
      if (::poll(pf, 2, 1000) < 0 && errno != EINTR) break;
      if (pf[0].revents) {
        ssize_t n = ::read(out[0], buf.data(), buf.size());
        if (n <= 0) {
          out_open = false;
        } else {
          ByteView chunk(buf.data(), size_t(n));
          hash.Update(chunk);
          size += uint64_t(n);
          c_.bytes += uint64_t(n);
          s = sink_.Data(chunk);
        }
      }
      if (pf[1].revents) {
        char eb[4096];
        ssize_t n = ::read(err[0], eb, sizeof eb);
        if (n <= 0) err_open = false;
        else if (errtext.size() < 4096) errtext.append(eb, size_t(std::min<ssize_t>(n, 4096 - ssize_t(errtext.size()))));
      }
    }
    if (!s.ok()) ::kill(pid, SIGKILL);
    ::close(out[0]);
    ::close(err[0]);
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (!s.ok()) return s;
    if (killed) {
      RETURN_IF_ERROR(Cancelled());
      --c_.planned;
      RETURN_IF_ERROR(sink_.AbortItem("timed out"));
      return Gap(step.artifact, "", cmdline + ": killed after " + std::to_string(o_.cmd_timeout_s) + " s");
    }
    ItemEnd end;
    end.size = size;
    end.sha256 = hash.Finish().Hex();
    end.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -WTERMSIG(wstatus);
    end.stderr_text = errtext;
    ++c_.collected;
    Progress();
    return sink_.EndItem(end);
  }
};

}  // namespace

Result<CollectCounts> Collect(const Recipe& recipe, const CollectOptions& options, CollectSink& sink) {
  Collector c(options, sink);
  RETURN_IF_ERROR(c.Run(recipe));
  return c.counts();
}

Result<json> StatJson(const std::string& path) {
  struct statx st {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, kStatxMask, &st) != 0) {
    return IOError(path + ": " + Errno(errno));
  }
  return StatxJson(st);
}

}  // namespace custos::evidence
