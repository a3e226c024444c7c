// One conformance suite that every Backend passes (restic's
// internal/backend/test plays the same role). Each TEMPLATE-like section
// runs against every backend factory below.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "base/file_util.h"
#include "storage/backend.h"
#include "tests/test_util.h"

using namespace custos;
using namespace custos::storage;

namespace {

struct Factory {
  const char* name;
  std::function<std::unique_ptr<Backend>(const std::string& dir)> make;
};

std::vector<Factory> Factories() {
  return {{"local", [](const std::string& dir) { return NewLocalBackend(dir + "/repo"); }},
          {"memory", [](const std::string&) { return NewMemoryBackend(); }}};
}

}  // namespace

TEST_CASE("every backend honours the backend contract", "[storage][backend]") {
  for (const auto& f : Factories()) {
    DYNAMIC_SECTION("backend " << f.name) {
      test::TempDir dir;
      auto b = f.make(dir.path());
      REQUIRE(b->Create().ok());

      // Save then Load returns the same bytes; ranges work.
      Bytes data = test::RandomBytes(1000, 1);
      REQUIRE(b->Save(FileType::kPack, "ab12", data).ok());
      auto all = b->Load(FileType::kPack, "ab12");
      REQUIRE(all.ok());
      REQUIRE(*all == data);
      auto part = b->Load(FileType::kPack, "ab12", 10, 20);
      REQUIRE(part.ok());
      REQUIRE(*part == Bytes(data.begin() + 10, data.begin() + 30));
      REQUIRE(*b->Size(FileType::kPack, "ab12") == 1000);

      // Save never replaces.
      REQUIRE(b->Save(FileType::kPack, "ab12", Bytes{1}).code() == Code::kAlreadyExists);
      REQUIRE(*b->Load(FileType::kPack, "ab12") == data);

      // Missing files and short reads.
      REQUIRE(b->Load(FileType::kPack, "cd34").status().code() == Code::kNotFound);
      REQUIRE(b->Size(FileType::kIndex, "cd34").status().code() == Code::kNotFound);
      REQUIRE(b->Load(FileType::kPack, "ab12", 990, 20).status().code() == Code::kCorruption);
      REQUIRE(b->Remove(FileType::kSnapshot, "ee").code() == Code::kNotFound);

      // Names that could escape the layout are refused.
      for (std::string bad : std::vector<std::string>{"", "../x", "a/b", "A", ".hidden", std::string(129, 'a'), "x\n"}) {
        REQUIRE(b->Save(FileType::kIndex, bad, data).code() == Code::kInvalidArgument);
        REQUIRE(b->Load(FileType::kIndex, bad).status().code() == Code::kInvalidArgument);
      }

      // The config is one file whatever its name.
      REQUIRE(b->Save(FileType::kConfig, "", AsBytes("cfg")).ok());
      REQUIRE(AsString(*b->Load(FileType::kConfig, "ignored")) == "cfg");
      REQUIRE(b->Create().code() == Code::kAlreadyExists);

      // List sees each type separately and exactly once.
      REQUIRE(b->Save(FileType::kIndex, "0011", AsBytes("i")).ok());
      REQUIRE(b->Save(FileType::kKey, "0011", AsBytes("k")).ok());
      REQUIRE(b->Save(FileType::kPack, "ff00", AsBytes("p")).ok());
      std::set<std::string> packs;
      REQUIRE(b->List(FileType::kPack, [&](const FileInfo& fi) {
                 REQUIRE(packs.insert(fi.name).second);
                 return Status::Ok();
               }).ok());
      REQUIRE(packs == std::set<std::string>{"ab12", "ff00"});
      int keys = 0;
      REQUIRE(b->List(FileType::kKey, [&](const FileInfo& fi) {
                 ++keys;
                 REQUIRE(fi.size == 1);
                 return Status::Ok();
               }).ok());
      REQUIRE(keys == 1);
      // An error from the callback stops the listing and is returned.
      REQUIRE(b->List(FileType::kPack, [](const FileInfo&) { return IOError("stop"); }).code() == Code::kIOError);

      // Remove.
      REQUIRE(b->Remove(FileType::kPack, "ff00").ok());
      REQUIRE(b->Size(FileType::kPack, "ff00").status().code() == Code::kNotFound);

      // The writer lock is exclusive and reports its holder; released on destruction.
      {
        auto l1 = b->LockWriter("holder-one");
        REQUIRE(l1.ok());
        auto l2 = b->LockWriter("holder-two");
        REQUIRE(l2.status().code() == Code::kBusy);
        REQUIRE(l2.status().message().find("holder-one") != std::string::npos);
      }
      REQUIRE(b->LockWriter("holder-three").ok());

      // Concurrent saves of different names all land.
      std::vector<std::thread> ts;
      for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&, t] {
          for (int i = 0; i < 20; ++i) {
            std::string n = "c" + std::to_string(t) + "x" + std::to_string(i);
            REQUIRE(b->Save(FileType::kSnapshot, n, test::RandomBytes(100, t * 100 + i)).ok());
          }
        });
      }
      for (auto& t : ts) t.join();
      int snaps = 0;
      REQUIRE(b->List(FileType::kSnapshot, [&](const FileInfo&) { ++snaps; return Status::Ok(); }).ok());
      REQUIRE(snaps == 80);
    }
  }
}

TEST_CASE("local backend lists no temporaries and removes stale ones under the lock", "[storage][backend]") {
  test::TempDir dir;
  auto b = NewLocalBackend(dir.path() + "/repo");
  REQUIRE(b->Create().ok());
  std::string tmp = dir.path() + "/repo/index/.tmp-deadbeef";
  REQUIRE(WriteFileAtomic(tmp, AsBytes("partial")).ok());
  int n = 0;
  REQUIRE(b->List(FileType::kIndex, [&](const FileInfo&) { ++n; return Status::Ok(); }).ok());
  REQUIRE(n == 0);
  REQUIRE(b->RemoveStaleTemporaries().ok());
  REQUIRE(::access(tmp.c_str(), F_OK) != 0);
}

TEST_CASE("local backend refuses a non-empty directory that is not a repository", "[storage][backend]") {
  test::TempDir dir;
  REQUIRE(WriteFileAtomic(dir.path() + "/precious.txt", AsBytes("keep me")).ok());
  auto b = NewLocalBackend(dir.path());
  REQUIRE(b->Create().code() == Code::kInvalidArgument);
  REQUIRE(AsString(*ReadFile(dir.path() + "/precious.txt")) == "keep me");
}

TEST_CASE("local lock is released when the holding process dies", "[storage][backend]") {
  test::TempDir dir;
  std::string root = dir.path() + "/repo";
  REQUIRE(NewLocalBackend(root)->Create().ok());
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    auto b = NewLocalBackend(root);
    auto l = b->LockWriter("child");
    char c = l.ok() ? 'y' : 'n';
    (void)!::write(pipefd[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  REQUIRE(::read(pipefd[0], &c, 1) == 1);
  REQUIRE(c == 'y');
  auto b = NewLocalBackend(root);
  REQUIRE(b->LockWriter("parent").status().code() == Code::kBusy);
  ::kill(pid, SIGKILL);
  int status;
  ::waitpid(pid, &status, 0);
  REQUIRE(b->LockWriter("parent").ok());
}
