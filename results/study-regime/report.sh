#!/bin/bash
# The reports of stage 2, from its queue database (the full MLQA-R result of each run's
# best-dev model), with results/report.sh: the same formats as results/study-fixed/.
set -eu
cd /work/study2
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s2/runs OPTICAL_CACHE=/work/scratch/s2/cache PYTHONPATH=/work/study2
export OPTICAL_DB=/work/scratch/s2/stage2.db OPTICAL=/work/main/.venv/bin/optical
/work/main/results/report.sh study-regime /work/main/results/study-regime
