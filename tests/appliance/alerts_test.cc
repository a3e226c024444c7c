// Alerts from a real custosd (issue 6): a partial backup makes exactly one
// webhook POST and one email; `custos alerts test` reports each channel;
// a bad [alerts] table stops custosd at start with exit 2.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <string>
#include <thread>

#include "tests/appliance/appliance_fixture.h"
#include "tests/cli/cli_fixture.h"
#include "tests/scheduler/alert_sinks.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

using nlohmann::json;
using namespace custos;
using namespace custos::clitest;
using namespace custos::appliancetest;
using alerttest::HttpSink;
using alerttest::SmtpSink;
using alerttest::WaitUntil;

namespace {

// A config whose [alerts] point at the sinks.
std::string AlertsConfig(const std::string& dir, const HttpSink& web, const SmtpSink& mail,
                         const std::string& extra = "") {
  test::WriteString(dir + "/webhook.token", "s3cret-token\n");
  std::string path = dir + "/custosd.toml";
  test::WriteString(path, "[alerts]\n"
                          "webhook_url = \"" + web.url("/hooks/custos") + "\"\n"
                          "webhook_token_file = \"" + dir + "/webhook.token\"\n"
                          "smtp_url = \"" + mail.url() + "\"\n"
                          "mail_from = \"custos@example.org\"\n"
                          "mail_to = [\"ops@example.org\", \"it@example.org\"]\n"
                          "name = \"custos-test\"\n"
                          "timeout_s = 5\n" + extra);
  return path;
}

}  // namespace

TEST_CASE("alerts: a partial backup sends exactly one webhook POST and one email", "[appliance][alerts]") {
  test::TempDir work;
  HttpSink web;
  SmtpSink mail;
  Appliance a(work.path(), 300, 600, AlertsConfig(work.path(), web, mail));
  auto agent = StartAgent(a, work.path(), "web01");
  std::string src = work.path() + "/server";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  test::WriteString(src + "/index.html", "hello");
  RunResult b = Cli(a.data, "--json backup --agent web01 " + Q(src) + " " + Q(work.path() + "/does-not-exist"));
  INFO(b.out << b.err << Slurp(a.daemon->err));
  REQUIRE_EXIT(b, 3);
  std::string out = b.out.substr(0, b.out.find_last_not_of('\n') + 1);
  std::string job = json::parse(out.substr(out.rfind('\n') + 1))["id"];
  REQUIRE(WaitUntil([&] { return web.count() >= 1 && mail.count() >= 1; }));
  // Nothing more comes (the job's end is the one place it is alerted).
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  REQUIRE(web.count() == 1);
  REQUIRE(mail.count() == 1);

  auto req = web.requests()[0];
  REQUIRE(req.method == "POST");
  REQUIRE(req.path == "/hooks/custos");
  REQUIRE(req.headers["content-type"] == "application/json");
  REQUIRE(req.headers["authorization"] == "Bearer s3cret-token");
  json body = json::parse(req.body);
  REQUIRE(body["kind"] == "job-partial");
  REQUIRE(body["agent"] == "web01");
  REQUIRE(body["job"] == job);
  REQUIRE(Contains(body["summary"].get<std::string>(), "backup of web01 is partial"));
  REQUIRE(Contains(body["detail"].get<std::string>(), src));
  REQUIRE(body["appliance"]["name"] == "custos-test");
  REQUIRE(body["appliance"]["endpoint"] == a.endpoint);

  auto m = mail.mails()[0];
  REQUIRE(m.from == "custos@example.org");
  REQUIRE(m.rcpt == std::vector<std::string>{"ops@example.org", "it@example.org"});
  REQUIRE(Contains(m.data, "Subject: [custos] job-partial: backup of web01 is partial"));
  REQUIRE(Contains(m.data, "X-Custos-Alert: job-partial\r\n"));
  REQUIRE(Contains(m.data, "Job:       " + job + "\r\n"));
  // The token never reaches the log.
  REQUIRE_FALSE(Contains(Slurp(a.daemon->err), "s3cret"));
}

TEST_CASE("alerts: custos alerts test reports each channel, exit 0, 1, 13", "[appliance][alerts]") {
  test::TempDir work;
  HttpSink web;
  SmtpSink mail;
  RunResult none = Cli(work.path() + "/nothing", "alerts test");
  REQUIRE_EXIT(none, 13);
  Appliance a(work.path(), 300, 600, AlertsConfig(work.path(), web, mail, "on = [\"job-failed\"]\n"));
  RunResult t = Cli(a.data, "--json alerts test");
  INFO(t.out << t.err << Slurp(a.daemon->err));
  REQUIRE_EXIT(t, 0);
  json j = json::parse(t.out);
  REQUIRE(j["delivered"] == true);
  REQUIRE(j["channels"].size() == 2);
  REQUIRE(j["channels"][0]["channel"] == "webhook");
  REQUIRE(j["channels"][1]["channel"] == "email");
  REQUIRE(web.count() == 1);
  REQUIRE(json::parse(web.requests()[0].body)["kind"] == "test");
  REQUIRE(mail.count() == 1);
  REQUIRE(Contains(mail.mails()[0].data, "Subject: [custos] test: "));

  web.set_status(500);
  RunResult bad = Cli(a.data, "alerts test");
  INFO(bad.out << bad.err);
  REQUIRE_EXIT(bad, 1);
  REQUIRE(Contains(bad.out, "webhook  FAILED: "));
  REQUIRE(Contains(bad.out, "HTTP 500"));
  REQUIRE(Contains(bad.out, "email    delivered"));
  REQUIRE(web.count() == 2);  // one try each for the test
  // custosd served other requests after it.
  REQUIRE_EXIT(Cli(a.data, "status"), 0);
}

TEST_CASE("alerts: a bad [alerts] table stops custosd at start with exit 2", "[appliance][alerts]") {
  test::TempDir work;
  auto start = [&](const std::string& toml) {
    std::string path = work.path() + "/bad.toml";
    test::WriteString(path, toml);
    return test::Run(kBin + "/custosd --data-dir " + Q(work.path() + "/appliance") + " --listen tcp://127.0.0.1:0 --config " +
                     Q(path));
  };
  struct Case {
    std::string toml, message;
  } cases[] = {
      {"[alerts]\nwebhook_url = \"ftp://example.org/\"\n", "webhook_url must start with http"},
      {"[alerts]\nsmtp_url = \"smtp://127.0.0.1:25\"\nmail_to = [\"ops@example.org\"]\n", "needs mail_from"},
      {"[alerts]\nsmtp_url = \"smtp://127.0.0.1:25\"\nmail_from = \"a@b\"\nmail_to = [\"ops@example.org\"]\n"
       "smtp_starttls = true\nsmtp_user = \"u\"\nsmtp_password_file = \"/nonexistent/pw\"\n",
       "smtp_password_file"},
      {"[alerts]\nwebhook_url = \"https://x.example/\"\nwebhook_header = \"Bearer TOPSECRET\"\n", "webhook_header"},
      {"[alerts]\nwebhook_url = \"https://x.example/\"\non = [\"job-failed\", \"everything\"]\n", "unknown alert kind"},
      {"[alerts]\nwebhook = \"https://x.example/\"\n", "unknown or mistyped key 'webhook'"},
  };
  for (const auto& c : cases) {
    RunResult r = start(c.toml);
    INFO(c.toml << "\n" << r.err);
    REQUIRE_EXIT(r, 2);
    REQUIRE(Contains(r.err, c.message));
    REQUIRE_FALSE(Contains(r.err, "TOPSECRET"));
  }
}
