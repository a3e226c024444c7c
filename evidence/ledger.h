// The custody ledger of one case: an append-only JSON Lines file in which
// every record names the SHA-256 of the line before it.
//
// One line (doc/formats/evidence.md, "Ledger"), serialised once with this
// member order, no spaces, then "\n":
//   {"v":1,"seq":N,"prev":"<64 hex>","time":"<RFC 3339 UTC, 9 digits>",
//    "actor":{"kind":"operator|agent|appliance","name":"...","key":"sha256:<hex>|"},
//    "type":"<record type>","body":{...}}
// "prev" is the hex SHA-256 of the previous line's exact bytes without its
// newline (64 zeros for seq 0); the line's Merkle leaf is the same bytes.
// Verifiers hash the stored bytes and never re-serialise JSON. Bodies are
// written by nlohmann::json (members sorted, compact); readers accept any
// member order inside "body".
//
// Crash safety: a record is one write(2) to an O_APPEND descriptor followed
// by fdatasync; Append returns only after both. A crash can leave at most a
// torn last line (no "\n"): Ledger::Open reports it and, if asked, truncates
// it away (the append was never acknowledged).
//
// Thread-safety: ParseRecord/FormatRecord/ScanLedger are pure. A Ledger is
// used by one thread at a time (CaseStore holds its mutex); one process per
// file (CaseStore takes a lock on its directory).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/file_util.h"
#include "base/status.h"
#include "evidence/merkle.h"

