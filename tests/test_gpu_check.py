"""benchmarks/gpu_check.sh, the parts a CPU box can check: its options, the dry run (configs valid,
plan printed) and the whole pipeline on CPU (`--cpu-smoke`: queue, worker, two-worker pool, the
report read back from the database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.usefixtures("data_dir")


def check(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # The venv's entry point, whichever python runs the tests.
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          timeout=timeout, cwd=REPO, env=env)


def test_bad_options_are_one_error_line() -> None:
    for args in (["--nope"], ["--steps", "0"], ["--steps", "x"]):
        res = check(*args)
        assert res.returncode == 2 and res.stderr.startswith("error:"), (args, res.stderr)


def test_dry_run_validates_the_paper_config_and_trains_nothing(tmp_path: Path) -> None:
    res = check("--dry-run", "--keep", str(tmp_path / "work"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "config configs/paper.toml" in res.stdout and "dry run: configs valid" in res.stdout
    assert "worker --device cuda:0 --until-empty" in res.stdout and "train.steps=60" in res.stdout
    assert not list((tmp_path / "work").rglob("*.pt"))  # nothing trained
    assert not (tmp_path / "work" / "experiments.runs").exists()


# Three training processes (one run, then two in a two-worker pool) on the tiny model.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cpu_smoke_runs_the_whole_check(tmp_path: Path) -> None:
    res = check("--cpu-smoke", "--keep", str(tmp_path / "work"))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    lines = [line.split() for line in out.splitlines()]
    check_row = next(r for r in lines if r[:2] == ["1", "1:1"])
    assert check_row[2:5] == ["done", "cpu", "4"], out
    float(check_row[5])  # step time
    float(check_row[-1])  # full MLQA-R (Hindi) evaluation time, read from the run's events
    pool_rows = [r for r in lines if r[:1] in (["2"], ["3"])]
    assert [r[2] for r in pool_rows] == ["done", "done"], out
    assert "runs overlapped in time: True" in out and out.count("\nOK") == 2
    assert "gpu check finished" in out and "(status 0)" in out
