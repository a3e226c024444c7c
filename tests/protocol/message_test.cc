// CAP/1 codec (protocol/message.h): every command round-trips; malformed,
// oversized, misdirected and replayed messages get the error code of
// doc/protocols/cap.md section 9 and never throw.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "protocol/message.h"

using nlohmann::json;
using namespace custos::protocol;

namespace {

const std::string kId(64, 'a');

DecodeResult DecodeFrames(const std::vector<std::string>& frames, Direction from = Direction::kAgentToAppliance) {
  std::vector<std::string_view> v(frames.begin(), frames.end());
  return Decode(v, from);
}

std::vector<std::string> Frames(const std::string& header, std::vector<std::string> payloads = {}) {
  std::vector<std::string> f{"CAP1", header};
  for (auto& p : payloads) f.push_back(std::move(p));
  return f;
}

}  // namespace

TEST_CASE("cap: every command round-trips through Encode and Decode", "[protocol]") {
  struct Case {
    Message m;
    Direction from;
  };
  std::vector<Case> cases = {
      {Make("ENROL", 1, {{"secret", "s"}, {"key", std::string(64, 'b')}, {"host", "db01"}, {"version", "0.1.0"}}), Direction::kAgentToAppliance},
      {Make("ENROLLED", 1, {{"name", "db01"}}), Direction::kApplianceToAgent},
      {Make("HELLO", 1, {{"protocol", 1}, {"version", "0.1.0"}, {"host", "db01"}, {"os", "linux"}, {"resume", json::array()}}),
       Direction::kAgentToAppliance},
      {Make("WELCOME", 1, {{"heartbeat_ms", 5000}, {"credit", 1 << 26}, {"time", "2026-11-27T02:00:00Z"}, {"jobs", {{"j-1", {{"action", "continue"}}}}}}),
       Direction::kApplianceToAgent},
      {Make("PING", 7), Direction::kApplianceToAgent},
      {Make("PONG", 8), Direction::kAgentToAppliance},
      {Make("JOB", 2, {{"job", "j-1"}, {"kind", "backup"}, {"params", {{"paths", {"/srv"}}}}}), Direction::kApplianceToAgent},
      {Make("ACCEPT", 2, {{"job", "j-1"}}), Direction::kAgentToAppliance},
      {Make("HAVE", 3, {{"job", "j-1"}, {"ids", {kId, std::string(64, '0')}}}), Direction::kAgentToAppliance},
      {Make("LACK", 3, {{"job", "j-1"}, {"ids", {kId}}}), Direction::kApplianceToAgent},
      {Make("BLOB", 4,
            {{"job", "j-1"},
             {"blobs",
              {{{"id", kId}, {"kind", "data"}, {"compression", "zstd"}, {"size", 3}, {"length", 2}},
               {{"id", kId}, {"kind", "tree"}, {"compression", "none"}, {"size", 1}, {"length", 1}}}}},
            {std::string("\0\1\2", 3)}),
       Direction::kAgentToAppliance},
      {Make("CREDIT", 5, {{"job", "j-1"}, {"bytes", 1024}}), Direction::kApplianceToAgent},
      {Make("COMMIT", 5, {{"job", "j-1"}, {"tree", kId}, {"atimes", {kId}}, {"paths", {"/srv"}}, {"summary", json::object()}}),
       Direction::kAgentToAppliance},
      {Make("DONE", 6, {{"job", "j-1"}, {"snapshot", kId}}), Direction::kApplianceToAgent},
      {Make("WANT", 6, {{"job", "j-2"}, {"ids", {kId}}}), Direction::kAgentToAppliance},
      {Make("BLOB", 7,
            {{"job", "j-2"},
             {"blobs", {{{"id", kId}, {"kind", "tree"}, {"compression", "none"}, {"size", 5}, {"length", 5}}}}},
            {"hello"}),
       Direction::kApplianceToAgent},
      {Make("CREDIT", 8, {{"job", "j-2"}, {"bytes", 1 << 24}}), Direction::kAgentToAppliance},
      {Make("RESULT", 9, {{"job", "j-2"}, {"counts", json::object()}, {"failures", json::array()}}),
       Direction::kAgentToAppliance},
      {Make("PROGRESS", 9, {{"job", "j-1"}, {"files", 10}, {"bytes", 4096}}), Direction::kAgentToAppliance},
      {MakeError(3, ErrorCode::kBadBlob, "content does not match its ID", 4), Direction::kApplianceToAgent},
  };
  for (const auto& c : cases) {
    INFO(c.m.type);
    auto frames = Encode(c.m);
    REQUIRE(frames[0] == "CAP1");
    auto r = DecodeFrames(frames, c.from);
    INFO(r.reason);
    REQUIRE(r.ok);
    REQUIRE(r.message.type == c.m.type);
    REQUIRE(r.message.seq == c.m.seq);
    REQUIRE(r.message.header == c.m.header);
    REQUIRE(r.message.payloads == c.m.payloads);
  }
}

