"""Dashboard responsiveness on a big database: 200 experiments × 7 languages × 500 eval points.

Measures, with a naive full re-read measured in the same run as the baseline:
- time to first paint: app start → queue table filled (200 rows with their latest metric);
- one idle poll: nothing committed since the last poll (`PRAGMA data_version` only);
- one poll with new rows: a worker-like flush on 8 running experiments, then
  (a) the poller's read, (b) the queue screen applying it, (c) the open experiment screen
  appending the points and redrawing its plot (b + c is what the UI thread spends per update).
  Target: each well under 100 ms.

    python benchmarks/bench_tui.py [--experiments 200] [--points 500]
                                   [--out benchmarks/results/tui.json] [--db EMPTY_DB_PATH_OR_URL]

`--db` measures another store (e.g. an empty PostgreSQL database) instead of a temporary SQLite
file; benchmarks/bench_store_backends.py runs it on both side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.config import MLQA_LANGS, Config
from engine.metric_keys import MACRO, MetricName, Setting, Split, TrainKey, lang_unit, metric_key
from engine.statuses import Status
from engine.store import NewExperiment, open_store, redact
from optical_tui.app import OpticalApp
from optical_tui.messages import ExperimentsChanged, MetricsAppended
from optical_tui.poller import Poller
from optical_tui.screens.experiment import ExperimentScreen
from optical_tui.screens.queue import QueueScreen
from optical_tui.widgets.curves import CurvePlot

RUNNING = 8          # experiments that keep writing during the measurement
REPEATS = 20


MACRO_KEY = metric_key(Split.QUICK, Setting.MUL, MACRO, MetricName.MAP)


def lang_key(lang: str) -> str:
    return metric_key(Split.QUICK, Setting.MUL, lang_unit(lang), MetricName.MAP)


def seed(db: Path | str, n_exp: int, points: int) -> int:
    """Through the public Store API, as workers would have written it. Returns the row count."""
    config = Config().to_dict()
    rows = 0
    with open_store(db) as store:
        store.add_experiments([NewExperiment(f"sweep-{i % 10}",
                                             ("1:0", "1:1", "0:1", "1:3", "3:1")[i % 5],
                                             i // 50, config) for i in range(n_exp)])
        for i in range(n_exp):
            e = store.claim_next("bench", "cuda:0")
            assert e is not None
            batch = [(lang_key(lang), step, 0.3 + step / (points * 4) + j / 100, 1e9 + step)
                     for step in range(points) for j, lang in enumerate(MLQA_LANGS)]
            batch += [(MACRO_KEY, step, 0.33 + step / (points * 4), 1e9 + step)
                      for step in range(points)]
            store.flush(e.lease, batch, step=points, total=points * 2)
            rows += len(batch)
            if i >= RUNNING:
                store.finish(e.lease, Status.DONE)
    return rows


def naive_read(db: Path | str) -> float:
    """Baseline: what a dashboard without cursors does each time — re-read everything."""
    t = time.perf_counter()
    with open_store(db) as store:
        experiments = store.list_experiments()
        metrics = store.metrics()
        latest: dict[int, float] = {}
        for m in metrics:
            if m.key == MACRO_KEY:
                latest[m.experiment_id] = m.value
    assert experiments and latest
    return time.perf_counter() - t


def write_step(db: Path | str, step: int) -> int:
    """One poll's worth of new rows: every running experiment flushes one eval point."""
    n = 0
    with open_store(db) as store:
        for exp_id in range(1, RUNNING + 1):
            rows = [(lang_key(lang), step, 0.5, 2e9) for lang in MLQA_LANGS]
            rows += [(MACRO_KEY, step, 0.5, 2e9), (TrainKey.LOSS, step, 1.0, 2e9)]
            store.flush(store.get(exp_id).lease, rows, step=step, total=step * 2)
            n += len(rows)
    return n


def ms(xs: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(xs) * 1e3, 3), "max_ms": round(max(xs) * 1e3, 3)}


