"""Many workers, many boxes, one queue, with real processes and signals.

- kill -9 on one "box", resume on the other: two workers with different host names and working
  folders share one queue and one runs dir; the second is a batch worker (`--until-empty`) started
  while the dead worker's run still looks alive, which must wait for it and finish it;
- a paused ("zombie") worker whose run was reclaimed by a worker with the same id writes no row
  and no file once it continues;
- one worker per device under a supervisor (`--device cpu,cpu`; `--device all` needs GPUs):
  restart after a crash, drain one box with `worker stop --host`, SIGTERM, `--detach`.

The first two run on both backends: SQLite and a real PostgreSQL (tests/pg_fixtures.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.store import open_store
from tests.worker_support import (
    Workers,
    child_pids,
    events_of,
    files_under,
    gone,
    pause,
    queue,
    train_steps,
    wait_for,
    workers_fixture,
)

pytestmark = pytest.mark.usefixtures("data_dir")
OPTICAL = Path(sys.executable).parent / "optical"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "e.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def workers(tmp_path: Path):
    yield from workers_fixture(tmp_path)


def cli(db: str, *args: str) -> tuple[int, str]:
    from optical_tui.cli import app

    result = CliRunner().invoke(app, ["--db", db, *args])
    return result.exit_code, result.output


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill9_on_one_box_resumes_from_its_checkpoint_on_the_other(db: str, tmp_path: Path,
                                                                   workers: Workers) -> None:
    shared = tmp_path / "shared-runs"  # the filesystem both boxes mount
    box_a, box_b = tmp_path / "box-a", tmp_path / "box-b"
    box_a.mkdir()
    box_b.mkdir()
    (victim,) = queue(db, ["train.steps=120", "train.checkpoint_every=10", "eval.every=40",
                           "train.log_every=1"])
    a = workers.start(db, "--host-name", "box-a", "--max-experiments", "1", runs=shared, cwd=box_a)
    store = open_store(db)
    first = shared / str(victim) / "attempt-1" / "checkpoints"
    wait_for(lambda: any(first.glob("step_*.pt"))
             and max(train_steps(store, victim), default=0) >= 15,
             180, "box a's run to pass a checkpoint")
    (child,) = child_pids(db)
    a.send_signal(signal.SIGKILL)
    a.wait()
    # PR_SET_PDEATHSIG: the training process dies with its worker and stops heartbeating.
    wait_for(lambda: gone(child), 10, "box a's training process to die")
    assert store.get(victim).status == "running"  # its lease has not run out yet

    # Started at once, while the dead worker's run still has a fresh heartbeat: a batch worker must
    # not take "queue empty" for "nothing to do" (issue 13.8). Its lease outlasts its start-up, so
    # it does see the run before the run is stale.
    b = workers.start(db, "--host-name", "box-b", "--until-empty", "--lease", "8", runs=shared,
                      cwd=box_b)
    assert b.wait(timeout=300) == 0, workers.log()
    e = store.get(victim)
    assert e.status == "done" and e.attempts == 2, (e.error, workers.log())
    claims = events_of(store, victim, "claimed")
    assert [c.split()[2].split(":")[0] for c in claims] == ["box-a", "box-b"], claims
    assert any("no heartbeat" in m for m in events_of(store, victim, "requeued"))
    resumed = [m for m in events_of(store, victim, "info") if m.startswith("resumed from step")]
    # from box a's checkpoint, not from scratch
    assert resumed and int(resumed[0].split()[-1]) >= 10
    # Every step exactly once across both boxes, evaluations at 0, 40, 80, 120.
    assert train_steps(store, victim) == list(range(1, 121))
    assert sorted({m.step for m in store.metrics(victim, prefix="eval/")}) == [0, 40, 80, 120]
    log_b = workers.log(b)
    assert ("watching 1 running experiment(s)" in log_b
            or "waiting for silent run(s)" in log_b), log_b
    # Files: one folder per attempt in the shared runs dir; a finished run keeps its logs, not its
    # checkpoints; the boxes' own working folders got nothing.
    folder = shared / str(victim)
    assert sorted(files_under(folder)) == ["attempt-1/child.log", "attempt-1/config.json",
                                          "attempt-2/child.log", "attempt-2/config.json",
                                           "run.json"]
    assert list(box_a.iterdir()) == [] and list(box_b.iterdir()) == []
    # Both boxes' workers, with their host: a's is stale (killed) or, silent for 3 leases, gone;
    # b's stopped.
    code, out = cli(db, "worker", "status", "--all", "--json", "--lease", "8")
    assert code == 0, out
    (a_state, b_state) = [r["state"] for r in sorted(json.loads(out), key=lambda r: r["host"])]
    assert a_state in ("stale", "gone") and b_state == "stopped", out


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_paused_worker_whose_run_was_reclaimed_by_the_same_id_writes_nothing(
        db: str, tmp_path: Path, workers: Workers) -> None:
    """SIGSTOP a worker and its training process past the lease; a worker with the *same* id
    reclaims the run (attempt 2); SIGCONT: the old processes write no metric row, no event, no
    change to the run's row and no file (the attempt number fences them), then exit."""
    runs = tmp_path / "runs"
    same_id = "node-1:4242:cpu"  # ids repeat in containers and Slurm jobs
    (exp,) = queue(db, ["train.steps=300", "train.checkpoint_every=20", "eval.every=0",
                        "train.log_every=1"])
    store = open_store(db)
    old = workers.start(db, "--worker-id", same_id, "--max-experiments", "1")
    seen = {"checkpoints": 0}

    def right_after_a_checkpoint() -> bool:
        # Pause just after a checkpoint: the next is 20 steps away, so the pause never lands
        # mid-write.
        n = len(events_of(store, exp, "checkpoint"))
        fresh, seen["checkpoints"] = n > seen["checkpoints"], max(n, seen["checkpoints"])
        return fresh and n > 0

    pause(old, db, right_after_a_checkpoint)
    (old_child,) = child_pids(db)
    paused_at = store.get(exp).step
    new = workers.start(db, "--worker-id", same_id, "--lease", "3", "--until-empty")
    second = runs / str(exp) / "attempt-2" / "checkpoints"
    wait_for(lambda: any(second.glob("step_*.pt")), 180,
             "the reclaimed run to checkpoint in its own folder")
    reclaimed = store.get(exp)
    assert (reclaimed.attempts == 2 and reclaimed.worker_id == same_id
            and reclaimed.status == "running")
    # Freeze the successor too: from here on, any change is the old processes' doing.
    pause(new, db, lambda: True)

    def snapshot() -> tuple[object, ...]:
        row = store.get(exp)
        return ([(m.rowid, m.key, m.step, m.value) for m in store.metrics(exp)],
                [(e.id, e.kind, e.message) for e in store.events(exp)],
                (row.status, row.attempts, row.worker_id, row.heartbeat_at, row.step, row.error),
                files_under(runs / str(exp), logs=False))

    before = snapshot()
    os.killpg(old.pid, signal.SIGCONT)
    assert old.wait(timeout=60) == 0, workers.log(old)
    wait_for(lambda: gone(old_child), 10, "the old training process to exit")
    assert snapshot() == before
    # It did wake up, met the fence and left.
    old_log = (runs / str(exp) / "attempt-1" / "child.log").read_text()
    assert "leaving it to its new owner" in old_log, old_log

    os.killpg(new.pid, signal.SIGCONT)
    assert new.wait(timeout=240) == 0, workers.log(new)
    e = store.get(exp)
    assert e.status == "done" and e.attempts == 2, (e.error, workers.log())
    assert train_steps(store, exp) == list(range(1, 301))
    # It resumed from the old attempt's last checkpoint, the one written just before the pause.
    resumed = [int(m.split()[-1]) for m in events_of(store, exp, "info")
               if m.startswith("resumed from step")]
    assert resumed and resumed[0] % 20 == 0 and 20 <= resumed[0] <= paused_at


