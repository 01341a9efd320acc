"""`optical batches`: the first N batches of a config, as a user and a script see them (issue
18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optical_tui.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
pytestmark = pytest.mark.usefixtures("data_dir")


def test_batches_json_is_the_documented_shape() -> None:
    result = CliRunner().invoke(app,
                                ["batches", "-c", str(CONFIGS / "paper.toml"), "-r", "1:1", "-n",
                                 "4",
                                      "--set", "train.hard_negatives=2", "--set",
                                 "train.cross_pairs=batch",
                                      "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["config"]["ratio"] == "1:1" and out["config"]["cross_pairs"] == "batch"
    assert len(out["batches"]) == 4 and out["totals"]["false_negatives"] == 0
    for batch in out["batches"]:
        assert len(batch["rows"]) == 100 and batch["false_negatives"] == 0
        assert sum(batch["pairs"].values()) == 100
        for row in batch["rows"]:
            assert set(row) == {"id", "q_lang", "a_lang", "kind", "hard_negatives"}
            assert row["kind"] == ("cross" if row["q_lang"] != row["a_lang"] else "mono")
            assert len(row["hard_negatives"]) <= 2
        if batch["kind"] == "cross":
            assert len(batch["pairs"]) == 1  # one (X, Y) for the batch


def test_batches_table_and_bad_input() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["batches", "-c", str(CONFIGS / "smoke.toml"), "-n", "1"])
    assert ok.exit_code == 0, ok.output
    assert "false negatives 0" in ok.stdout and "1 batches, 8 rows" in ok.stdout
    for args, message in ((["-r", "1:x"], "invalid ratio"),
                          (["--set", "train.cross_pairs=diag"], "not one of row, batch"),
                          (["--set", "train.batch_size=5000"], "distinct answer sentences")):
        bad = runner.invoke(app, ["batches", *args])
        assert bad.exit_code == 1 and message in bad.stderr and "Traceback" not in bad.output