namespace custos::evidence {

inline constexpr int kLedgerVersion = 1;
// Longest line accepted, newline excluded: 1 MiB. Item records are a few
// hundred bytes; a note's text is capped well below (case_store.h).
inline constexpr size_t kMaxLineBytes = 1 << 20;
// Deepest JSON nesting accepted in a line (bodies are shallow: statx maps).
inline constexpr int kMaxJsonDepth = 32;

// Record types of ledger version 1 (doc/formats/evidence.md, "Record types").
inline constexpr std::string_view kRecordTypes[] = {
    "case.open", "case.close", "plan", "task.start", "task.end", "item", "cmd",
    "gap",       "footprint",  "hold", "note",       "custody",  "checkpoint", "export"};
bool IsRecordType(std::string_view type);

struct Actor {
  std::string kind;  // "operator", "agent" or "appliance"
  std::string name;  // user, agent name, or the appliance's host name
  std::string key;   // "sha256:<64 hex>" key fingerprint, or "" when the actor has no key
};
// InvalidArgument unless kind is one of the three, name is non-empty valid
// UTF-8 of at most 256 bytes and key is "" or "sha256:" + 64 lowercase hex.
Status ValidateActor(const Actor& a);

// The fixed members of a record; the body stays JSON.
struct RecordHeader {
  uint64_t seq = 0;
  Hash prev;             // all zeros for seq 0
  std::string time;      // RFC 3339 UTC with nanoseconds
  Actor actor;
  std::string type;
};

struct Record {
  RecordHeader header;
  nlohmann::json body;  // always an object
};

// The line for a record, without the newline. InvalidArgument when the type
// is unknown, the actor invalid, the body not an object, a string not valid
// UTF-8, or the line longer than kMaxLineBytes.
Result<std::string> FormatRecord(const RecordHeader& h, const nlohmann::json& body);

// Parses one line (without its newline) strictly: RFC 8259 JSON, no
// duplicate member names, depth <= kMaxJsonDepth, exactly the members
// above in that order, v == 1, a known type, a valid actor, an object body.
// Corruption naming what is wrong. Never trusts its input (fuzzed:
// fuzz/ledger_line_fuzzer.cc).
Result<Record> ParseRecord(std::string_view line);

// The string values of members named "object" anywhere in a body: how a
// record references stored evidence (64 lowercase hex, the SHA-256 of the
// content; doc/formats/evidence.md). In body order, duplicates kept.
std::vector<std::string> ObjectReferences(const nlohmann::json& body);

// What a scan of a whole ledger found.
struct LedgerScan {
  uint64_t records = 0;          // complete, valid lines
  uint64_t valid_bytes = 0;      // bytes of those lines, newlines included
  uint64_t torn_bytes = 0;       // bytes after the last "\n" (a torn last line)
  Hash last_line_hash;           // SHA-256 of the last line (zeros when empty)
  std::vector<Hash> leaf_hashes; // filled only when asked for
  Hash root;                     // MTH of all valid lines
};

struct ScanOptions {
  bool keep_leaf_hashes = false;
  // Called for each valid record, in order, with the line (no newline).
  // A non-OK Status stops the scan and is returned.
  std::function<Status(const Record&, std::string_view line)> on_record;
};

// Checks a ledger held in memory: every line parses (ParseRecord), seq
// counts 0, 1, 2..., each prev is the SHA-256 of the line before. Stops at
// the first problem with Corruption (a line that does not parse) or
// Integrity (chain, order or numbering), naming the line and what it means
// ("record 4 is missing: seq 5 follows seq 3"). Bytes after the last
// newline are not an error here: they are counted in torn_bytes.
Result<LedgerScan> ScanLedger(std::string_view data, const ScanOptions& options = {});

// The string member `key` of a JSON object, or "" when it is absent or not a
// string (record bodies are read defensively).
inline std::string StringMember(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
// Copy buffer for evidence files (objects into the store and the bundle).
inline constexpr size_t kCopyBlock = 1 << 20;

// One record to append (Ledger::AppendBatch, CaseStore::AppendBatch).
struct NewRecord {
  std::string type;
  nlohmann::json body;
  Actor actor;
};

enum class TornTail {
  kFail,      // Open returns Corruption naming the torn line
  kTruncate,  // Open truncates the file to the last complete line (and fsyncs)
};

// An open ledger file, positioned to append.
class Ledger {
 public:
  // Creates a new, empty ledger; AlreadyExists if the file exists.
  static Result<std::unique_ptr<Ledger>> Create(const std::string& path);
  // Opens and fully verifies an existing ledger (ScanLedger), keeping the
  // leaf hashes for proofs. `truncated` (optional) receives the number of
  // torn bytes removed. `on_record` (optional) sees every record, as in
  // ScanOptions, so a caller can build its summary in the same pass.
  static Result<std::unique_ptr<Ledger>> Open(
      const std::string& path, TornTail torn, uint64_t* truncated = nullptr,
      const std::function<Status(const Record&, std::string_view line)>& on_record = {});

  // Appends one record with the next seq and the chain's prev, writes it
  // and fdatasyncs; returns its seq. `time_ns` is Unix nanoseconds (the
  // appliance clock). InvalidArgument from FormatRecord; IOError leaves the
  // ledger unusable (every later call fails) since the file's tail is unknown.
  Result<uint64_t> Append(std::string_view type, const nlohmann::json& body, const Actor& actor, int64_t time_ns);
  // Group commit: appends the records in order with one write(2) and one
  // fdatasync, all stamped `time_ns`; returns the first one's seq. Either
  // none is written (InvalidArgument for any bad record) or all are; a
  // crash leaves a prefix plus at most a torn line. An fdatasync costs
  // milliseconds on common disks: collection should batch its items.
  Result<uint64_t> AppendBatch(std::span<const NewRecord> records, int64_t time_ns);

  uint64_t size() const { return tree_.size(); }   // records
  uint64_t bytes() const { return bytes_; }        // file length
  Hash root() const { return tree_.Root(); }
  const std::vector<Hash>& leaf_hashes() const { return leaves_; }
  const std::string& path() const { return path_; }

 private:
  Ledger(std::string path, Fd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  Fd fd_;
  uint64_t bytes_ = 0;
  Hash last_;
  MerkleTree tree_;
  std::vector<Hash> leaves_;
  Status broken_;
};

}  // namespace custos::evidence
