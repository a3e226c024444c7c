#!/usr/bin/env bash
# backup_peers.sh - custos, restic and borg on the same data in the same run.
#
# Usage:  bench/backup_peers.sh WORKDIR [CUSTOS_BINARY]
#   WORKDIR needs about 6 GB. The dataset is Debian's linux-source-6.1 in three
#   versions (three "nights" of a changing server), fetched with apt-get
#   download and unpacked by ../shared/bench/peers.sh's prepare phase when
#   present, else by this script.
# Env: REPS (default 1), COLD (1: drop the page cache before each timed step),
#      VERSIONS (default "6.1.176-1 6.1.187-1 6.1.190-1"), TOOLS ("custos restic borg";
#      add restic-atime for restic --with-atime, which records atimes as custos does).
# Steps per tool: init, backup1-full (night 1), backup2-nochange, backup3-night2,
#   backup4-night3, restore (the latest snapshot into an empty directory:
#   custos with its default SHA-256 verification of every file, restic
#   restore, borg extract; the result is then compared with the server tree,
#   untimed). Between nights the server directory is updated with
#   rsync --no-times --checksum --delete: only files whose content changed are
#   rewritten (new mtime/ctime), as an edit on a real server would.
# Output: WORKDIR/results/runs.csv and a markdown table with custos/restic and
#   custos/borg ratios (wall, CPU, peak RSS, repository size) on stdout.
set -euo pipefail
WORK=$(realpath -m "${1:?usage: backup_peers.sh WORKDIR [CUSTOS_BINARY]}")
HERE=$(cd "$(dirname "$0")" && pwd)
CUSTOS=$(realpath "${2:-$HERE/../build/cmd/custos}")
REPS=${REPS:-1}
COLD=${COLD:-1}
VERSIONS=(${VERSIONS:-6.1.176-1 6.1.187-1 6.1.190-1})
TOOLS=${TOOLS:-custos restic borg}
SRC=linux-source-6.1
TREES=$WORK/trees SERVER=$WORK/server RES=$WORK/results LOGS=$WORK/logs
mkdir -p "$TREES" "$RES" "$LOGS" "$WORK/debs"
export RESTIC_PASSWORD=bench-password BORG_PASSPHRASE=bench-password CUSTOS_PASSWORD=bench-password
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

for t in restic borg rsync /usr/bin/time; do command -v "$t" >/dev/null || apt-get install -y restic borgbackup rsync time >/dev/null; done
[ -x "$CUSTOS" ] || { echo "no custos binary at $CUSTOS (build first)" >&2; exit 1; }

# ---------------------------------------------------------------- dataset
for v in "${VERSIONS[@]}"; do
  [ -d "$TREES/$v/$SRC" ] && continue
  deb=$WORK/debs/linux-source-6.1_${v}_all.deb
  [ -f "$deb" ] || (cd "$WORK/debs" && apt-get download "linux-source-6.1=$v")
  x=$WORK/unpack-$v; rm -rf "$x"; mkdir -p "$x" "$TREES/$v"
  dpkg-deb -x "$deb" "$x"
  tar -xJf "$x/usr/src/linux-source-6.1.tar.xz" -C "$TREES/$v"
  rm -rf "$x"
done

can_drop=0
if [ "$COLD" = 1 ] && sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then can_drop=1; fi
CACHE=$([ "$can_drop" = 1 ] && echo cold || echo warm)
flush() { sync; [ "$can_drop" = 1 ] && echo 3 > /proc/sys/vm/drop_caches || true; }

night() {  # night N: lay out the server directory as night N
  local v=${VERSIONS[$(( $1 - 1 ))]}
  if [ "$1" = 1 ]; then
    rm -rf "$SERVER"; mkdir -p "$SERVER"; rsync -a "$TREES/$v/$SRC/" "$SERVER/"
  else
    rsync -a --no-times --checksum --delete "$TREES/$v/$SRC/" "$SERVER/"
  fi
  sync
}

CSV=$RES/runs.csv
[ -f "$CSV" ] || echo "tool,cache,rep,step,wall_s,cpu_s,maxrss_kb,rc,repo_bytes" > "$CSV"
REPO=""
measure() {  # measure TOOL REP STEP cmd...
  local tool=$1 rep=$2 step=$3; shift 3
  local tf; tf=$(mktemp) ; local rc=0
  flush
  /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" > "$LOGS/$tool-$rep-$step.out" 2> "$LOGS/$tool-$rep-$step.err" || rc=$?
  sync
  read -r wall user sys rss < <(tail -1 "$tf")
  local rb=0; [ -n "$REPO" ] && [ -e "$REPO" ] && rb=$(du -sb "$REPO" | cut -f1)
  local cpu; cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
  echo "$tool,$CACHE,$rep,$step,$wall,$cpu,$rss,$rc,$rb" >> "$CSV"
  log "$tool rep$rep $step: wall=${wall}s cpu=${cpu}s rss=${rss}KB rc=$rc repo=$rb"
  rm -f "$tf"
}

