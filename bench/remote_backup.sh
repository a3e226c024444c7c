#!/usr/bin/env bash
# remote_backup.sh - a backup through the appliance over loopback against the
# same backup in local mode, on the same data in the same run (issue 5's
# throughput target: the remote backup at least 80% of local throughput).
#
# Usage:  bench/remote_backup.sh WORKDIR [BIN_DIR]
#   WORKDIR: the backup_peers.sh work directory (its server/ tree is backed up
#   as it is: run backup_peers.sh first, or point SERVER at any tree).
#   BIN_DIR: where custos, custosd and custos-agent are (default build/cmd).
# Env: REPS (default 2), COLD (1: drop the page cache before each timed run),
#      SERVER (default WORKDIR/server),
#      PIN (0, default: every process may use every core; 1: two machines
#      emulated on a 2-core box: the local backup and the agent on CPU 0 (the
#      server), custosd and the polling CLI on CPU 1 (the appliance)).
#      Results go to WORKDIR/remote/runs.csv (PIN=0) or runs-pinned.csv.
# Steps per rep: first backup and unchanged re-backup, local and through the agent.
# Output: one line per run and a markdown table (wall, throughput, peak RSS of
#   custos / custosd / custos-agent, and the CPU seconds of each) on stdout;
#   runs in WORKDIR/remote/runs.csv.
set -euo pipefail

WORK=$(cd "$1" && pwd)
BIN=$(cd "${2:-build/cmd}" && pwd)
REPS=${REPS:-2}
COLD=${COLD:-1}
SERVER=${SERVER:-$WORK/server}
PIN=${PIN:-0}
OUT=$WORK/remote
mkdir -p "$OUT"
CSV=$OUT/runs.csv
server_cpu=() appliance_cpu=()
if [[ $PIN == 1 ]]; then
  CSV=$OUT/runs-pinned.csv
  server_cpu=(taskset -c 0) appliance_cpu=(taskset -c 1)
fi
HEADER="mode,rep,wall_s,bytes,custos_rss_kb,custosd_rss_kb,agent_rss_kb,custos_cpu_s,custosd_cpu_s,agent_cpu_s"
[[ -f $CSV && $(head -1 "$CSV") == "$HEADER" ]] || echo "$HEADER" >"$CSV"
BYTES=$(du -sb "$SERVER" | cut -f1)

drop_cache() {
  sync
  if [[ $COLD == 1 ]]; then echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; fi
}
dpid= apid=
trap 'kill $apid $dpid 2>/dev/null || true' EXIT
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
now() { date +%s.%N; }

# timed MODE REP COMMAND...: drops the cache, runs COMMAND under time(1) and
# appends a CSV row: wall time, peak RSS and the CPU seconds each process
# spent on the run (custosd and the agent when they run).
timed() {
  local mode=$1 rep=$2 t0 t1 wall d0=0 a0=0 drss=0 arss=0 dcpu=0 acpu=0
  shift 2
  drop_cache
  if [[ -n $dpid ]]; then d0=$(cpu "$dpid"); a0=$(cpu "$apid"); fi
  t0=$(now)
  /usr/bin/time -f "%M %U %S" -o "$OUT/time.txt" "$@"
  t1=$(now)
  wall=$(echo "$t1 - $t0" | bc)
  if [[ -n $dpid ]]; then
    drss=$(hwm "$dpid") arss=$(hwm "$apid")
    dcpu=$(echo "$(cpu "$dpid") - $d0" | bc) acpu=$(echo "$(cpu "$apid") - $a0" | bc)
  fi
  local rss ccpu
  read -r rss ccpu < <(awk '{print $1, $2 + $3}' "$OUT/time.txt" | tail -1)
  echo "$mode,$rep,$wall,$BYTES,$rss,$drss,$arss,$ccpu,$dcpu,$acpu" >>"$CSV"
  echo "[$(date +%T)] $mode rep$rep: wall=${wall}s custos=${rss}KB/${ccpu}s custosd=${drss}KB/${dcpu}s agent=${arss}KB/${acpu}s" >&2
}

