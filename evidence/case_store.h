// The appliance's evidence store: incident cases, each with its custody
// ledger and signed checkpoints, and the evidence objects they reference.
//
// Layout under the store directory (custosd passes DATA/evidence):
//   lock                                  flock: one process at a time (Busy)
//   cases/<id>/ledger.jsonl               the case's ledger (ledger.h)
//   cases/<id>/checkpoints/NNNNNNNN.txt   checkpoint text for size N (.sig, .tsr)
//   objects/<2 hex>/<64 hex>              evidence by SHA-256, shared by cases,
//                                         never replaced and never deleted
//
// Case ids are "<year>-<NNNN>" (appliance UTC year, sequence per year from
// 0001, wider past 9999): readable, sortable and safe as file names.
//
// Checkpoints: the store signs one (over every line so far) and then
// appends a `checkpoint` record naming it, at case open, after every
// task.end, hold and custody record, at export and at close; Checkpoint()
// takes one on demand. The checkpoint files are written (temp + fsync +
// rename) before the record that names them, so a record never names a
// missing file; a crash in between leaves files no record names, which the
// next checkpoint at that size replaces.
//
// Closed cases accept only `note`, `hold`, `custody` (the evidence still
// changes hands and may be held or released after the investigation ends)
// and exports. `case.open`, `case.close`, `checkpoint` and `export` are
// written by the store itself and refused by Append.
//
// Thread-safety: every method may be called from any thread; one mutex
// serialises ledger appends. Export holds it only to append its records and
// writes the bundle without it. ObjectWriter instances are independent.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "base/status.h"
#include "evidence/checkpoint.h"
#include "evidence/ledger.h"

namespace custos::evidence {

struct StoreOptions {
  // RFC 3161 authority; empty: no timestamps. With a URL, a checkpoint
  // whose timestamp cannot be obtained is still signed and recorded (the
  // record says "tsr_error"), so an unreachable TSA never stops a case.
  std::string tsa_url;
  // PEM certificate(s) that verify the TSA's tokens; copied into bundles as
  // tsa-ca.pem. Needed to check tokens; tokens are stored without it too.
  std::string tsa_ca_file;
  int tsa_timeout_s = 30;
  // The appliance clock, Unix nanoseconds (tests pass a fake one).
  std::function<int64_t()> clock;
  // Actor "name" the store uses for its own records (checkpoints); default
  // the host name.
  std::string appliance_name;
};

struct CheckpointInfo {
  uint64_t size = 0;         // records covered
  std::string root;          // base64, as in the text
  std::string time;
  std::string text_file;     // relative to the case directory: "checkpoints/00000012.txt"
  bool timestamped = false;  // a .tsr exists
  uint64_t record_seq = 0;   // seq of the checkpoint record that names it
};

struct CaseInfo {
  std::string id;
  std::string title, reference, detected_at;  // as given at open
  std::string opened_at, closed_at;           // RFC 3339 UTC; closed_at "" while open
  std::string state;                          // "open", "closed", or "damaged" (List only)
  std::string problem;                        // why a case is "damaged": its ledger does not verify
  std::string close_reason;
  uint64_t records = 0;
  uint64_t items = 0, gaps = 0;
  bool held = false;                          // a hold placed and not released
  std::optional<CheckpointInfo> last_checkpoint;
};

// Streams one evidence object into the store. Write any number of times,
// then Commit (or Abort; the destructor aborts an uncommitted writer).
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual Status Write(ByteView data) = 0;
  // fsyncs, links the temporary under objects/<2>/<64> (an existing object
  // of the same hash is kept: same bytes), fsyncs the directory; returns the
  // SHA-256 hex. Once only.
  virtual Result<std::string> Commit() = 0;
  virtual void Abort() = 0;
  virtual uint64_t size() const = 0;
};

