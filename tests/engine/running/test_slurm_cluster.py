"""`optical launch slurm` against a real one-node Slurm (tests/slurm_fixtures.py) and a real
PostgreSQL queue: a job array drains a sweep, and a cancelled task's run resumes in another job.
`pg_url` comes before `slurm` in each test's arguments: the jobs are cancelled before their
database is dropped.

The cluster has no accounting database, as many small clusters do: `sacct` fails there, so these
tests also show that the tool never waits on it (engine/running/slurm_wait.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store import Store, open_store
from tests.engine.running.test_slurm import TINY, launch
from tests.slurm_fixtures import SlurmCluster
from tests.worker_support import events_of, queue, series_keys, train_steps, wait_for

pytestmark = pytest.mark.usefixtures("data_dir")
OPTICAL = Path(sys.executable).parent / "optical"
# Every task: one CPU of the two-CPU node, the CPU device, a 10-minute limit.
TASK = ["--device", "cpu", "--cpus-per-task", "1", "--partition", "debug", "--time", "10"]
# A lease short enough to requeue a killed task's run soon, long enough for a busy box's heartbeats.
LEASE = ["--lease", "8"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tasks inherit it (sbatch --export=ALL)


@pytest.mark.slow  # > 30 s on a busy 2-core box: each task starts Python, torch and a run
@pytest.mark.timeout(480)
def test_a_job_array_claims_and_finishes_a_queued_sweep(
    pg_url: str, slurm: SlurmCluster, tmp_path: Path
) -> None:
    ids = queue(pg_url, TINY, seeds=(0, 1, 2))
    logs = tmp_path / "logs"
    code, out, err = launch(
        pg_url,
        "--gpus",
        "2",
        *TASK,
        "--wait",
        "--json",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--logs",
        str(logs),
    )
    task_logs = [p.read_text() for p in logs.glob("*.out")]
    assert code == 0, (out, err, task_logs, slurm.log())
    report = json.loads(out)
    array = report["jobs"][0].split("_")[0]
    assert report["jobs"] == [f"{array}_0", f"{array}_1"]
    assert [t["ok"] for t in report["tasks"]] == [True, True], report
    with open_store(pg_url) as store:
        exps = store.list_experiments(ids=ids)
        assert [e.status for e in exps] == ["done"] * 3, [(e.id, e.error) for e in exps]
        workers = store.list_workers(include_stopped=True)
    # Two workers, one per array task, each inside its own Slurm job.
    assert len(workers) == 2 and all(w.status == "stopped" and w.device == "cpu" for w in workers)
    shown = slurm.client("scontrol", "show", "job", "--oneliner", array).stdout
    assert shown.count("JobState=COMPLETED") == 2, shown


def _run_a_first_job_and_scancel_its_task(
    pg_url: str, slurm: SlurmCluster, tmp_path: Path, run: int
) -> Store:
    """`launch slurm --wait` as a user runs it; its task is scancelled once the run has passed a
    checkpoint. Returns the open store."""
    runs = tmp_path / "runs"
    common = [
        "--db",
        pg_url,
        "launch",
        "slurm",
        "--gpus",
        "1",
        *TASK,
        *LEASE,
        "--runs-dir",
        str(runs),
        "--json",
    ]
    # The launcher itself, as a user runs it: --wait must notice the cancelled task (sacct cannot).
    first = subprocess.Popen(
        [str(OPTICAL), *common, "--logs", str(tmp_path / "logs-1"), "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = open_store(pg_url)
        checkpoints = runs / str(run) / "attempt-1" / "checkpoints"
        wait_for(
            lambda: (
                any(checkpoints.glob("step_*.pt")) and max(train_steps(store, run), default=0) >= 8
            ),
            300,
            "the first task's run to pass a checkpoint",
        )
        (task,) = [
            line.split()[0]
            for line in slurm.client("squeue", "--noheader", "--format", "%i").stdout.splitlines()
        ]
        assert slurm.client("scancel", task).returncode == 0
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 1, (out, err)
    (outcome,) = json.loads(out)["tasks"]
    assert outcome["job_id"] == task and not outcome["ok"], outcome
    # Either its worker drained within Slurm's KillWait (the usual case), or it was killed first.
    assert "CANCELLED" in outcome["error"], outcome
    return store


@pytest.mark.slow  # > 30 s on a busy 2-core box: each task starts Python, torch and a run
@pytest.mark.timeout(480)
def test_scancel_of_a_running_task_requeues_its_run_and_another_job_resumes_it(
    pg_url: str, slurm: SlurmCluster, tmp_path: Path
) -> None:
    (run,) = queue(
        pg_url,
        [
            "train.steps=100",
            "train.checkpoint_every=5",
            "eval.every=0",
            "ot.weight=0",
            "train.log_every=1",
        ],
    )
    runs = tmp_path / "runs"
    store = _run_a_first_job_and_scancel_its_task(pg_url, slurm, tmp_path, run)

    # Another job takes the run over: released by the drain, or requeued once its 8 s lease ran out.
    code, out, err = launch(
        pg_url,
        "--gpus",
        "1",
        *TASK,
        *LEASE,
        "--runs-dir",
        str(runs),
        "--logs",
        str(tmp_path / "logs-2"),
        "--wait",
    )
    assert code == 0, (out, err, [p.read_text() for p in (tmp_path / "logs-2").glob("*.out")])
    e = store.get(run)
    assert e.status == "done", e.error
    claims = events_of(store, run, "claimed")
    assert len(claims) == 2 and claims[0].split()[2] != claims[1].split()[2], claims  # two workers
    resumed = [m for m in events_of(store, run, "info") if m.startswith("resumed from step")]
    assert resumed and int(resumed[0].split()[-1]) >= 5, (
        resumed
    )  # from the checkpoint, not from scratch
    # Nothing lost, nothing twice: every step once, every metric point once.
    assert train_steps(store, run) == list(range(1, 101))
    assert max(series_keys(store, run).values()) == 1
    store.close()


@pytest.mark.timeout(120)
def test_a_submission_slurm_refuses_is_one_error_line_and_leaves_nothing(
    pg_url: str, slurm: SlurmCluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    for args, says in (
        (["--device", "cpu", "--partition", "nope"], "invalid partition"),
        (["--cpus-per-task", "1"], "Invalid generic resource"),  # a GPU each, on a node without
    ):
        code, out, err = launch(
            pg_url, "--gpus", "1", "--time", "10", *args, "--runs-dir", str(runs)
        )
        assert code == 1 and out == "", (args, out, err)
        assert len(err.splitlines()) == 1, err
        assert err.startswith("error: submission failed: ") and says in err, err
    assert slurm.client("squeue", "--noheader").stdout == ""
    assert list(tmp_path.iterdir()) == []  # not even the job folder (runs/slurm) it made