for rep in $(seq "$REPS"); do
  # Local mode: a fresh repository, a first backup and an unchanged re-backup.
  rm -rf "$OUT/local-repo"
  printf 'bench\n' >"$OUT/pass"
  "$BIN/custos" init --repo "$OUT/local-repo" --password-file "$OUT/pass" --quiet >/dev/null
  local_backup=("${server_cpu[@]}" "$BIN/custos" backup --repo "$OUT/local-repo" --password-file "$OUT/pass" --quiet "$SERVER")
  timed local "$rep" "${local_backup[@]}"
  timed local-unchanged "$rep" "${local_backup[@]}"

  # Through the appliance: a fresh custosd and agent on loopback, the same
  # two backups (the second uses the agent's files cache and HAVE/LACK).
  rm -rf "$OUT/appliance" "$OUT/agent"
  "${appliance_cpu[@]}" "$BIN/custosd" --data-dir "$OUT/appliance" --listen tcp://127.0.0.1:0 >"$OUT/custosd.out" 2>"$OUT/custosd.log" &
  dpid=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/custosd.out" && break; sleep 0.1; done
  ep=$(awk '{print $NF}' "$OUT/custosd.out")
  token=$("$BIN/custos" --data-dir "$OUT/appliance" --json agent add bench | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  "$BIN/custos-agent" --state-dir "$OUT/agent" enroll --appliance "$ep" --token "$token" >/dev/null
  "${server_cpu[@]}" "$BIN/custos-agent" --state-dir "$OUT/agent" run 2>"$OUT/agent.log" &
  apid=$!
  for _ in $(seq 100); do
    "$BIN/custos" --data-dir "$OUT/appliance" --json status 2>/dev/null | grep -q '"connected":true' && break
    sleep 0.1
  done
  remote_backup=("${appliance_cpu[@]}" "$BIN/custos" --data-dir "$OUT/appliance" --quiet backup --agent bench "$SERVER")
  timed remote "$rep" "${remote_backup[@]}"
  timed remote-unchanged "$rep" "${remote_backup[@]}"
  kill $apid $dpid
  wait $apid $dpid 2>/dev/null || true
  dpid= apid=
done

python3 - "$CSV" "$PIN" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
if sys.argv[2] == "1":
    print("PIN=1: local backup and agent on CPU 0, custosd on CPU 1 (two one-core machines emulated)\n")
def med(mode, key):
    v = [float(r[key]) for r in rows if r["mode"] == mode]
    return statistics.median(v) if v else float("nan")
lw, rw = med("local", "wall_s"), med("remote", "wall_s")
b = med("local", "bytes")
n = len([r for r in rows if r["mode"] == "local"])
print(f"Medians of {n} runs (first backup of {b/2**20:.0f} MiB, page cache dropped before each):\n")
print("| mode | wall s | MiB/s | peak RSS MiB |")
print("|---|---|---|---|")
print(f"| local `custos backup` | {lw:.2f} | {b/2**20/lw:.1f} | {med('local','custos_rss_kb')/1024:.1f} |")
print(f"| `custos backup --agent` over loopback | {rw:.2f} | {b/2**20/rw:.1f} | custosd {med('remote','custosd_rss_kb')/1024:.1f}, agent {med('remote','agent_rss_kb')/1024:.1f} |")
print(f"\nremote throughput / local throughput: {lw/rw:.2f} (target at least 0.80)")
lc, ac, dc = med("local", "custos_cpu_s"), med("remote", "agent_cpu_s"), med("remote", "custosd_cpu_s")
print(f"CPU seconds, first backup: local custos {lc:.2f}; through the agent: agent {ac:.2f} + custosd {dc:.2f}"
      f" = {ac + dc:.2f} (local / remote CPU: {lc / (ac + dc):.2f})")
lu, ru = med("local-unchanged", "wall_s"), med("remote-unchanged", "wall_s")
print(f"unchanged re-backup: local {lu:.2f} s, through the agent {ru:.2f} s, ratio {lu/ru:.2f}")
PY
