#include "scheduler/alerts.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>

#include "tests/scheduler/alert_sinks.h"
#include "tests/snapshot/tree_fixture.h"
#include "tests/test_util.h"

namespace custos::scheduler {
namespace {

using alerttest::HttpSink;
using alerttest::SmtpSink;
using alerttest::WaitUntil;
using nlohmann::json;

bool Has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Alert Sample() {
  Alert a;
  a.kind = AlertKind::kJobFailed;
  a.agent = "db01";
  a.job = "j-0123456789ab";
  a.time = "2026-11-27T02:00:05Z";
  a.summary = "backup of db01 failed: the agent did not come back within 600 s";
  a.detail = "Job j-0123456789ab ended failed.\nPaths:   /srv, /etc";
  a.appliance = "custos-hq";
  a.endpoint = "tcp://10.0.0.5:7468";
  return a;
}

// The header block of a message, and one header's value.
std::string Header(const std::string& mail, const std::string& name) {
  std::string head = mail.substr(0, mail.find("\r\n\r\n") + 2);
  size_t at = head.find("\r\n" + name + ": ");
  if (head.rfind(name + ": ", 0) == 0) at = 0;
  else if (at == std::string::npos) return "";
  else at += 2;
  size_t start = at + name.size() + 2, end = head.find("\r\n", start);
  // Unfold continuation lines.
  while (end + 2 < head.size() && head[end + 2] == ' ') end = head.find("\r\n", end + 2);
  return head.substr(start, end - start);
}

// A fast policy for tests: 3 tries, 100 ms apart.
DeliveryPolicy Fast() {
  DeliveryPolicy p;
  p.first_backoff = std::chrono::milliseconds(100);
  return p;
}

TEST_CASE("alert kinds have stable names that parse back", "[alerts]") {
  for (int i = 0; i < kAlertKinds; ++i) REQUIRE(ParseAlertKind(AlertKindName(AlertKind(i))) == AlertKind(i));
  REQUIRE(std::string(AlertKindName(AlertKind::kScrubDamage)) == "scrub-damage");
  REQUIRE(std::string(AlertKindName(AlertKind::kDrillFailed)) == "drill-failed");
  REQUIRE_FALSE(ParseAlertKind("job_failed"));
  AlertConfig c;
  REQUIRE(c.Wants(AlertKind::kSlotMissed));
  c.on = {AlertKind::kJobFailed};
  REQUIRE(c.Wants(AlertKind::kJobFailed));
  REQUIRE_FALSE(c.Wants(AlertKind::kJobPartial));
  REQUIRE(c.Wants(AlertKind::kTest));  // asked for explicitly: always sent
}

TEST_CASE("alert JSON carries every field, bytes that are not UTF-8 become \\xNN", "[alerts]") {
  json j = json::parse(AlertJson(Sample()));
  REQUIRE(j["type"] == "custos.alert");
  REQUIRE(j["version"] == 1);
  REQUIRE(j["kind"] == "job-failed");
  REQUIRE(j["agent"] == "db01");
  REQUIRE(j["job"] == "j-0123456789ab");
  REQUIRE(j["time"] == "2026-11-27T02:00:05Z");
  REQUIRE(j["summary"] == Sample().summary);
  REQUIRE(j["detail"] == Sample().detail);
  REQUIRE(j["appliance"]["name"] == "custos-hq");
  REQUIRE(j["appliance"]["endpoint"] == "tcp://10.0.0.5:7468");

  Alert a = Sample();
  a.detail = std::string("/srv/caf\xe9.txt: unreadable; /srv/\xc3\xa9t\xc3\xa9 ok; ") + "\xf0\x9f\x92\xbe";
  a.agent = "db\xff";
  std::string body = AlertJson(a);
  json k = json::parse(body);  // valid JSON, valid UTF-8
  REQUIRE(k["detail"] == "/srv/caf\\xe9.txt: unreadable; /srv/\xc3\xa9t\xc3\xa9 ok; \xf0\x9f\x92\xbe");
  REQUIRE(k["agent"] == "db\\xff");
}

TEST_CASE("alert email: RFC 5322 headers, CRLF lines, encoded subject, no header injection", "[alerts]") {
  Alert a = Sample();
  std::string m = AlertEmail(a, "custos@example.org", {"ops@example.org", "it@example.org"});
  // Every line ends in CRLF; no bare LF or CR.
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') REQUIRE((i > 0 && m[i - 1] == '\r'));
    if (m[i] == '\r') REQUIRE((i + 1 < m.size() && m[i + 1] == '\n'));
  }
  REQUIRE(m.substr(m.size() - 2) == "\r\n");
  REQUIRE(Header(m, "From") == "custosd <custos@example.org>");
  REQUIRE(Header(m, "To") == "ops@example.org, it@example.org");
  REQUIRE(Header(m, "Subject") == "[custos] job-failed: " + a.summary);
  REQUIRE(Header(m, "Date") == "Fri, 27 Nov 2026 02:00:05 +0000");
  std::string id = Header(m, "Message-ID");
  REQUIRE(id.front() == '<');
  REQUIRE(Has(id, "@custos-hq>"));
  REQUIRE(Header(m, "MIME-Version") == "1.0");
  REQUIRE(Header(m, "Content-Type") == "text/plain; charset=utf-8");
  REQUIRE(Header(m, "Auto-Submitted") == "auto-generated");
  REQUIRE(Header(m, "X-Custos-Alert") == "job-failed");
  std::string body = m.substr(m.find("\r\n\r\n") + 4);
  REQUIRE(body.rfind(a.summary + "\r\n", 0) == 0);
  REQUIRE(Has(body, "Agent:     db01\r\n"));
  REQUIRE(Has(body, "Job:       j-0123456789ab\r\n"));
  REQUIRE(Has(body, "Appliance: custos-hq (tcp://10.0.0.5:7468)\r\n"));
  REQUIRE(Has(body, "Paths:   /srv, /etc\r\n"));
  // Two messages never share a Message-ID.
  REQUIRE(Header(AlertEmail(a, "custos@example.org", {"ops@example.org"}), "Message-ID") != id);

