"""The numbers of a GPU check (benchmarks/gpu_check.sh), read back from its database and its
nvidia-smi samples: per run, the device, step time, GPU utilisation while training, peak GPU
memory, and the full MLQA-R evaluation time; for the two-worker check, whether the runs shared a
GPU and overlapped in time.

    python benchmarks/gpu_check_report.py --db DB [--samples gpu.csv] [--expect-devices 2] [--json]

`--samples`: lines `epoch_seconds, gpu_index, utilization %, memory.used MiB` (what the check's
sampler writes). Exit status 1 when a run is not done or the two-worker check failed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.metric_keys import Split, TrainKey
from engine.statuses import Status
from engine.store import Experiment, open_store

_FULL_EVAL = re.compile(rf"step \d+: {Split.FULL}/ metrics in ([0-9.]+)s")


@dataclass
class Sample:
    time: float
    gpu: int
    util: float
    memory_mib: float


@dataclass
class RunNumbers:
    id: int
    ratio: str
    status: str
    device: str
    steps: int
    step_s_median: float | None
    examples_per_s_median: float | None
    train_window_s: float | None
    gpu_util_mean_pct: float | None
    gpu_memory_peak_mib: float | None
    full_eval_s: float | None
    started_at: float | None
    finished_at: float | None


def read_samples(path: Path | None) -> list[Sample]:
    if path is None or not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            out.append(Sample(float(parts[0]), int(parts[1]), float(parts[2]), float(parts[3])))
        except (ValueError, IndexError):
            continue  # a header, a torn last line, "[N/A]"
    return out


def gpu_index(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    return int(device.split(":")[1]) if ":" in device else 0


def run_numbers(store, exp: Experiment, samples: list[Sample]) -> RunNumbers:
    speed = store.metrics(exp.id, keys=[TrainKey.EXAMPLES_PER_S])
    times = sorted(p.time for p in store.metrics(exp.id, keys=[TrainKey.LOSS]))
    train = exp.config.get("train", {})
    per_step = int(train.get("batch_size", 0)) * int(train.get("grad_accum", 1))
    # The first steps include CUDA start-up and kernel selection: the median of the rest.
    rates = [p.value for p in sorted(speed, key=lambda p: p.step)[3:] or speed]
    eps = statistics.median(rates) if rates else None
    full = [float(m.group(1)) for e in store.events(exp.id) if (m := _FULL_EVAL.search(e.message))]
    device = exp.device or ""
    index = gpu_index(device)
    mine = [s for s in samples if s.gpu == index]
    window = (times[0], times[-1]) if len(times) >= 2 else None
    training = [s.util for s in mine if window and window[0] <= s.time <= window[1]]
    during_run = [s.memory_mib for s in mine if exp.started_at and s.time >= exp.started_at
                  and (exp.finished_at is None or s.time <= exp.finished_at)]
    return RunNumbers(
        id=exp.id, ratio=exp.ratio, status=str(exp.status), device=device, steps=exp.step,
        step_s_median=per_step / eps if eps else None, examples_per_s_median=eps,
        train_window_s=window[1] - window[0] if window else None,
        gpu_util_mean_pct=statistics.mean(training) if training else None,
        gpu_memory_peak_mib=max(during_run) if during_run else None,
        full_eval_s=full[-1] if full else None, started_at=exp.started_at,
        finished_at=exp.finished_at)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--samples", type=Path, default=None, help="nvidia-smi samples (see above)")
    p.add_argument("--name", default=None, help="only the experiments of this sweep name")
    p.add_argument("--expect-devices", type=int, default=0,
                   help="the runs of --name must have used this many distinct devices, overlapping "
                        "in time")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    samples = read_samples(args.samples)
    with open_store(args.db) as store:
        exps = store.list_experiments(name=args.name) if args.name else store.list_experiments()
        rows = [run_numbers(store, e, samples) for e in sorted(exps, key=lambda e: e.id)]
    ok = bool(rows) and all(r.status == Status.DONE for r in rows)
    spread = None
    if args.expect_devices:
        devices = {r.device for r in rows}
        starts = [r.started_at for r in rows if r.started_at]
        ends = [r.finished_at for r in rows if r.finished_at]
        overlapped = bool(starts and ends) and max(starts) < min(ends)
        spread = {"devices": sorted(devices), "overlapped": overlapped}
        ok = ok and len(devices) >= args.expect_devices and overlapped
    if args.json:
        print(json.dumps({"ok": ok, "runs": [asdict(r) for r in rows], "spread": spread}, indent=2))
        return 0 if ok else 1
    print(f"{'id':>3} {'ratio':>5} {'status':>9} {'device':>7} {'steps':>5} {'step s':>7} "
          f"{'ex/s':>7} "
          f"{'GPU util %':>10} {'peak MiB':>9} {'full eval s':>11}")
    for r in rows:
        print(f"{r.id:>3} {r.ratio:>5} {r.status:>9} {r.device:>7} {r.steps:>5} "
              f"{_fmt(r.step_s_median, '.3f'):>7} "
              f"{_fmt(r.examples_per_s_median, '.0f'):>7} {_fmt(r.gpu_util_mean_pct, '.0f'):>10} "
              f"{_fmt(r.gpu_memory_peak_mib, '.0f'):>9} {_fmt(r.full_eval_s, '.1f'):>11}")
    if not samples:
        print("(no nvidia-smi samples: GPU utilisation and memory are n/a)")
    if spread is not None:
        print(f"workers: devices {', '.join(spread['devices'])}; runs overlapped in time: "
              f"{spread['overlapped']}")
    print("OK" if ok
          else "NOT OK: a run is not done, or the workers did not spread over the devices")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
