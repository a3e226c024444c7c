#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine (as root): installs the
# dependencies, builds custos, creates a demo repository, backs up a sample
# directory (the project's doc/, or $CUSTOS_SAMPLE) twice, restores it with
# verification into a scratch directory, and checks every byte of the repository.
#
#   bash scripts/quickstart.sh
#
# Idempotent: a second run reuses the build and the demo repository.
#
# Environment:
#   CUSTOS_PASSWORD     passphrase of the demo repository (default: custos-demo;
#                       a demo only: use a real passphrase for real data)
#   CUSTOS_REPOSITORY   where the demo repository lives
#                       (default: ${XDG_DATA_HOME:-~/.local/share}/custos/demo-repository)
#   CUSTOS_BUILD_DIR    build directory (default: build)
#   CUSTOS_SKIP_DEPS=1  do not run scripts/install-deps.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${CUSTOS_BUILD_DIR:-build}
DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
export CUSTOS_REPOSITORY=${CUSTOS_REPOSITORY:-$DATA_HOME/custos/demo-repository}
export CUSTOS_PASSWORD=${CUSTOS_PASSWORD:-custos-demo}

step() { echo; echo "==> $*"; }

if [[ ${CUSTOS_SKIP_DEPS:-0} != 1 ]]; then
  step "installing dependencies (scripts/install-deps.sh)"
  bash "$ROOT/scripts/install-deps.sh"
fi

step "building custos in $BUILD/"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target custos
CUSTOS=$ROOT/$BUILD/cmd/custos
[[ $BUILD = /* ]] && CUSTOS=$BUILD/cmd/custos

if [[ -f $CUSTOS_REPOSITORY/config ]]; then
  step "reusing the demo repository at $CUSTOS_REPOSITORY"
else
  step "creating the demo repository at $CUSTOS_REPOSITORY"
  mkdir -p "$(dirname "$CUSTOS_REPOSITORY")"
  # The recovery key goes to a file beside the repository (mode 0600).
  "$CUSTOS" init --recovery-key-file "$CUSTOS_REPOSITORY.recovery-key"
fi

SAMPLE=${CUSTOS_SAMPLE:-$ROOT/doc}
step "custos backup $SAMPLE (a sample directory; run twice: the second run reads nothing new)"
"$CUSTOS" backup --tag quickstart "$SAMPLE"
"$CUSTOS" backup --tag quickstart "$SAMPLE"

step "custos snapshots"
"$CUSTOS" snapshots

RESTORED=$(mktemp -d "${TMPDIR:-/tmp}/custos-quickstart-restore.XXXXXX")
step "custos restore latest into $RESTORED (every file verified against its SHA-256)"
"$CUSTOS" restore latest --target "$RESTORED"
diff -r "$SAMPLE" "$RESTORED$SAMPLE" && echo "restored tree is identical to $SAMPLE"
rm -rf "$RESTORED"

step "custos check --read-data"
"$CUSTOS" check --read-data

echo
echo "The demo repository is at $CUSTOS_REPOSITORY (passphrase from CUSTOS_PASSWORD)."
echo "Try: CUSTOS_REPOSITORY=$CUSTOS_REPOSITORY CUSTOS_PASSWORD=... $CUSTOS --help"
