#!/bin/bash
# Stage 1, continued: the same worker command with one torch thread (OMP/MKL), because the
# 2-core machine is shared and OpenMP barriers under contention cost 3x (11 s a step measured).
set -u
cd /work/study1
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s1/runs OPTICAL_CACHE=/work/scratch/s1/cache
export PYTHONPATH=/work/study1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DB=/work/scratch/s1/stage1.db
/usr/bin/time -v nice -n -10 /work/main/.venv/bin/optical --db $DB worker --device cpu --until-empty >> /work/scratch/s1/worker.log 2>&1
date -u +%FT%TZ > /work/scratch/s1/finished
