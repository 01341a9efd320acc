#!/usr/bin/env bash
# GPU check, at most 10 minutes on a CUDA box: runs configs/paper.toml for one ratio (short) through
# the real queue and worker, then prints step time, GPU utilisation during training, peak GPU
# memory and the full-MLQA-R evaluation time (benchmarks/gpu_check_report.py). With two or more
# GPUs it then runs two short experiments with `optical worker --device all` and checks that they
# ran at the same time on different GPUs.
#
#   benchmarks/gpu_check.sh              # on the GPU box, from the repository (its .venv or PATH)
#   benchmarks/gpu_check.sh --dry-run    # validate configs and print the plan; trains nothing
#   benchmarks/gpu_check.sh --cpu-smoke  # the same pipeline on CPU with configs/smoke.toml and two
#                                        # CPU workers (`--device cpu,cpu`): checks the plumbing
# Options: --steps N (paper run, default 60), --keep DIR (keep the database, samples and runs there).
# Data: OPTICAL_DATA (default ../shared/data beside the repository).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
STEPS=60
KEEP=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) MODE=dry ;;
    --cpu-smoke) MODE=cpu ;;
    --steps) STEPS="$2"; shift ;;
    --keep) KEEP="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --steps must be a positive integer" >&2; exit 2; }

if [[ -x "$REPO/.venv/bin/optical" ]]; then
  OPTICAL="$REPO/.venv/bin/optical"; PY="$REPO/.venv/bin/python"
else
  OPTICAL="$(command -v optical || true)"; PY="$(command -v python3)"
fi
[[ -n "$OPTICAL" ]] || { echo "error: no optical entry point: make the venv (make test) or pip install -e ." >&2; exit 2; }
export OPTICAL_DATA="${OPTICAL_DATA:-$(cd "$REPO/.." && pwd)/shared/data}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

WORK="${KEEP:-$(mktemp -d -t optical-gpu-check.XXXXXX)}"
mkdir -p "$WORK"
DB="$WORK/experiments.db"
SAMPLES="$WORK/gpu-samples.csv"
SAMPLER_PID=""
cleanup() {
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  if [[ -z "$KEEP" ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [[ "$MODE" == cpu ]]; then
  CONFIG="$REPO/configs/smoke.toml"; DEVICE=cpu; POOL="cpu,cpu"; SPREAD=1  # two workers, one device kind
  SETS=(--set train.steps=4 --set eval.every=2 --set eval.full_at_end=true --set eval.langs=hi
        --set train.save_model=true --set data.dev_questions=20 --set train.select=best-dev)
  POOL_SETS=(--set train.steps=2 --set eval.every=0)
else
  CONFIG="$REPO/configs/paper.toml"; DEVICE=cuda:0; POOL=all; SPREAD=2
  # Short: the curve at the start, the middle and the end; the full benchmark at the end (timed).
  SETS=(--set "train.steps=$STEPS" --set "train.warmup_steps=$(( (STEPS + 9) / 10 ))"
        --set "eval.every=$(( (STEPS + 1) / 2 ))" --set "train.checkpoint_every=$(( (STEPS + 1) / 2 ))")
  POOL_SETS=(--set train.steps=30 --set eval.every=0 --set eval.full_at_end=false --set train.save_model=false)
fi

GPUS=0
if command -v nvidia-smi >/dev/null 2>&1; then
  GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l || echo 0)"
fi
echo "gpu check: mode $MODE, config ${CONFIG#"$REPO"/}, device $DEVICE, $GPUS GPU(s) visible, work dir $WORK"
echo "           optical: $OPTICAL; data: $OPTICAL_DATA"

# Queueing validates every override (one error line on a bad key) before anything trains.
"$OPTICAL" --db "$DB" queue add -c "$CONFIG" -r 1:1 -s 0 --name check "${SETS[@]}" >/dev/null
if [[ "$MODE" != cpu && "$GPUS" -lt 2 ]]; then POOL=""; fi
if [[ -n "$POOL" ]]; then
  "$OPTICAL" --db "$DB" queue add -c "$CONFIG" -r 1:0 -r 0:1 -s 0 --name pool "${SETS[@]}" "${POOL_SETS[@]}" \
    --priority -1 >/dev/null
fi
if [[ "$MODE" == dry ]]; then
  echo "dry run: configs valid; would run"
  echo "  $OPTICAL --db DB worker --device $DEVICE --until-empty  (sweep 'check': ${SETS[*]})"
  [[ -n "$POOL" ]] && echo "  $OPTICAL --db DB worker --device $POOL --until-empty  (sweep 'pool')"
  [[ -z "$POOL" ]] && echo "  (fewer than two GPUs: no two-worker check)"
  echo "  $PY $REPO/benchmarks/gpu_check_report.py --db DB --samples gpu-samples.csv"
  exit 0
fi

if [[ "$GPUS" -gt 0 ]]; then
  # One line a sample: epoch seconds, GPU index, utilisation %, memory used MiB.
  (nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 |
     while IFS= read -r line; do echo "$(date +%s.%N), $line"; done > "$SAMPLES") &
  SAMPLER_PID=$!
fi

start=$(date +%s)
echo "== one paper-config run (ratio 1:1) on $DEVICE"
# The pool's runs have a lower priority: this worker takes the check run only.
timeout 360 "$OPTICAL" --db "$DB" worker --device "$DEVICE" --once --poll 0.5 >"$WORK/worker.log" 2>&1 \
  || { echo "worker failed or timed out; last lines of its log:"; tail -20 "$WORK/worker.log"; exit 1; }
status=0
"$PY" "$REPO/benchmarks/gpu_check_report.py" --db "$DB" --samples "$SAMPLES" --name check || status=1

if [[ -n "$POOL" ]]; then
  echo "== two workers: optical worker --device $POOL"
  timeout 180 "$OPTICAL" --db "$DB" worker --device "$POOL" --until-empty --poll 0.5 >"$WORK/pool.log" 2>&1 \
    || { echo "the worker pool failed or timed out; last lines of its log:"; tail -20 "$WORK/pool.log"; exit 1; }
  "$PY" "$REPO/benchmarks/gpu_check_report.py" --db "$DB" --samples "$SAMPLES" --name pool --expect-devices "$SPREAD" \
    || status=1
fi
echo "gpu check finished in $(( $(date +%s) - start )) s (status $status)"
exit $status
