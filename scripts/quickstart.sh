#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs the
# dependencies, builds custos, custosd and custos-agent, then shows the
# appliance at work on loopback with no setup:
#   1. starts custosd (it creates its repository on first start),
#   2. enrols a local agent with a one-time token and runs it,
#   3. backs up a sample directory (the project's doc/, or $CUSTOS_SAMPLE)
#      through the agent, twice (the second run sends nothing new),
#   4. restores the latest snapshot through the agent into a scratch
#      directory (custos restore --agent: every file verified against its
#      SHA-256 on the agent, the signed report kept on the appliance), and
#      compares it with the source,
#   5. prints the appliance's status, checks every byte of the repository,
#      and stops the agent and the daemon.
#
#   bash scripts/quickstart.sh
#
# Idempotent: a second run reuses the build, the appliance's data directory
# (with its repository) and the agent's enrolment.
#
# Environment:
#   CUSTOS_DATA_DIR     the appliance's data directory
#                       (default: ${XDG_DATA_HOME:-~/.local/share}/custos/demo-appliance)
#   CUSTOS_AGENT_DIR    the demo agent's state directory (default: beside it, demo-agent)
#   CUSTOS_LISTEN       the agent endpoint (default: tcp://127.0.0.1:7468)
#   CUSTOS_BUILD_DIR    build directory (default: build)
#   CUSTOS_SKIP_DEPS=1  do not run scripts/install-deps.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${CUSTOS_BUILD_DIR:-build}
DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
export CUSTOS_DATA_DIR=${CUSTOS_DATA_DIR:-$DATA_HOME/custos/demo-appliance}
AGENT_DIR=${CUSTOS_AGENT_DIR:-$(dirname "$CUSTOS_DATA_DIR")/demo-agent}
LISTEN=${CUSTOS_LISTEN:-tcp://127.0.0.1:7468}

step() { echo; echo "==> $*"; }

if [[ ${CUSTOS_SKIP_DEPS:-0} != 1 ]]; then
  step "installing dependencies (scripts/install-deps.sh)"
  bash "$ROOT/scripts/install-deps.sh"
fi

step "building custos, custosd and custos-agent in $BUILD/"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target custos custosd custos-agent
BIN=$ROOT/$BUILD/cmd
[[ $BUILD = /* ]] && BIN=$BUILD/cmd
CUSTOS=$BIN/custos

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/custos-quickstart.XXXXXX")
DAEMON_PID= AGENT_PID=
cleanup() {
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  [[ -n $DAEMON_PID ]] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
}
trap cleanup EXIT

step "starting custosd on $LISTEN (data: $CUSTOS_DATA_DIR; log: $LOGS/custosd.log)"
"$BIN/custosd" --listen "$LISTEN" >"$LOGS/custosd.out" 2>"$LOGS/custosd.log" &
DAEMON_PID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$LOGS/custosd.out" 2>/dev/null && break
  if ! kill -0 "$DAEMON_PID" 2>/dev/null; then cat "$LOGS/custosd.log"; exit 1; fi
  sleep 0.1
done
cat "$LOGS/custosd.out"
sed -n 's/^custosd: created repository/custosd: created repository/p' "$LOGS/custosd.log"

if [[ -f $AGENT_DIR/agent.key ]]; then
  step "reusing the enrolled demo agent in $AGENT_DIR"
else
  step "custos agent add demo, then custos-agent enroll with its one-time token"
  TOKEN=$("$CUSTOS" --json agent add demo | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  "$BIN/custos-agent" --state-dir "$AGENT_DIR" enroll --appliance "$LISTEN" --token "$TOKEN"
fi

step "starting custos-agent (log: $LOGS/agent.log)"
"$BIN/custos-agent" --state-dir "$AGENT_DIR" run >"$LOGS/agent.out" 2>"$LOGS/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do
  "$CUSTOS" --json status 2>/dev/null | grep -q '"connected":true' && break
  sleep 0.1
done

SAMPLE=${CUSTOS_SAMPLE:-$ROOT/doc}
step "custos backup --agent demo $SAMPLE (twice: the second run sends nothing new)"
"$CUSTOS" backup --agent demo "$SAMPLE"
"$CUSTOS" backup --agent demo "$SAMPLE"

# The appliance's repository, read with the ordinary CLI (custosd holds the writer lock).
REPO=(--repo "$CUSTOS_DATA_DIR/repository" --password-file "$CUSTOS_DATA_DIR/repository.pass")
step "custos snapshots (the appliance's repository)"
"$CUSTOS" "${REPO[@]}" snapshots

RESTORED=$(mktemp -d "${TMPDIR:-/tmp}/custos-quickstart-restore.XXXXXX")
step "custos restore latest --agent demo --target $RESTORED (every file verified on the agent)"
"$CUSTOS" restore latest --agent demo --target "$RESTORED"
diff -r "$SAMPLE" "$RESTORED$SAMPLE" && echo "restored tree is identical to $SAMPLE"
rm -rf "$RESTORED"

step "custos reports list (the signed restore report, kept on the appliance)"
"$CUSTOS" "${REPO[@]}" reports list

step "custos status"
"$CUSTOS" status

step "custos check --read-data (the appliance's repository)"
"$CUSTOS" "${REPO[@]}" check --read-data

echo
echo "The appliance's data is in $CUSTOS_DATA_DIR (repository, its passphrase file, the"
echo "recovery key to store offline, agents and job history). custosd and the agent stop now;"
echo "start them again with: $BIN/custosd & $BIN/custos-agent --state-dir $AGENT_DIR run &"
