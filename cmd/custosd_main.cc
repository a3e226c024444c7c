// custosd: the appliance daemon (appliance/server.h).
#include <CLI/CLI.hpp>
#include <signal.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstdio>

#include "appliance/server.h"
#include "scheduler/alerts.h"
#include "scheduler/calendar.h"
#include "scheduler/scheduler.h"
#include "base/crypto.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"

using namespace custos;

namespace {

// The [alerts] table into `out`; a message naming the key when it is unknown
// or mistyped (scheduler::ValidateAlertConfig checks the values).
std::string ParseAlerts(const toml::table& t, scheduler::AlertConfig* out) {
  auto strings = [](const toml::node& v, std::vector<std::string>* list) {
    if (v.is_string()) {
      list->push_back(*v.value<std::string>());
      return true;
    }
    if (!v.is_array()) return false;
    for (auto&& e : *v.as_array()) {
      if (!e.is_string()) return false;
      list->push_back(*e.value<std::string>());
    }
    return true;
  };
  for (auto&& [k, v] : t) {
    std::string key(k.str());
    std::string* str = key == "webhook_url"          ? &out->webhook_url
                       : key == "webhook_header"     ? &out->webhook_header
                       : key == "webhook_token_file" ? &out->webhook_token_file
                       : key == "smtp_url"           ? &out->smtp_url
                       : key == "smtp_user"          ? &out->smtp_user
                       : key == "smtp_password_file" ? &out->smtp_password_file
                       : key == "mail_from"          ? &out->mail_from
                       : key == "name"               ? &out->appliance_name
                                                     : nullptr;
    if (str && v.is_string()) {
      *str = *v.value<std::string>();
    } else if (key == "smtp_starttls" && v.is_boolean()) {
      out->smtp_starttls = *v.value<bool>();
    } else if (key == "timeout_s" && v.is_integer()) {
      out->timeout_s = int(std::clamp<int64_t>(*v.value<int64_t>(), 0, 100000));
    } else if (key == "mail_to") {
      if (!strings(v, &out->mail_to)) return "mail_to must be an address or an array of them";
    } else if (key == "on") {
      std::vector<std::string> kinds;
      if (!strings(v, &kinds)) return "on must be an array of alert kinds";
      for (const auto& name : kinds) {
        auto kind = scheduler::ParseAlertKind(name);
        if (!kind) {
          return "on: unknown alert kind '" + name +
                 "' (job-failed, job-partial, slot-missed, scrub-damage, drill-failed, test)";
        }
        out->on.push_back(*kind);
      }
      if (out->on.empty()) return "on: name at least one alert kind (or leave the key out: all)";
    } else {
      return "unknown or mistyped key '" + key + "'";
    }
  }
  return "";
}

appliance::Server* g_server = nullptr;
void OnSignal(int) {
  if (g_server) g_server->Stop();
}

}  // namespace

