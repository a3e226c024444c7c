// Forget and holds through custosd (issue 6): the appliance owns the
// repository (and its writer lock), so `custos --data-dir DIR forget|hold`
// goes over the control socket to the same handler as the local CLI.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;

namespace {

std::vector<std::string> ApplianceSnapshots(const Appliance& a) {
  RunResult r = a.Repo("--json snapshots");
  REQUIRE_EXIT(r, 0);
  std::vector<std::string> ids;  // oldest first
  for (const auto& s : json::parse(r.out)) ids.push_back(s["id"]);
  return ids;
}

}  // namespace

TEST_CASE("appliance forget: custosd applies the policy, spares held snapshots, refuses an empty policy",
          "[appliance][retention]") {
  test::TempDir work;
  Appliance a(work.path());
  auto db01 = StartAgent(a, work.path(), "db01");
  std::string src = work.path() + "/server";
  test::Run("mkdir -p " + Q(src) + " && echo hello > " + Q(src + "/f"));
  for (int i = 0; i < 3; ++i) {
    test::Run("echo " + std::to_string(i) + " >> " + Q(src + "/f"));
    RunResult b = Cli(a.data, "backup --agent db01 " + Q(src));
    INFO(Slurp(a.daemon->err));
    REQUIRE_EXIT(b, 0);
  }
  std::vector<std::string> s = ApplianceSnapshots(a);
  REQUIRE(s.size() == 3);

  // An empty policy: usage, from the CLI's own check and from custosd's.
  REQUIRE_EXIT(Cli(a.data, "forget --host db01"), 2);
  RunResult bad_zone = Cli(a.data, "forget --keep-last 1 --timezone Mars/Base");
  REQUIRE_EXIT(bad_zone, 2);
  CHECK(Contains(bad_zone.err, "Mars/Base"));

  // A hold through custosd (it holds the writer lock).
  RunResult hold = Cli(a.data, "--json hold add " + s[0].substr(0, 12) + " --reason 'case 12' --case C-12");
  REQUIRE_EXIT(hold, 0);
  CHECK(json::parse(hold.out)["snapshot"] == s[0]);
  // The local CLI can read the holds without the lock, but not add one.
  RunResult local_list = a.Repo("--json hold list");
  REQUIRE_EXIT(local_list, 0);
  CHECK(json::parse(local_list.out)["holds"].size() == 1);
  REQUIRE_EXIT(a.Repo("hold add " + s[1] + " --reason x"), 11);

  RunResult dry = Cli(a.data, "--json forget --keep-last 1 --host db01 --dry-run");
  REQUIRE_EXIT(dry, 0);
  json d = json::parse(dry.out);
  CHECK(d["removed"] == 1);
  REQUIRE(d["groups"].size() == 1);
  CHECK(d["groups"][0]["host"] == "db01");
  CHECK(d["groups"][0]["remove"][0]["id"] == s[1]);
  CHECK(ApplianceSnapshots(a).size() == 3);

  RunResult real = Cli(a.data, "--json forget --keep-last 1 --host db01");
  REQUIRE_EXIT(real, 0);
  json r = json::parse(real.out);
  CHECK(r["removed"] == 1);
  std::map<std::string, json> kept;
  for (const auto& k : r["groups"][0]["keep"]) kept[k["id"]] = k["reasons"];
  CHECK(kept[s[2]] == json::array({"last 1"}));
  CHECK(kept[s[0]] == json::array({"held"}));
  CHECK(ApplianceSnapshots(a) == std::vector<std::string>{s[0], s[2]});

  // Released through custosd, then forgotten; the repository checks clean.
  std::string hold_id = json::parse(hold.out)["id"];
  REQUIRE_EXIT(Cli(a.data, "hold release " + hold_id.substr(0, 8) + " --reason done"), 0);
  REQUIRE_EXIT(Cli(a.data, "forget --keep-last 1"), 0);
  CHECK(ApplianceSnapshots(a) == std::vector<std::string>{s[2]});
  RunResult check = a.Repo("check");
  INFO(check.out << check.err);
  REQUIRE_EXIT(check, 0);

  // No custosd there: 13.
  REQUIRE_EXIT(Cli(work.path() + "/nowhere", "forget --keep-last 1"), 13);
}
