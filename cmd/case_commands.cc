// custos case ...: incident cases on the appliance (custosd), each with its
// custody ledger (doc/formats/evidence.md). Every command is itself a
// ledger record; collection runs on an agent; holds bind the repository.
#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "base/bytes.h"
#include "base/file_util.h"
#include "cmd/cli_util.h"
#include "cmd/common.h"

namespace custos::cli {

using nlohmann::json;

namespace {

// Who the ledger names as the operator: the login behind sudo when there
// is one, else this account.
std::string OperatorName() {
  std::string name;
  if (struct passwd* pw = ::getpwuid(::getuid())) name = pw->pw_name;
  else name = "uid " + std::to_string(::getuid());
  if (const char* sudo = std::getenv("SUDO_USER"); sudo && *sudo && name == "root") {
    name = std::string(sudo) + " (via sudo)";
  }
  return name;
}

json Request(const std::string& cmd, json fields = json::object()) {
  fields["cmd"] = cmd;
  fields["user"] = OperatorName();
  return fields;
}

// "2G", "500M", "4096": bytes (K, M, G, T are powers of 1024).
std::optional<uint64_t> ParseSize(const std::string& s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  size_t i = 0;
  uint64_t n = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    if (n > (UINT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + uint64_t(s[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit = s.substr(i);
  int shift = unit.empty() || unit == "B" ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : unit == "T" ? 40 : -1;
  if (shift < 0 || (shift && n > (UINT64_MAX >> shift))) return std::nullopt;
  return n << shift;
}

void PrintCaseJson(const json& j) { std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n"; }

std::string Absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char buf[4096];
  if (!::getcwd(buf, sizeof buf)) return p;
  return JoinPath(buf, p);
}

void PrintCase(const json& c) {
  std::printf("case %s: %s\n", c.value("id", "").c_str(), EscapeForDisplay(c.value("title", "")).c_str());
  std::printf("  state        %s%s\n", c.value("state", "").c_str(),
              c.value("closed_at", "").empty() ? "" : (" since " + c.value("closed_at", "")).c_str());
  std::printf("  opened       %s\n", c.value("opened_at", "").c_str());
  if (!c.value("detected_at", "").empty()) std::printf("  detected     %s\n", c.value("detected_at", "").c_str());
  if (!c.value("reference", "").empty()) {
    std::printf("  reference    %s\n", EscapeForDisplay(c.value("reference", "")).c_str());
  }
  std::printf("  records      %llu (%llu items, %llu gaps)\n", (unsigned long long)c.value("records", uint64_t(0)),
              (unsigned long long)c.value("items", uint64_t(0)), (unsigned long long)c.value("gaps", uint64_t(0)));
  if (c.contains("checkpoint")) {
    const json& k = c["checkpoint"];
    std::printf("  checkpoint   size %llu, root %s, %s%s\n", (unsigned long long)k.value("size", uint64_t(0)),
                k.value("root", "").c_str(), k.value("time", "").c_str(),
                k.value("timestamped", false) ? ", RFC 3161 timestamp" : "");
  }
}

}  // namespace

void AddCaseCommands(CLI::App& app, Globals& g, int& rc) {
  auto* cs = app.add_subcommand("case", "Incident cases: evidence with a signed chain of custody (custosd)");
  cs->require_subcommand(1);
  cs->footer(R"(
An incident case holds one append-only custody ledger: every action (open,
collection plan, each item collected with its SHA-256 computed by the agent
and again by the appliance, gaps, footprints, holds, notes, exports, close) is
a record chained to the one before it, and the appliance signs checkpoints of
the ledger's Merkle tree at open, after each task, at holds, exports and
close. `custos case export` writes a bundle that anyone can check with
sha256sum and openssl alone (VERIFY.sh inside), or with
`custos evidence verify`.

  custos case open --title "Web server defaced" --detected-at 2026-11-27T07:40:00+07:00
  custos case collect 2026-0001 --agent web01 --profile linux-triage
  custos case collect 2026-0001 --agent web01 --path /var/www --path /etc/nginx
  custos case snapshot 2026-0001 --agent web01 --label before-remediation
  custos case note 2026-0001 "Called the provincial CERT, ticket 4711" --attach call.pdf
  custos case export 2026-0001 -o /media/usb/case-2026-0001.tar
  custos case close 2026-0001 --reason "remediated, reported"

The operator recorded is the account running this command (the login
behind sudo when there is one). Exit codes: 0 done, 1 refused or failed,
2 usage, 3 a collection finished with gaps (see `custos case show`),
13 no custosd answers.)");

  // ---- open
  auto* open = cs->add_subcommand("open", "Open a new case (prints its ID)");
  static std::string title, detected, reference;
  open->add_option("--title", title, "What happened, in a line")->required();
  open->add_option("--detected-at", detected, "When the incident was detected (any text; RFC 3339 recommended)");
  open->add_option("--reference", reference, "An outside reference: ticket, CERT case, letter number");
  open->callback([&] {
    auto j = Control(g, Request("case-open", {{"title", title}, {"detected_at", detected}, {"reference", reference}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson((*j)["case"]);
    std::printf("case %s opened; appliance key %s\n", j->value("id", "").c_str(), j->value("key", "").c_str());
  });

  // ---- list
  auto* list = cs->add_subcommand("list", "List cases");
  list->callback([&] {
    auto j = Control(g, Request("case-list"), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson((*j)["cases"]);
    std::printf("%-11s %-7s %-21s %8s %6s %5s  %s\n", "CASE", "STATE", "OPENED", "RECORDS", "ITEMS", "GAPS", "TITLE");
    for (const auto& c : (*j)["cases"]) {
      std::printf("%-11s %-7s %-21s %8llu %6llu %5llu  %s\n", c.value("id", "").c_str(), c.value("state", "").c_str(),
                  c.value("opened_at", "").substr(0, 19).c_str(), (unsigned long long)c.value("records", uint64_t(0)),
                  (unsigned long long)c.value("items", uint64_t(0)), (unsigned long long)c.value("gaps", uint64_t(0)),
                  EscapeForDisplay(c.value("title", "")).c_str());
    }
  });

  // ---- show
  auto* show = cs->add_subcommand("show", "Show a case: state, counts, last checkpoint, holds");
  static std::string show_id;
  show->add_option("CASE", show_id, "Case ID")->required();
  show->callback([&] {
    auto j = Control(g, Request("case-show", {{"case", show_id}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    PrintCase((*j)["case"]);
    std::printf("  key          %s\n", j->value("key", "").c_str());
    for (const auto& h : (*j)["holds"]) {
      std::printf("  hold %s on snapshot %s%s: %s\n", h.value("hold", "").substr(0, 8).c_str(),
                  h.value("snapshot", "").substr(0, 8).c_str(), h.value("released", false) ? " (released)" : "",
                  EscapeForDisplay(h.value("reason", "")).c_str());
    }
  });

  // ---- close
  auto* close = cs->add_subcommand("close", "Close a case (notes, holds and exports are still accepted)");
  static std::string close_id, close_reason;
  close->add_option("CASE", close_id, "Case ID")->required();
  close->add_option("--reason", close_reason, "Why it is closed");
  close->callback([&] {
    auto j = Control(g, Request("case-close", {{"case", close_id}, {"reason", close_reason}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson((*j)["case"]);
    std::printf("case %s closed\n", close_id.c_str());
  });

  // ---- note
  auto* note = cs->add_subcommand("note", "Add a note (and optionally a file) to the ledger");
  static std::string note_id, note_text, note_attach;
  note->add_option("CASE", note_id, "Case ID")->required();
  note->add_option("TEXT", note_text, "The note")->required();
  note->add_option("--attach", note_attach, "A file to store with the note (by its SHA-256)");
  note->callback([&] {
    json req = {{"case", note_id}, {"text", note_text}};
    if (!note_attach.empty()) req["attach"] = Absolute(note_attach);
    auto j = Control(g, Request("case-note", req), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    std::printf("note recorded as record %llu of case %s\n", (unsigned long long)j->value("record", uint64_t(0)),
                note_id.c_str());
  });

  // ---- collect
  auto* collect = cs->add_subcommand("collect", "Collect evidence from an agent's server");
  collect->footer(R"(
Exactly one of --profile (a built-in recipe: linux-triage), --recipe FILE (your
own recipe text, doc/formats/evidence.md "Recipes") or --path (files and trees).
The recipe's text and SHA-256 go into the case (plan record) before the agent
starts. linux-triage collects, in RFC 3227 order of volatility: network state,
processes (with the SHA-256 of each running executable, deleted ones too),
logged-in users, kernel modules, temporary file systems, a file-system
timeline (before any content is read), logs, persistence (cron, systemd,
authorized_keys, ld.so.preload, accounts, sudoers, shell histories) and
package integrity (dpkg --verify). Files are read with O_NOATIME, nothing is
written on the server, and whatever cannot be collected is recorded as a gap.)");
  static std::string col_id, col_agent, col_profile, col_recipe, col_max;
  static std::vector<std::string> col_paths, col_excludes;
  static bool col_no_wait = false;
  collect->add_option("CASE", col_id, "Case ID")->required();
  collect->add_option("--agent", col_agent, "The agent (server) to collect from")->required();
  auto* o_profile = collect->add_option("--profile", col_profile, "A built-in recipe: linux-triage");
  auto* o_recipe = collect->add_option("--recipe", col_recipe, "A recipe file of your own");
  auto* o_path = collect->add_option("--path", col_paths, "A file or directory to collect (repeatable)");
  o_profile->excludes(o_recipe)->excludes(o_path);
  o_recipe->excludes(o_path);
  collect->add_option("--exclude", col_excludes, "A subtree the timeline and trees leave out (repeatable)");
  collect->add_option("--max-file-size", col_max, "Files larger than this become gaps (e.g. 2G; default: no limit)");
  collect->add_flag("--no-wait", col_no_wait, "Print the job ID and return at once");
  collect->callback([&] {
    json req = {{"case", col_id}, {"agent", col_agent}, {"excludes", col_excludes}};
    if (!col_profile.empty()) req["profile"] = col_profile;
    else if (!col_recipe.empty()) {
      auto text = ReadFile(col_recipe);
      if (!text.ok()) {
        rc = Fail(text.status());
        return;
      }
      req["recipe"] = std::string(text->begin(), text->end());
    } else if (!col_paths.empty()) {
      std::vector<std::string> abs;
      for (const auto& p : col_paths) {
        if (p.empty() || p[0] != '/') {
          rc = Fail(InvalidArgumentError("--path " + p + ": give absolute paths (they are on the agent's server)"),
                    kExitUsage);
          return;
        }
        abs.push_back(p);
      }
      req["paths"] = abs;
    } else {
      rc = Fail(InvalidArgumentError("give --profile, --recipe or --path"), kExitUsage);
      return;
    }
    if (!col_max.empty()) {
      auto n = ParseSize(col_max);
      if (!n) {
        rc = Fail(InvalidArgumentError("--max-file-size: not a size: " + col_max), kExitUsage);
        return;
      }
      req["max_file_bytes"] = *n;
    }
    auto started = Control(g, Request("case-collect", req), rc);
    if (!started) return;
    std::string job = (*started)["job"];
    if (!g.quiet && !g.json) {
      std::fprintf(stderr, "job %s: collecting %s from %s for case %s (recipe sha256 %s)\n", job.c_str(),
                   started->value("recipe", "").c_str(), col_agent.c_str(), col_id.c_str(),
                   started->value("recipe_sha256", "").substr(0, 16).c_str());
    }
    if (col_no_wait) {
      if (g.json) PrintCaseJson(*started);
      else std::printf("%s\n", job.c_str());
      return;
    }
    auto done = WaitForJob(g, job, rc);
    if (!done) return;
    std::string state = done->value("state", "");
    if (g.json) {
      json out = *done;
      out["message_type"] = "summary";
      out["case"] = col_id;
      PrintCaseJson(out);
    } else if (state == "ok" || state == "partial") {
      std::printf("collected %llu items (%s) into case %s%s\n", (unsigned long long)done->value("files", uint64_t(0)),
                  HumanBytes(done->value("bytes", uint64_t(0))).c_str(), col_id.c_str(),
                  state == "partial" ? "; some items could not be collected: see the gap records (custos case show)"
                                     : "");
    }
    rc = JobExitCode(g, "collection", job, *done);
  });

  // ---- hold / release
  auto* hold = cs->add_subcommand("hold", "Hold snapshots for the case: no retention policy or prune removes them");
  static std::string hold_id, hold_reason;
  static std::vector<std::string> hold_snaps;
  hold->add_option("CASE", hold_id, "Case ID")->required();
  hold->add_option("SNAPSHOT", hold_snaps, "Snapshot IDs (unique prefixes)")->required();
  hold->add_option("--reason", hold_reason, "Why (default: evidence for case CASE)");
  hold->callback([&] {
    auto j = Control(g, Request("case-hold", {{"case", hold_id}, {"snapshots", hold_snaps}, {"reason", hold_reason}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    for (const auto& h : (*j)["holds"]) {
      std::printf("snapshot %s held for case %s (hold %s)\n", h.value("snapshot", "").substr(0, 8).c_str(),
                  hold_id.c_str(), h.value("hold", "").substr(0, 8).c_str());
    }
  });
  auto* release = cs->add_subcommand("release", "Release one of the case's holds (recorded in the ledger)");
  static std::string rel_id, rel_hold, rel_reason;
  release->add_option("CASE", rel_id, "Case ID")->required();
  release->add_option("HOLD", rel_hold, "Hold ID (prefix), as `custos case show` lists it")->required();
  release->add_option("--reason", rel_reason, "Why it is released")->required();
  release->callback([&] {
    auto j = Control(g, Request("case-release", {{"case", rel_id}, {"hold", rel_hold}, {"reason", rel_reason}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    std::printf("hold %s on snapshot %s released\n", j->value("hold", "").substr(0, 8).c_str(),
                j->value("snapshot", "").substr(0, 8).c_str());
  });

  // ---- snapshot
  auto* snap = cs->add_subcommand("snapshot", "Back up an agent now and hold the snapshot for the case");
  static std::string snap_id, snap_agent, snap_label;
  static std::vector<std::string> snap_paths;
  snap->add_option("CASE", snap_id, "Case ID")->required();
  snap->add_option("--agent", snap_agent, "The agent to back up")->required();
  snap->add_option("--label", snap_label, "What this state is: before-remediation, after-remediation...")->required();
  snap->add_option("--paths", snap_paths, "Paths to back up (default: those of the agent's latest snapshot)")
      ->delimiter(',');
  snap->callback([&] {
    json req = {{"case", snap_id}, {"agent", snap_agent}, {"label", snap_label}};
    if (!snap_paths.empty()) req["paths"] = snap_paths;
    auto started = Control(g, Request("case-snapshot", req), rc);
    if (!started) return;
    std::string job = (*started)["job"];
    if (!g.quiet && !g.json) std::fprintf(stderr, "job %s: backup of %s for case %s\n", job.c_str(), snap_agent.c_str(), snap_id.c_str());
    auto done = WaitForJob(g, job, rc);
    if (!done) return;
    std::string state = done->value("state", "");
    if (g.json) PrintCaseJson(*done);
    else if (state == "ok" || state == "partial") {
      std::printf("snapshot %s saved and held for case %s (%s)\n", done->value("snapshot", "").substr(0, 8).c_str(),
                  snap_id.c_str(), snap_label.c_str());
    }
    rc = JobExitCode(g, "backup", job, *done);
  });

  // ---- export
  auto* exp = cs->add_subcommand("export", "Write the case's evidence bundle (tar) for outside verification");
  static std::string exp_id, exp_out;
  exp->add_option("CASE", exp_id, "Case ID")->required();
  exp->add_option("-o,--output", exp_out, "The bundle file to write (FILE.tar)")->required();
  exp->footer(R"(
The bundle holds the ledger, the signed checkpoints (and RFC 3161 tokens),
every evidence object by SHA-256, a Sleuth Kit bodyfile timeline per host,
SHA256SUMS with the appliance's signature, its public key, a README and
VERIFY.sh (needs only sh, sha256sum, openssl, sed and xxd). The export itself
is recorded in the ledger and checkpointed first.)");
  exp->callback([&] {
    auto j = Control(g, Request("case-export", {{"case", exp_id}, {"output", Absolute(exp_out)}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    std::printf("case %s exported to %s\nappliance key %s (give this fingerprint to the recipient out of band)\n",
                exp_id.c_str(), EscapeForDisplay(j->value("output", "")).c_str(), j->value("key", "").c_str());
  });

  // ---- checkpoint
  auto* ck = cs->add_subcommand("checkpoint", "Sign a checkpoint of the ledger now (print it to keep out of band)");
  static std::string ck_id;
  ck->add_option("CASE", ck_id, "Case ID")->required();
  ck->callback([&] {
    auto j = Control(g, Request("case-checkpoint", {{"case", ck_id}}), rc);
    if (!j) return;
    if (g.json) return PrintCaseJson(*j);
    const json& k = (*j)["checkpoint"];
    std::printf("checkpoint of case %s: size %llu, root %s (%s)\n", ck_id.c_str(),
                (unsigned long long)k.value("size", uint64_t(0)), k.value("root", "").c_str(), k.value("file", "").c_str());
  });
}

}  // namespace custos::cli
