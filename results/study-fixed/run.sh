#!/bin/bash
# Stage 1 of the discriminating study (issue 18), run from a clean clone.
set -u
cd /work/study1
export OPTICAL_DATA=/work/shared/data OPTICAL_RUNS=/work/scratch/s1/runs OPTICAL_CACHE=/work/scratch/s1/cache
export PYTHONPATH=/work/study1
PY=/work/main/.venv/bin/python
OPT=/work/main/.venv/bin/optical
DB=/work/scratch/s1/stage1.db
$OPT --db $DB queue add -c configs/study-cpu.toml -r 1:0 -r 1:1 -r 0:1 --set ot.weight=0 -s 0 -s 1 -s 2 --name stage1-fixed
date -u +%FT%TZ > /work/scratch/s1/started
/usr/bin/time -v $OPT --db $DB worker --device cpu --until-empty > /work/scratch/s1/worker.log 2>&1
date -u +%FT%TZ > /work/scratch/s1/finished