class CaseStore {
 public:
  // Opens (creating if absent) the store at `dir` and takes its lock
  // (Busy if another process holds it). The key signs checkpoints and
  // bundles; it is copied.
  static Result<std::unique_ptr<CaseStore>> Open(const std::string& dir, const SigningKey& key,
                                                 StoreOptions options = {});
  ~CaseStore();

  // Opens a new case: writes case.open (body: title, reference,
  // detected_at, appliance key fingerprint) and the first checkpoint.
  // InvalidArgument on an empty or over-long (4 KiB) title or invalid UTF-8.
  Result<CaseInfo> OpenCase(const std::string& title, const std::string& detected_at, const std::string& reference,
                            const Actor& actor);
  // Every case, by id. A case whose ledger does not open or verify is
  // listed with state "damaged" and the reason in `problem` (Show and the
  // other calls return that error); a case directory without a first
  // record (creation interrupted by a crash) is not a case and is skipped.
  Result<std::vector<CaseInfo>> List();
  // NotFound for an unknown id, InvalidArgument for a malformed one.
  Result<CaseInfo> Show(const std::string& id);

  // Appends a record of `type` with `body`; returns its seq. Every "object"
  // member in the body must name a stored object (NotFound otherwise).
  // Takes a checkpoint after task.end, hold and custody. InvalidArgument
  // for types the store writes itself or a bad body; InvalidArgument
  // ("case 2026-0001 is closed") for what a closed case does not accept.
  Result<uint64_t> Append(const std::string& id, std::string_view type, const nlohmann::json& body,
                          const Actor& actor);
  // Appends several records with one fdatasync (Ledger::AppendBatch);
  // returns the first one's seq. The same rules as Append for each record;
  // nothing is written unless all pass. A batch holding task.end, hold or
  // custody records gets one checkpoint after its last record.
  Result<uint64_t> AppendBatch(const std::string& id, const std::vector<NewRecord>& records);
  // Signs a checkpoint over every record so far and appends its record.
  Result<CheckpointInfo> Checkpoint(const std::string& id, const Actor& actor);
  // case.close (body: reason) and a final checkpoint. InvalidArgument if
  // already closed.
  Status Close(const std::string& id, const std::string& reason, const Actor& actor);
  // A note (body: text, and with an attachment: "object", "name", "size").
  // The attachment file is copied into the object store first. Text is
  // capped at 64 KiB.
  Result<uint64_t> Note(const std::string& id, const std::string& text, const std::optional<std::string>& attachment,
                        const Actor& actor);

  Result<std::unique_ptr<ObjectWriter>> NewObject();
  // Copies a file into the object store; returns its SHA-256 hex.
  Result<std::string> PutFile(const std::string& path);
  bool HasObject(const std::string& hex) const;
  std::string ObjectPath(const std::string& hex) const;

  // Appends an export record (body: file name) and a checkpoint, then
  // writes the bundle (bundle.h) of the ledger up to that checkpoint
  // record to `output_tar_path` (temp file beside it, renamed in only when
  // complete; an existing file is replaced). Open and closed cases.
  Status Export(const std::string& id, const std::string& output_tar_path, const Actor& actor);

  // The ledger file and case directory of a case (for tests and tools).
  std::string CaseDir(const std::string& id) const;
  std::string KeyFingerprint() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Case;
  CaseStore(std::string dir, const SigningKey& key, StoreOptions options, Fd lock);
  Result<Case*> Load(const std::string& id);  // mu_ held
  Result<CheckpointInfo> CheckpointLocked(Case& c, const Actor& actor);
  Result<uint64_t> AppendLocked(Case& c, std::string_view type, const nlohmann::json& body, const Actor& actor);
  Status CheckRecord(const NewRecord& r) const;
  Actor ApplianceActor() const;
  int64_t Now() const;

  std::string dir_;
  SigningKey key_;
  StoreOptions options_;
  Fd lock_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Case>> cases_;
};

// Whether `id` has the form of a case id ("2026-0001").
bool IsCaseId(std::string_view id);

}  // namespace custos::evidence
