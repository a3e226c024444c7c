// Fuzzes the evidence ledger's parsers (evidence/ledger.h) and the
// checkpoint text parser (evidence/checkpoint.h).
//
// Selector byte, then:
//   0  one ledger line: ParseRecord. A line that parses is formatted again
//      (FormatRecord) and that line must parse to the same header and body.
//   1  a checkpoint text: ParseCheckpoint. One that parses must format back
//      to exactly the same bytes (the format is canonical).
//   2  a whole ledger: ScanLedger, with every record's object references
//      collected; its counts must add up.
#include <cstddef>
#include <cstdint>

#include "evidence/checkpoint.h"
#include "evidence/ledger.h"
#include "fuzz/fuzz_util.h"

using namespace custos;
using namespace custos::evidence;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  uint8_t mode = in.U8() % 3;
  std::string_view rest = AsString(in.Rest());
  if (mode == 0) {
    auto r = ParseRecord(rest);
    if (!r.ok()) return 0;
    (void)ObjectReferences(r->body);
    auto line = FormatRecord(r->header, r->body);
    FUZZ_CHECK(line.ok());
    auto again = ParseRecord(*line);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->header.seq == r->header.seq && again->header.prev == r->header.prev &&
               again->header.time == r->header.time && again->header.type == r->header.type &&
               again->header.actor.kind == r->header.actor.kind && again->header.actor.name == r->header.actor.name &&
               again->header.actor.key == r->header.actor.key && again->body == r->body);
  } else if (mode == 1) {
    auto c = ParseCheckpoint(rest);
    if (!c.ok()) return 0;
    FUZZ_CHECK(FormatCheckpoint(*c) == rest);
  } else {
    uint64_t seen = 0;
    ScanOptions opts;
    opts.keep_leaf_hashes = true;
    opts.on_record = [&](const Record& r, std::string_view) {
      (void)ObjectReferences(r.body);
      ++seen;
      return Status::Ok();
    };
    auto scan = ScanLedger(rest, opts);
    if (!scan.ok()) return 0;
    FUZZ_CHECK(scan->records == seen && scan->leaf_hashes.size() == seen);
    FUZZ_CHECK(scan->valid_bytes + scan->torn_bytes == rest.size());
    FUZZ_CHECK(scan->root == RootFromLeafHashes(scan->leaf_hashes));
  }
  return 0;
}
