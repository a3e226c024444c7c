// The custody ledger (evidence/ledger.h): the exact line layout and its
// hash chain checked with independent hashing, strict parsing of lines,
// torn last lines after a crash (reported or truncated), and the messages
// that name an edited, deleted or reordered record.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "base/file_util.h"
#include "evidence/ledger.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::evidence;

namespace {

const Actor kOperator{"operator", "alice", ""};
const Actor kAgent{"agent", "web01", "sha256:" + std::string(64, 'a')};
constexpr int64_t kT0 = 1795773600LL * 1000000000LL;  // 2026-11-27T10:00:00Z

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> Lines(const std::string& data) {
  std::vector<std::string> out;
  std::stringstream ss(data);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// A ledger of n records: case.open then items.
std::string MakeLedger(const std::string& path, int n) {
  auto l = Ledger::Create(path);
  REQUIRE(l.ok());
  REQUIRE((*l)->Append("case.open", json{{"title", "t"}}, kOperator, kT0).ok());
  for (int i = 1; i < n; ++i) {
    json body{{"task", 1}, {"host", "web01"}, {"artifact", "file"}, {"path", "/etc/f" + std::to_string(i)}};
    REQUIRE((*l)->Append("item", body, kAgent, kT0 + i).ok());
  }
  return Slurp(path);
}

std::string Message(const Status& st) { return st.ToString(); }

}  // namespace

TEST_CASE("ledger lines have the fixed layout and each prev is the SHA-256 of the line before",
          "[evidence][ledger]") {
  test::TempDir dir;
  std::string path = dir.path() + "/ledger.jsonl";
  std::string data = MakeLedger(path, 4);
  auto lines = Lines(data);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] ==
        "{\"v\":1,\"seq\":0,\"prev\":\"" + std::string(64, '0') +
            "\",\"time\":\"2026-11-27T10:00:00.000000000Z\",\"actor\":{\"kind\":\"operator\",\"name\":\"alice\","
            "\"key\":\"\"},\"type\":\"case.open\",\"body\":{\"title\":\"t\"}}");
  for (size_t i = 1; i < lines.size(); ++i) {
    // The hash of the previous line by an outside tool.
    auto r = test::Run("printf '%s' " + test::ShellQuote(lines[i - 1]) + " | sha256sum");
    REQUIRE(r.exit_code == 0);
    CHECK(lines[i].find("\"prev\":\"" + r.out.substr(0, 64) + "\"") != std::string::npos);
    CHECK(lines[i].find("\"seq\":" + std::to_string(i) + ",") != std::string::npos);
  }
  auto scan = ScanLedger(data);
  REQUIRE(scan.ok());
  CHECK(scan->records == 4);
  CHECK(scan->torn_bytes == 0);
  MerkleTree t;
  for (const auto& l : lines) t.AppendLeaf(AsBytes(l));
  CHECK(scan->root == t.Root());
}

TEST_CASE("ledger reopens with the same chain and appends after it", "[evidence][ledger]") {
  test::TempDir dir;
  std::string path = dir.path() + "/ledger.jsonl";
  MakeLedger(path, 3);
  auto l = Ledger::Open(path, TornTail::kFail);
  REQUIRE(l.ok());
  CHECK((*l)->size() == 3);
  auto seq = (*l)->Append("note", json{{"text", "later"}}, kOperator, kT0 + 100);
  REQUIRE(seq.ok());
  CHECK(*seq == 3);
  REQUIRE(ScanLedger(Slurp(path)).ok());
  CHECK(Ledger::Create(path).status().code() == Code::kAlreadyExists);
}

TEST_CASE("ledger torn last line is reported, or truncated and the chain goes on", "[evidence][ledger][fault]") {
  test::TempDir dir;
  std::string path = dir.path() + "/ledger.jsonl";
  std::string good = MakeLedger(path, 3);
  std::string torn = good + "{\"v\":1,\"seq\":3,\"prev\":\"ab";  // a crash mid-append
  Spit(path, torn);
  auto fail = Ledger::Open(path, TornTail::kFail);
  REQUIRE_FALSE(fail.ok());
  CHECK(fail.status().code() == Code::kCorruption);
  CHECK_THAT(Message(fail.status()), Catch::Contains("ledger line 4 is torn"));
  CHECK(Slurp(path) == torn);  // kFail changes nothing

  uint64_t truncated = 0;
  auto l = Ledger::Open(path, TornTail::kTruncate, &truncated);
  REQUIRE(l.ok());
  CHECK(truncated == torn.size() - good.size());
  CHECK(Slurp(path) == good);
  REQUIRE((*l)->Append("note", json{{"text", "after the crash"}}, kOperator, kT0 + 9).ok());
  auto scan = ScanLedger(Slurp(path));
  REQUIRE(scan.ok());
  CHECK(scan->records == 4);

  // A whole line that lost only its newline is torn too (never acknowledged).
  std::string no_newline = Slurp(path);
  no_newline.pop_back();
  Spit(path, no_newline);
  CHECK_THAT(Message(Ledger::Open(path, TornTail::kFail).status()), Catch::Contains("line 4 is torn"));
}

