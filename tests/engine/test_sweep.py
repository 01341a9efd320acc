"""Factorial sweeps: `--sweep key=v1,v2` grid expansion and its validation, in the engine and
through `optical queue add` (one error line and nothing written on bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.errors import ConfigError
from engine.store import open_store
from engine.sweep import factors_text, level_text, new_experiments, parse_sweep
from optical_tui.cli import app

runner = CliRunner()


def test_grid_is_ratios_times_every_factor_times_seeds() -> None:
    specs = new_experiments(["1:0", "1:1", "0:1"], [1, 2, 3],
                            sweeps=["ot.weight=0,1", "train.mixing=batch,within"],
                            name="grid")
    assert len(specs) == 3 * 2 * 2 * 3
    cells = [(s.ratio, s.factors["ot.weight"], s.factors["train.mixing"], s.seed) for s in specs]
    assert len(set(cells)) == 36  # every combination exactly once
    assert cells[:4] == [("1:0", 0.0, "batch", 1), ("1:0", 0.0, "batch", 2),
                         ("1:0", 0.0, "batch", 3),
                         # ratio, then factors in the order given, seeds innermost
                         ("1:0", 0.0, "within", 1)]
    for s in specs:  # each run's frozen config is its cell: what trains is what the factors say
        assert s.config["ot"]["weight"] == s.factors["ot.weight"]
        assert s.config["train"]["mixing"] == s.factors["train.mixing"]
        assert (s.config["train"]["ratio"], s.config["train"]["seed"]) == (s.ratio, s.seed)
    assert isinstance(specs[0].factors["ot.weight"], float)  # typed like the config key (0 → 0.0)
    assert factors_text(specs[-1].factors) == "ot.weight=1 train.mixing=within"
    assert factors_text(specs[-1].factors, short=True) == "weight=1 mixing=within"
    plain = new_experiments(["1:1"], [0])
    assert plain[0].factors == {}


def test_list_and_bool_factors() -> None:
    f = parse_sweep("data.train_langs=[en,de],[\"en\", \"de\", \"es\"]")
    assert f.key == "data.train_langs" and f.values == (("en", "de"), ("en", "de", "es"))
    specs = new_experiments(["1:1"], [0],
                            sweeps=["data.train_langs=[en,de],[en,de,es]", "train.bf16=true,false"])
    assert [(s.factors["data.train_langs"], s.factors["train.bf16"]) for s in specs] == [
        (["en", "de"], True), (["en", "de"], False), (["en", "de", "es"], True),
        (["en", "de", "es"], False)]
    assert json.dumps(specs[0].factors)  # stored as JSON
    assert level_text(["en",
                       "de"]) == "en,de" and level_text(True) == "true" and level_text(0.5) == "0.5"


@pytest.mark.parametrize(
    "sweeps, message",
    [
        (["ot.wieght=0,1"], "--sweep ot.wieght: unknown key; valid keys in [ot]: weight"),
        (["optim.lr=1"], "unknown section 'optim'"),
        (["ot.weight"], "expected section.key=value1,value2"),
        (["ot.weight="], "give one or more comma-separated values"),
        (["ot.weight=0,,1"], "give one or more comma-separated values"),
        (["ot.weight=0,x"], "--sweep ot.weight=x: cannot parse 'x'"),
        (["ot.weight=1,1.0"], "--sweep ot.weight value 1 is given twice"),
        (["train.mixing=batch,sometimes"], "train.mixing: 'sometimes' is not one of batch, within"),
        (["train.steps=10,1.5"], "train.steps: expected an integer"),
        (["train.steps=10,0"], "train.steps: must be positive"),
        (["ot.weight=-1,1"], "ot.weight: must be non-negative"),
        (["train.ratio=1:1,1:3"], "--sweep train.ratio: give ratios with --ratio"),
        (["train.seed=1,2"], "--sweep train.seed: give seeds with --seed"),
        (["ot.weight=0,1", "ot.weight=2"], "--sweep key ot.weight is given twice"),
        (["data.train_langs=en,de"], "each value of a list key is a bracketed list"),
        (["data.train_langs=[en,xx]"], "unknown language"),
        (["data.train_langs=[en,en,de]"], "en given more than once"),
        # A value valid alone but not in its cell: one training language cannot make cross-lingual
        # batches.
        (["data.train_langs=[en],[en,de]"],
         "cross-lingual batches need at least two training languages"),
    ],
)
def test_bad_sweeps_are_refused_with_one_message(sweeps: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        new_experiments(["1:1"], [0], sweeps=sweeps)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_other_grid_checks() -> None:
    with pytest.raises(ConfigError, match="also given with --set"):
        new_experiments(["1:1"], [0], overrides=["ot.weight=0"], sweeps=["ot.weight=0,1"])
    with pytest.raises(ConfigError, match="ratio 1:1 is given twice"):
        # the same mixture: one cell twice would duplicate runs
        new_experiments(["1:1", "2:2"], [0])
    with pytest.raises(ConfigError, match="seed 3 is given twice"):
        new_experiments(["1:1"], [3, 3])
    with pytest.raises(ConfigError, match=r"--seed 4294967296: must be between 0 and 4294967295"):
        new_experiments(["1:1"], [2**32])
    with pytest.raises(ConfigError, match="--priority"):
        new_experiments(["1:1"], [0], priority=2**63)
    with pytest.raises(ConfigError, match="--max-attempts"):
        new_experiments(["1:1"], [0], max_attempts=10**20)
    with pytest.raises(ConfigError, match="at most 10,000 per queue add"):
        new_experiments(["1:1"], list(range(101)),
                        sweeps=["train.lr=" + ",".join(f"{i}e-6" for i in range(1, 101))])
    # A single-language cell is fine for monolingual-only batches (validated per cell, with its
    # ratio).
    assert len(new_experiments(["1:0"], [0], sweeps=["data.train_langs=[en],[en,de]"])) == 2


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for whole factor labels in `queue list` (the console's width is fixed when it is
    created)."""
    from optical_tui.console import console

    monkeypatch.setattr(console, "width", 200)


