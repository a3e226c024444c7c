#!/usr/bin/env bash
# triage.sh - issue 7's collection benchmark: the linux-triage profile
# collected from an agent on this machine through a custosd on loopback, then
# the case exported and its bundle verified (VERIFY.sh and custos evidence
# verify). Reports seconds, items, gaps, bytes and the bundle's size.
#
# Usage:  bench/triage.sh WORKDIR [BIN_DIR]
#   BIN_DIR: where custos, custosd and custos-agent are (default build/cmd).
#   Run as root to collect what a real triage collects (the agent reads
#   /etc/shadow, every process's executable, the journal).
# Env: EXCLUDE (space-separated subtrees the timeline and trees leave out,
#      default none), REPS (default 1).
# Output: one line per step and a markdown table on stdout; the case bundle
#   stays in WORKDIR/triage/case.tar.
set -euo pipefail

WORK=$(mkdir -p "$1" && cd "$1" && pwd)
BIN=$(cd "${2:-build/cmd}" && pwd)
REPS=${REPS:-1}
OUT=$WORK/triage
dpid= apid=
trap 'kill $apid $dpid 2>/dev/null || true' EXIT
now() { date +%s.%N; }
excludes=()
for e in ${EXCLUDE:-}; do excludes+=(--exclude "$e"); done

echo "| rep | collect s | items | gaps (failed) | absent | bytes collected | export s | bundle MiB | VERIFY.sh s | custos evidence verify s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for rep in $(seq "$REPS"); do
  rm -rf "$OUT"
  mkdir -p "$OUT"
  "$BIN/custosd" --data-dir "$OUT/appliance" --listen tcp://127.0.0.1:0 >"$OUT/custosd.out" 2>"$OUT/custosd.log" &
  dpid=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/custosd.out" && break; sleep 0.1; done
  ep=$(awk '{print $NF}' "$OUT/custosd.out")
  C=("$BIN/custos" --data-dir "$OUT/appliance")
  token=$("${C[@]}" --json agent add bench | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  "$BIN/custos-agent" --state-dir "$OUT/agent" enroll --appliance "$ep" --token "$token" >/dev/null
  "$BIN/custos-agent" --state-dir "$OUT/agent" run 2>"$OUT/agent.log" &
  apid=$!
  for _ in $(seq 100); do
    "${C[@]}" --json status 2>/dev/null | grep -q '"connected":true' && break
    sleep 0.1
  done
  id=$("${C[@]}" --json case open --title "triage benchmark" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  t0=$(now)
  rc=0
  "${C[@]}" --json case collect "$id" --agent bench --profile linux-triage "${excludes[@]}" >"$OUT/collect.json" || rc=$?
  t1=$(now)
  [[ $rc == 0 || $rc == 3 ]] || { echo "collect failed (exit $rc)" >&2; cat "$OUT/custosd.log" >&2; exit 1; }
  read -r items gaps absent bytes < <(python3 - "$OUT/appliance/evidence/cases/$id/ledger.jsonl" <<'PY'
import json, sys
end = [json.loads(l) for l in open(sys.argv[1]) if '"type":"task.end"' in l][-1]["body"]
print(end["collected"], end["failed"], end["counts"]["absent"], end["counts"]["bytes"])
PY
)
  t2=$(now)
  "${C[@]}" case export "$id" -o "$OUT/case.tar" >/dev/null
  t3=$(now)
  mkdir -p "$OUT/x" && tar -xf "$OUT/case.tar" -C "$OUT/x"
  t4=$(now)
  (cd "$OUT/x/custos-case-$id" && sh VERIFY.sh >/dev/null)
  t5=$(now)
  "$BIN/custos" evidence verify "$OUT/case.tar" >/dev/null
  t6=$(now)
  size=$(stat -c %s "$OUT/case.tar")
  printf '| %d | %.1f | %s | %s | %s | %s | %.1f | %.1f | %.1f | %.1f |\n' "$rep" "$(echo "$t1 - $t0" | bc)" "$items" \
    "$gaps" "$absent" "$bytes" "$(echo "$t3 - $t2" | bc)" "$(echo "$size / 1048576" | bc -l)" \
    "$(echo "$t5 - $t4" | bc)" "$(echo "$t6 - $t5" | bc)"
  kill $apid $dpid
  wait $apid $dpid 2>/dev/null || true
  dpid= apid=
done
