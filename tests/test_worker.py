"""The worker with real processes and real signals: kill -9 and resume, four workers sharing a
queue, cancel, drain on SIGTERM / `optical worker stop`, failures that do not stop the worker.

Workers run as `python -m engine.worker` subprocesses in their own session (so a test can kill
the whole group on teardown) against a temp database; experiments use configs/smoke.toml.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import load_config, with_run
from engine.errors import LeaseLost, StoreError
from engine.store import NewExperiment, Store, open_store

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.toml"
# A longer smoke run (tiny model, CPU) so there is time to act while it trains; checkpoints often.
LONG = ["train.steps=400", "train.checkpoint_every=5", "eval.every=0", "train.log_every=1"]

# One thread per training process: tests run several at once on a small CPU box.
ENV = dict(os.environ, OMP_NUM_THREADS="1")

pytestmark = pytest.mark.usefixtures("data_dir")


def queue(db: Path, overrides: list[str] = (), seeds: tuple[int, ...] = (0,), priority: int = 0) -> list[int]:
    cfg = load_config(SMOKE, list(overrides))
    specs = [NewExperiment("t", "1:1", s, with_run(cfg, "1:1", s).to_dict(), priority=priority) for s in seeds]
    with open_store(db) as store:
        return [e.id for e in store.add_experiments(specs)]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def child_pids(db: Path) -> list[int]:
    """Training children of workers on this database (scanning /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"engine.run_process" in cmd and str(db).encode() in cmd:
            found.append(int(entry.name))
    return found


@pytest.fixture
def workers(tmp_path: Path):
    """Start worker processes; whatever is still alive at teardown is killed with its group."""
    started: list[subprocess.Popen] = []

    def start(db: Path, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, "-m", "engine.worker", "--db", str(db), "--device", "cpu",
                              "--poll", "0.2", *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=ENV)
        p.log = log  # type: ignore[attr-defined]
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        p.log.close()  # type: ignore[attr-defined]
    for pid in child_pids(tmp_path / "e.db"):
        os.kill(pid, signal.SIGKILL)


def worker_log(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(tmp_path.glob("worker-*.log")))


def series_keys(store: Store, exp_id: int) -> Counter:
    return Counter((m.key, m.step) for m in store.metrics(exp_id))


def train_steps(store: Store, exp_id: int) -> list[int]:
    return sorted(m.step for m in store.metrics(exp_id, keys=["train/loss"]))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill9_worker_resumes_from_checkpoint_with_every_step_once(tmp_path: Path, workers) -> None:
    db = tmp_path / "e.db"
    steps = ["train.steps=200", "train.checkpoint_every=5", "eval.every=50"]
    (victim,) = queue(db, steps, priority=1)
    (reference,) = queue(db, steps)
    w1 = workers(db, "--max-experiments", "1")
    ckpts = tmp_path / "runs" / str(victim) / "checkpoints"
    store = open_store(db)
    # Kill mid-run: after a checkpoint exists and a few more steps have been reported.
    wait_for(lambda: any(ckpts.glob("step_*.pt")) and max(train_steps(store, victim), default=0) >= 7,
             180, "the first run to pass a checkpoint")
    (child,) = child_pids(db)
    w1.send_signal(signal.SIGKILL)
    w1.wait()
    # PR_SET_PDEATHSIG: the training child dies with its worker and stops heartbeating.
    wait_for(lambda: not Path(f"/proc/{child}").exists() or b"Z" in Path(f"/proc/{child}/stat").read_bytes()[:60],
             10, "the orphaned child to die")
    before = store.get(victim)
    assert before.status == "running" and before.attempts == 1

    w2 = workers(db, "--lease", "2", "--max-experiments", "2")
    assert w2.wait(timeout=300) == 0, worker_log(tmp_path)
    a, b = store.get(victim), store.get(reference)
    assert (a.status, b.status) == ("done", "done"), (a.error, b.error, worker_log(tmp_path))
    assert a.attempts == 2 and b.attempts == 1
    kinds = [(e.kind, e.message) for e in store.events(victim)]
    assert any(k == "requeued" and "no heartbeat" in m for k, m in kinds)
    resumed = [m for k, m in kinds if k == "info" and m.startswith("resumed from step")]
    assert resumed and int(resumed[0].split()[-1]) >= 5  # from a checkpoint, not from scratch
    # Every (key, step) of the uninterrupted run exactly once: nothing lost, nothing doubled.
    assert series_keys(store, victim) == series_keys(store, reference)
    assert train_steps(store, victim) == list(range(1, 201))
    # Resume is bit-for-bit: the resumed series equals the uninterrupted one.
    ref = {(m.key, m.step): m.value for m in store.metrics(reference, prefix="train/loss")}
    got = {(m.key, m.step): m.value for m in store.metrics(victim, prefix="train/loss")}
    assert got == pytest.approx(ref, rel=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_workers_twenty_experiments_each_runs_exactly_once(tmp_path: Path, workers) -> None:
    db = tmp_path / "e.db"
    ids = queue(db, ["train.steps=2", "train.checkpoint_every=0", "eval.every=0", "ot.weight=0"],
                seeds=tuple(range(20)))
    procs = [workers(db, "--until-empty") for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=560) == 0, worker_log(tmp_path)
    store = open_store(db)
    exps = store.list_experiments(ids=ids)
    assert [e.status for e in exps] == ["done"] * 20, [(e.id, e.error) for e in exps if e.status != "done"]
    assert all(e.attempts == 1 for e in exps)
    claims = Counter(ev.experiment_id for ev in store.events() if ev.kind == "claimed")
    assert claims == Counter({i: 1 for i in ids})
    assert len({e.worker_id for e in exps}) > 1  # the work really was shared
    # Provenance frozen into every row at start.
    prov = exps[0].provenance
    assert prov["seed"] == exps[0].seed and prov["config"] == exps[0].config
    assert prov["device"] == "cpu" and prov["device_name"] and prov["code_version"]
    assert {"torch", "transformers", "python"} <= set(prov["libraries"])
    assert all(w.status == "stopped" for w in store.list_workers(include_stopped=True))


@pytest.mark.timeout(240)
def test_cancel_running_experiment(tmp_path: Path, workers) -> None:
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    (exp_id,) = queue(db, LONG)
    w = workers(db, "--max-experiments", "1")
    store = open_store(db)
    wait_for(lambda: train_steps(store, exp_id), 180, "training to start")
    result = CliRunner().invoke(app, ["--db", str(db), "queue", "cancel", str(exp_id)])
    assert result.exit_code == 0, result.output
    asked = time.monotonic()
    wait_for(lambda: store.get(exp_id).status == "cancelled", 30, "the run to be cancelled")
    print(f"cancelled {time.monotonic() - asked:.1f}s after the request")
    assert w.wait(timeout=30) == 0
    e = store.get(exp_id)
    assert 0 < e.step < 400 and e.finished_at is not None
    assert any((tmp_path / "runs" / str(exp_id) / "checkpoints").glob("step_*.pt"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_and_worker_stop_release_the_run_which_resumes(tmp_path: Path, workers) -> None:
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    (exp_id,) = queue(db, ["train.steps=400", "train.checkpoint_every=20", "eval.every=0"])
    store = open_store(db)
    # 1. SIGTERM: checkpoint, hand the run back to the queue, unregister, exit 0.
    w = workers(db)
    wait_for(lambda: train_steps(store, exp_id), 180, "training to start")
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=30) == 0, worker_log(tmp_path)
    e = store.get(exp_id)
    assert e.status == "queued" and e.attempts == 0, e
    first_stop = e.step
    assert any(ev.kind == "requeued" and "checkpointed" in ev.message for ev in store.events(exp_id))
    # 2. `optical worker stop` while it runs: same drain, resumes past the first stop.
    w = workers(db)
    wait_for(lambda: store.get(exp_id).status == "running" and store.get(exp_id).step > first_stop,
             180, "the resumed run to make progress")
    status = CliRunner().invoke(app, ["--db", str(db), "worker", "status", "--json"])
    (row,) = json.loads(status.output)
    assert row["state"] == "alive" and row["experiment_id"] == exp_id and row["pid"] == w.pid
    assert CliRunner().invoke(app, ["--db", str(db), "worker", "stop"]).exit_code == 0
    assert w.wait(timeout=30) == 0, worker_log(tmp_path)
    assert store.get(exp_id).status == "queued"
    # 3. A last worker finishes it; no step lost or doubled across the two resumes.
    assert workers(db, "--once").wait(timeout=240) == 0
    e = store.get(exp_id)
    assert e.status == "done", (e.error, worker_log(tmp_path))
    assert train_steps(store, exp_id) == list(range(1, 401))
    assert [ev.kind for ev in store.events(exp_id)].count("claimed") == 3
    assert CliRunner().invoke(app, ["--db", str(db), "worker", "status", "--json"]).output.strip() == "[]"


@pytest.mark.timeout(240)
def test_failures_are_recorded_and_the_worker_carries_on(tmp_path: Path, workers) -> None:
    db = tmp_path / "e.db"
    empty = tmp_path / "no-data"
    empty.mkdir()
    (missing_data,) = queue(db, [f"data.data_dir={empty}"], priority=2)
    (killed,) = queue(db, LONG, priority=1)  # runs after the failure: the worker carried on
    w = workers(db, "--until-empty")
    store = open_store(db)
    # An OOM kill or segfault of the training process: simulate the kernel's SIGKILL.
    ckpts = tmp_path / "runs" / str(killed) / "checkpoints"
    wait_for(lambda: any(ckpts.glob("step_*.pt")), 180, "the second run to write a checkpoint")
    (child,) = child_pids(db)
    os.kill(child, signal.SIGKILL)
    assert w.wait(timeout=120) == 0, worker_log(tmp_path)

    a = store.get(missing_data)
    assert a.status == "failed"
    assert a.error.startswith("DataMissing: ") and str(empty) in a.error.splitlines()[0]
    assert "Traceback (most recent call last)" in a.error
    assert any(ev.kind == "traceback" and "DataMissing" in ev.message for ev in store.events(missing_data))
    # Killed from outside but not for memory: back to the queue, resumed from its checkpoint.
    b = store.get(killed)
    assert b.status == "done" and b.attempts == 2, (b.error, worker_log(tmp_path))
    assert any(ev.kind == "requeued" and "SIGKILL" in ev.message for ev in store.events(killed))
    assert any(ev.kind == "info" and ev.message.startswith("resumed from step") for ev in store.events(killed))
    assert [w.status for w in store.list_workers(include_stopped=True)] == ["stopped"]


@pytest.mark.timeout(120)
def test_detach_runs_in_the_background_with_log_and_pid_file_and_stops(tmp_path: Path) -> None:
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    open_store(db).close()
    cli = CliRunner()
    result = cli.invoke(app, ["--db", str(db), "worker", "--detach", "--device", "cpu", "--poll", "0.2"])
    assert result.exit_code == 0, result.output
    log, pid_file = tmp_path / "e.worker-cpu.log", tmp_path / "e.worker-cpu.pid"
    pid = int(pid_file.read_text())
    try:
        assert f"pid {pid}" in result.output and str(log) in result.output
        assert os.getsid(pid) == pid  # its own session: closing the terminal does not reach it
        again = cli.invoke(app, ["--db", str(db), "worker", "--detach", "--device", "cpu"])
        assert again.exit_code == 1 and "already running" in again.stderr
        rows = wait_for(lambda: json.loads(cli.invoke(app, ["--db", str(db), "worker", "status", "--json"]).output),
                        60, "the detached worker to register")
        assert [(r["pid"], r["state"], r["log_path"]) for r in rows] == [(pid, "alive", str(log))]
        assert cli.invoke(app, ["--db", str(db), "worker", "stop", rows[0]["id"]]).exit_code == 0
        wait_for(lambda: not pid_file.exists(), 30, "the detached worker to exit and remove its pid file")
        assert "stopped after 0 experiment(s)" in log.read_text()
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------- fast, in-process


def test_a_second_store_in_one_process_keeps_the_first_ones_view(tmp_path: Path) -> None:
    """Opening (and closing) another Store must not drop this process's SQLite locks: if it did,
    a writer elsewhere would delete the WAL on close and the first Store would read stale data
    (seen here as a run stuck at "queued" after another process finished it)."""
    db = tmp_path / "e.db"
    (exp_id,) = queue(db)
    first = open_store(db)
    assert first.get(exp_id).status == "queued"
    open_store(db).close()  # e.g. `optical worker status` invoked in-process, a dashboard thread
    steps = {"running": "s.claim_next('w')", "done": f"s.finish(s.get({exp_id}).lease, 'done')"}
    for status, call in steps.items():  # two writers elsewhere, each closing its connection
        code = f"from engine.store import open_store; s = open_store({str(db)!r}); {call}; s.close()"
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
        assert first.get(exp_id).status == status


def test_store_reporter_buffers_flushes_before_checkpoints_and_sees_cancel(tmp_path: Path) -> None:
    import threading

    from engine.store_reporter import StoreReporter

    db = tmp_path / "e.db"
    (exp_id,) = queue(db)
    store = open_store(db)
    lease = store.claim_next("w").lease
    stop = threading.Event()
    rep = StoreReporter(store, lease, stop, flush_interval_s=3600)
    rep.metrics(1, {"train/loss": 2.0})
    rep.progress(1, 10)
    assert store.metrics(exp_id) == []  # buffered: one transaction per second, not per point
    rep.before_checkpoint(1)
    assert [(m.key, m.step, m.value) for m in store.metrics(exp_id)] == [("train/loss", 1, 2.0)]
    assert store.get(exp_id).step == 1 and store.get(exp_id).total_steps == 10
    rep.metrics(1, {"train/loss": 9.0})  # re-sent after a resume: ignored, never doubled
    rep.metrics(2, {"train/loss": 1.5})
    assert not rep.should_stop()
    store.request_cancel([exp_id])
    rep.flush()
    assert rep.cancel_requested and rep.should_stop()
    assert [(m.step, m.value) for m in store.metrics(exp_id)] == [(1, 2.0), (2, 1.5)]
    # The run was taken away (lease expired, requeued): the training thread must unwind.
    open_store(db, clock=lambda: time.time() + 10).requeue_stale(0)
    with pytest.raises(LeaseLost):
        rep.flush()
    with pytest.raises(LeaseLost):
        rep.should_stop()


def test_failure_messages_name_the_setting_to_lower() -> None:
    import torch

    from engine.errors import DataMissing
    from engine.run_process import explain_failure
    from engine.worker import describe_exit

    cfg = load_config(SMOKE)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    msg = explain_failure(oom, cfg, "cuda:1")
    assert msg.startswith("CUDA out of memory on cuda:1")
    for setting in ("train.batch_size (now 8)", "model.max_length (now 32)", "eval.batch_size (now 64)",
                    "--set train.batch_size=4", "--set train.grad_accum=2"):
        assert setting in msg
    assert explain_failure(DataMissing("missing data file x"), cfg, "cpu") == "DataMissing: missing data file x"
    assert "out-of-memory" in describe_exit(-9, oom=True)
    assert "SIGKILL" in describe_exit(-9, oom=False) and "memory" not in describe_exit(-9, oom=False)
    assert "SIGSEGV" in describe_exit(-11, oom=False) and "status 2" in describe_exit(2, oom=False)


class FailingStore:
    """A store whose writes fail as a full disk or a dropped connection would (fault injection)."""

    def __init__(self, store: Store) -> None:
        self.store, self.fail = store, True
        self.attempts = 0

    def flush(self, *args, **kwargs):
        self.attempts += 1
        if self.fail:
            raise StoreError("database or disk is full (free some space on that disk)")
        return self.store.flush(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_heartbeats_retry_transient_errors_and_keep_the_points(tmp_path: Path) -> None:
    import threading

    from engine.store_reporter import StoreReporter

    db = tmp_path / "e.db"
    (exp_id,) = queue(db)
    real = open_store(db)
    failing = FailingStore(real)
    rep = StoreReporter(failing, real.claim_next("w").lease, threading.Event(), flush_interval_s=0.05,
                        lease_s=60)
    rep.metrics(1, {"train/loss": 2.0})
    rep.start()
    wait_for(lambda: failing.attempts >= 3, 10, "the heartbeat thread to retry")
    assert not rep.should_stop()  # a few failed beats, far inside the lease: keep training
    failing.fail = False
    wait_for(lambda: real.metrics(exp_id), 10, "the buffered point to reach the store")
    rep.close()
    assert [(m.step, m.value) for m in real.metrics(exp_id)] == [(1, 2.0)]


def test_a_run_that_cannot_renew_its_lease_stops_before_it_expires(tmp_path: Path) -> None:
    import threading

    from engine.store_reporter import StoreReporter

    db = tmp_path / "e.db"
    (exp_id,) = queue(db)
    real = open_store(db)
    stop = threading.Event()
    rep = StoreReporter(FailingStore(real), real.claim_next("w").lease, stop, flush_interval_s=0.05, lease_s=1.0)
    started = time.monotonic()
    rep.start()
    wait_for(stop.is_set, 10, "the run to stop itself")
    # Half the lease without a renewal: stop, so no second worker can ever train alongside it.
    assert 0.4 < time.monotonic() - started < 1.0
    with pytest.raises(LeaseLost, match="could not renew"):
        rep.should_stop()
    with pytest.raises(LeaseLost):
        rep.metrics(2, {"train/loss": 1.0})
    assert real.metrics(exp_id) == []
