// Fuzzes signed report payloads (DecodeSignedReport in restore/report.h),
// the JSON inside a report envelope, and the renderer of report bodies.
//
// Input: the payload. A payload that decodes must re-encode to one that
// decodes to the same body, signature and key; the signature check and the
// human rendering of whatever body it carries must not crash.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "restore/report.h"

using namespace custos;
using namespace custos::restore;

CUSTOS_FUZZ_INIT

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto report = DecodeSignedReport(ByteView(data, size));
  if (!report.ok()) return 0;
  std::string once = EncodeSignedReport(*report);
  auto again = DecodeSignedReport(AsBytes(once));
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->body == report->body && again->signature == report->signature &&
             again->public_key == report->public_key);
  (void)SignatureValid(*report);
  auto body = nlohmann::json::parse(report->body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_discarded()) {
    (void)RenderReport(body);
    (void)ReportVerdict(body);
  }
  return 0;
}