TEST_CASE("cap: malformed messages get 400 with a reason, oversized ones 413", "[protocol]") {
  auto code = [](const std::vector<std::string>& f, Direction d = Direction::kAgentToAppliance) {
    auto r = DecodeFrames(f, d);
    REQUIRE_FALSE(r.ok);
    REQUIRE_FALSE(r.reason.empty());
    return int(r.code);
  };
  // Wrong or missing version: 400 and the connection is closed.
  auto v = DecodeFrames({"ZMTP", "{}"});
  REQUIRE_FALSE(v.ok);
  REQUIRE(v.close);
  REQUIRE(code({}) == 400);
  REQUIRE(code({"CAP1"}) == 400);
  REQUIRE(code(Frames("not json")) == 400);
  REQUIRE(code(Frames("[1,2]")) == 400);
  REQUIRE(code(Frames(std::string("{\"type\":\"PING\",\"seq\":1,\"x\":\"\xff\"}"))) == 400);  // not UTF-8
  REQUIRE(code(Frames(R"({"seq":1})")) == 400);
  REQUIRE(code(Frames(R"({"type":"PING"})")) == 400);
  REQUIRE(code(Frames(R"({"type":"PING","seq":0})")) == 400);
  REQUIRE(code(Frames(R"({"type":"PING","seq":-1})")) == 400);
  REQUIRE(code(Frames(R"({"type":"PING","seq":1.5})")) == 400);
  REQUIRE(code(Frames(R"({"type":"NOPE","seq":1})")) == 400);
  REQUIRE(code(Frames(R"({"type":"PING","seq":1,"extra":1})")) == 400);
  REQUIRE(code(Frames(R"({"type":"ACCEPT","seq":1})")) == 400);                // missing field
  REQUIRE(code(Frames(R"({"type":"ACCEPT","seq":1,"job":5})")) == 400);        // wrong type
  REQUIRE(code(Frames(R"({"type":"PING","seq":1})", {"payload"})) == 400);     // payload not allowed
  std::string blob = R"({"type":"BLOB","seq":1,"job":"j","blobs":[{"id":")" + kId +
                     R"(","kind":"data","compression":"none","size":1,"length":1}]})";
  REQUIRE(DecodeFrames(Frames(blob, {"x"})).ok);
  REQUIRE(code(Frames(blob)) == 400);                                          // payload missing
  REQUIRE(code(Frames(blob, {"x", "y"})) == 400);
  REQUIRE(code(Frames(blob, {"xy"})) == 400);                                  // lengths do not cut the payload
  REQUIRE(code(Frames(blob, {""})) == 400);
  std::string bad_id = blob;
  bad_id.replace(bad_id.find(kId), 64, std::string(64, 'A'));
  REQUIRE(code(Frames(bad_id, {"x"})) == 400);
  std::string bad_kind = blob;
  bad_kind.replace(bad_kind.find("\"data\""), 6, "\"evil\"");
  REQUIRE(code(Frames(bad_kind, {"x"})) == 400);
  std::string extra_key = blob;
  extra_key.replace(extra_key.find("\"length\""), 8, "\"evil\":1,\"length\"");
  REQUIRE(code(Frames(extra_key, {"x"})) == 400);
  REQUIRE(code(Frames(R"({"type":"BLOB","seq":1,"job":"j","blobs":[]})", {""})) == 400);  // no entries
  // Lengths whose sum overflows are refused, not wrapped.
  std::string overflow = blob;
  overflow.replace(overflow.find("\"length\":1"), 10, "\"length\":18446744073709551615");
  REQUIRE(code(Frames(overflow, {"x"})) == 400);
  // Too many entries in one BLOB.
  json many{{"type", "BLOB"}, {"seq", 1}, {"job", "j"}, {"blobs", json::array()}};
  for (size_t i = 0; i <= kMaxBlobsPerMessage; ++i) {
    many["blobs"].push_back({{"id", kId}, {"kind", "data"}, {"compression", "none"}, {"size", 0}, {"length", 0}});
  }
  REQUIRE(code(Frames(many.dump(), {""})) == 400);
  // Too many IDs in one HAVE.
  json have{{"type", "HAVE"}, {"seq", 1}, {"job", "j"}, {"ids", std::vector<std::string>(kMaxIdsPerHave + 1, kId)}};
  REQUIRE(code(Frames(have.dump())) == 400);
  json want{{"type", "WANT"}, {"seq", 1}, {"job", "j"}, {"ids", std::vector<std::string>(kMaxIdsPerHave + 1, kId)}};
  REQUIRE(code(Frames(want.dump())) == 400);
  want["ids"] = std::vector<std::string>(kMaxIdsPerHave, kId);
  REQUIRE(DecodeFrames(Frames(want.dump())).ok);
  // WANT is the agent's: the appliance never asks an agent for blobs.
  REQUIRE(code(Frames(want.dump()), Direction::kApplianceToAgent) == 403);
  // Oversized header and payload: 413.
  std::string huge = R"({"type":"ACCEPT","seq":1,"job":")" + std::string(kMaxHeader, 'j') + R"("})";
  REQUIRE(code(Frames(huge)) == 413);
  REQUIRE(code(Frames(blob, {std::string(kMaxPayload + 1, 'x')})) == 413);
}

