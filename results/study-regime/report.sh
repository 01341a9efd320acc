#!/bin/bash
# The reports of stage 2, from its queue database (the full MLQA-R result of each run's
# best-dev model), in the same formats as results/study-fixed/.
set -eu
cd /work/study2
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s2/runs OPTICAL_CACHE=/work/scratch/s2/cache PYTHONPATH=/work/study2
O="/work/main/.venv/bin/optical --db /work/scratch/s2/stage2.db"
D=/work/main/results/study-regime
$O report --sweep study-regime --baseline 1:0 --format md -o $D/mul.md --plot $D/mul.png
$O report --sweep study-regime --baseline 1:0 --format json -o $D/mul.json
$O report --sweep study-regime --baseline 1:0 --format csv -o $D/mul.csv
for s in mo cr; do
  $O report --sweep study-regime --baseline 1:0 --setting $s --format md -o $D/$s.md --plot $D/$s.png
  $O report --sweep study-regime --baseline 1:0 --setting $s --format json -o $D/$s.json
done
COLUMNS=140 $O report --sweep study-regime --baseline 1:0 > $D/terminal.txt
$O queue list --name study-regime --json > $D/runs.json
