// Fuzzes the scheduler's text inputs, which come from `custos schedule add`
// and custosd's config: calendar expressions (scheduler::Calendar::Parse,
// then Next, which must move strictly forward) and retention durations
// (scheduler::ParseRetentionDuration, whose canonical form must parse back
// to the same value).
//
// Input: the first byte picks the parser (even: calendar, odd: duration);
// the rest is the text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "scheduler/calendar.h"
#include "scheduler/retention.h"

using namespace custos;
using namespace custos::scheduler;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 256) return 0;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    auto c = Calendar::Parse(text, data[0] % 4 == 0 ? "UTC" : "Europe/Berlin");
    if (!c.ok()) return 0;
    Seconds t{std::chrono::seconds(1795000000)};  // 2026-11-18
    for (int i = 0; i < 3; ++i) {
      Seconds next = c->Next(t);
      if (next == Seconds::max()) break;
      FUZZ_CHECK(next > t);
      t = next;
    }
  } else {
    auto d = ParseRetentionDuration(text);
    if (!d.ok()) return 0;
    auto again = ParseRetentionDuration(d->ToString());
    if (d->zero()) return 0;
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->ToString() == d->ToString());
  }
  return 0;
}