TARGET=$WORK/restore-target
fresh_target() { rm -rf "$TARGET"; mkdir -p "$TARGET"; }
compare_restore() {  # compare_restore TOOL DIR: the restored tree must equal night 3
  if diff -rq --no-dereference "$SERVER" "$2" > "$LOGS/$1-restore-diff.txt" 2>&1; then
    log "$1 restore: identical to the server tree"
  else
    log "$1 restore: DIFFERS from the server tree (see $LOGS/$1-restore-diff.txt)"; echo "$1,restore-differs" >> "$RES/problems.csv"
  fi
  rm -rf "$TARGET"
}

for rep in $(seq 1 "$REPS"); do
  for tool in $TOOLS; do
    REPO=$WORK/repo-$tool; rm -rf "$REPO" "$WORK/cache-$tool"
    night 1
    case $tool in
      custos)
        measure custos "$rep" init "$CUSTOS" init --repo "$REPO" --quiet
        for s in backup1-full backup2-nochange; do
          measure custos "$rep" "$s" env -C "$WORK" "$CUSTOS" backup --repo "$REPO" --json server
        done
        night 2; measure custos "$rep" backup3-night2 env -C "$WORK" "$CUSTOS" backup --repo "$REPO" --json server
        night 3; measure custos "$rep" backup4-night3 env -C "$WORK" "$CUSTOS" backup --repo "$REPO" --json server
        fresh_target
        measure custos "$rep" restore "$CUSTOS" restore --repo "$REPO" --quiet --verify hash latest --target "$TARGET"
        compare_restore custos "$TARGET$WORK/server" ;;
      restic|restic-atime)
        # restic stores each file's mtime in place of its atime unless
        # --with-atime; custos records real atimes, so restic-atime is the
        # like-for-like row for repository size.
        RA=(); [ "$tool" = restic-atime ] && RA=(--with-atime)
        export RESTIC_REPOSITORY=$REPO RESTIC_CACHE_DIR=$WORK/cache-$tool
        measure "$tool" "$rep" init restic init
        for s in backup1-full backup2-nochange; do
          measure "$tool" "$rep" "$s" env -C "$WORK" restic backup "${RA[@]}" --json server
        done
        night 2; measure "$tool" "$rep" backup3-night2 env -C "$WORK" restic backup "${RA[@]}" --json server
        night 3; measure "$tool" "$rep" backup4-night3 env -C "$WORK" restic backup "${RA[@]}" --json server
        fresh_target
        measure "$tool" "$rep" restore restic restore latest --target "$TARGET"
        compare_restore "$tool" "$TARGET/server" ;;
      borg)
        export BORG_REPO=$REPO BORG_BASE_DIR=$WORK/cache-borg; mkdir -p "$BORG_BASE_DIR"
        measure borg "$rep" init borg init --encryption repokey-blake2
        measure borg "$rep" backup1-full env -C "$WORK" borg create --json ::n1 server
        measure borg "$rep" backup2-nochange env -C "$WORK" borg create --json ::n1b server
        night 2; measure borg "$rep" backup3-night2 env -C "$WORK" borg create --json ::n2 server
        night 3; measure borg "$rep" backup4-night3 env -C "$WORK" borg create --json ::n3 server
        fresh_target
        measure borg "$rep" restore env -C "$TARGET" borg extract ::n3
        compare_restore borg "$TARGET/server" ;;
    esac
  done
done

python3 - "$CSV" "$CACHE" <<'PY'
import csv, sys, statistics as st
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["cache"] == sys.argv[2]]
steps = ["backup1-full", "backup2-nochange", "backup3-night2", "backup4-night3", "restore"]
def med(tool, step, key):
    xs = [float(r[key]) for r in rows if r["tool"] == tool and r["step"] == step and r["rc"] == "0"]
    return st.median(xs) if xs else float("nan")
print(f"| step | metric | custos | restic | borg | restic-atime | custos/restic | custos/borg | custos/restic-atime |")
print("|---|---|---|---|---|---|---|---|---|")
ratio = lambda a, b: a / b if b == b and b else float("nan")
for s in steps:
    for key, name, scale in [("wall_s", "wall s", 1), ("cpu_s", "CPU s", 1), ("maxrss_kb", "peak RSS MiB", 1/1024),
                             ("repo_bytes", "repo MiB", 1/2**20)]:
        c, r, b, ra = (med(t, s, key) * scale for t in ("custos", "restic", "borg", "restic-atime"))
        print(f"| {s} | {name} | {c:.2f} | {r:.2f} | {b:.2f} | {ra:.2f} | {ratio(c, r):.3f} | {ratio(c, b):.3f} | {ratio(c, ra):.3f} |")
PY
