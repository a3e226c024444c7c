// custos forget, custos hold add|list|release: on a local repository
// (--repo) or through custosd (--data-dir), both served by
// appliance/retention_control.h and printed from its reply.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "appliance/retention_control.h"
#include "appliance/server.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"

namespace custos::cli {

using nlohmann::json;

namespace {

// custosd has 2 minutes for a forget over many snapshots (each manifest is
// read and decrypted: about 1 ms apiece on the reference machine).
constexpr int kRetentionControlTimeoutMs = 120000;

// The rule of these commands: --data-dir, or $CUSTOS_DATA_DIR without
// --repo/$CUSTOS_REPOSITORY, means custosd; anything else a local repository.
bool ApplianceMode(const Globals& g) {
  if (!g.data_dir.empty()) return true;
  if (!g.repo.empty()) return false;
  const char* repo_env = std::getenv("CUSTOS_REPOSITORY");
  const char* dir_env = std::getenv("CUSTOS_DATA_DIR");
  return !(repo_env && *repo_env) && dir_env && *dir_env;
}

// Serves `request` locally or through custosd; the reply when it is ok,
// else nothing with rc set (2 for a request to change, 13 for no custosd).
std::optional<json> Run(const Globals& g, const std::string& request, const std::string& what, int& rc) {
  std::string reply;
  if (ApplianceMode(g)) {
    auto r = appliance::ControlRequest(DataDir(g), request, kRetentionControlTimeoutMs);
    if (!r.ok()) {
      rc = Fail(r.status(), kExitNoDaemon);
      return std::nullopt;
    }
    reply = std::move(r).value();
  } else {
    Opened o = OpenRepo(g, false);
    if (!o.repo) {
      rc = o.exit_code;
      return std::nullopt;
    }
    auto actor = storage::Actor::FromProcess("custos " + what);
    if (appliance::RetentionRequestWrites(request)) {
      if (Status st = o.repo->LockForWrite(actor); !st.ok()) {
        rc = Fail(st);
        return std::nullopt;
      }
    }
    reply = appliance::HandleRetentionRequest(*o.repo, request, actor);
  }
  json j = json::parse(reply, nullptr, false);
  if (!j.is_object()) {
    rc = Fail(IOError("malformed reply from custosd"));
    return std::nullopt;
  }
  if (!j.value("ok", false)) {
    rc = Fail(InvalidArgumentError(what + ": " + j.value("error", std::string("refused"))),
              j.value("code", "") == "usage" ? kExitUsage : kExitError);
    return std::nullopt;
  }
  return j;
}

// "2026-11-27T01:00:04Z" from the RFC 3339 time with nanoseconds.
std::string Second(const json& item) { return item.value("time", "").substr(0, 19) + "Z"; }

void Print(const json& j) { std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n"; }

std::string Join(const json& list, const char* sep) {
  std::string s;
  for (const auto& v : list) s += (s.empty() ? "" : sep) + v.get<std::string>();
  return s;
}

void PrintForget(const json& j) {
  bool dry = j.value("dry_run", false);
  std::printf("policy: %s (periods in %s)\n", j.value("policy", "").c_str(), j.value("timezone", "").c_str());
  for (const auto& g : j["groups"]) {
    std::printf("\n%s [%s]: keep %zu, %s %zu\n", EscapeForDisplay(g.value("host", "")).c_str(),
                EscapeForDisplay(Join(g["paths"], ", ")).c_str(), g["keep"].size(), dry ? "would remove" : "remove",
                g["remove"].size());
    for (const auto& s : g["keep"]) {
      std::printf("  keep    %s  %s  %s\n", s.value("id", "").substr(0, 8).c_str(), Second(s).c_str(),
                  Join(s["reasons"], ", ").c_str());
    }
    for (const auto& s : g["remove"]) {
      std::printf("  %-7s %s  %s\n", dry ? "would" : "remove", s.value("id", "").substr(0, 8).c_str(),
                  Second(s).c_str());
    }
  }
  for (const auto& d : j["damaged"]) PrintError("skipped damaged " + d.get<std::string>());
  size_t removed = j.value("removed", size_t(0));
  if (dry) {
    std::printf("\ndry run: %zu snapshots would be removed, %zu kept; nothing was changed\n", removed,
                j.value("kept", size_t(0)));
  } else {
    std::printf("\nremoved %zu snapshots, kept %zu; their data stays until a prune (not built yet)\n", removed,
                j.value("kept", size_t(0)));
  }
}

void PrintHoldLine(const json& h) {
  std::printf("%-10s %-10s %-8s %-20s %-22s %-12s %s\n", h.value("id", "").substr(0, 8).c_str(),
              h.value("snapshot", "").substr(0, 8).c_str(), h.value("released", false) ? "released" : "active",
              Second(h).c_str(), (h.value("user", "") + "@" + h.value("host", "")).c_str(),
              h.value("case", "").empty() ? "-" : EscapeForDisplay(h.value("case", "")).c_str(),
              EscapeForDisplay(h.value("reason", "")).c_str());
}

constexpr const char* kForgetFooter = R"(
Applies a retention policy to the snapshots of each host (and path set) and
removes those it does not keep. Semantics are restic's: walking each group
newest first, --keep-daily N keeps the newest snapshot of each of the N newest
days that have one (likewise hourly, weekly, monthly, yearly); -1 means
unlimited. Periods are calendar periods in --timezone (default: the system's
zone), weeks are ISO 8601 weeks (Monday to Sunday); a day with a daylight-saving
change is still one day. When a rule asks for more periods than exist, the
group's oldest snapshot is kept too. --keep-within DURATION (e.g. 30d, 2w,
1y6m, 12h) keeps everything newer than DURATION before the group's newest
snapshot, so a host that stops backing up keeps its last history.

A held snapshot (custos hold) is never removed; it is listed with the reason
"held". A policy that keeps nothing is refused (exit 2): a typo cannot delete
everything. --dry-run shows what would go, with the rule that keeps each
survivor, and changes nothing.

Only the snapshot files go. Their data stays in the repository until a prune,
which is not built yet: forget frees no space today.

Where: with --repo (or $CUSTOS_REPOSITORY), the local repository (a real run
takes the writer lock: exit 11 while another writer holds it). With --data-dir
(or $CUSTOS_DATA_DIR), custosd applies the policy to the repository it owns;
agents can never forget anything. On the appliance the host of a snapshot is
the agent's name: --host db01 selects that agent's snapshots.

