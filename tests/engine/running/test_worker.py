"""The worker with real processes and real signals: four workers sharing a queue, cancel, drain on
SIGTERM / `optical worker stop`, failures that do not stop the worker, a database that refuses
writes for a while, `queue rm` racing a run that just finished.

Workers run as `python -m engine.running.worker` subprocesses in their own session (so a test can
kill the whole group on teardown) against a temp database; experiments use configs/smoke.toml. Kill
-9 and resume, the paused ("zombie") worker and the two-box test run on both backends in
tests/test_multibox.py.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import load_config
from engine.errors import LeaseLost, StoreError
from engine.store import Store, open_store
from tests.worker_support import (
    ENV,
    LONG,
    REPO,
    SMOKE,
    Workers,
    child_pids,
    events_of,
    gone,
    queue,
    train_steps,
    wait_for,
    workers_fixture,
)

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture
def pool(tmp_path: Path):
    yield from workers_fixture(tmp_path)


@pytest.fixture
def workers(pool: Workers):
    """`workers(db, *args)` starts a worker on the CPU with runs in tmp_path/runs."""
    return pool.start


def worker_log(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}"
                     for p in sorted(tmp_path.glob("worker-*.log")))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_workers_eight_experiments_each_runs_exactly_once(tmp_path: Path, workers) -> None:
    db = tmp_path / "e.db"
    ids = queue(db, ["train.steps=2", "train.checkpoint_every=0", "eval.every=0", "ot.weight=0"],
                seeds=tuple(range(8)))
    procs = [workers(db, "--until-empty") for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=560) == 0, worker_log(tmp_path)
    store = open_store(db)
    exps = store.list_experiments(ids=ids)
    assert [e.status for e in exps] == ["done"] * 8, [(e.id, e.error) for e in exps
                                                      if e.status != "done"]
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
    folder = tmp_path / "runs" / str(exp_id)
    wait_for(lambda: any(folder.rglob("step_*.pt")), 180, "training to write a checkpoint")
    result = CliRunner().invoke(app, ["--db", str(db), "queue", "cancel", str(exp_id)])
    assert result.exit_code == 0, result.output
    asked = time.monotonic()
    wait_for(lambda: store.get(exp_id).status == "cancelled", 30, "the run to be cancelled")
    print(f"cancelled {time.monotonic() - asked:.1f}s after the request")
    assert w.wait(timeout=30) == 0
    e = store.get(exp_id)
    assert 0 < e.step < 400 and e.finished_at is not None
    # A cancelled run never resumes: its checkpoints go, its log stays.
    assert not any(folder.rglob("*.pt")) and (folder / "attempt-1" / "child.log").is_file()


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
    assert any(ev.kind == "requeued" and "checkpointed" in ev.message
               for ev in store.events(exp_id))
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
    assert CliRunner().invoke(app,
                              ["--db", str(db), "worker", "status",
                               "--json"]).output.strip() == "[]"


@pytest.mark.timeout(240)
def test_failures_are_recorded_and_the_worker_carries_on(tmp_path: Path, workers) -> None:
    db = tmp_path / "e.db"
    # A malformed training file fails the run (a missing data folder is handed back for another
    # box instead: engine/running/run_process.py `lacks_data`).
    empty = tmp_path / "bad-data"
    empty.mkdir()
    (empty / "train.jsonl").write_text("{not json\n", encoding="utf-8")
    (missing_data,) = queue(db, [f"data.train_file={empty / 'train.jsonl'}"], priority=2)
    (killed,) = queue(db, LONG, priority=1)  # runs after the failure: the worker carried on
    w = workers(db, "--until-empty")
    store = open_store(db)
    # An OOM kill or segfault of the training process: simulate the kernel's SIGKILL.
    ckpts = tmp_path / "runs" / str(killed) / "attempt-1" / "checkpoints"
    wait_for(lambda: any(ckpts.glob("step_*.pt")), 180, "the second run to write a checkpoint")
    (child,) = child_pids(db)
    os.kill(child, signal.SIGKILL)
    assert w.wait(timeout=120) == 0, worker_log(tmp_path)

    a = store.get(missing_data)
    assert a.status == "failed"
    assert a.error.startswith("DataMissing: ") and str(empty) in a.error.splitlines()[0]
    assert "Traceback (most recent call last)" in a.error
    assert any(ev.kind == "traceback" and "DataMissing" in ev.message
               for ev in store.events(missing_data))
    # Killed from outside but not for memory: back to the queue, resumed from its checkpoint.
    b = store.get(killed)
    assert b.status == "done" and b.attempts == 2, (b.error, worker_log(tmp_path))
    assert any(ev.kind == "requeued" and "SIGKILL" in ev.message for ev in store.events(killed))
    assert any(ev.kind == "info" and ev.message.startswith("resumed from step")
               for ev in store.events(killed))
    assert [w.status for w in store.list_workers(include_stopped=True)] == ["stopped"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_database_refusing_writes_for_a_while_stops_neither_the_worker_nor_the_run(tmp_path: Path,
                                                                                     pool) -> None:
    """Issue 13.1 with a real fault: every write of the worker and of its training process fails for
    a few seconds (file size limit 0: EFBIG, as a full disk refuses them; database, checkpoints and
    logs alike). The run waits at its next checkpoint, carries on once writes work again, and is
    never lost or trained twice; the worker then serves the next experiment."""
    db = tmp_path / "e.db"
    (first,) = queue(db, ["train.steps=80", "train.checkpoint_every=10", "eval.every=0",
                          "train.log_every=1"],
                     priority=1)
    (second,) = queue(db, ["train.steps=3", "eval.every=0", "ot.weight=0"])
    w = pool.start(db, "--until-empty", "--lease", "20")  # a run may go 10 s without a renewal
    store = open_store(db)
    wait_for(lambda: max(train_steps(store, first), default=0) >= 12, 180,
             "the first run to pass a checkpoint")
    (child,) = child_pids(db)
    limit = resource.RLIM_INFINITY
    for pid in (w.pid, child):
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limit))
    try:
        time.sleep(0.5)  # a write already in the kernel may still land
        beat, steps = store.get(first).heartbeat_at, len(train_steps(store, first))
        time.sleep(4)
        # The fault is real: no heartbeat and no point got through for 4 s (they flush every
        # second).
        assert (store.get(first).heartbeat_at, len(train_steps(store, first))) == (beat, steps)
        assert w.poll() is None and not gone(child)
    finally:
        for pid in (w.pid, child):
            try:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
            except ProcessLookupError:
                pass
    assert w.wait(timeout=200) == 0, pool.log()
    a, b = store.get(first), store.get(second)
    assert (a.status, b.status) == ("done", "done"), (a.error, b.error, pool.log())
    # never lost, never run twice
    assert a.attempts == 1 and len(events_of(store, first, "claimed")) == 1
    assert train_steps(store, first) == list(range(1, 81))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_queue_rm_of_a_run_that_just_finished_leaves_its_worker_serving(tmp_path: Path,
                                                                        pool) -> None:
    """Issue 13.2: the run finishes, `queue rm` deletes it (rows and run folder) before its worker
    looks at it again; the worker notes it and serves the next experiment."""
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    (short,) = queue(db, ["train.steps=30", "train.checkpoint_every=10", "eval.every=0"])
    w = pool.start(db)
    store = open_store(db)
    wait_for(lambda: train_steps(store, short), 180, "training to start")
    (child,) = child_pids(db)
    # the worker only: its training process finishes the run meanwhile
    os.kill(w.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: gone(child), 120, "the training process to finish")
        assert store.get(short).status == "done"
        result = CliRunner().invoke(app, ["--db", str(db), "queue", "rm", str(short)])
        assert result.exit_code == 0, result.output
        assert not (tmp_path / "runs" / str(short)).exists()  # the run folder went with the rows
    finally:
        os.kill(w.pid, signal.SIGCONT)
    (after,) = queue(db, ["train.steps=2", "eval.every=0", "ot.weight=0"])
    wait_for(lambda: store.get(after).status == "done", 120,
             "the same worker to run the next experiment")
    assert w.poll() is None, pool.log()
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=30) == 0
    assert (f"#{short}: finished after" in pool.log()
            and f"no experiment with id {short}" in pool.log())
    assert not (tmp_path / "runs" / str(short)).exists()


@pytest.mark.timeout(120)
def test_detach_runs_in_the_background_with_log_and_pid_file_and_stops(tmp_path: Path) -> None:
    from optical_tui.cli import app

    db = tmp_path / "e.db"
    open_store(db).close()
    cli = CliRunner()
    result = cli.invoke(app,
                        ["--db", str(db), "worker", "--detach", "--device", "cpu", "--poll", "0.2"])
    assert result.exit_code == 0, result.output
    log, pid_file = tmp_path / "e.worker-cpu.log", tmp_path / "e.worker-cpu.pid"
    pid = int(pid_file.read_text())
    try:
        assert f"pid {pid}" in result.output and str(log) in result.output
        assert os.getsid(pid) == pid  # its own session: closing the terminal does not reach it
        again = cli.invoke(app, ["--db", str(db), "worker", "--detach", "--device", "cpu"])
        assert again.exit_code == 1 and "already running" in again.stderr
        rows = wait_for(lambda: json.loads(cli.invoke(app,
                                                      ["--db", str(db), "worker", "status",
                                                       "--json"]).output),
                        60, "the detached worker to register")
        assert [(r["pid"], r["state"], r["log_path"]) for r in rows] == [(pid, "alive", str(log))]
        assert cli.invoke(app, ["--db", str(db), "worker", "stop", rows[0]["id"]]).exit_code == 0
        wait_for(lambda: not pid_file.exists(), 30,
                 "the detached worker to exit and remove its pid file")
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
        code = (f"from engine.store import open_store; s = open_store({str(db)!r}); {call}; "
                "s.close()")
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
        assert first.get(exp_id).status == status


def test_store_reporter_buffers_flushes_before_checkpoints_and_sees_cancel(tmp_path: Path) -> None:
    run = ClaimedRun(tmp_path)
    db, exp_id, store = run.db, run.exp_id, run.store
    rep = run.reporter(store, flush_interval_s=3600)
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
    from engine.running.run_process import explain_failure
    from engine.running.worker import describe_exit

    cfg = load_config(SMOKE)
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    msg = explain_failure(oom, cfg, "cuda:1")
    assert msg.startswith("CUDA out of memory on cuda:1")
    for setting in ("train.batch_size (now 8)", "model.max_length (now 32)",
                    "eval.batch_size (now 64)",
                    "--set train.batch_size=4", "--set train.grad_accum=2"):
        assert setting in msg
    assert explain_failure(DataMissing("missing data file x"), cfg,
                           "cpu") == "DataMissing: missing data file x"
    assert "out-of-memory" in describe_exit(-9, oom=True)
    assert ("SIGKILL" in describe_exit(-9, oom=False)
            and "memory" not in describe_exit(-9, oom=False))
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


class ClaimedRun:
    """One run queued in a fresh database (`db`, `exp_id`, `store`), for a StoreReporter to claim
    and report on: straight to `store`, or through `failing` (writes fail until `failing.fail` is
    cleared). `stop` is the event the reporter sets to stop the run."""

    def __init__(self, tmp_path: Path) -> None:
        import threading

        self.db = tmp_path / "e.db"
        (self.exp_id,) = queue(self.db)
        self.store = open_store(self.db)
        self.failing = FailingStore(self.store)
        self.stop = threading.Event()

    def reporter(self, through: Store | FailingStore, **options: float):
        """A StoreReporter on a fresh claim of the run (a training child's, with its lease)."""
        from engine.running.store_reporter import StoreReporter

        claimed = self.store.claim_next("w")
        assert claimed is not None
        return StoreReporter(through, claimed.lease, self.stop, **options)


def test_heartbeats_retry_transient_errors_and_keep_the_points(tmp_path: Path) -> None:
    run = ClaimedRun(tmp_path)
    real, failing, exp_id = run.store, run.failing, run.exp_id
    rep = run.reporter(failing, flush_interval_s=0.05, lease_s=60)
    rep.metrics(1, {"train/loss": 2.0})
    rep.start()
    wait_for(lambda: failing.attempts >= 3, 10, "the heartbeat thread to retry")
    assert not rep.should_stop()  # a few failed beats, far inside the lease: keep training
    failing.fail = False
    wait_for(lambda: real.metrics(exp_id), 10, "the buffered point to reach the store")
    rep.close()
    assert [(m.step, m.value) for m in real.metrics(exp_id)] == [(1, 2.0)]


def test_a_run_that_cannot_renew_its_lease_stops_before_it_expires(tmp_path: Path) -> None:
    run = ClaimedRun(tmp_path)
    real, exp_id = run.store, run.exp_id
    rep = run.reporter(run.failing, flush_interval_s=0.05, lease_s=6.0)
    started = time.monotonic()
    rep.start()
    wait_for(run.stop.is_set, 30, "the run to stop itself")
    # Half the lease without a renewal: stop, so no second worker can ever train alongside it
    # (not sooner: a few failed beats are normal; not later than the lease, whatever the load).
    assert 3.0 <= time.monotonic() - started < 6.0
    with pytest.raises(LeaseLost, match="could not renew"):
        rep.should_stop()
    with pytest.raises(LeaseLost):
        rep.metrics(2, {"train/loss": 1.0})
    assert real.metrics(exp_id) == []


def test_the_flush_before_a_checkpoint_waits_out_a_short_outage(tmp_path: Path) -> None:
    import threading

    run = ClaimedRun(tmp_path)
    real, failing, exp_id = run.store, run.failing, run.exp_id
    rep = run.reporter(failing, flush_interval_s=3600, lease_s=60)
    rep.metrics(1, {"train/loss": 2.0})
    threading.Timer(0.5, lambda: setattr(failing, "fail", False)).start()
    started = time.monotonic()
    rep.before_checkpoint(1)  # blocks while writes fail, far inside the lease; no exception
    assert 0.4 < time.monotonic() - started < 5 and failing.attempts >= 3
    assert [(m.step, m.value) for m in real.metrics(exp_id)] == [(1, 2.0)]


def test_workers_silent_for_three_leases_leave_the_live_view_and_a_worker_marks_them_gone(
        tmp_path: Path) -> None:
    from engine.running.worker import QueueWorker
    from optical_tui.cli import app

    db = str(tmp_path / "e.db")
    # Killed 1000 s ago, and no worker has run since to mark it.
    with open_store(db, clock=lambda: time.time() - 1000) as then:
        then.register_worker("box:1:cpu", "box", 1, "cpu")
    with open_store(db) as store:
        store.register_worker("lab:2:cpu", "lab", 2, "cpu")

    def status(*args: str) -> dict[str, str]:
        result = CliRunner().invoke(app, ["--db", db, "worker", "status", "--json", "--lease", "60",
                                          *args])
        assert result.exit_code == 0, result.output
        return {r["id"]: r["state"] for r in json.loads(result.output)}

    assert status() == {"lab:2:cpu": "alive"}
    assert status("--all") == {"box:1:cpu": "gone", "lab:2:cpu": "alive"}  # its history stays
    said: list[str] = []
    QueueWorker(db, "cpu", once=True, runs=tmp_path / "runs", say=said.append).run()
    assert "worker box:1:cpu: no heartbeat for 3 leases, marked gone" in said, said
    with open_store(db) as store:
        rows = {w.id: w.status for w in store.list_workers(include_stopped=True)}
        assert rows["box:1:cpu"] == "gone" and rows["lab:2:cpu"] == "idle"
        said = [e.message for e in store.events()]
        assert any(m.startswith("worker box:1:cpu gone: no heartbeat for 10") for m in said), said


@pytest.mark.timeout(300)
def test_a_box_without_the_data_hands_the_run_back_without_spending_an_attempt(
        tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    (run,) = queue(db, ["train.steps=2", "eval.every=0", "ot.weight=0", "train.checkpoint_every=0"])
    (tmp_path / "no-data").mkdir()

    def worker(data: Path) -> str:  # a box whose data folder is `data`
        done = subprocess.run([sys.executable, "-m", "engine.running.worker", "--db", db,
                               "--device", "cpu", "--poll", "0.2", "--until-empty",
                               "--runs-dir", str(tmp_path / "runs")],
                              env=dict(ENV, PYTHONPATH=str(REPO), OPTICAL_DATA=str(data)),
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # The box without the data claims the run once, hands it back and, with nothing else to do,
    # ends.
    said = worker(tmp_path / "no-data")
    assert said.count("this box lacks its data") == 1 and "queue empty" in said, said
    with open_store(db) as store:
        e = store.get(run)
        assert e.status == "queued" and e.attempts == 0 and e.error is None, e
        (handed_back,) = events_of(store, run, "requeued")
        assert "lacks the data (missing data file" in handed_back, handed_back
        assert "no attempt used" in handed_back
        assert len(events_of(store, run, "claimed")) == 1
