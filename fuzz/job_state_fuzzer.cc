// Fuzzes custosd's saved job state (appliance::DecodeJobState): the files
// DATA_DIR/jobs/JOB.resume and DATA_DIR/hosts/AGENT.sent, read at start and
// at every backup job's start.
//
// Input: the file's bytes. A state that decodes must encode back to the
// same bytes (the encoding is canonical: IDs ascending, one checksum).
#include <cstddef>
#include <cstdint>

#include "appliance/job_state.h"
#include "fuzz/fuzz_util.h"

using namespace custos;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto s = appliance::DecodeJobState(ByteView(data, size));
  if (!s.ok()) return 0;
  Bytes again = appliance::EncodeJobState(*s);
  FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
  return 0;
}
