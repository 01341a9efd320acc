#!/bin/bash
# A second single-threaded worker on the same stage-1 queue (the 2-core machine: two
# single-threaded runs finish twice as many runs as one, without OpenMP barriers under load).
set -u
cd /work/study1
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s1/runs OPTICAL_CACHE=/work/scratch/s1/cache
export PYTHONPATH=/work/study1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
DB=/work/scratch/s1/stage1.db
/usr/bin/time -v nice -n 5 /work/main/.venv/bin/optical --db $DB worker --device cpu --until-empty --host-name vm-b >> /work/scratch/s1/worker2.log 2>&1
