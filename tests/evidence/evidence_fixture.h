// Shared pieces of the evidence tests: a store with a fixed key and a fake
// clock, a case filled the way the collection layer fills one (items with
// objects, a Sleuth Kit timeline, a command, a gap, a footprint, a hold, a
// note with an attachment), bundles exported, extracted and packed again
// with GNU tar, and the verifier CLI.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/crypto.h"
#include "evidence/case_store.h"
#include "evidence/checkpoint.h"
#include "tests/test_util.h"

namespace custos::evidencetest {

using nlohmann::json;
using evidence::Actor;

// 2026-11-27T10:00:00Z
constexpr int64_t kT0 = 1795773600LL * 1000000000LL;

inline SigningKey TestKey(uint8_t fill = 7) {
  Key32 seed;
  seed.fill(fill);
  return SigningKeyFromSeed(seed);
}

inline const Actor& Operator() {
  static const Actor a{"operator", "alice", ""};
  return a;
}
inline Actor Agent(const std::string& name = "web01") {
  return Actor{"agent", name, "sha256:" + Sha256(AsBytes(name)).Hex()};
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void Spit(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

inline std::vector<std::string> Lines(const std::string& data) {
  std::vector<std::string> out;
  std::stringstream ss(data);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

inline std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// A fake appliance clock: one second per reading from kT0.
inline std::function<int64_t()> FakeClock(int64_t start = kT0) {
  auto t = std::make_shared<std::atomic<int64_t>>(start);
  return [t] { return t->fetch_add(1000000000LL); };
}

inline std::unique_ptr<evidence::CaseStore> OpenStore(const std::string& dir, const SigningKey& key,
                                                      evidence::StoreOptions o = {}) {
  if (!o.clock) o.clock = FakeClock();
  o.appliance_name = "custos-test";
  auto s = evidence::CaseStore::Open(dir, key, o);
  REQUIRE(s.ok());
  return std::move(s).value();
}

inline std::string PutBytes(evidence::CaseStore& s, const std::string& data) {
  auto w = s.NewObject();
  REQUIRE(w.ok());
  REQUIRE((*w)->Write(AsBytes(data)).ok());
  auto hex = (*w)->Commit();
  REQUIRE(hex.ok());
  return *hex;
}

// An `item` record of web01's `file` artifact: `path`, stored as `object`.
inline evidence::NewRecord FileItem(const std::string& path, const std::string& object) {
  return {"item", json{{"host", "web01"}, {"artifact", "file"}, {"path", path}, {"object", object}}, Agent()};
}

// The bodyfile a host's agent would produce (Sleuth Kit 3.x).
inline std::string Bodyfile(const std::string& host) {
  return "0|/etc/passwd|1001|r/rrw-r--r--|0|0|1234|1795760000|1795760100|1795760200|0\n"
         "0|/var/www/" + host + "/shell.php|1002|r/rrw-r--r--|33|33|87|1795770000|1795770001|1795770002|0\n"
         "0|/tmp/.x|1003|r/rrwxr-xr-x|33|33|4096|1795771000|1795771000|1795771000|0\n";
}

// Fills a case as the collection layer would, and closes it when asked.
// Returns the seq of the task.start record.
inline uint64_t FillCase(evidence::CaseStore& s, const std::string& id, const std::string& attachment_dir,
                         bool close = true) {
  Actor agent = Agent();
  auto plan = s.Append(id, "plan", json{{"hosts", {"web01"}}, {"artifacts", {"file", "timeline", "network.sockets"}}}, Operator());
  REQUIRE(plan.ok());
  auto task = s.Append(id, "task.start", json{{"host", "web01"}, {"artifact", "file"}}, Operator());
  REQUIRE(task.ok());
  std::string content = "root:x:0:0:root:/root:/bin/bash\n";
  std::string obj = PutBytes(s, content);
  json statx{{"size", content.size()}, {"mtime", "2026-11-27T09:00:00.000000000Z"}, {"ino", 1001}};
  REQUIRE(s.Append(id, "item",
                   json{{"task", *task}, {"host", "web01"}, {"artifact", "file"}, {"path", "/etc/passwd"},
                        {"object", obj}, {"size", content.size()}, {"agent_sha256", obj}, {"appliance_sha256", obj},
                        {"before", statx}, {"after", statx}, {"changed", false}},
                   agent)
              .ok());
  std::string body = Bodyfile("web01");
  std::string tl = PutBytes(s, body);
  REQUIRE(s.Append(id, "item",
                   json{{"task", *task}, {"host", "web01"}, {"artifact", "timeline"}, {"object", tl},
                        {"size", body.size()}, {"agent_sha256", tl}, {"appliance_sha256", tl}},
                   agent)
              .ok());
  std::string ss = "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n";
  std::string so = PutBytes(s, ss);
  REQUIRE(s.Append(id, "cmd",
                   json{{"task", *task}, {"host", "web01"}, {"artifact", "network.sockets"}, {"argv", {"ss", "-tanp"}},
                        {"exit", 0}, {"object", so}},
                   agent)
              .ok());
  REQUIRE(s.Append(id, "gap",
                   json{{"task", *task}, {"host", "web01"}, {"artifact", "file"}, {"path", "/root/.bash_history"},
                        {"reason", "EACCES"}},
                   agent)
              .ok());
  REQUIRE(s.Append(id, "footprint", json{{"task", *task}, {"host", "web01"}, {"what", "ran ss -tanp (reads /proc)"}}, agent).ok());
  REQUIRE(s.Append(id, "task.end", json{{"task", *task}, {"items", 3}, {"gaps", 1}}, agent).ok());
  REQUIRE(s.Append(id, "hold", json{{"action", "place"}, {"reason", "litigation"}}, Operator()).ok());
  std::string att = attachment_dir + "/photo-of-screen.txt";
  Spit(att, "what the screen showed\n");
  REQUIRE(s.Note(id, "screen photographed", att, Operator()).ok());
  if (close) REQUIRE(s.Close(id, "contained", Operator()).ok());
  return *task;
}

// Exports a case and extracts the bundle under dir/x; returns the bundle folder.
inline std::string ExportAndExtract(evidence::CaseStore& s, const std::string& id, const std::string& dir,
                                    const std::string& tar_name = "bundle.tar") {
  std::string tar = dir + "/" + tar_name;
  Status st = s.Export(id, tar, Operator());
  INFO(st.ToString());
  REQUIRE(st.ok());
  auto r = test::Run("mkdir -p " + dir + "/x && tar -C " + dir + "/x -xf " + tar);
  REQUIRE(r.exit_code == 0);
  return dir + "/x/custos-case-" + id;
}

// Packs an extracted bundle folder back into a tar.
inline std::string Repack(const std::string& folder, const std::string& tar) {
  auto slash = folder.find_last_of('/');
  auto r = test::Run("tar -C " + folder.substr(0, slash) + " -cf " + tar + " " + folder.substr(slash + 1));
  REQUIRE(r.exit_code == 0);
  return tar;
}

inline test::RunResult VerifyCli(const std::string& tar, const std::string& flags = "") {
  return test::Custos("evidence verify " + tar + " " + flags);
}

}  // namespace custos::evidencetest
