#!/usr/bin/env bash
# prune_peers.sh - forget half of 30 snapshots and prune: custos vs restic,
# same data, same run.
#
# Usage:  bench/prune_peers.sh WORKDIR [CUSTOS_BINARY]
#   The dataset is the Linux source trees of bench/backup_peers.sh
#   (WORKDIR/trees/<version>/linux-source-6.1, or TREES=DIR pointing at an
#   existing trees directory such as /work/bench-data/trees).
# 30 "nights": night n lays out version n mod 3 (rsync --checksum, so only
#   changed files are rewritten) and then appends one line to a deterministic
#   2 % of the files (those whose sorted position is n mod 50), so that every
#   night has data of its own. Both tools back up every night (untimed).
# Timed, per tool: forgetting all but the 15 newest snapshots and pruning, as
#   one command each:
#     custos forget --keep-last 15 --prune --grace 0 (the grace period is
#       skipped: mark and sweep in one run; default max waste 20 %)
#     restic forget --keep-last 15 --prune (default max-unused 5 %)
#   then the repository size, and an untimed check --read-data of both.
#   The 30 nights are backed up once; each of RUNS timed runs starts from a
#   copy of those repositories (cp -a, untimed), so the runs differ only in
#   machine noise.
# Env: RUNS (default 2), NIGHTS (30), KEEP (15), TREES, VERSIONS.
# Output: WORKDIR/results/prune.csv and a markdown table of custos/restic
#   ratios (wall, CPU, peak RSS, repository size after) on stdout.
set -euo pipefail
WORK=$(realpath -m "${1:?usage: prune_peers.sh WORKDIR [CUSTOS_BINARY]}")
HERE=$(cd "$(dirname "$0")" && pwd)
CUSTOS=$(realpath "${2:-$HERE/../build/cmd/custos}")
RUNS=${RUNS:-2}
NIGHTS=${NIGHTS:-30}
KEEP=${KEEP:-15}
TREES=${TREES:-$WORK/trees}
VERSIONS=(${VERSIONS:-6.1.176-1 6.1.187-1 6.1.190-1})
SRC=linux-source-6.1
SERVER=$WORK/server RES=$WORK/results LOGS=$WORK/logs
mkdir -p "$RES" "$LOGS"
export RESTIC_PASSWORD=bench-password CUSTOS_PASSWORD=bench-password
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
for t in restic rsync /usr/bin/time; do command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }; done
[ -x "$CUSTOS" ] || { echo "no custos binary at $CUSTOS (build first)" >&2; exit 1; }
for v in "${VERSIONS[@]}"; do
  [ -d "$TREES/$v/$SRC" ] || { echo "no tree $TREES/$v/$SRC: run bench/backup_peers.sh once, or set TREES" >&2; exit 1; }
done

night() {  # lays out night $1 in $SERVER
  local n=$1 v=${VERSIONS[$(( $1 % ${#VERSIONS[@]} ))]}
  if [ ! -d "$SERVER" ]; then mkdir -p "$SERVER"; rsync -a "$TREES/$v/$SRC/" "$SERVER/"
  else rsync -a --no-times --checksum --delete "$TREES/$v/$SRC/" "$SERVER/"; fi
  (cd "$SERVER" && find . -type f | LC_ALL=C sort | awk -v k=$(( n % 50 )) 'NR % 50 == k' |
     while IFS= read -r f; do printf 'custos-bench night %d\n' "$n" >> "$f"; done)
  sync
}

CSV=$RES/prune.csv
[ -f "$CSV" ] || echo "tool,rep,step,wall_s,cpu_s,maxrss_kb,rc,repo_bytes" > "$CSV"
measure() {  # measure TOOL REP STEP REPO cmd...
  local tool=$1 rep=$2 step=$3 repo=$4; shift 4
  local tf rc=0; tf=$(mktemp)
  sync
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" > "$LOGS/$tool-$rep-$step.out" 2> "$LOGS/$tool-$rep-$step.err" || rc=$?
  sync
  read -r wall user sys rss < <(tail -1 "$tf")
  local rb; rb=$(du -sb "$repo" | cut -f1)
  local cpu; cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  echo "$tool,$rep,$step,$wall,$cpu,$rss,$rc,$rb" >> "$CSV"
  log "$tool rep$rep $step: wall=${wall}s cpu=${cpu}s rss=${rss}KB rc=$rc repo=$rb"
  rm -f "$tf"
  [ "$rc" = 0 ] || { cat "$LOGS/$tool-$rep-$step.err" >&2; exit 1; }
}

CREPO=$WORK/custos-repo RREPO=$WORK/restic-repo
BASE=$WORK/base
if [ ! -f "$BASE/done" ]; then
  rm -rf "$BASE" "$CREPO" "$RREPO" "$SERVER"; mkdir -p "$BASE"
  "$CUSTOS" init --repo "$CREPO" --quiet
  restic init --repo "$RREPO" >/dev/null
  for n in $(seq 1 "$NIGHTS"); do
    night "$n"
    measure custos 0 "backup$n" "$CREPO" env -C "$WORK" "$CUSTOS" backup --repo "$CREPO" --json server
    measure restic 0 "backup$n" "$RREPO" env -C "$WORK" restic --repo "$RREPO" backup --json server
  done
  cp -a "$CREPO" "$BASE/custos"; cp -a "$RREPO" "$BASE/restic"; touch "$BASE/done"
fi
for rep in $(seq 1 "$RUNS"); do
  rm -rf "$CREPO" "$RREPO"; cp -a "$BASE/custos" "$CREPO"; cp -a "$BASE/restic" "$RREPO"
  measure custos "$rep" forget-prune "$CREPO" "$CUSTOS" --repo "$CREPO" --json forget --keep-last "$KEEP" --prune --grace 0
  measure restic "$rep" forget-prune "$RREPO" restic --repo "$RREPO" forget --keep-last "$KEEP" --prune
  "$CUSTOS" --repo "$CREPO" check --read-data > "$LOGS/custos-$rep-check.out" 2>&1 || { echo "custos check failed" >&2; exit 1; }
  restic --repo "$RREPO" check --read-data > "$LOGS/restic-$rep-check.out" 2>&1 || { echo "restic check failed" >&2; exit 1; }
  log "run $rep: both repositories check clean after the prune"
done

python3 - "$CSV" <<'EOF'
import csv, sys, statistics
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["step"] == "forget-prune"]
for r in rows:
    print(f"run {r['rep']} {r['tool']}: wall {r['wall_s']} s, CPU {r['cpu_s']} s, RSS {int(r['maxrss_kb']) // 1024} MiB, "
          f"repository {int(r['repo_bytes']) / 2**20:.1f} MiB")
def med(tool, key):
    v = [float(r[key]) for r in rows if r["tool"] == tool]
    return statistics.median(v) if v else float("nan")
print("| metric | custos | restic | custos/restic |")
print("|---|---:|---:|---:|")
for key, name, scale in (("wall_s", "wall s", 1), ("cpu_s", "CPU s", 1), ("maxrss_kb", "peak RSS MiB", 1 / 1024),
                         ("repo_bytes", "repository MiB after", 1 / 2**20)):
    c, r = med("custos", key) * scale, med("restic", key) * scale
    print(f"| {name} | {c:.2f} | {r:.2f} | {c / r:.2f} |")
EOF