TEST_CASE("ledger scan names an edited, a deleted and a reordered record", "[evidence][ledger][tamper]") {
  test::TempDir dir;
  auto lines = Lines(MakeLedger(dir.path() + "/ledger.jsonl", 6));

  auto edited = lines;
  auto pos = edited[2].find("/etc/f2");
  edited[2].replace(pos, 7, "/etc/XX");
  auto st = ScanLedger(Join(edited)).status();
  CHECK(st.code() == Code::kIntegrity);
  CHECK_THAT(Message(st), Catch::Contains("ledger line 4") && Catch::Contains("record 2 was altered"));

  auto deleted = lines;
  deleted.erase(deleted.begin() + 3);
  st = ScanLedger(Join(deleted)).status();
  CHECK(st.code() == Code::kIntegrity);
  CHECK_THAT(Message(st), Catch::Contains("record 3 is missing (deleted)"));

  auto reordered = lines;
  std::swap(reordered[2], reordered[3]);
  st = ScanLedger(Join(reordered)).status();
  CHECK(st.code() == Code::kIntegrity);
  CHECK_THAT(Message(st), Catch::Contains("out of order") && Catch::Contains("reordered"));

  auto first_gone = lines;
  first_gone.erase(first_gone.begin());
  CHECK_THAT(Message(ScanLedger(Join(first_gone)).status()), Catch::Contains("record 0 is missing"));
}

TEST_CASE("ledger line parser is strict", "[evidence][ledger]") {
  test::TempDir dir;
  auto lines = Lines(MakeLedger(dir.path() + "/ledger.jsonl", 2));
  const std::string& ok = lines[1];
  REQUIRE(ParseRecord(ok).ok());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = ok;
    auto p = s.find(from);
    REQUIRE(p != std::string::npos);
    s.replace(p, from.size(), to);
    return s;
  };
  struct Bad {
    std::string line, why;
  };
  std::vector<Bad> bad = {
      {with("\"v\":1", "\"v\":2"), "unknown ledger version"},
      {with("\"v\":1", "\"v\":1.0"), "unknown ledger version"},
      {with("\"type\":\"item\"", "\"type\":\"items\""), "known record type"},
      {with("\"kind\":\"agent\"", "\"kind\":\"robot\""), "actor kind"},
      {with("\"key\":\"sha256:", "\"key\":\"md5:"), "actor key"},
      {with("\"prev\":\"", "\"prev\":\"A"), "64 lowercase hex"},
      {with("\"time\":\"2026-11-27T10:00:00.000000001Z\"", "\"time\":\"2026-11-27 10:00\""), "RFC 3339"},
      {with("\"body\":{", "\"body\":{\"host\":\"x\","), "duplicate member \"host\""},
      {with("{\"v\":1,", "{\"v\":1,\"v\":1,"), "duplicate member"},
      {with("\"seq\":1,\"prev\"", "\"prev\""), "in that order"},
      {with("\"body\":{", "\"body\":[{"), "not valid JSON"},
      {ok + " ", ""},  // trailing bytes
      {ok.substr(0, ok.size() - 1), "not valid JSON"},
      {with("\"host\":\"web01\"", "\"host\":\"web\\u0000\x01\""), "not valid JSON"},
      {with("\"body\":{", "\"body\":{\"deep\":" + std::string(40, '[') + std::string(40, ']') + ","), "nested deeper"},
      {with("\"host\":\"web01\"", "\"host\":\"\xff\xfe\""), "not valid JSON"},
  };
  for (const auto& b : bad) {
    INFO(b.line);
    auto r = ParseRecord(b.line);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kCorruption);
    if (!b.why.empty()) CHECK_THAT(r.status().message(), Catch::Contains(b.why));
  }
  std::string huge = with("\"host\":\"web01\"", "\"host\":\"" + std::string(kMaxLineBytes, 'x') + "\"");
  CHECK_THAT(ParseRecord(huge).status().message(), Catch::Contains("longer than"));
}

TEST_CASE("ledger refuses to write what it could not read back", "[evidence][ledger]") {
  test::TempDir dir;
  auto l = Ledger::Create(dir.path() + "/ledger.jsonl");
  REQUIRE(l.ok());
  CHECK((*l)->Append("case.opened", json::object(), kOperator, kT0).status().code() == Code::kInvalidArgument);
  CHECK((*l)->Append("note", json::array(), kOperator, kT0).status().code() == Code::kInvalidArgument);
  CHECK((*l)->Append("note", json{{"text", std::string("\xff\xfe")}}, kOperator, kT0).status().code() ==
        Code::kInvalidArgument);
  CHECK((*l)->Append("note", json{{"text", "x"}}, Actor{"operator", "", ""}, kT0).status().code() ==
        Code::kInvalidArgument);
  CHECK((*l)->Append("note", json{{"text", std::string(kMaxLineBytes, 'x')}}, kOperator, kT0).status().code() ==
        Code::kInvalidArgument);
  CHECK((*l)->size() == 0);
  // A body's "object" members are the evidence it references, wherever they are.
  json body{{"object", "aa"}, {"streams", {{{"object", "bb"}}, {{"name", "x"}}}}, {"nested", {{"object", "cc"}}}};
  auto refs = ObjectReferences(body);
  std::sort(refs.begin(), refs.end());
  CHECK(refs == std::vector<std::string>{"aa", "bb", "cc"});
}
