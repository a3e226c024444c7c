// Backend: where repository files live. The repository layer above sees
// only this interface (restic's internal/backend plays the same role).
//
// CONTRACT (every backend passes tests/storage/backend_conformance_test.cc):
// - Files are addressed by (FileType, name). kConfig has exactly one file,
//   whose name is ignored. Other names are 1..128 characters of [0-9a-z-];
//   anything else is InvalidArgument, so no name can escape the layout.
// - Save is atomic and durable: when it returns OK the whole content is
//   stored and survives a crash; when it fails or the process dies, the name
//   either does not exist or holds the complete previous content. Save never
//   replaces an existing file: it returns AlreadyExists.
// - Load(type, name, offset, length) returns exactly `length` bytes (all of
//   the file from offset with kWholeFile); NotFound if the file is missing,
//   Corruption if the file is shorter than requested.
// - Size returns the file size; NotFound if missing.
// - List calls `fn` once for each complete file of that type, in no set
//   order; never for temporaries left by an interrupted Save. An error
//   returned by fn stops the listing and is returned.
// - Remove deletes durably; NotFound if missing.
// - LockWriter takes the repository's single-writer lock, without waiting:
//   Busy (with the holder's description in the message) if another writer
//   holds it. The lock is released when the returned object is destroyed and,
//   for the local backend, when the holding process dies (an OS lock: a
//   crash never leaves a stale lock). Readers take no lock.
// - All methods are safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace custos::storage {

enum class FileType { kConfig, kKey, kPack, kIndex, kSnapshot, kReport, kHold, kMark };
const char* FileTypeName(FileType t);

constexpr uint64_t kWholeFile = ~uint64_t(0);

struct FileInfo {
  std::string name;
  uint64_t size = 0;
};

class WriterLock {
 public:
  virtual ~WriterLock() = default;
};

// A file written in pieces, for data too large to hold in memory (packs).
// Nothing is visible under any name until Commit, which has Save's
// guarantees (atomic, durable, never replaces: AlreadyExists). Destroying
// an uncommitted writer discards what was written.
class FileWriter {
 public:
  virtual ~FileWriter() = default;
  virtual Status Append(ByteView data) = 0;
  virtual Status Commit(const std::string& name) = 0;
  virtual uint64_t size() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Human-readable location ("/srv/custos/repo", "memory").
  virtual std::string Location() const = 0;
  // Creates the empty layout. AlreadyExists if a repository (a config file)
  // is there already; a non-empty location without one is InvalidArgument.
  virtual Status Create() = 0;
  virtual Status Save(FileType type, const std::string& name, ByteView data) = 0;
  // A streaming Save whose name is chosen at the end (content addressing).
  virtual Result<std::unique_ptr<FileWriter>> NewWriter(FileType type) = 0;
  virtual Result<Bytes> Load(FileType type, const std::string& name, uint64_t offset = 0,
                             uint64_t length = kWholeFile) = 0;
  virtual Result<uint64_t> Size(FileType type, const std::string& name) = 0;
  virtual Status List(FileType type, const std::function<Status(const FileInfo&)>& fn) = 0;
  virtual Status Remove(FileType type, const std::string& name) = 0;
  // `holder` describes this writer (pid, host, user, command, time); a
  // contender's Busy error reports it.
  virtual Result<std::unique_ptr<WriterLock>> LockWriter(const std::string& holder) = 0;
  // Removes temporaries left by interrupted writers. Call only while holding
  // the writer lock.
  virtual Status RemoveStaleTemporaries() = 0;
};

// InvalidArgument unless `name` is valid for `type` (see the contract).
Status ValidateName(FileType type, const std::string& name);

// The local filesystem backend: layout in doc/formats/repository.md.
std::unique_ptr<Backend> NewLocalBackend(const std::string& root);
// An in-memory backend for tests (the lock is per backend object).
std::unique_ptr<Backend> NewMemoryBackend();

}  // namespace custos::storage