  SECTION("a name with CR LF cannot add a header") {
    a.summary = "backup of x\r\nBcc: evil@example.org";
    std::string e = AlertEmail(a, "custos@example.org", {"ops@example.org"});
    REQUIRE(Header(e, "Bcc").empty());
    REQUIRE(Has(Header(e, "Subject"), "x\\x0d\\x0aBcc"));
  }
  SECTION("a subject that is not ASCII is RFC 2047 encoded, in words of at most 75 characters") {
    a.summary = "sao l\xc6\xb0u c\xe1\xbb\xa7\x61 m\xc3\xa1y ch\xe1\xbb\xa7 db01 th\xe1\xba\xa5t b\xe1\xba\xa1i v\xc3\xac \xe1\xbb\x95 \xc4\x91\xc4\xa9\x61 h\xe1\xbb\x8fng";
    std::string e = AlertEmail(a, "custos@example.org", {"ops@example.org"});
    std::string subject = Header(e, "Subject");
    REQUIRE(subject.rfind("=?UTF-8?B?", 0) == 0);
    std::string decoded;
    size_t pos = 0;
    while ((pos = subject.find("=?UTF-8?B?", pos)) != std::string::npos) {
      size_t end = subject.find("?=", pos + 10);
      REQUIRE(end - pos + 2 <= 75);
      auto bytes = Base64Decode(subject.substr(pos + 10, end - pos - 10));
      REQUIRE(bytes);
      REQUIRE(IsValidUtf8(std::string(bytes->begin(), bytes->end())));  // whole characters per word
      decoded += std::string(bytes->begin(), bytes->end());
      pos = end + 2;
    }
    REQUIRE(decoded == "[custos] job-failed: " + a.summary);
  }
  SECTION("the body is UTF-8 with bad bytes escaped, long lines broken under 998 octets") {
    a.detail = std::string("caf\xe9\n") + std::string(3000, 'x') + "\n.\nend";
    std::string e = AlertEmail(a, "custos@example.org", {"ops@example.org"});
    REQUIRE(IsValidUtf8(e));
    REQUIRE(Has(e, "caf\\xe9\r\n"));
    size_t start = 0;
    while (start < e.size()) {
      size_t nl = e.find("\r\n", start);
      REQUIRE(nl - start <= 998);
      start = nl + 2;
    }
    REQUIRE(Has(e, "\r\n.\r\nend\r\n"));  // a lone dot stays: dot-stuffing is the SMTP client's job
  }
}

TEST_CASE("alert config: bad schemes, credentials in URLs and missing mail settings are refused", "[alerts]") {
  test::TempDir work;
  auto refused = [](const AlertConfig& c, const std::string& part) {
    Status st = ValidateAlertConfig(c);
    INFO(st.ToString());
    REQUIRE(st.code() == Code::kInvalidArgument);
    REQUIRE(Has(st.message(), part));
  };
  AlertConfig none;
  REQUIRE(ValidateAlertConfig(none).ok());
  AlertConfig w;
  w.webhook_url = "ftp://example.org/x";
  refused(w, "webhook_url must start with http");
  w.webhook_url = "https://user:pw@example.org/x";
  refused(w, "must not hold credentials");
  w.webhook_url = "https://example.org/hooks/SECRET";
  w.webhook_header = "Authorization Bearer SECRET";
  refused(w, "webhook_header");
  REQUIRE_FALSE(Has(ValidateAlertConfig(w).message(), "SECRET"));
  w.webhook_header = "Authorization: Bearer SECRET";
  REQUIRE(ValidateAlertConfig(w).ok());
  w.webhook_token_file = work.path() + "/missing.token";
  refused(w, "webhook_token_file");

  AlertConfig m;
  m.smtp_url = "smtp://mail.example.org:587";
  refused(m, "needs mail_from");
  m.mail_from = "custos@example.org";
  refused(m, "needs mail_to");
  m.mail_to = {"ops@example.org", "not an address"};
  refused(m, "not a plain address");
  m.mail_to = {"ops@example.org"};
  REQUIRE(ValidateAlertConfig(m).ok());
  m.smtp_user = "custos";
  refused(m, "smtp_user needs smtp_password_file");
  m.smtp_password_file = work.path() + "/smtp.pass";
  refused(m, "needs smtps:// or smtp_starttls");  // no password in the clear
  m.smtp_starttls = true;
  refused(m, "smtp_password_file");  // missing
  test::WriteString(m.smtp_password_file, "hunter2\n");
  REQUIRE(ValidateAlertConfig(m).ok());
  m.smtp_starttls = false;
  m.smtp_url = "http://mail.example.org";
  refused(m, "smtp_url must start with smtp");
  m.smtp_url = "smtps://mail.example.org";
  m.smtp_starttls = true;
  refused(m, "smtp_starttls is for smtp://");
  AlertConfig orphan;
  orphan.mail_to = {"ops@example.org"};
  refused(orphan, "need smtp_url");
}

TEST_CASE("webhook: an HTTP POST of the alert's JSON with the configured token", "[alerts]") {
  test::TempDir work;
  HttpSink sink;
  AlertConfig c;
  c.webhook_url = sink.url("/hooks/custos?x=1");
  c.webhook_token_file = work.path() + "/token";
  test::WriteString(c.webhook_token_file, "t0ken-123\n");
  auto results = Deliver(c, Sample(), Fast());
  REQUIRE(results.size() == 1);
  INFO(results[0].status.ToString());
  REQUIRE(results[0].channel == "webhook");
  REQUIRE(results[0].status.ok());
  REQUIRE(results[0].tries == 1);
  auto reqs = sink.requests();
  REQUIRE(reqs.size() == 1);
  REQUIRE(reqs[0].method == "POST");
  REQUIRE(reqs[0].path == "/hooks/custos?x=1");
  REQUIRE(reqs[0].headers["content-type"] == "application/json");
  REQUIRE(reqs[0].headers["authorization"] == "Bearer t0ken-123");
  json j = json::parse(reqs[0].body);
  REQUIRE(j["kind"] == "job-failed");
  REQUIRE(j["job"] == "j-0123456789ab");
  REQUIRE(j["agent"] == "db01");

  SECTION("or any one header") {
    c.webhook_token_file.clear();
    c.webhook_header = "X-Api-Key: k3y";
    REQUIRE(Deliver(c, Sample(), Fast())[0].status.ok());
    REQUIRE(sink.requests().back().headers["x-api-key"] == "k3y");
    REQUIRE(sink.requests().back().headers.count("authorization") == 0);
  }
}

TEST_CASE("webhook: a non-2xx reply is retried, then reported without the URL's path", "[alerts]") {
  HttpSink sink;
  sink.set_status(500);
  AlertConfig c;
  c.webhook_url = sink.url("/hooks/SECRET-PATH");
  auto results = Deliver(c, Sample(), Fast());
  REQUIRE(results.size() == 1);
  REQUIRE_FALSE(results[0].status.ok());
  REQUIRE(results[0].tries == 3);
  REQUIRE(sink.count() == 3);
  REQUIRE(Has(results[0].status.message(), "HTTP 500"));
  REQUIRE(Has(results[0].status.message(), "127.0.0.1:"));
  REQUIRE_FALSE(Has(results[0].status.message(), "SECRET"));

  SECTION("a reply that recovers on a retry succeeds") {
    sink.set_status(503);
    std::thread fix([&] {
      WaitUntil([&] { return sink.count() >= 4; });
      sink.set_status(204);
    });
    auto again = Deliver(c, Sample(), Fast());
    fix.join();
    REQUIRE(again[0].status.ok());
    REQUIRE(again[0].tries >= 2);
  }
  SECTION("nobody listening is an error too") {
    AlertConfig dead;
    dead.webhook_url = "http://127.0.0.1:1/x";
    DeliveryPolicy once;
    once.tries = 1;
    auto r = Deliver(dead, Sample(), once);
    REQUIRE(r[0].status.code() == Code::kUnavailable);
  }
}

TEST_CASE("email: the envelope, headers and body reach an SMTP server", "[alerts]") {
  test::TempDir work;
  SmtpSink sink;
  AlertConfig c;
  c.smtp_url = sink.url();
  c.mail_from = "custos@example.org";
  c.mail_to = {"ops@example.org", "it@example.org"};
  Alert a = Sample();
  a.detail = "line one\n.\n..two dots\nlast";  // dot lines need stuffing on the wire
  auto results = Deliver(c, a, Fast());
  REQUIRE(results.size() == 1);
  INFO(results[0].status.ToString());
  REQUIRE(results[0].channel == "email");
  REQUIRE(results[0].status.ok());
  auto mails = sink.mails();
  REQUIRE(mails.size() == 1);
  REQUIRE(mails[0].from == "custos@example.org");
  REQUIRE(mails[0].rcpt == std::vector<std::string>{"ops@example.org", "it@example.org"});
  const std::string& m = mails[0].data;
  REQUIRE(Header(m, "Subject") == "[custos] job-failed: " + a.summary);
  REQUIRE(Header(m, "To") == "ops@example.org, it@example.org");
  REQUIRE(Has(m, "\r\nline one\r\n.\r\n..two dots\r\nlast\r\n"));  // intact after un-stuffing
  // curl stuffed them: "." went as "..", "..two" as "...two".
  auto& raw = mails[0].raw;
  REQUIRE(std::find(raw.begin(), raw.end(), "..") != raw.end());
  REQUIRE(std::find(raw.begin(), raw.end(), "...two dots") != raw.end());

  SECTION("with a user, curl logs in with the password file's first line") {
    // (Validation allows a user only over TLS; the mechanism is the same.)
    sink.offer_auth();
    c.smtp_user = "custos";
    c.smtp_password_file = work.path() + "/pw";
    test::WriteString(c.smtp_password_file, "hunter2\n");
    auto r = Deliver(c, a, Fast());
    std::string cmds;
    for (const auto& cmd : sink.commands()) cmds += cmd + "\n";
    INFO(r[0].status.ToString() << "\n" << cmds);
    REQUIRE(r[0].status.ok());
    std::string plain = std::string("\0custos\0hunter2", 15);
    bool logged_in = false;
    for (const auto& cmd : sink.commands()) {
      logged_in = logged_in || cmd == Base64Encode(AsBytes(plain)) || cmd == "AUTH PLAIN " + Base64Encode(AsBytes(plain));
    }
    REQUIRE(logged_in);
  }
  SECTION("smtp_starttls refuses a server that offers no STARTTLS") {
    c.smtp_starttls = true;
    DeliveryPolicy once;
    once.tries = 1;
    auto r = Deliver(c, a, once);
    REQUIRE_FALSE(r[0].status.ok());
    REQUIRE(sink.count() == 1);  // nothing sent in the clear
  }
}

TEST_CASE("alerter: Post does not wait for the network, kinds are filtered, a full queue drops the oldest",
          "[alerts]") {
  HttpSink sink;
  AlertConfig c;
  c.webhook_url = sink.url();
  c.on = {AlertKind::kJobFailed, AlertKind::kJobPartial};
  std::vector<std::string> log;
  std::mutex log_mu;
  auto logger = [&](const std::string& l) {
    std::lock_guard<std::mutex> g(log_mu);
    log.push_back(l);
  };
  {
    Alerter alerter(c, logger, Fast(), /*max_queue=*/64);
    Alert missed = Sample();
    missed.kind = AlertKind::kSlotMissed;
    alerter.Post(missed);  // not wanted
    alerter.Post(Sample());
    REQUIRE(WaitUntil([&] { return alerter.handled() == 1; }));
    REQUIRE(sink.count() == 1);
    REQUIRE(json::parse(sink.requests()[0].body)["kind"] == "job-failed");
  }
  SECTION("a storm against a dead endpoint: bounded queue, Post stays fast, stop keeps its deadline") {
    AlertConfig dead = c;
    dead.webhook_url = "http://127.0.0.1:1/x";
    DeliveryPolicy slow;
    slow.first_backoff = std::chrono::milliseconds(2000);
    Alerter alerter(dead, logger, slow, /*max_queue=*/4);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
      Alert a = Sample();
      a.job = "j-" + std::to_string(i);
      alerter.Post(a);
    }
    REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(500));
    auto t1 = std::chrono::steady_clock::now();
    alerter.Stop(std::chrono::milliseconds(300));
    REQUIRE(std::chrono::steady_clock::now() - t1 < std::chrono::seconds(2));
    std::lock_guard<std::mutex> g(log_mu);
    bool dropped = false, undelivered = false;
    for (const auto& l : log) {
      dropped = dropped || Has(l, "alert queue full");
      undelivered = undelivered || Has(l, "not delivered");
    }
    REQUIRE(dropped);
    REQUIRE(undelivered);
  }
}

}  // namespace
}  // namespace custos::scheduler