int main(int argc, char** argv) {
  CryptoInit();
  CLI::App app{"custosd: the Custos appliance daemon"};
  app.footer(R"(
custosd owns the repository and coordinates the agents. With no config it
serves on loopback (tcp://127.0.0.1:7468) with its data under
$CUSTOS_DATA_DIR or ~/.local/share/custos/appliance: the data directory holds
the appliance's CURVE key pair (appliance.key), the agent registry
(registry.db, SQLite: agents and job history), the control socket the custos
CLI talks to (control.sock; the directory is mode 0700, so only its owner
can) and, unless the config names another, the repository (repository/).
On first start custosd creates that repository with a random passphrase in
repository.pass and writes its recovery key to recovery-key.txt (both 0600):
store the recovery key offline, then delete the file. custosd holds the
repository's writer lock while it runs; the custos CLI can read it (restore,
ls, check) with --repo DATA/repository --password-file DATA/repository.pass.

CONFIG (TOML; every key optional, flags override):
  data_dir = "/var/lib/custos"
  listen = "tcp://0.0.0.0:7468"
  heartbeat_ms = 5000
  resume_window_s = 600    # how long a backup waits for its agent to reconnect
  timezone = "Asia/Ho_Chi_Minh"   # of schedules that name none (default: the system's)
  per_agent_jobs = 1       # jobs at once per agent

  [[schedule]]             # as many as needed; also: custos schedule add
  agent = "db01"
  paths = ["/srv", "/etc"]
  calendar = "daily 02:00" # cron "M H DOM MON DOW", or hourly [:MM],
                           # daily HH:MM, weekly DAY HH:MM, monthly DAY HH:MM
  jitter_s = 900           # start within 15 minutes of the time (fixed per night)
  retries = 3              # a failed job is retried with backoff before the next slot

  [[schedule]]             # the rolling scrub: 1/30 of the packs read each night
  job = "verify"
  calendar = "daily 05:00"
  scrub_parts = 30

  [[schedule]]             # a weekly restore drill of db01's newest snapshot
  job = "drill"
  agent = "db01"
  calendar = "weekly sun 06:00"
  drill_sample = 1000      # files restored and verified (0: all)

  [[schedule]]             # db01's retention, applied by the appliance each night
  job = "forget"
  agent = "db01"
  calendar = "daily 04:00"
  keep_daily = 7           # also keep_last, keep_hourly, keep_weekly, keep_monthly,
  keep_weekly = 5          # keep_yearly, keep_within = "30d" (as custos forget)
  repository = "/srv/custos/repository"      # default: DATA_DIR/repository
  password_file = "/etc/custos/repository.pass"  # default: DATA_DIR/repository.pass

  [alerts]                 # a failed or partial job, a missed slot (scrub
                           # damage, failed drills once they exist)
  webhook_url = "https://hooks.example.org/custos"   # POST of JSON (doc/formats/alerts.md)
  webhook_token_file = "/etc/custos/webhook.token"   # sends Authorization: Bearer LINE1
  # webhook_header = "X-Api-Key: ..."                # or any one header
  smtp_url = "smtp://mail.example.org:587"           # or smtps://HOST:465
  smtp_starttls = true     # refuse to send if the server offers no STARTTLS
  smtp_user = "custos"     # with smtp_password_file (its first line)
  smtp_password_file = "/etc/custos/smtp.pass"
  mail_from = "custos@example.org"
  mail_to = ["ops@example.org", "it@example.org"]
  on = ["job-failed", "job-partial", "slot-missed", "scrub-damage", "drill-failed"]  # default: all these
  timeout_s = 10           # per attempt; 3 attempts per channel
  name = "custos-hq"       # the appliance's name in alerts (default: host name)
  Check it with: custos alerts test

  [evidence]               # incident cases (custos case ...)
  tsa_url = "http://tsa.example.org/tsr"   # RFC 3161 timestamps on checkpoints
  tsa_ca_file = "/etc/custos/tsa-ca.pem"  # verifies the authority's tokens

Backups survive restarts: on SIGINT or SIGTERM custosd flushes the repository
and saves each running backup's state (DATA_DIR/jobs/), and the next custosd
lets the agents continue where they stopped; after a crash they back up again
within the same job. A backup whose agent goes silent waits resume_window_s
(--resume-window) for it to reconnect.

SIGINT and SIGTERM stop it cleanly (alerts still queued get up to 10 s).
Exit codes: 0 stopped, 1 error, 2 usage or a bad config (an unknown key, a
bad [alerts] URL or address, an unreadable secret file), 11 another custosd
serves this data directory.)");
  std::string config, data_dir, listen;
  int heartbeat_ms = 0, resume_window_s = -1;
  app.add_option("-c,--config", config, "TOML config file");
  app.add_option("--data-dir", data_dir, "Data directory (overrides the config)");
  app.add_option("--listen", listen, "Agent endpoint, e.g. tcp://0.0.0.0:7468 (port 0: any free port)");
  app.add_option("--heartbeat-ms", heartbeat_ms, "Heartbeat interval in ms (default 5000)")->check(CLI::Range(100, 600000));
  app.add_option("--resume-window", resume_window_s,
                 "Seconds a backup waits for its agent to reconnect and resume it (default 600)")
      ->check(CLI::Range(0, 86400));
  app.set_version_flag("--version", std::string("custosd ") + cli::kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  }
  appliance::ServerOptions o;
  o.data_dir = appliance::DefaultDataDir();
  if (!config.empty()) {
    try {
      toml::table t = toml::parse_file(config);
      if (auto v = t["data_dir"].value<std::string>()) o.data_dir = *v;
      if (auto v = t["listen"].value<std::string>()) o.listen = *v;
      if (auto v = t["heartbeat_ms"].value<int64_t>()) o.heartbeat_ms = int(*v);
      if (auto v = t["repository"].value<std::string>()) o.repository = *v;
      if (auto v = t["password_file"].value<std::string>()) o.password_file = *v;
      if (auto v = t["resume_window_s"].value<int64_t>()) o.resume_window_s = int(std::clamp<int64_t>(*v, 0, 86400));
      if (auto v = t["timezone"].value<std::string>()) o.timezone = *v;
      if (auto v = t["per_agent_jobs"].value<int64_t>()) o.per_agent_jobs = int(std::clamp<int64_t>(*v, 1, 16));
      if (!o.timezone.empty() && !scheduler::IsKnownZone(o.timezone)) {
        std::fprintf(stderr, "custosd: %s: unknown timezone '%s'\n", config.c_str(), o.timezone.c_str());
        return cli::kExitUsage;
      }
      if (auto* list = t["schedule"].as_array()) {
        for (auto&& item : *list) {
          auto* e = item.as_table();
          scheduler::Schedule sc;
          sc.calendar.clear();  // required
          sc.zone.clear();      // default below
          std::string bad;
          if (!e) bad = "not a table";
          for (auto&& [k, v] : e ? *e : toml::table{}) {
            std::string key(k.str());
            if (key == "agent" && v.is_string()) sc.agent = *v.value<std::string>();
            else if (key == "calendar" && v.is_string()) sc.calendar = *v.value<std::string>();
            else if (key == "timezone" && v.is_string()) sc.zone = *v.value<std::string>();
            else if (key == "job" && v.is_string()) sc.job = *v.value<std::string>();
            else if (key == "jitter_s" && v.is_integer()) sc.jitter_s = int(*v.value<int64_t>());
            else if (key == "retries" && v.is_integer()) sc.max_retries = int(*v.value<int64_t>());
            else if (key == "scrub_parts" && v.is_integer()) sc.scrub_parts = int(*v.value<int64_t>());
            else if (key == "drill_sample" && v.is_integer()) sc.drill_sample = uint64_t(*v.value<int64_t>());
            else if (key == "keep_last" && v.is_integer()) sc.retention.keep_last = int(*v.value<int64_t>());
            else if (key == "keep_hourly" && v.is_integer()) sc.retention.keep_hourly = int(*v.value<int64_t>());
            else if (key == "keep_daily" && v.is_integer()) sc.retention.keep_daily = int(*v.value<int64_t>());
            else if (key == "keep_weekly" && v.is_integer()) sc.retention.keep_weekly = int(*v.value<int64_t>());
            else if (key == "keep_monthly" && v.is_integer()) sc.retention.keep_monthly = int(*v.value<int64_t>());
            else if (key == "keep_yearly" && v.is_integer()) sc.retention.keep_yearly = int(*v.value<int64_t>());
            else if (key == "keep_within" && v.is_string()) {
              auto d = scheduler::ParseRetentionDuration(*v.value<std::string>());
              if (d.ok()) sc.retention.keep_within = *d;
              else bad = d.status().message();
            }
            else if (key == "paths" && v.is_array()) {
              for (auto&& p : *v.as_array()) {
                if (p.is_string()) sc.paths.push_back(*p.value<std::string>());
                else bad = "paths must be strings";
              }
            } else {
              bad = "unknown or mistyped key '" + key + "'";
            }
          }
          if (sc.zone.empty()) sc.zone = o.timezone.empty() ? scheduler::SystemZone() : o.timezone;
          Status st = bad.empty() ? scheduler::ValidateSchedule(sc) : InvalidArgumentError(bad);
          if (!st.ok()) {
            std::fprintf(stderr, "custosd: %s: schedule %zu: %s\n", config.c_str(), o.schedules.size() + 1,
                         st.message().c_str());
            return cli::kExitUsage;
          }
          sc.id = appliance::ConfigScheduleId(sc);
          o.schedules.push_back(std::move(sc));
        }
      }
      if (auto* alerts = t["alerts"].as_table()) {
        std::string bad = ParseAlerts(*alerts, &o.alerts);
        Status st = bad.empty() ? scheduler::ValidateAlertConfig(o.alerts) : InvalidArgumentError("[alerts] " + bad);
        if (!st.ok()) {
          std::fprintf(stderr, "custosd: %s: %s\n", config.c_str(), st.message().c_str());
          return cli::kExitUsage;
        }
      } else if (t.contains("alerts")) {
        std::fprintf(stderr, "custosd: %s: alerts must be a table ([alerts])\n", config.c_str());
        return cli::kExitUsage;
      }
      if (auto* ev = t["evidence"].as_table()) {
        for (auto&& [k, v] : *ev) {
          auto* str = v.as_string();
          if ((k != "tsa_url" && k != "tsa_ca_file") || !str) {
            std::fprintf(stderr, "custosd: %s: [evidence] unknown or mistyped key '%s' (tsa_url, tsa_ca_file)\n",
                         config.c_str(), std::string(k.str()).c_str());
            return cli::kExitUsage;
          }
          (k == "tsa_url" ? o.tsa_url : o.tsa_ca_file) = str->get();
        }
      } else if (t.contains("evidence")) {
        std::fprintf(stderr, "custosd: %s: evidence must be a table ([evidence])\n", config.c_str());
        return cli::kExitUsage;
      }
      for (auto&& [k, v] : t) {
        if (k != "data_dir" && k != "listen" && k != "heartbeat_ms" && k != "repository" && k != "password_file" &&
            k != "resume_window_s" && k != "timezone" && k != "per_agent_jobs" && k != "schedule" && k != "alerts" &&
            k != "evidence") {
          std::fprintf(stderr, "custosd: %s: unknown key '%s'\n", config.c_str(), std::string(k.str()).c_str());
          return cli::kExitUsage;
        }
      }
    } catch (const toml::parse_error& e) {
      std::fprintf(stderr, "custosd: %s: %s (line %u)\n", config.c_str(), std::string(e.description()).c_str(),
                   unsigned(e.source().begin.line));
      return cli::kExitUsage;
    }
  }
  if (!data_dir.empty()) o.data_dir = data_dir;
  if (!listen.empty()) o.listen = listen;
  if (heartbeat_ms) o.heartbeat_ms = heartbeat_ms;
  if (resume_window_s >= 0) o.resume_window_s = resume_window_s;
  auto server = appliance::Server::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "custosd: %s\n", server.status().ToString().c_str());
    return cli::ExitCodeFor(server.status());
  }
  g_server = server->get();
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::printf("custosd listening on %s\n", (*server)->endpoint().c_str());
  std::fflush(stdout);
  Status st = (*server)->Run();
  if (!st.ok()) {
    std::fprintf(stderr, "custosd: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
