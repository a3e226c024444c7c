#include "evidence/recipe.h"

#include <algorithm>
#include <stdexcept>

#include "base/crypto.h"

namespace custos::evidence {

namespace {

// The Linux triage profile. Version it (the number on the first line)
// whenever a step changes: the plan record names the text's hash, and a
// report must say which recipe produced what.
constexpr std::string_view kLinuxTriage = R"(recipe linux-triage 2
# Linux triage, in RFC 3227 order of volatility: the most volatile first.
# 1. Network state: sockets with their processes, addresses, routes,
#    neighbours, firewall rules.
cmd       network.sockets          ss -tunapeO
cmd       network.unix-sockets     ss -xap
file      network.proc             /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 /proc/net/unix
cmd       network.addresses        ip -d address show
cmd       network.routes           ip route show table all
cmd       network.routes6          ip -6 route show table all
cmd       network.neighbours       ip neighbour show
cmd       network.firewall.nft     nft list ruleset
cmd       network.firewall.ipt     iptables-save
cmd       network.firewall.ip6t    ip6tables-save
# 2. Processes: command lines, users, start times, the SHA-256 of every
#    running executable (deleted ones included).
processes processes
cmd       processes.ps             ps -eww -o pid,ppid,user,lstart,stat,args
# 3. Logged-in users.
cmd       users.who                who -a
file      users.utmp               /run/utmp
# 4. Kernel: modules and what the kernel says about itself.
file      kernel.modules           /proc/modules
file      kernel.info              /proc/version /proc/cmdline /proc/mounts /proc/sys/kernel/tainted
# 5. Temporary file systems: what is mounted, and what lives in memory.
cmd       tmpfs.mounts             findmnt -n -l -t tmpfs,ramfs
timeline  tmpfs.timeline           /dev/shm /run /tmp /var/tmp
tree      tmpfs.shm                /dev/shm
# 6. The file-system timeline, before any file content is read.
timeline  timeline                 /
# 7. Logs.
tree      logs                     /var/log
cmd       logs.journal             journalctl --no-pager --utc -o short-iso-precise --since=-14d
# 8. Persistence.
file      persistence.cron         /etc/crontab /etc/anacrontab /etc/cron.d/* /etc/cron.hourly/* /etc/cron.daily/* /etc/cron.weekly/* /etc/cron.monthly/*
tree      persistence.cron.spool   /var/spool/cron
tree      persistence.systemd      /etc/systemd /run/systemd/system /usr/lib/systemd/system
cmd       persistence.timers       systemctl list-timers --all --no-pager
file      persistence.ssh          /root/.ssh/authorized_keys /root/.ssh/authorized_keys2 /home/*/.ssh/authorized_keys /home/*/.ssh/authorized_keys2 /etc/ssh/sshd_config
file      persistence.preload      /etc/ld.so.preload
file      persistence.accounts     /etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/sudoers
tree      persistence.sudoers      /etc/sudoers.d
file      persistence.shell        /etc/profile /etc/bash.bashrc /etc/rc.local /root/.bashrc /root/.profile
tree      persistence.profile      /etc/profile.d
file      persistence.history      /root/.*_history /home/*/.*_history
# 9. Installed package integrity (Debian family, then RPM family: the one
#    not installed is an absent gap).
cmd       packages.verify          dpkg --verify
cmd       packages.list            dpkg-query -W
cmd       packages.verify-rpm      rpm -Va
)";

struct Builtin {
  std::string_view name, text;
};
constexpr Builtin kBuiltins[] = {{"linux-triage", kLinuxTriage}};

bool ValidArtifact(std::string_view a) {
  if (a.empty() || a.size() > 64) return false;
  return std::all_of(a.begin(), a.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

std::vector<std::string> Fields(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

std::string_view StepKindName(StepKind k) {
  switch (k) {
    case StepKind::kCmd: return "cmd";
    case StepKind::kProcesses: return "processes";
    case StepKind::kFile: return "file";
    case StepKind::kTree: return "tree";
    case StepKind::kTimeline: return "timeline";
  }
  return "?";
}

Result<Recipe> ParseRecipe(std::string_view text) {
  if (text.size() > (64u << 10)) return InvalidArgumentError("recipe: larger than 64 KiB");
  Recipe r;
  r.text = std::string(text);
  r.sha256 = Sha256(AsBytes(text)).Hex();
  size_t pos = 0;
  int lineno = 0;
  bool header = false;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++lineno;
    auto where = [&](const std::string& what) {
      return InvalidArgumentError("recipe line " + std::to_string(lineno) + ": " + what);
    };
    if (std::any_of(line.begin(), line.end(), [](char c) { return c == '\0' || c == '\r'; })) {
      return where("control characters");
    }
    auto f = Fields(line);
    if (f.empty() || f[0][0] == '#') continue;
    if (!header) {
      if (f.size() != 3 || f[0] != "recipe" || !ValidArtifact(f[1])) {
        return where("the first line must be `recipe NAME VERSION`");
      }
      try {
        size_t used = 0;
        r.version = std::stoi(f[2], &used);
        if (used != f[2].size() || r.version < 1) throw std::invalid_argument("");
      } catch (const std::exception&) {
        return where("bad version '" + f[2] + "'");
      }
      r.name = f[1];
      header = true;
      continue;
    }
    if (r.steps.size() >= 256) return where("more than 256 steps");
    Step s;
    if (f[0] == "cmd") s.kind = StepKind::kCmd;
    else if (f[0] == "processes") s.kind = StepKind::kProcesses;
    else if (f[0] == "file") s.kind = StepKind::kFile;
    else if (f[0] == "tree") s.kind = StepKind::kTree;
    else if (f[0] == "timeline") s.kind = StepKind::kTimeline;
    else return where("unknown step kind '" + f[0] + "'");
    if (f.size() < 2 || !ValidArtifact(f[1])) return where("missing or bad artifact name (use [a-z0-9._-])");
    s.artifact = f[1];
    s.args.assign(f.begin() + 2, f.end());
    if (s.kind == StepKind::kProcesses) {
      if (!s.args.empty()) return where("`processes` takes no arguments");
    } else if (s.args.empty()) {
      return where("`" + f[0] + "` needs arguments");
    } else if (s.kind != StepKind::kCmd) {
      for (const auto& p : s.args) {
        if (p[0] != '/') return where("path '" + p + "' is not absolute");
      }
    }
    r.steps.push_back(std::move(s));
  }
  if (!header) return InvalidArgumentError("recipe: empty (the first line must be `recipe NAME VERSION`)");
  if (r.steps.empty()) return InvalidArgumentError("recipe: no steps");
  return r;
}

std::vector<std::string> BuiltinProfileNames() {
  std::vector<std::string> out;
  for (const auto& b : kBuiltins) out.emplace_back(b.name);
  return out;
}

Result<Recipe> BuiltinProfile(std::string_view name) {
  for (const auto& b : kBuiltins) {
    if (b.name == name) return ParseRecipe(b.text);
  }
  std::string known;
  for (const auto& n : BuiltinProfileNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFoundError("no profile '" + std::string(name) + "' (built in: " + known + ")");
}

Result<Recipe> PathsRecipe(const std::vector<std::string>& paths) {
  if (paths.empty()) return InvalidArgumentError("no paths to collect");
  std::string text = "recipe paths 1\n";
  for (const auto& p : paths) {
    if (p.empty() || p[0] != '/') return InvalidArgumentError("path '" + p + "' is not absolute");
    if (p.find_first_of(" \t\n\r") != std::string::npos) {
      return InvalidArgumentError("path '" + p + "' contains blanks (recipes cannot name it; collect its directory)");
    }
    text += "tree files " + p + "\n";
  }
  return ParseRecipe(text);
}

}  // namespace custos::evidence
