#!/bin/bash
# The reports of stage 1, from its queue database, with results/report.sh.
set -eu
cd /work/study1
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s1/runs OPTICAL_CACHE=/work/scratch/s1/cache PYTHONPATH=/work/study1
export OPTICAL_DB=/work/scratch/s1/stage1.db OPTICAL=/work/main/.venv/bin/optical
/work/main/results/report.sh stage1-fixed /work/main/results/study-fixed