# ---------------------------------------------------------------------- one worker per device


def test_device_all_on_a_box_without_a_gpu_is_one_error_line(tmp_path: Path) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # no GPU, whatever this box has
    r = subprocess.run([str(OPTICAL), "--db", str(tmp_path / "e.db"), "worker", "--device", "all"],
                       check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.splitlines() == [("error: --device all: no CUDA device is visible on this box; "
                                      "pass --device cpu to run one CPU worker")]
    assert list(tmp_path.iterdir()) == []  # bad input writes nothing


def test_device_lists_expand_and_are_checked() -> None:
    from engine.errors import ConfigError
    from engine.running.pool import expand_devices, is_pool_setting

    assert expand_devices("all", count=lambda: 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert expand_devices("cpu,cpu") == ["cpu", "cpu"]  # several CPU workers are allowed
    assert is_pool_setting("all") and is_pool_setting("cpu,cpu") and not is_pool_setting("cuda:1")
    with pytest.raises(ConfigError,
                       match="no CUDA device is visible on this box; pass --device cpu"):
        expand_devices("all", count=lambda: 0)
    for bad in ("cpu,,cpu", "cpu,auto", "cpu,gpu:1", "all,cpu"):
        with pytest.raises(ConfigError):
            expand_devices(bad)


@pytest.mark.timeout(120)
def test_a_pool_restarts_a_crashed_worker_and_worker_stop_host_drains_the_box(
    tmp_path: Path, workers: Workers
) -> None:
    db = str(tmp_path / "e.db")
    open_store(db).close()
    pool = workers.start(db, "--host-name", "box-c", "--max-restarts", "2",
                         module="engine.running.pool",
                         device="cpu,cpu")
    store = open_store(db)

    def alive_pids() -> list[int]:
        # Another host's worker counts as alive until its heartbeat is older than the lease.
        _, out = cli(db, "worker", "status", "--json", "--lease", "3")
        return sorted(r["pid"] for r in json.loads(out) if r["host"] == "box-c"
                      and r["state"] == "alive")

    first = wait_for(lambda: (p := alive_pids()) and len(p) == 2 and p, 60, "two workers on box-c")
    os.kill(first[0], signal.SIGKILL)  # a worker crashes: the supervisor starts a new one
    wait_for(lambda: (p := alive_pids()) and len(p) == 2 and first[0] not in p, 60,
             "the crashed worker's replacement")
    code, out = cli(db, "worker", "stop", "--host", "box-c")
    assert code == 0 and "stop requested" in out, out
    assert pool.wait(timeout=60) == 0, workers.log()
    log = workers.log()
    assert ("[cpu#1]" in log and "[cpu#2]" in log and "restarting in" in log
            and "killed by SIGKILL" in log)
    assert alive_pids() == []
    # Only the crashed worker's row is left unstopped (nobody could mark it); the others drained.
    assert [w.pid for w in store.list_workers()] == [first[0]]
    code, out = cli(db, "worker", "stop", "--host", "box-z")
    assert code == 1 and "no running worker with host 'box-z'" in out


@pytest.mark.timeout(120)
def test_sigterm_drains_every_worker_of_a_pool_and_detach_runs_one(tmp_path: Path,
                                                                   workers: Workers) -> None:
    db = str(tmp_path / "e.db")
    open_store(db).close()
    pool = workers.start(db, module="engine.running.pool", device="cpu,cpu")
    store = open_store(db)
    wait_for(lambda: len(store.list_workers()) == 2, 60, "two workers")
    pool.send_signal(signal.SIGTERM)  # to the supervisor only: it forwards one drain to each worker
    assert pool.wait(timeout=60) == 0, workers.log()
    assert store.list_workers() == [] and len(store.list_workers(include_stopped=True)) == 2
    assert "SIGTERM: draining every worker" in workers.log()

    code, out = cli(db, "worker", "--device", "cpu,cpu", "--detach", "--poll", "0.2")
    assert code == 0 and "2 worker(s) (cpu, cpu) started in the background" in out, out
    pid_file = tmp_path / "e.worker-cpu-cpu.pid"
    supervisor = int(pid_file.read_text())
    try:
        assert os.getsid(supervisor) == supervisor
        rows = wait_for(lambda: len(store.list_workers()) == 2 and store.list_workers(), 60,
                        "the detached pool")
        assert {r.log_path for r in rows} == {str(tmp_path / "e.worker-cpu-cpu.log")}
        assert cli(db, "worker", "stop")[0] == 0
        wait_for(lambda: not pid_file.exists(), 60, "the detached supervisor to exit")
    finally:
        if Path(f"/proc/{supervisor}").exists():
            os.killpg(supervisor, signal.SIGKILL)
    assert "all workers exited" in (tmp_path / "e.worker-cpu-cpu.log").read_text()