  custos forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  custos --data-dir /var/lib/custos forget --host db01 --keep-within 30d

EXIT CODES
  0    done (or dry run shown)
  1    error (a damaged hold file: nothing is removed)
  2    usage: a policy that keeps nothing, a bad duration or time zone
  10   no repository;  11 repository locked;  12 wrong passphrase
  13   no custosd answers (with --data-dir)
)";

constexpr const char* kHoldFooter = R"(
A hold keeps one snapshot from every forget, whatever the policy, until it is
released: for incident cases and legal holds. A hold records the snapshot, a
reason, who placed it and when, and optionally a case ID. Holds are stored in
the repository, encrypted, and never deleted: releasing writes a release
record (who, when, why), so the history of every hold stays.

  custos hold add 3fa2c1d0 --reason "ransomware incident" --case IR-2026-014
  custos hold list
  custos hold release 9b1e04aa --reason "case closed"

Where: as for forget (--repo: local, taking the writer lock to add or
release; --data-dir: through custosd). Exit codes: 0 done, 1 error, 2 usage
(no reason, an unknown or ambiguous ID, a hold released already), 10/11/12 as
for other repository commands, 13 no custosd.
)";

}  // namespace

void AddRetentionCommands(CLI::App& app, Globals& g, int& rc) {
  auto* forget = app.add_subcommand("forget", "Remove snapshots by a retention policy (never held ones)");
  forget->footer(kForgetFooter);
  static appliance::ForgetRequest fr;
  static std::string within;
  auto count = [&](const char* flag, int& field, const char* what) {
    forget->add_option(flag, field, std::string("Keep the newest snapshot of each of the last N ") + what +
                                        " (-1: unlimited)")
        ->check(CLI::Range(-1, 1000000));
  };
  forget->add_option("--keep-last", fr.policy.keep_last, "Keep the N newest snapshots (-1: all)")
      ->check(CLI::Range(-1, 1000000));
  count("--keep-hourly", fr.policy.keep_hourly, "hours");
  count("--keep-daily", fr.policy.keep_daily, "days");
  count("--keep-weekly", fr.policy.keep_weekly, "ISO weeks");
  count("--keep-monthly", fr.policy.keep_monthly, "months");
  count("--keep-yearly", fr.policy.keep_yearly, "years");
  forget->add_option("--keep-within", within, "Keep snapshots newer than DURATION before the newest (30d, 2w, 1y6m, 12h)");
  forget->add_option("--host", fr.hosts, "Only this host's (agent's) snapshots; repeatable");
  forget->add_option("--timezone", fr.zone, "IANA zone of the periods (default: the system's)");
  forget->add_flag("-n,--dry-run", fr.dry_run, "Show what would be removed; change nothing");
  forget->callback([&] {
    if (!within.empty()) {
      auto d = scheduler::ParseRetentionDuration(within);
      if (!d.ok()) {
        rc = Fail(d.status(), kExitUsage);
        return;
      }
      fr.policy.keep_within = *d;
    }
    if (fr.policy.empty()) {
      rc = Fail(InvalidArgumentError("forget: the policy keeps nothing: refused (give at least one --keep-* rule)"),
                kExitUsage);
      return;
    }
    auto j = Run(g, appliance::ForgetRequestJson(fr), "forget", rc);
    if (!j) return;
    if (g.json) Print(*j);
    else if (!g.quiet) PrintForget(*j);
  });

  auto* hold = app.add_subcommand("hold", "Hold snapshots so that no policy removes them; list and release holds");
  hold->require_subcommand(1);
  hold->footer(kHoldFooter);
  auto user = storage::Actor::FromProcess("custos").user;
  // Sends a hold-add or hold-release and prints the hold (`line`: hold ID, snapshot ID).
  auto change = [&g, &rc](const json& req, const std::string& what, const char* line) {
    auto j = Run(g, req.dump(), what, rc);
    if (!j) return;
    const json& h = (*j)["hold"];
    if (g.json) Print(h);
    else if (!g.quiet) std::printf(line, h.value("id", "").substr(0, 8).c_str(), h.value("snapshot", "").substr(0, 8).c_str());
  };

  auto* add = hold->add_subcommand("add", "Hold a snapshot");
  static std::string add_snapshot, add_reason, add_case;
  add->add_option("SNAPSHOT", add_snapshot, "Snapshot ID, unique prefix or 'latest'")->required();
  add->add_option("--reason", add_reason, "Why (recorded with the hold)")->required();
  add->add_option("--case", add_case, "Case ID (the incident or legal matter)");
  add->callback([=] {
    json req = {{"cmd", "hold-add"}, {"snapshot", add_snapshot}, {"reason", add_reason}, {"case", add_case},
                {"user", user}};
    change(req, "hold add", "hold %s placed on snapshot %s\n");
  });

  auto* list = hold->add_subcommand("list", "List holds, active and released, oldest first");
  static bool list_active = false;
  list->add_flag("--active", list_active, "Only holds not released");
  list->callback([&] {
    auto j = Run(g, json{{"cmd", "hold-list"}}.dump(), "hold list", rc);
    if (!j) return;
    json holds = json::array();
    for (const auto& h : (*j)["holds"]) {
      if (!list_active || !h.value("released", false)) holds.push_back(h);
    }
    if (g.json) {
      Print(json{{"holds", holds}, {"damaged", (*j)["damaged"]}});
    } else {
      std::printf("%-10s %-10s %-8s %-20s %-22s %-12s %s\n", "HOLD", "SNAPSHOT", "STATE", "SINCE", "BY", "CASE",
                  "REASON");
      for (const auto& h : holds) PrintHoldLine(h);
    }
    for (const auto& d : (*j)["damaged"]) PrintError("damaged hold file: " + d.get<std::string>());
    if (!(*j)["damaged"].empty()) rc = kExitError;
  });

  auto* release = hold->add_subcommand("release", "Release a hold (the release is recorded too)");
  static std::string release_id, release_reason;
  release->add_option("HOLD_ID", release_id, "Hold ID or unique prefix (custos hold list)")->required();
  release->add_option("--reason", release_reason, "Why it is released (recorded)");
  release->callback([=] {
    json req = {{"cmd", "hold-release"}, {"hold", release_id}, {"reason", release_reason}, {"user", user}};
    change(req, "hold release", "hold %s on snapshot %s released\n");
  });
}

}  // namespace custos::cli