TEST_CASE("cap: a side may send only its own commands", "[protocol]") {
  auto job = Encode(Make("JOB", 1, {{"job", "j"}, {"kind", "restore"}, {"params", json::object()}}));
  auto r = DecodeFrames(job, Direction::kAgentToAppliance);  // an agent trying to start a job
  REQUIRE_FALSE(r.ok);
  REQUIRE(r.code == ErrorCode::kForbidden);
  auto hello = Encode(Make("HELLO", 1, {{"protocol", 1}, {"version", "x"}, {"host", "h"}, {"os", "linux"}, {"resume", json::array()}}));
  REQUIRE(DecodeFrames(hello, Direction::kApplianceToAgent).code == ErrorCode::kForbidden);
  REQUIRE(DecodeFrames(Encode(Make("PING", 1)), Direction::kApplianceToAgent).ok);
}

TEST_CASE("cap: sequence numbers refuse replayed, dropped and reordered messages", "[protocol]") {
  SeqCheck s;
  REQUIRE_FALSE(s.Accept(2));  // must start at 1
  REQUIRE(s.Accept(1));
  REQUIRE(s.Accept(2));
  REQUIRE_FALSE(s.Accept(2));  // replayed
  REQUIRE_FALSE(s.Accept(1));  // older
  REQUIRE_FALSE(s.Accept(4));  // one dropped
  REQUIRE(s.Accept(3));
  REQUIRE(s.last() == 3);
}
