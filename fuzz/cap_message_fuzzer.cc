// Fuzzes CAP/1 message decoding (protocol/message.h), the first thing the
// appliance does with bytes from an agent, and the agent with bytes from
// the appliance.
//
// Input: frames separated by the byte sequence "\n--\n"; the first input
// byte picks the sender's side. A message that decodes must encode back to
// frames that decode to the same message.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "protocol/message.h"

using namespace custos::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Direction from = data[0] & 1 ? Direction::kApplianceToAgent : Direction::kAgentToAppliance;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string_view> frames;
  constexpr std::string_view kSep = "\n--\n";
  while (true) {
    size_t at = in.find(kSep);
    frames.push_back(in.substr(0, at));
    if (at == std::string_view::npos) break;
    in.remove_prefix(at + kSep.size());
  }
  DecodeResult r = Decode(frames, from);
  if (!r.ok) {
    FUZZ_CHECK(!r.reason.empty());
    return 0;
  }
  auto again_frames = Encode(r.message);
  std::vector<std::string_view> views(again_frames.begin(), again_frames.end());
  DecodeResult again = Decode(views, from);
  if (!again.ok && again.code == ErrorCode::kTooLarge) return 0;  // re-encoding may grow numbers ("1e2" -> "100.0")
  FUZZ_CHECK(again.ok);
  FUZZ_CHECK(again.message.type == r.message.type && again.message.seq == r.message.seq);
  FUZZ_CHECK(again.message.header == r.message.header && again.message.payloads == r.message.payloads);
  return 0;
}
