// The exporter: writes a snapshot (or part of it) as one archive stream
// (tar, pax or zip, through libarchive) or, for `dump`, a single file's
// bytes, verifying every file against its recorded SHA-256 while it streams.
//
// Names in the archive are relative to the exported path and are the
// snapshot's exact bytes (never converted to or from a locale). A file's
// chunks are read one by one (one chunk read ahead), so memory stays
// bounded by two chunks whatever the file size. Sparse holes are written
// as zeros: the extracted file has the right size and content but is not
// sparse. The first name of a hard-linked inode carries the data; later
// names become hard-link entries (tar, pax) or carry the data again (zip).
//
// What each format keeps (`custos export --help`, doc/cli.md):
//   pax  everything: owner ids and names, modes, mtime/atime/ctime in ns,
//        hard links, symlinks, fifos, devices, xattrs (SCHILY.xattr
//        records; POSIX ACLs travel as the system.posix_acl_* xattrs, which
//        GNU tar restores and bsdtar ignores).
//   tar  GNU format: owner ids and names, modes, mtime in seconds, hard
//        links, symlinks, fifos, devices; no xattrs, atime or ctime.
//   zip  modes, uid/gid, mtime (seconds), symlinks; hard links are stored
//        as copies; fifos and devices are skipped with a warning naming
//        each; no xattrs or owner names.
// Sockets are never exported (no format restores them); each is named in
// the warnings. Names that are valid UTF-8 are marked as UTF-8 (pax path
// records, the zip UTF-8 flag); others are stored as raw bytes (pax
// hdrcharset=BINARY, zip without the flag).
//
// A per-file failure (a blob that cannot be read, content that does not
// match the recorded SHA-256) is named in the result and the export goes
// on; the archive stays well-formed (the missing bytes are zeros), but an
// export to a file is then not published (ExportToFile).
//
// Thread-safety: a call reads the next chunk on a helper thread while it
// writes the current one; call from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "snapshot/atimes.h"
#include "storage/repository.h"

namespace custos::restore {

enum class ArchiveFormat { kTar, kPax, kZip };

// "tar" (GNU), "pax", "zip"; InvalidArgument otherwise.
Result<ArchiveFormat> ParseArchiveFormat(std::string_view name);
const char* ArchiveFormatName(ArchiveFormat f);

struct ExportOptions {
  ArchiveFormat format = ArchiveFormat::kPax;
  std::string subpath = "/";  // path inside the snapshot; names are relative to it
  // The snapshot's atime table (snapshot::LoadAtimes); null when its trees
  // hold the atimes (manifest version 1).
  std::shared_ptr<const snapshot::AtimeTable> atimes;
};

// An item that failed or was skipped.
struct ExportProblem {
  std::string path;  // in the snapshot, absolute, exact bytes
  std::string reason;
  std::string Describe() const { return path + ": " + reason; }
};

struct ExportResult {
  uint64_t entries = 0;    // archive entries written (any type)
  uint64_t files = 0;      // regular files whose content was written
  uint64_t dirs = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;  // hard-link entries (tar, pax)
  uint64_t specials = 0;   // fifos and devices
  uint64_t bytes = 0;      // file content bytes written
  uint64_t skipped = 0;         // entries the format cannot hold (sockets; zip: fifos, devices)
  uint64_t xattrs_dropped = 0;  // entries whose xattrs the format cannot hold
  std::vector<ExportProblem> warnings;  // each skipped entry; libarchive's warnings
  std::vector<ExportProblem> failures;  // content missing or wrong; entry not written
  double duration_s = 0;
  bool ok() const { return failures.empty(); }
};

// Writes the archive of `options.subpath` to `fd` (not closed). Errors:
// NotFound for a path not in the snapshot, IOError / NoSpace when writing
// to `fd` fails (the stream is then incomplete), InvalidArgument from
// libarchive. Per-file failures are in the result.
Result<ExportResult> ExportToFd(storage::Repository& repo, const Id& root_tree, const ExportOptions& options, int fd);

// Writes the archive to `path` atomically: into an unnamed file (O_TMPFILE;
// a ".custos-export-*" temporary where the file system lacks it) in the
// same directory, fsync, then rename over `path` and fsync the directory,
// and only when every file was exported and verified. On any failure
// nothing appears under `path` (an existing file there is left as it was)
// and no temporary remains; the result still lists what failed. The file
// is created with mode 0600: an export may hold anyone's data.
Result<ExportResult> ExportToFile(storage::Repository& repo, const Id& root_tree, const ExportOptions& options,
                                  const std::string& path);

// `custos dump`: a regular file at `path` is written to `fd` as its bytes;
// anything else (a directory with everything below it, a symlink, a fifo)
// as a pax stream, as ExportToFd. For a file, a failure (unreadable blob,
// SHA-256 mismatch) is in the result; the bytes already written cannot be
// taken back. `atimes`: as ExportOptions::atimes.
Result<ExportResult> Dump(storage::Repository& repo, const Id& root_tree, const std::string& path, int fd,
                          std::shared_ptr<const snapshot::AtimeTable> atimes = nullptr);

}  // namespace custos::restore
