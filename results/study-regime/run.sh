#!/bin/bash
# Stage 2 of the discriminating study (issue 18): configs/study-regime.toml, run from a clean clone
# of main (/work/study2) on the shared 2-core machine. Queued so that whatever finishes first is a
# balanced design: seed 0's 1:0 and 0:1 first, then seed 1's, then seed 2's, then the 1:1 runs.
set -u
cd /work/study2
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s2/runs OPTICAL_CACHE=/work/scratch/s2/cache
export PYTHONPATH=/work/study2
OPT=/work/main/.venv/bin/optical
DB=/work/scratch/s2/stage2.db
for s in 0 1 2; do
  $OPT --db $DB queue add -c configs/study-regime.toml -r 1:0 -r 0:1 -s $s -p $((4 - s)) --name study-regime
done
$OPT --db $DB queue add -c configs/study-regime.toml -r 1:1 -s 0 -s 1 -s 2 -p 0 --name study-regime
date -u +%FT%TZ > /work/scratch/s2/started
# Cut for time, at 19:02 UTC (both workers single-threaded on the shared 2-core machine: ~28 s a
# training step, ~4 min per dev+subset evaluation point, ~22 min for the full benchmark):
#   optical --db /work/scratch/s2/stage2.db queue cancel 5 6 7 8 9
