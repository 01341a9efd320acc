#!/bin/bash
set -eu
cd /work/study1
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s1/runs OPTICAL_CACHE=/work/scratch/s1/cache PYTHONPATH=/work/study1
O="/work/main/.venv/bin/optical --db /work/scratch/s1/stage1.db"
D=/work/main/results/study-fixed
$O report --sweep stage1-fixed --baseline 1:0 --format md -o $D/mul.md --plot $D/mul.png
$O report --sweep stage1-fixed --baseline 1:0 --format json -o $D/mul.json
$O report --sweep stage1-fixed --baseline 1:0 --format csv -o $D/mul.csv
for s in mo cr; do
  $O report --sweep stage1-fixed --baseline 1:0 --setting $s --format md -o $D/$s.md --plot $D/$s.png
  $O report --sweep stage1-fixed --baseline 1:0 --setting $s --format json -o $D/$s.json
done
COLUMNS=140 $O report --sweep stage1-fixed --baseline 1:0 > $D/terminal.txt
$O queue list --name stage1-fixed --json > $D/runs.json
