"""Store soak: concurrent metric writers + a dashboard-like reader on one SQLite file, then the
worker's per-experiment overhead with the smoke config.

    OPTICAL_DATA=../shared/data .venv/bin/python benchmarks/bench_store_soak.py [--seconds 60]

1. Soak. `--writers` processes each own one running experiment and call `Store.flush` every
   `--flush-interval` seconds (the training child flushes once a second; this is faster) with
   `--keys` train-like metric points, plus an evaluation-sized burst of `--eval-keys` points every
   `--eval-every` flushes. A reader process polls like the TUI: `Store.change_token()` (SQLite's
   `PRAGMA data_version`), and only when it changed, the new metric rows (`metrics_since`), the
   experiment list and new events. A CLI-like process adds and cancels an experiment every second
   (queue churn). Every error is counted; "database is locked" separately. Reports p50/p99/max
   write (flush) latency and read latency.
2. Worker overhead. A real `python -m engine.running.worker` runs `--overhead-runs` smoke
   experiments (configs/smoke.toml) on CPU; per experiment: claim → child started (provenance
   written, torch imported), claim → data and model loaded (the "started" event), claim → first
   metric point (step-0 evaluation), claim → first training step, claim → done.
Writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.config import load_config, with_run
from engine.metric_keys import MetricName, Setting, Split, TrainKey, lang_unit, metric_key
from engine.store import NewExperiment, RunLease, open_store


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def _is_locked(exc: BaseException) -> bool:
    return "locked" in str(exc).lower() or "busy" in str(exc).lower()


def writer(db: str, exp_id: int, worker_id: str, seconds: float, interval: float, keys: int,
           eval_keys: int, eval_every: int, out: mp.Queue) -> None:
    store = open_store(db)
    lat, errors, locked, points = [], 0, 0, 0
    deadline = time.time() + seconds
    step = 0
    while time.time() < deadline:
        step += 1
        now = time.time()
        batch = [(f"{TrainKey.LOSS}{i}", step, float(i) / (step + 1), now) for i in range(keys)]
        if eval_every and step % eval_every == 0:
            batch += [(metric_key(Split.QUICK, Setting.MUL, lang_unit(f"x{i}"), MetricName.MAP),
                       step, 0.5, now)
                      for i in range(eval_keys)]
        t0 = time.perf_counter()
        try:
            store.flush(RunLease(exp_id, worker_id, 1), batch, step, 10**6)
            lat.append(time.perf_counter() - t0)
            points += len(batch)
        except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
            errors += 1
            locked += _is_locked(exc)
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    store.close()
    out.put({"role": "writer", "latencies": lat, "errors": errors, "locked": locked,
             "points": points})


def reader(db: str, seconds: float, interval: float, out: mp.Queue) -> None:
    store = open_store(db)
    lat, errors, locked, polls, refreshes, rows_read = [], 0, 0, 0, 0, 0
    last_version: object = -1
    cursor: object = 0
    last_event = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        t0 = time.perf_counter()
        try:
            polls += 1
            version = store.change_token()
            if version != last_version:
                last_version = version
                new, cursor = store.metrics_since(cursor)
                rows_read += len(new)
                store.list_experiments()
                ev = store.events(after_id=last_event)
                if ev:
                    last_event = ev[-1].id
                refreshes += 1
                lat.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001
            errors += 1
            locked += _is_locked(exc)
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    store.close()
    out.put({"role": "reader", "latencies": lat, "errors": errors, "locked": locked, "polls": polls,
             "refreshes": refreshes, "rows_read": rows_read})


def churn(db: str, seconds: float, config: dict, out: mp.Queue) -> None:
    store = open_store(db)
    lat, errors, locked, ops = [], 0, 0, 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        t0 = time.perf_counter()
        try:
            (e,) = store.add_experiments([NewExperiment("churn", "1:1", 0, config, priority=-1)])
            store.request_cancel([e.id])
            lat.append(time.perf_counter() - t0)
            ops += 2
        except Exception as exc:  # noqa: BLE001
            errors += 1
            locked += _is_locked(exc)
        time.sleep(1.0)
    store.close()
    out.put({"role": "churn", "latencies": lat, "errors": errors, "locked": locked, "ops": ops})


def soak(args: argparse.Namespace, tmp: Path, config: dict) -> dict:
    db = str(tmp / "soak.db")
    store = open_store(db)
    exps = store.add_experiments([NewExperiment("soak", "1:1", i, config)
                                  for i in range(args.writers)])
    for i, e in enumerate(exps):
        store.claim_next(f"soak-writer-{i}", "cpu")
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=writer,
                         args=(db, e.id, f"soak-writer-{i}", args.seconds, args.flush_interval,
                                              args.keys, args.eval_keys, args.eval_every, out))
             for i, e in enumerate(exps)]
    procs.append(ctx.Process(target=reader, args=(db, args.seconds, args.read_interval, out)))
    procs.append(ctx.Process(target=churn, args=(db, args.seconds, config, out)))
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    w = [r for r in results if r["role"] == "writer"]
    r = next(x for x in results if x["role"] == "reader")
    c = next(x for x in results if x["role"] == "churn")
    wl = [x for res in w for x in res["latencies"]]
    check = store.check()
    store.close()
    ms = 1000.0
    return {
        "writers": args.writers, "seconds": args.seconds, "flush_interval_s": args.flush_interval,
        "keys_per_flush": args.keys, "eval_burst_keys": args.eval_keys,
        "eval_burst_every": args.eval_every,
        "flushes": len(wl), "points_written": sum(x["points"] for x in w),
        "write_latency_ms": {"p50": pct(wl, 50) * ms, "p99": pct(wl, 99) * ms, "max": max(wl) * ms},
        "read_refreshes": r["refreshes"], "read_polls": r["polls"], "rows_read": r["rows_read"],
        "read_latency_ms": {"p50": pct(r["latencies"], 50) * ms,
                            "p99": pct(r["latencies"], 99) * ms,
                            "max": max(r["latencies"], default=0) * ms},
        "queue_ops": c["ops"], "queue_op_latency_ms_p99": pct(c["latencies"], 99) * ms,
        "errors": sum(x["errors"] for x in results),
        "database_is_locked_errors": sum(x["locked"] for x in results),
        "rows_in_db": check["metrics"], "integrity_ok": check["ok"],
    }


def overhead(args: argparse.Namespace, tmp: Path) -> dict:
    db = tmp / "overhead.db"
    cfg = load_config(REPO / "configs" / "smoke.toml")
    store = open_store(db)
    exps = store.add_experiments([NewExperiment("overhead", "1:1", s,
                                                with_run(cfg, "1:1", s).to_dict())
                                  for s in range(args.overhead_runs)])
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "engine.running.worker", "--db", str(db), "--device",
                    "cpu",
                    "--max-experiments", str(len(exps)), "--poll", "0.2"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    rows = []
    for e in store.list_experiments(ids=[e.id for e in exps]):
        events = store.events(e.id)
        claimed = next(ev.time for ev in events if ev.kind == "claimed")
        loaded = next(ev.time for ev in events if ev.kind == "info"
                      and ev.message.startswith("started"))
        ms = store.metrics(e.id)
        first_train = min(m.time for m in ms if m.key == TrainKey.LOSS)
        rows.append({"id": e.id, "status": e.status,
                     "claim_to_child_started_s": e.provenance["started_at"] - claimed,
                     "claim_to_data_and_model_loaded_s": loaded - claimed,
                     "claim_to_first_metric_s": min(m.time for m in ms) - claimed,
                     "claim_to_first_step_s": first_train - claimed,
                     "claim_to_done_s": e.finished_at - claimed})
    store.close()

    def mean(k: str) -> float:
        return sum(r[k] for r in rows) / len(rows)

    return {"runs": rows, "worker_wall_s": wall, "config": "configs/smoke.toml",
            **{f"mean_{k}": mean(k)
               for k in ("claim_to_child_started_s", "claim_to_data_and_model_loaded_s",
                                             "claim_to_first_metric_s", "claim_to_first_step_s",
                                             "claim_to_done_s")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--flush-interval", type=float, default=0.5)
    p.add_argument("--keys", type=int, default=10, help="train-like points per flush")
    p.add_argument("--eval-keys", type=int, default=400, help="points in an evaluation burst")
    p.add_argument("--eval-every", type=int, default=10, help="an evaluation burst every N flushes")
    p.add_argument("--read-interval", type=float, default=0.25)
    p.add_argument("--overhead-runs", type=int, default=3,
                   help="smoke experiments for the overhead (0 = skip)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = p.parse_args()
    config = load_config(REPO / "configs" / "smoke.toml").to_dict()
    with tempfile.TemporaryDirectory(prefix="optical-soak-") as d:
        result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "python": platform.python_version(),
                              # Other processes share the box: the load says how busy it was.
                              "loadavg_1m_at_start": os.getloadavg()[0]},
                  "soak": soak(args, Path(d), config)}
        if args.overhead_runs:
            result["worker_overhead"] = overhead(args, Path(d))
        result["machine"]["loadavg_1m_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
