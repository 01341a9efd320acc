#!/bin/bash
# One single-threaded worker on the stage-2 queue; two run side by side on the 2-core machine
# (two single-threaded runs finish more runs than one two-threaded run, and OpenMP barriers
# suffer badly when other work shares the cores). Usage: worker.sh NAME
set -u
cd /work/study2
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s2/runs OPTICAL_CACHE=/work/scratch/s2/cache
export PYTHONPATH=/work/study2 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DB=/work/scratch/s2/stage2.db
/usr/bin/time -v nice -n -10 /work/main/.venv/bin/optical --db $DB worker --device cpu --until-empty \
  --host-name "$1" >> /work/scratch/s2/worker-$1.log 2>&1
date -u +%FT%TZ >> /work/scratch/s2/finished-$1
