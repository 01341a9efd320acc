#!/bin/bash
# The reports of one study stage, in the formats every results/ folder holds: Mul, Mo and Cr as
# Markdown (+ plot) and JSON, Mul as CSV, the terminal table, and the runs as JSON.
# Usage: OPTICAL_DB=<queue database> [OPTICAL=<optical binary>] results/report.sh SWEEP OUT_DIR
set -eu
SWEEP=$1 D=$2
O="${OPTICAL:-optical} report --sweep $SWEEP --baseline 1:0"
$O --format md -o "$D/mul.md" --plot "$D/mul.png"
$O --format json -o "$D/mul.json"
$O --format csv -o "$D/mul.csv"
for s in mo cr; do
  $O --setting $s --format md -o "$D/$s.md" --plot "$D/$s.png"
  $O --setting $s --format json -o "$D/$s.json"
done
COLUMNS=140 $O > "$D/terminal.txt"
${OPTICAL:-optical} queue list --name "$SWEEP" --json > "$D/runs.json"
