"""The one launcher (engine/running/launch.py): the worker's options round-trip through argv, every
child gets the database through its environment, and no process of a PostgreSQL worker pool (the
supervisor, its workers, their training processes) shows the password in its command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from engine.running.launch import DEFAULT_LEASE_S, WorkerOptions, engine_command, pid_file
from tests.worker_support import LONG, Workers, child_pids, queue, wait_for, workers_fixture

URL = "postgresql://optical:s3cret@db.lab:5432/optical"


@pytest.fixture
def workers(tmp_path: Path):  # -> Iterator[Workers]
    yield from workers_fixture(tmp_path)


def test_worker_options_round_trip_through_argv() -> None:
    parser = argparse.ArgumentParser()
    WorkerOptions.add_arguments(parser)
    default = WorkerOptions()
    assert WorkerOptions.from_args(parser.parse_args([])) == default
    # The lease is always spelled out (worker and run process must agree); other defaults are not.
    assert default.argv() == ["--device", "auto", "--lease", "60"] and DEFAULT_LEASE_S == 60.0
    every = WorkerOptions(once=True, until_empty=True, device="cuda:1", runs_dir="/shared/runs",
                          lease_s=2.5,
                          poll_s=0.2, max_experiments=3, host_name="box-a", log_path="/l.log",
                          pid_file="/w.pid", worker_id="box-a:1:cuda:1")
    assert WorkerOptions.from_args(parser.parse_args(every.argv())) == every
    # Slurm's dry run (and its --json worker_command) shows exactly this order.
    assert WorkerOptions(until_empty=True, device="cuda:0", runs_dir="/r").argv() == [
        "--until-empty", "--device", "cuda:0", "--runs-dir", "/r", "--lease", "60"]


def test_engine_command_puts_the_database_in_the_environment_never_in_argv() -> None:
    for db in (URL, "/data/experiments.db"):
        cmd, env = engine_command("engine.running.worker", db, "--device", "cpu")
        assert cmd == [sys.executable, "-m", "engine.running.worker", "--device", "cpu"]
        assert env["OPTICAL_DB"] == db and db not in " ".join(cmd)
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parents[3])


def test_the_demo_and_slurm_launchers_keep_the_url_off_argv(tmp_path: Path) -> None:
    from engine.running.slurm import SlurmPlan
    from optical_tui.commands.demo import worker_command

    cmd, env = worker_command(URL, "cpu", 1.0)
    assert "s3cret" not in " ".join(cmd) and env["OPTICAL_DB"] == URL
    assert cmd[-4:] == ["--lease", "60", "--poll", "1"]
    plan = SlurmPlan(db=URL, gpus=2, runs=tmp_path / "runs", logs=tmp_path / "logs")
    assert "s3cret" not in " ".join(plan.worker_command())


def test_pid_file_names_this_process_and_is_removed_only_if_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "w.pid"
    with pid_file(path):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()
    with pid_file(path):
        path.write_text("12345\n")  # a newer process took the file over: leave it to that one
    assert path.read_text() == "12345\n"
    with pid_file(None):
        pass


def _processes_with(db: str) -> dict[int, bytes]:
    """pid → command line of every live process whose environment carries this database."""
    found = {}
    needle = b"OPTICAL_DB=" + db.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
    return found


@pytest.mark.usefixtures("data_dir")
@pytest.mark.timeout(240)
def test_no_process_of_a_postgres_pool_shows_the_password(pg_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          workers: Workers) -> None:
    from optical_tui.cli import app

    password = urlsplit(pg_url).password
    assert password
    monkeypatch.chdir(tmp_path)  # a detached worker of a database server keeps its pid file here
    monkeypatch.setenv("OPTICAL_DB", pg_url)  # as a careful user would: not on this argv either
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    queue(pg_url, LONG, seeds=(0, 1))
    result = CliRunner().invoke(app, ["worker", "--device", "cpu,cpu", "--detach", "--poll", "0.2",
                                      "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    pid_path = tmp_path / "optical-worker-cpu-cpu.pid"
    supervisor = int(pid_path.read_text())
    try:
        wait_for(lambda: len(child_pids(pg_url)) == 2, 120, "two training processes")
        seen = _processes_with(pg_url)
        # The supervisor, its two workers and their two training processes (at least).
        assert supervisor in seen and len(seen) >= 5, seen
        shown = {pid: cmd for pid, cmd in seen.items() if password.encode() in cmd}
        assert shown == {}, shown
        assert not any(b"postgresql://" in cmd for cmd in seen.values()), seen
        assert CliRunner().invoke(app, ["worker", "stop"]).exit_code == 0
        wait_for(lambda: not pid_path.exists(), 120, "the detached supervisor to drain and exit")
    finally:
        if Path(f"/proc/{supervisor}").exists():
            os.killpg(supervisor, signal.SIGKILL)


@pytest.mark.slow  # five smoke runs, one after another: minutes on a busy CPU box
@pytest.mark.usefixtures("data_dir")
@pytest.mark.timeout(600)
def test_no_process_of_a_postgres_demo_shows_the_password(pg_url: str, tmp_path: Path) -> None:
    """`optical demo` on PostgreSQL with the smoke config (tiny model): watch every process that
    carries the database, from start to end, for the password in its command line."""
    import subprocess
    import time

    password = urlsplit(pg_url).password
    assert password
    optical = Path(sys.executable).parent / "optical"
    env = dict(os.environ, OPTICAL_DB=pg_url, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    smoke = Path(__file__).resolve().parents[3] / "configs" / "smoke.toml"
    proc = subprocess.Popen([str(optical), "demo", "--config", str(smoke), "--seeds", "1",
                             "--device", "cpu",
                             "--plot", str(tmp_path / "plot.png")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    seen: dict[int, bytes] = {}
    try:
        while proc.poll() is None:
            seen.update(_processes_with(pg_url))
            time.sleep(0.1)
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    kinds = [b"engine.running.worker" in cmd or b"engine.running.run_process" in cmd
             for cmd in seen.values()]
    assert sum(kinds) >= 2, seen  # the demo's worker and at least one training process
    assert not any(password.encode() in cmd or b"postgresql://" in cmd
                   for cmd in seen.values()), seen
