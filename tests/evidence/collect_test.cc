// The collector on this machine, into an in-memory sink: what each step
// kind produces, gaps for what cannot be read, O_NOATIME, change flags,
// hashes, bodyfile lines, retries after a mismatch on receipt.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <signal.h>
#include <sys/wait.h>
#include <sstream>

#include "base/crypto.h"
#include "evidence/collect.h"
#include "evidence/recipe.h"
#include "tests/test_util.h"

namespace custos::evidence {
namespace {

struct Item {
  ItemStart start;
  std::string data;
  ItemEnd end;
  bool ended = false, aborted = false;
};

struct MemorySink : CollectSink {
  std::vector<Item> items;
  std::vector<std::tuple<std::string, std::string, std::string>> gaps;
  std::vector<std::string> footprints;
  std::vector<Retry> retry_once;  // returned by the first Drain
  int drains = 0;
  std::function<void(Item&)> on_data;  // tamper hook

  Status BeginItem(const ItemStart& s) override {
    items.push_back({s});
    return Status::Ok();
  }
  Status Data(ByteView chunk) override {
    REQUIRE(chunk.size() <= kChunkBytes);
    items.back().data.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return Status::Ok();
  }
  Status EndItem(const ItemEnd& e) override {
    items.back().end = e;
    items.back().ended = true;
    return Status::Ok();
  }
  Status AbortItem(const std::string&) override {
    items.back().aborted = true;
    return Status::Ok();
  }
  Status Gap(const std::string& a, const std::string& p, const std::string& r) override {
    gaps.emplace_back(a, p, r);
    return Status::Ok();
  }
  Status Footprint(const std::string& what) override {
    footprints.push_back(what);
    return Status::Ok();
  }
  Result<std::vector<Retry>> Drain() override {
    if (drains++ == 0) return retry_once;
    return std::vector<Retry>{};
  }
  const Item* Find(const std::string& path) const {
    for (const auto& i : items) {
      if (i.start.path == path) return &i;
    }
    return nullptr;
  }
};

void Write(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

TEST_CASE("recipes parse strictly and hash their exact text", "[evidence][recipe]") {
  auto r = ParseRecipe("recipe t 2\n# c\n\ncmd a.b echo hi\nfile f /etc/hostname /x/*\nprocesses p\n");
  REQUIRE(r.ok());
  CHECK(r->name == "t");
  CHECK(r->version == 2);
  REQUIRE(r->steps.size() == 3);
  CHECK(r->steps[0].args == std::vector<std::string>{"echo", "hi"});
  CHECK(r->sha256 == Sha256(AsBytes(r->text)).Hex());
  CHECK(!ParseRecipe("cmd a echo\n").ok());                       // no header
  CHECK(!ParseRecipe("recipe t 1\nfile f relative/path\n").ok());  // not absolute
  CHECK(!ParseRecipe("recipe t 1\nrun f /x\n").ok());              // unknown kind
  CHECK(!ParseRecipe("recipe t 1\nfile F/ /x\n").ok());            // bad artifact name
  CHECK(!ParseRecipe("recipe t 1\nprocesses p extra\n").ok());
  CHECK(!ParseRecipe("recipe t 1\n").ok());                        // no steps
  CHECK(ParseRecipe("recipe t 1\nfile f /x\r\n").status().message().find("line 2") != std::string::npos);
  auto triage = BuiltinProfile("linux-triage");
  REQUIRE(triage.ok());
  CHECK(triage->steps.size() > 20);
  // RFC 3227 order: network first, the timeline before any log content.
  CHECK(triage->steps.front().artifact.rfind("network.", 0) == 0);
  size_t timeline = 0, logs = 0;
  for (size_t i = 0; i < triage->steps.size(); ++i) {
    if (triage->steps[i].artifact == "timeline") timeline = i;
    if (triage->steps[i].artifact == "logs") logs = i;
  }
  CHECK(timeline < logs);
  CHECK(BuiltinProfile("nope").status().code() == Code::kNotFound);
}

TEST_CASE("collect files, trees, commands and a timeline", "[evidence][collect]") {
  test::TempDir tmp;
  const std::string d = tmp.path();
  ::mkdir((d + "/tree").c_str(), 0755);
  ::mkdir((d + "/tree/sub").c_str(), 0755);
  ::mkdir((d + "/skip").c_str(), 0755);
  Write(d + "/tree/a.txt", "alpha\n");
  Write(d + "/tree/sub/b|odd\nname", std::string(3 << 20, 'b'));  // 3 chunks
  Write(d + "/skip/c", "excluded");
  REQUIRE(::symlink("a.txt", (d + "/tree/link").c_str()) == 0);
  Write(d + "/secret", "s");
  ::chmod((d + "/secret").c_str(), 0);
  // An old atime, to show that reading with O_NOATIME leaves it.
  struct timespec ts[2] = {{1000000000, 0}, {0, UTIME_OMIT}};
  REQUIRE(::utimensat(AT_FDCWD, (d + "/tree/a.txt").c_str(), ts, 0) == 0);

  std::string text = "recipe t 1\n"
                     "cmd out.echo echo hello\n"
                     "cmd out.fail sh -c exit${IFS}3\n"
                     "cmd out.none no-such-program-custos\n"
                     "timeline tl " + d + "\n"
                     "tree files " + d + "/tree\n"
                     "file one " + d + "/missing " + d + "/tree/*.txt\n"
                     "file perm " + d + "/secret\n";
  auto recipe = ParseRecipe(text);
  REQUIRE(recipe.ok());
  MemorySink sink;
  CollectOptions o;
  o.excludes = {d + "/skip"};
  auto counts = Collect(*recipe, o, sink);
  REQUIRE(counts.ok());

  // Commands: output, exit status, footprint; a missing program is a gap.
  REQUIRE(sink.items.size() >= 2);
  CHECK(sink.items[0].start.kind == "cmd");
  CHECK(sink.items[0].data == "hello\n");
  CHECK(sink.items[0].end.exit_code == 0);
  CHECK(sink.items[0].start.argv[0].rfind("/", 0) == 0);  // resolved through the fixed PATH
  CHECK(sink.items[1].end.exit_code == 3);
  bool ran = false;
  for (const auto& f : sink.footprints) ran |= f.find("echo hello") != std::string::npos;
  CHECK(ran);

  // The timeline: a bodyfile line per node, the excluded subtree left out,
  // odd names escaped, the symlink's target shown.
  const Item* tl = nullptr;
  for (const auto& i : sink.items) {
    if (i.start.kind == "timeline") tl = &i;
  }
  REQUIRE(tl);
  CHECK(tl->end.sha256 == Sha256(AsBytes(tl->data)).Hex());
  CHECK(tl->data.find("|" + d + "/tree/a.txt|") != std::string::npos);
  CHECK(tl->data.find(d + "/tree/sub/b\\x7codd\\x0aname|") != std::string::npos);
  CHECK(tl->data.find(d + "/tree/link -> a.txt|") != std::string::npos);
  CHECK(tl->data.find(d + "/skip") == std::string::npos);
  CHECK(tl->data.find("|d/drwxr-xr-x|") != std::string::npos);
  CHECK(tl->data.find("|1000000000|") != std::string::npos);  // a.txt's atime, seconds

  // Files: content, hashes, before/after metadata, atime untouched.
  const Item* a = sink.Find(d + "/tree/a.txt");
  REQUIRE(a);
  CHECK(a->data == "alpha\n");
  CHECK(a->end.sha256 == Sha256(AsBytes("alpha\n")).Hex());
  CHECK(!a->end.changed);
  CHECK(a->start.before["atime_ns"] == 1000000000ull * 1000000000ull);
  struct stat st {};
  REQUIRE(::stat((d + "/tree/a.txt").c_str(), &st) == 0);
  CHECK(st.st_atime == 1000000000);
  const Item* big = sink.Find(d + "/tree/sub/b|odd\nname");
  REQUIRE(big);
  CHECK(big->data.size() == (3u << 20));
  const Item* link = sink.Find(d + "/tree/link");
  REQUIRE(link);
  CHECK(link->start.kind == "symlink");
  CHECK(link->data == "a.txt");

  // Gaps: the missing program, the missing file (absent), the unreadable
  // one (unless we are root, who reads anything).
  std::map<std::string, std::string> gap;
  for (const auto& [art, path, reason] : sink.gaps) gap[art + ":" + path] = reason;
  CHECK(gap.at("out.none:").find("program not found") != std::string::npos);
  CHECK(gap.at("one:" + d + "/missing").rfind("absent", 0) == 0);
  if (::geteuid() != 0) CHECK(gap.at("perm:" + d + "/secret").find("Permission denied") != std::string::npos);
  CHECK(counts->collected + counts->failed == counts->planned);
  CHECK(counts->absent == 2);
}

TEST_CASE("a file that changes while read is flagged", "[evidence][collect]") {
  test::TempDir tmp;
  const std::string f = tmp.path() + "/grows";
  Write(f, std::string(2 << 20, 'x'));
  auto recipe = ParseRecipe("recipe t 1\nfile f " + f + "\n");
  REQUIRE(recipe.ok());
  MemorySink sink;
  struct Appender : MemorySink {
    std::string path;
    bool done = false;
    Status Data(ByteView chunk) override {
      if (!done) {  // another process appends after the first chunk
        std::ofstream(path, std::ios::app) << "more";
        done = true;
      }
      return MemorySink::Data(chunk);
    }
  } s2;
  s2.path = f;
  auto counts = Collect(*recipe, {}, s2);
  REQUIRE(counts.ok());
  REQUIRE(s2.items.size() == 1);
  CHECK(s2.items[0].end.changed);
  CHECK(s2.items[0].end.after["size"] != s2.items[0].start.before["size"]);
}

TEST_CASE("items the receiver found damaged are read once more", "[evidence][collect]") {
  test::TempDir tmp;
  const std::string f = tmp.path() + "/f";
  Write(f, "content");
  auto recipe = ParseRecipe("recipe t 1\nfile f " + f + "\n");
  REQUIRE(recipe.ok());
  MemorySink sink;
  sink.retry_once = {{"f", f}};
  auto counts = Collect(*recipe, {}, sink);
  REQUIRE(counts.ok());
  CHECK(counts->retried == 1);
  REQUIRE(sink.items.size() == 2);
  CHECK(sink.items[1].data == "content");
  CHECK(sink.drains == 2);
}

TEST_CASE("the processes artifact hashes running executables, deleted ones too", "[evidence][collect]") {
  test::TempDir tmp;
  // A copy of sleep, started, then deleted: malware's favourite trick.
  const std::string exe = tmp.path() + "/sleeper";
  REQUIRE(test::Run("cp /bin/sleep " + exe).exit_code == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(exe.c_str(), "sleeper", "30", nullptr);
    ::_exit(127);
  }
  ::usleep(200000);
  auto want = test::Run("sha256sum " + exe).out.substr(0, 64);
  ::unlink(exe.c_str());
  auto recipe = ParseRecipe("recipe t 1\nprocesses procs\n");
  REQUIRE(recipe.ok());
  MemorySink sink;
  auto counts = Collect(*recipe, {}, sink);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  REQUIRE(counts.ok());
  REQUIRE(sink.items.size() == 1);
  bool found = false;
  std::istringstream lines(sink.items[0].data);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["pid"] == pid) {
      found = true;
      CHECK(j["exe_deleted"] == true);
      CHECK(j["exe_sha256"] == want);
      CHECK(j["cmdline"] == nlohmann::json::array({"sleeper", "30"}));
      CHECK(j["ppid"] == ::getpid());
      CHECK(j["start_time"].get<long long>() > 1600000000);
    }
  }
  CHECK(found);
}

}  // namespace
}  // namespace custos::evidence