def run(db: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--db", str(db), *args])


def test_cli_queues_the_full_grid_and_shows_factors(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    r = run(db, "queue", "add", "-r", "1:0", "-r", "1:1", "-r", "0:1", "--sweep", "ot.weight=0,1",
            "--sweep", "train.mixing=batch,within", "-s", "1", "-s", "2", "-s", "3", "--name",
            "grid", "--json")
    assert r.exit_code == 0, r.output
    added = json.loads(r.stdout)
    assert len(added) == 36 and added[0]["factors"] == {"ot.weight": 0.0, "train.mixing": "batch"}
    with open_store(db) as store:
        stored = store.list_experiments(name="grid")
    assert {(e.ratio, e.seed, e.factors["ot.weight"], e.factors["train.mixing"])
            for e in stored} == {
        (r, s, w, m) for r in ("1:0", "1:1", "0:1") for s in (1, 2, 3) for w in (0.0, 1.0)
        for m in ("batch", "within")}
    listed = run(db, "queue", "list")
    assert "factors" in listed.stdout and "weight=1 mixing=within" in listed.stdout
    listed_json = json.loads(run(db, "queue", "list", "--json").stdout)
    assert listed_json[5]["factors"] == {"ot.weight": 0.0, "train.mixing": "within"}
    shown = run(db, "queue", "show", "36")
    assert "factors ot.weight=1 train.mixing=within" in shown.stdout
    text = run(db, "queue", "add", "-r", "1:1", "--sweep", "ot.weight=0,0.5", "--name", "two")
    assert "ot.weight=0.5" in text.stdout and "2 experiment(s) in sweep 'two'" in text.stdout


@pytest.mark.parametrize("sweep",
                         ["ot.wieght=0,1", "ot.weight=0,x", "train.mixing=batch,sometimes",
                          "ot.weight=1,1.0"])
def test_cli_bad_sweep_one_error_line_nothing_queued(tmp_path: Path, sweep: str) -> None:
    db = tmp_path / "e.db"
    run(db, "queue", "add", "-r", "1:1")
    r = run(db, "queue", "add", "-r", "1:0", "-r", "1:1", "--sweep", "train.lr=1e-5,2e-5",
            "--sweep", sweep)
    assert (r.exit_code == 1 and r.stderr.startswith("error: ")
            and r.stderr.count("\n") == 1), r.output
    assert "Traceback" not in r.output
    with open_store(db) as store:
        assert len(store.list_experiments()) == 1


def test_plain_queue_list_has_no_factor_column(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    run(db, "queue", "add", "-r", "1:1")
    assert "factors" not in run(db, "queue", "list").stdout
