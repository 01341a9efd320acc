"""Adversarial run: many workers, random `kill -9`s and random CLI operations on one queue.

What an impatient lab does to a queue, all at once, through the real entry points:
- `--workers` `python -m engine.running.worker` processes serve one database (SQLite path or a
  postgresql:// URL) with a short lease;
- for `--seconds`, every ~`--every` s one random action: kill -9 a worker (a replacement starts),
  kill -9 a training child (not its worker), `optical queue rm` a finished or queued run (often
  one that just finished), `optical queue cancel`, `optical queue retry` (sometimes twice), or
  `optical queue add`;
- then the chaos stops, the survivors drain the queue, and `optical worker stop` ends them.

Checks, written to benchmarks/results/chaos.json (a failed check exits 1):
- no worker died except those this script killed, and no CLI call printed a traceback;
- every run is in a terminal state; every `done` run has every training step exactly once
  (the store's unique key makes a second copy of a point impossible, so a gap or a missing
  step is what a double-run or a lost run would leave);
- no run was trained by two processes at once: for every run, the claims of its attempts never
  overlap in time with another live attempt's writes (each claim follows the previous attempt's
  requeue, release or failure event);
- every requeued run resumed from a checkpoint or from step 0 with an event saying so.

    python benchmarks/chaos.py --seconds 120 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.config import load_config, with_run
from engine.metric_keys import TrainKey
from engine.statuses import ACTIVE, TERMINAL, EventKind, Status
from engine.store import NewExperiment, open_store

SMOKE = REPO / "configs" / "smoke.toml"
STEPS = 40
OVERRIDES = [f"train.steps={STEPS}", "train.checkpoint_every=4", "eval.every=0",
             "train.log_every=1"]
# the installed entry point, as a user types it
OPTICAL = [str(Path(sys.executable).parent / "optical")]
# The benchmark data, read in place as the tests do (the Makefile exports the same default).
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), COLUMNS="200",
           OPTICAL_DATA=os.environ.get("OPTICAL_DATA") or str(REPO.parent / "shared" / "data"))


def add(db: str, n: int, seed0: int) -> list[int]:
    cfg = load_config(SMOKE, OVERRIDES)
    specs = [NewExperiment("chaos", r, s, with_run(cfg, r, s).to_dict())
             for s in range(seed0, seed0 + n) for r in ("1:1",)]
    with open_store(db) as store:
        return [e.id for e in store.add_experiments(specs)]


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Chaos:
    def __init__(self, db: str, folder: Path, workers: int, lease: float,
                 rng: random.Random) -> None:
        self.db, self.folder, self.lease, self.rng = db, folder, lease, rng
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        self.log: list[dict[str, object]] = []
        self.cli_tracebacks: list[str] = []
        for _ in range(workers):
            self.start_worker()

    def start_worker(self) -> None:
        n = len(self.procs)
        # lives as long as the worker
        out = open(self.folder / f"worker-{n}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "engine.running.worker", "--db", self.db, "--device", "cpu",
             "--lease", str(self.lease),
             "--poll", "0.3", "--runs-dir", str(self.folder / "runs")],
            stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=self.folder, start_new_session=True))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*OPTICAL, "--db", self.db, *args], capture_output=True, text=True,
                             env=ENV,
                             cwd=self.folder, check=False, timeout=120)
        if "Traceback" in res.stdout + res.stderr:
            self.cli_tracebacks.append(f"{args}: {res.stdout}{res.stderr}")
        return res

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def act(self) -> None:
        with open_store(self.db) as store:
            exps = store.list_experiments()
        by = {s: [e for e in exps if e.status == s] for s in Status}
        # Kills and adds twice as often as each CLI write, so most runs live long enough to finish.
        action = self.rng.choice(["kill_worker", "kill_worker", "kill_child", "kill_child", "rm",
                                  "cancel",
                                  "retry", "retry_twice", "add", "add"])
        target: object = None
        if action == "kill_worker" and self.alive():
            p = self.rng.choice(self.alive())
            os.kill(p.pid, signal.SIGKILL)
            self.killed.add(p.pid)
            target = p.pid
            self.start_worker()
        elif action == "kill_child":
            kids = [c for p in self.alive() for c in children(p.pid)]
            if kids:
                target = self.rng.choice(kids)
                os.kill(target, signal.SIGKILL)
        elif action == "rm":
            # just-finished runs first
            pool = by[Status.DONE][-3:] + by[Status.QUEUED] + by[Status.CANCELLED]
            if pool:
                target = self.rng.choice(pool).id
                self.cli("queue", "rm", str(target))
        elif action == "cancel":
            pool = by[Status.QUEUED] + by[Status.RUNNING]
            if pool:
                target = self.rng.choice(pool).id
                self.cli("queue", "cancel", str(target))
        elif action in ("retry", "retry_twice"):
            pool = by[Status.FAILED] + by[Status.CANCELLED]
            if pool:
                target = self.rng.choice(pool).id
                for _ in range(2 if action == "retry_twice" else 1):
                    self.cli("queue", "retry", str(target))
        elif action == "add":
            target = add(self.db, 1, 1000 + len(self.log))
        self.log.append({"t": round(time.monotonic(), 1), "action": action, "target": target})


def check(db: str, chaos: Chaos) -> dict[str, object]:
    problems: list[str] = []
    verified = 0
    with open_store(db) as store:
        exps = store.list_experiments()
        for e in exps:
            if e.status not in TERMINAL:
                problems.append(f"#{e.id} left {e.status}")
            if e.status == Status.DONE:
                steps = sorted(m.step for m in store.metrics(e.id, keys=[TrainKey.LOSS]))
                if steps != list(range(1, STEPS + 1)):
                    problems.append(f"#{e.id} done with train steps {steps[:5]}…({len(steps)})")
                verified += 1
            # A claim must follow the end of the previous attempt (never two live attempts).
            live = False
            for ev in store.events(e.id):
                if ev.kind == EventKind.CLAIMED:
                    if live:
                        problems.append(f"#{e.id}: claimed again while an attempt was live")
                    live = True
                elif ev.kind in (EventKind.REQUEUED, EventKind.FAILED, EventKind.DONE,
                                 EventKind.CANCELLED):
                    live = False
        statuses = {s.value: sum(e.status == s for e in exps) for s in Status}
    unexpected = []
    for i, p in enumerate(chaos.procs):
        if p.pid not in chaos.killed and p.returncode not in (0, None):
            unexpected.append(f"worker-{i} (pid {p.pid}) exited {p.returncode}")
        text = (chaos.folder / f"worker-{i}.log").read_text(errors="replace")
        if "Traceback" in text:
            unexpected.append(f"worker-{i} printed a traceback")
    resumed = sum(1 for e in exps if e.status == Status.DONE and e.attempts > 1)
    return {"statuses": statuses, "done_runs_checked_step_by_step": verified,
            "done_after_a_lost_attempt": resumed,
            "problems": problems, "worker_problems": unexpected,
            "cli_tracebacks": chaos.cli_tracebacks,
            "ok": not (problems or unexpected or chaos.cli_tracebacks)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default=None,
                   help="a postgresql:// URL (default: an SQLite file in a temp folder)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--experiments", type=int, default=16)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--every", type=float, default=2.0,
                   help="mean seconds between two chaos actions")
    p.add_argument("--lease", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "chaos.json")
    p.add_argument("--keep", type=Path, default=None,
                   help="copy the working folder (logs, database) here")
    args = p.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="optical-chaos-") as tmp:
        folder = Path(tmp)
        db = args.db or str(folder / "chaos.db")
        add(db, args.experiments, 0)
        chaos = Chaos(db, folder, args.workers, args.lease, rng)
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            time.sleep(rng.expovariate(1 / args.every))
            chaos.act()
        # Calm: the survivors drain the queue (lost runs come back after the lease).
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            with open_store(db) as store:
                if not store.list_experiments(status=list(ACTIVE)):
                    break
            if not chaos.alive():
                chaos.start_worker()
            time.sleep(1.0)
        chaos.cli("worker", "stop")
        for proc in chaos.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        result = check(db, chaos)
        if args.keep:
            shutil.copytree(folder, args.keep, dirs_exist_ok=True)
        kinds: dict[str, int] = {}
        for entry in chaos.log:
            kinds[str(entry["action"])] = kinds.get(str(entry["action"]), 0) + 1
        result.update({"workers": args.workers, "seconds": args.seconds, "actions": kinds,
                       "workers_killed": len(chaos.killed), "seed": args.seed,
                       "backend": "postgresql" if args.db else "sqlite"})
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
