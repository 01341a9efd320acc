"""`optical launch slurm`: the job array submitit would submit, bad input, and real tasks through
submitit's LocalExecutor (subprocesses) and DebugExecutor (in this process) draining a queue.
There is no Slurm here: what reaches `sbatch` is checked as text (`--dry-run`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.errors import ConfigError
from engine.running.slurm import SlurmPlan, parse_time, submit
from engine.store import open_store
from tests.worker_support import queue

TINY = ["train.steps=2", "eval.every=0", "ot.weight=0", "train.checkpoint_every=0"]


def launch(db: str, *args: str) -> tuple[int, str, str]:
    from optical_tui.cli import app

    result = CliRunner().invoke(app, ["--db", db, "launch", "slurm", *args])
    return result.exit_code, result.stdout, result.stderr


def test_time_limits_in_slurms_forms() -> None:
    assert [parse_time(t)
            for t in ("90", "30:00", "01:30:00", "1-00", "1-02:30", "1-02:30:15")] == \
        [90, 30, 90, 1440, 1590, 1591]
    for bad in ("", "1h", "0", "0:30", "-5"):
        with pytest.raises(ConfigError, match="--time"):
            parse_time(bad)


def test_dry_run_shows_one_array_task_per_gpu_and_keeps_the_password_out(tmp_path: Path) -> None:
    url = "postgresql://optical:s3cret@db.lab:5432/optical"
    code, out, err = launch(url, "--gpus", "4", "--partition", "a100", "--time", "2:00:00",
                            "--cpus-per-task", "6",
                            "--mem-gb", "40", "--runs-dir", str(tmp_path / "shared"), "--dry-run")
    assert code == 0, err
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --partition=a100", "#SBATCH --time=120", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=40GB", "#SBATCH --export=ALL", "#SBATCH --signal=USR2@90"):
        assert line in out.splitlines(), (line, out)
    worker = [line for line in out.splitlines() if "engine.running.worker" in line]
    assert worker == [(f"#   {sys.executable} -m engine.running.worker --until-empty --device "
                       "cuda:0 "
                       f"--runs-dir {tmp_path / 'shared'} --lease 60")]
    assert "s3cret" not in out and "optical:***@db.lab" in out
    assert not (tmp_path / "shared").exists()  # a dry run writes nothing


def test_bad_input_is_one_error_line(tmp_path: Path, pg_url: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no Slurm (this box may have the test cluster's)
    sqlite = str(tmp_path / "e.db")
    for db, args, says in (
        (sqlite, ["--gpus", "2"], "need a database server they all reach"),
        (pg_url, ["--gpus", "2", "--time", "soon"], "--time 'soon'"),
        (pg_url, ["--gpus", "2"], 'Could not detect "srun"'),
        (pg_url, ["--gpus", "0"], "--gpus"),
    ):
        code, out, err = launch(db, *args)
        assert code == 1 and out == "", (args, out, err)
        (line,) = err.splitlines()
        assert line.startswith("error: ") and says in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("data_dir")
def test_local_executor_tasks_drain_a_shared_postgresql_queue(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tasks inherit it: two trainings share a small CPU
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ids = queue(pg_url, TINY, seeds=(0, 1, 2))
    code, out, err = launch(pg_url, "--gpus", "2", "--executor", "local", "--device", "cpu",
                            "--wait",
                            "--runs-dir", str(tmp_path / "runs"), "--logs", str(tmp_path / "logs"),
                            "--time", "10")
    assert code == 0, (out, err, [p.read_text() for p in (tmp_path / "logs").glob("*.out")])
    assert out.count("finished") == 2, out
    with open_store(pg_url) as store:
        exps = store.list_experiments(ids=ids)
        assert [e.status for e in exps] == ["done"] * 3, [(e.id, e.error) for e in exps]
        assert len([e for e in store.events() if e.kind == "worker"
                    and "started" in e.message]) == 2
        assert all(w.status == "stopped" for w in store.list_workers(include_stopped=True))


@pytest.mark.timeout(120)
def test_debug_executor_runs_a_task_in_this_process_with_the_database_from_the_environment(
    tmp_path: Path
) -> None:
    """The task finds its database through OPTICAL_DB (set for the submission only), serves the
    queue, finds it empty and ends; the experiments themselves are drained in the test above."""
    import os

    db = str(tmp_path / "e.db")
    open_store(db).close()
    plan = SlurmPlan(db=db, gpus=1, runs=tmp_path / "runs", logs=tmp_path / "logs", time_min=10,
                     device="cpu",
                     gpus_each=0)
    (job,) = submit(plan, "debug")
    # not leaked into this process
    assert "OPTICAL_DB" not in os.environ or os.environ["OPTICAL_DB"] != db
    assert job.result() == 0
    with open_store(db) as store:
        (worker,) = store.list_workers(include_stopped=True)
    assert worker.device == "cpu" and worker.status == "stopped"