async def measure(db: Path | str, points: int) -> dict:
    out: dict = {}
    # ---- first paint: app start -> queue filled
    t0 = time.perf_counter()
    app = OpticalApp(db, poll_interval=3600)   # the benchmark drives the polls itself
    async with app.run_test(size=(120, 40)) as pilot:
        while not (app.live is not None and isinstance(app.screen, QueueScreen)
                   and app.screen.query_one("#queue").row_count == len(app.live.experiments)):
            await pilot.pause(0.005)
        await pilot.pause()   # one more refresh: the frame with the rows is drawn
        out["first_paint_s"] = round(time.perf_counter() - t0, 4)
        queue = cast(QueueScreen, app.screen)

        # ---- open the experiment screen of a running run (history load off the UI thread)
        t = time.perf_counter()
        await pilot.press("enter")
        while not (isinstance(app.screen, ExperimentScreen) and app.screen.loaded):
            await pilot.pause(0.005)
        out["open_experiment_s"] = round(time.perf_counter() - t, 4)
        screen = cast(ExperimentScreen, app.screen)
        curve = screen.query_one("#curve", CurvePlot)

        # ---- polls, driven here on a poller of our own (the app's thread is asleep)
        poller = Poller(str(db))
        poller.poll()
        idle = []
        for _ in range(1000):
            t = time.perf_counter()
            assert poller.poll() is None
            idle.append(time.perf_counter() - t)
        out["idle_poll"] = ms(idle)
        out["idle_poll"]["mean_us"] = round(statistics.fmean(idle) * 1e6, 2)

        read, apply_queue, apply_exp, rows_per_poll = [], [], [], 0
        cpu_queue, cpu_exp = [], []
        for k in range(REPEATS):
            rows_per_poll = write_step(db, points + 1 + k)
            t = time.perf_counter()
            result = poller.poll()
            read.append(time.perf_counter() - t)
            assert result is not None and len(result.metrics) == rows_per_poll
            t, c = time.perf_counter(), time.thread_time()
            queue.live = ExperimentsChanged(result.experiments, result.workers, result.primary)
            apply_queue.append(time.perf_counter() - t)
            cpu_queue.append(time.thread_time() - c)
            t, c = time.perf_counter(), time.thread_time()
            screen.on_metrics_appended(MetricsAppended(result.metrics))
            curve.render()    # the plot is rebuilt on the next frame: count that too
            apply_exp.append(time.perf_counter() - t)
            cpu_exp.append(time.thread_time() - c)
        assert len(curve.series[0].x) == points + REPEATS
        poller.close()
        out["rows_per_poll"] = rows_per_poll
        out["poll_read"] = ms(read)
        out["apply_queue"] = ms(apply_queue)
        out["apply_experiment_with_plot"] = ms(apply_exp)
        # The read runs in the poller's thread; only the two applies run on the UI thread.
        out["ui_thread_per_update"] = ms([b + c for b, c in zip(apply_queue, apply_exp)])
        # CPU time of the UI thread alone: what the update costs without other processes competing
        # for the cores (the wall times above include waiting for a core on a shared machine).
        out["ui_thread_per_update_cpu"] = ms([b + c for b, c in zip(cpu_queue, cpu_exp)])
        out["apply_queue_cpu"] = ms(cpu_queue)
        out["apply_experiment_with_plot_cpu"] = ms(cpu_exp)
        out["poll_with_new_rows_total"] = ms([a + b + c
                                              for a, b, c in zip(read, apply_queue, apply_exp)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tui.json")
    parser.add_argument("--db",
                        help="an empty database (path or URL) to use instead of a temporary SQLite "
                             "file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db: Path | str = args.db or Path(tmp) / "bench.db"
        t = time.perf_counter()
        n_rows = seed(db, args.experiments, args.points)
        seed_s = time.perf_counter() - t
        print(f"seeded {n_rows:,} metric rows in {seed_s:.1f}s", flush=True)
        naive = [naive_read(db) for _ in range(3)]
        results = asyncio.run(measure(db, args.points))
    naive_ms = statistics.median(naive) * 1e3
    results["naive_full_reread"] = {"median_ms": round(naive_ms, 1)}
    results["ratios_vs_naive_full_reread"] = {
        "idle_poll": round(naive_ms / results["idle_poll"]["median_ms"], 1),
        "poll_read": round(naive_ms / results["poll_read"]["median_ms"], 1),
        "poll_with_new_rows_total": round(
            naive_ms / results["poll_with_new_rows_total"]["median_ms"], 1),
    }
    results["setup"] = {
        "experiments": args.experiments, "languages": len(MLQA_LANGS), "eval_points": args.points,
        "metric_rows": n_rows, "running_experiments_writing": RUNNING, "repeats": REPEATS,
        "seed_s": round(seed_s, 1), "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "store": redact(args.db) if args.db else "sqlite (temporary file)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
