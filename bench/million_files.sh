#!/usr/bin/env bash
# million_files.sh - scale run: back up a synthetic tree of one million small files.
#
# Usage: bench/million_files.sh WORKDIR [CUSTOS_BINARY]
# Env:   FILES (default 1000000), PER_DIR (default 1000), TMPFS (1: build the tree
#        in a tmpfs mounted at WORKDIR/tree, so the run measures custos, not the disk)
# Prints wall time, CPU, peak RSS and RSS per file for a first backup and an
# unchanged re-backup.
set -euo pipefail
WORK=$(realpath -m "${1:?usage: million_files.sh WORKDIR [CUSTOS_BINARY]}")
HERE=$(cd "$(dirname "$0")" && pwd)
CUSTOS=$(realpath "${2:-$HERE/../build/cmd/custos}")
FILES=${FILES:-1000000} PER_DIR=${PER_DIR:-1000} TMPFS=${TMPFS:-1}
export CUSTOS_PASSWORD=bench-password
mkdir -p "$WORK/tree"
if [ "$TMPFS" = 1 ] && ! mountpoint -q "$WORK/tree"; then mount -t tmpfs -o size=12g,nr_inodes=3m tmpfs "$WORK/tree"; fi
if [ ! -f "$WORK/tree/.done-$FILES" ]; then
  python3 - "$WORK/tree" "$FILES" "$PER_DIR" <<'PY'
import os, sys, random
root, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(1)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(5000)]
for i in range(n):
    d = os.path.join(root, f"d{i // per:05d}")
    if i % per == 0: os.makedirs(d, exist_ok=True)
    body = b" ".join(rnd.choice(words) for _ in range(rnd.randint(4, 200))) + b"\n%d\n" % i
    with open(os.path.join(d, f"f{i:07d}.txt"), "wb") as f: f.write(body)
PY
  touch "$WORK/tree/.done-$FILES"
fi
REPO=$WORK/repo; rm -rf "$REPO"
"$CUSTOS" init --repo "$REPO" --quiet
for step in first unchanged; do
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" "$CUSTOS" backup --repo "$REPO" --json "$WORK/tree" > "$WORK/$step.json"
  read -r wall user sys rss < "$WORK/time.txt"
  awk -v s="$step" -v w="$wall" -v u="$user" -v y="$sys" -v r="$rss" -v n="$FILES" \
    'BEGIN{printf "%-9s files=%d wall=%.1fs cpu=%.1fs peak_rss=%.0fMiB rss_per_file=%.0fB\n", s, n, w, u+y, r/1024, r*1024/n}'
done
du -sh "$REPO"
