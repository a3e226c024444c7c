// CAP/1 messages (doc/protocols/cap.md): the frame layout, the header
// grammar of every command, and the checks a receiver applies before it
// acts on a message. Transport (ZeroMQ sockets, CURVE, ZAP) is elsewhere;
// this is the codec both ends share, fuzzed by fuzz/cap_message_fuzzer.cc.
//
// A message on the wire (without the ROUTER identity frame):
//   frame 0  "CAP1"
//   frame 1  header: one JSON object, UTF-8, at most kMaxHeader octets,
//            with "type" (a command) and "seq" (1, 2, 3 ... per sender and
//            connection) and only the fields its command allows
//   frame 2+ raw payloads, as many as the command takes, each at most
//            kMaxPayload octets
//
// Thread-safety: values and pure functions; SeqCheck is one per peer.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace custos::protocol {

inline constexpr std::string_view kVersion = "CAP1";
inline constexpr size_t kMaxHeader = 64u << 10;
inline constexpr size_t kMaxPayload = 16u << 20;
inline constexpr size_t kMaxIdsPerHave = 512;  // 512 x 67 octets fit a header (HAVE, LACK, WANT)
// Restore (section 5.2): blob IDs an agent may have asked for with WANT and
// not yet received. Each is answered by one BLOB (or a LACK), so at most
// this many messages are ever queued towards the agent (ZeroMQ queues
// hold 1000).
inline constexpr size_t kMaxWanted = 512;
inline constexpr size_t kMaxBlobsPerMessage = 256;  // entries of one BLOB (about 150 octets each)
inline constexpr size_t kMaxEventsPerMessage = 256;  // events of one EVIDENCE

// The error codes of section 9; also the `code` of an ERROR message.
enum class ErrorCode : int {
  kMalformed = 400,
  kUnauthorized = 401,
  kForbidden = 403,
  kUnknownJob = 404,
  kOutOfOrder = 409,
  kTooLarge = 413,
  kBadBlob = 422,
  kCreditExceeded = 429,
  kInternal = 500,
};

// Who may send a command.
enum class Direction { kAgentToAppliance, kApplianceToAgent, kBoth };

struct Message {
  std::string type;
  uint64_t seq = 0;
  nlohmann::json header;              // the whole header, "type" and "seq" included
  std::vector<std::string> payloads;  // raw frames after the header
};

struct DecodeResult {
  bool ok = false;
  Message message;            // when ok
  ErrorCode code = ErrorCode::kMalformed;  // when not ok
  std::string reason;         // when not ok: for the ERROR reply and the log
  bool close = false;         // wrong protocol version: the peer speaks something else
};

// Checks the frames of one message (identity frame already removed)
// against the grammar: version, header size and syntax, the command's
// fields and their types, payload count and sizes. `from` is who sent it:
// a command the sender may not send is Forbidden. Never throws.
DecodeResult Decode(const std::vector<std::string_view>& frames, Direction from);

// The frames of a message: version, compact header (with "type" and "seq"
// set from `m`), payloads. Aborts on a header the grammar rejects (a bug);
// the receiver's size limits are the caller's to respect.
std::vector<std::string> Encode(const Message& m);

// A message of `type` with `seq` and the header fields in `fields`.
Message Make(const std::string& type, uint64_t seq, nlohmann::json fields = nlohmann::json::object(),
             std::vector<std::string> payloads = {});

// An ERROR reply to the message numbered `ref` (0: none).
Message MakeError(uint64_t seq, ErrorCode code, const std::string& reason, uint64_t ref);

// The receiver's view of one peer's sequence numbers: each message must be
// numbered exactly one more than the previous (1 first). A replayed,
// dropped or reordered message breaks the sequence.
class SeqCheck {
 public:
  bool Accept(uint64_t seq) {
    if (seq != last_ + 1) return false;
    last_ = seq;
    return true;
  }
  uint64_t last() const { return last_; }

 private:
  uint64_t last_ = 0;
};

// Whether `s` is a blob ID in hex: 64 lowercase hex digits.
bool IsHexId(std::string_view s);

}  // namespace custos::protocol
