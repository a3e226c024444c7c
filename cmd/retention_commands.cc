// custos forget, custos prune, custos hold add|list|release: on a local repository
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
// A prune reads every tree and may copy packs: custosd gets an hour to answer.
constexpr int kPruneControlTimeoutMs = 3600 * 1000;

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
std::optional<json> Run(const Globals& g, const std::string& request, const std::string& what, int& rc,
                        int timeout_ms = kRetentionControlTimeoutMs) {
  std::string reply;
  if (ApplianceMode(g)) {
    auto r = appliance::ControlRequest(DataDir(g), request, timeout_ms);
    if (!r.ok()) {
      rc = Fail(r.status(), kExitNoDaemon);
      return std::nullopt;
    }
    reply = std::move(r).value();
  } else {
    json parsed = json::parse(request, nullptr, false);
    bool prunes = parsed.is_object() && (parsed.value("cmd", "") == "prune" || parsed.value("prune", false));
    Opened o = OpenRepo(g, prunes);  // prune reads trees through the index
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
    appliance::RetentionContext ctx;  // local mode: no running jobs to protect
    if (!g.quiet) ctx.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    reply = appliance::HandleRetentionRequest(*o.repo, request, actor, ctx);
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

void PrintPrune(const json& j) {
  auto n = [&](const char* k) { return (unsigned long long)j.value(k, uint64_t(0)); };
  bool dry = j.value("dry_run", false);
  std::printf("%s (grace %llds, max waste %d%%)\n", dry ? "prune dry run" : "prune", (long long)j.value("grace_s", int64_t(0)),
              j.value("max_waste", 0));
  std::printf("  referenced blobs      %llu\n", n("referenced"));
  std::printf("  marked unreferenced   %llu (%s)%s\n", n("marked"), HumanBytes(n("marked_bytes")).c_str(),
              dry ? " would be marked" : "");
  std::printf("  waiting for grace     %llu\n", n("pending"));
  std::printf("  swept                 %llu (%s)\n", n("swept"), HumanBytes(n("swept_bytes")).c_str());
  std::printf("  left in packs         %llu (under the waste limit)\n", n("kept_garbage"));
  std::printf("  spared (running jobs) %llu\n", n("protected"));
  std::printf("  packs dropped         %llu\n", n("packs_dropped"));
  std::printf("  packs repacked        %llu into %llu (%llu blobs, %s copied)\n", n("packs_repacked"),
              n("packs_written"), n("blobs_copied"), HumanBytes(n("bytes_copied")).c_str());
  std::printf("  replaced packs gone   %llu\n", n("retired_deleted"));
  std::printf("  %s %s; packs %s -> %s\n", dry ? "would free" : "freed", HumanBytes(n("bytes_freed")).c_str(),
              HumanBytes(n("bytes_before")).c_str(), HumanBytes(n("bytes_after")).c_str());
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
    std::printf("\nremoved %zu snapshots, kept %zu; their data goes with a prune%s\n", removed,
                j.value("kept", size_t(0)), j.contains("prune") ? ":" : " (custos prune)");
  }
  if (j.contains("prune")) {
    std::printf("\n");
    PrintPrune(j["prune"]);
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

Only the snapshot files go. Their data stays in the repository until a prune
(custos prune, or --prune here) has marked it unreferenced and the grace period
has passed; --grace and --max-waste are passed to that prune.

Where: with --repo (or $CUSTOS_REPOSITORY), the local repository (a real run
takes the writer lock: exit 11 while another writer holds it). With --data-dir
(or $CUSTOS_DATA_DIR), custosd applies the policy to the repository it owns;
agents can never forget anything. On the appliance the host of a snapshot is
the agent's name: --host db01 selects that agent's snapshots.

  custos forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  custos --data-dir /var/lib/custos forget --host db01 --keep-within 30d

EXIT CODES
  0    done (or dry run shown)
  1    error (a damaged hold file: nothing is removed; with --prune, a
       failed prune after the removals)
  2    usage: a policy that keeps nothing, a bad duration or time zone
  10   no repository;  11 repository locked;  12 wrong passphrase
  13   no custosd answers (with --data-dir)
)";

constexpr const char* kPruneFooter = R"(
Deletes data no snapshot references any more, in two phases, so that nothing a
reader or a running backup may still need is deleted.

Mark: every blob that no snapshot references (all snapshots, held ones
included, with their trees and atime tables) is recorded, with its pack and
the time, in a mark file in the repository (marks/). Nothing is deleted.

Sweep: blobs marked longer than --grace ago (default 24h) that are still
unreferenced are garbage; a snapshot saved since the mark that uses a marked
blob makes it live again, and through custosd every blob a running backup has
received or may skip as already stored is spared. A pack that is all garbage
is deleted. A pack whose garbage exceeds --max-waste percent of its size
(default 20) is repacked: its live blobs are verified and copied as they are
stored (no re-encryption) into new packs, a new index file replaces the old
ones, and the old pack is deleted one grace period later (a reader that loaded
the old index can still read it meanwhile). Packs with less garbage stay as
they are until more of them is garbage.

Each run marks, then sweeps what is due, so a nightly prune deletes what the
previous nights marked. --grace 0 marks and sweeps at once: use it only when
no reader or backup can be working on the repository (tests, benchmarks, a
repository nobody else uses). The order of writes makes a crash at any point
safe: the next prune finishes the job, and check reports no errors meanwhile.

Where: with --repo (or $CUSTOS_REPOSITORY) on a local repository, taking the
writer lock (exit 11 while a backup holds it; --dry-run takes no lock). With
--data-dir (or $CUSTOS_DATA_DIR) custosd prunes the repository it owns beside
running backups and records the run in its job history (custos jobs);
schedule it with custos schedule add --job prune. Progress goes to stderr
(local mode); --json prints the summary as one JSON object.

  custos prune --dry-run
  custos prune --grace 48h --max-waste 10
  custos forget --keep-daily 7 --prune

DURATION: a number and a unit, combinable: s, m (minutes), h, d, w; e.g. 90m,
1d12h, 0.

EXIT CODES
  0    done (or dry run shown)
  1    error: a damaged snapshot, index or mark file, or a blob to copy that
       does not verify (nothing is deleted; run custos check --read-data)
  2    usage: a bad --grace or --max-waste
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
  static bool forget_prune = false;
  static std::string forget_grace;
  static int forget_waste = -1;
  forget->add_flag("--prune", forget_prune, "Prune afterwards (custos prune)");
  forget->add_option("--grace", forget_grace, "With --prune: the prune's grace period (default 24h)");
  forget->add_option("--max-waste", forget_waste, "With --prune: repack packs with more garbage than PCT % (default 20)")
      ->check(CLI::Range(0, 100));
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
    if ((!forget_grace.empty() || forget_waste >= 0) && !forget_prune) {
      rc = Fail(InvalidArgumentError("forget: --grace and --max-waste belong to --prune"), kExitUsage);
      return;
    }
    json req = json::parse(appliance::ForgetRequestJson(fr));
    if (forget_prune) {
      req["prune"] = true;
      if (!forget_grace.empty()) req["grace"] = forget_grace;
      if (forget_waste >= 0) req["max_waste"] = forget_waste;
    }
    auto j = Run(g, req.dump(), "forget", rc, forget_prune ? kPruneControlTimeoutMs : kRetentionControlTimeoutMs);
    if (!j) return;
    if (g.json) Print(*j);
    else if (!g.quiet) PrintForget(*j);
  });

  auto* prune = app.add_subcommand("prune", "Delete data no snapshot references (mark, then sweep after a grace period)");
  prune->footer(kPruneFooter);
  static std::string prune_grace = "24h";
  static int prune_waste = 20;
  static bool prune_dry = false;
  prune->add_option("--grace", prune_grace, "Sweep only what was marked longer ago than DURATION (default 24h; 0: now)");
  prune->add_option("--max-waste", prune_waste, "Repack packs whose garbage exceeds PCT % of their size (default 20)")
      ->check(CLI::Range(0, 100));
  prune->add_flag("-n,--dry-run", prune_dry, "Show what would be marked, swept and repacked; change nothing");
  prune->callback([&] {
    if (auto grace = storage::ParseGrace(prune_grace); !grace.ok()) {
      rc = Fail(grace.status(), kExitUsage);
      return;
    }
    json req = {{"cmd", "prune"}, {"grace", prune_grace}, {"max_waste", prune_waste}, {"dry_run", prune_dry}};
    auto j = Run(g, req.dump(), "prune", rc, kPruneControlTimeoutMs);
    if (!j) return;
    if (g.json) Print(*j);
    else if (!g.quiet) PrintPrune(*j);
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
