"""`optical compare` (engine/study/compare.py), `report --group-by` (engine/study/grouping.py) and
tags and notes from the command line, on a hand-built store whose values are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.errors import ConfigError, ExperimentNotFound
from engine.metric_keys import MACRO
from engine.store import Store, open_store
from engine.study.compare import load_comparison
from engine.study.core import build_report, describe
from engine.study.grouping import group_study, parse_group_keys
from optical_tui.cli import app
from tests.engine.study.test_report import LANGS, add_run, value

runner = CliRunner()


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "experiments.db")
    for ratio in ("1:1", "0:1"):
        for seed in (0, 1, 2):
            add_run(s, ratio, seed, full=True)  # ids 1-3: 1:1, ids 4-6: 0:1
    yield s
    s.close()


def cli(store: Store, *args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["--db", str(store.path), *args])  # type: ignore[attr-defined]
    return res.exit_code, res.stdout, res.stderr


def test_compare_shows_the_differing_keys_and_deltas_from_the_first_run(store: Store) -> None:
    c = load_comparison(store, [4, 1, 2])
    assert c.source == "full" and [e.id for e in c.runs] == [4, 1, 2]
    assert c.differing == {"train.ratio": ("0:1", "1:1", "1:1"), "train.seed": ("0", "0", "1")}
    assert c.same > 30
    macro = next(r for r in c.final if r.label == "Mul mAP macro")
    expected = [value("0:1", 0, "macro"), value("1:1", 0, "macro"), value("1:1", 1, "macro")]
    assert macro.values == pytest.approx(expected)
    assert macro.deltas == pytest.approx(
        [0.0, expected[1] - expected[0], expected[2] - expected[0]]
    )
    assert [r.label.rstrip("*") for r in c.languages] == list(LANGS)
    ar = c.languages[0]
    assert ar.label == "ar*" and ar.values[1] == pytest.approx(value("1:1", 0, "ar"))


def test_compare_falls_back_to_the_quick_subset_when_a_run_lacks_the_full_benchmark(
    store: Store,
) -> None:
    quick = add_run(store, "1:0", 0, full=False)
    c = load_comparison(store, [1, quick])
    macro = next(r for r in c.final if r.label == "Mul mAP macro")
    # eval/… at the last step is the value minus 0.1 (see add_run); step 0 is never used.
    assert c.source == "eval" and macro.values == pytest.approx(
        [value("1:1", 0, "macro") - 0.1, value("1:0", 0, "macro") - 0.1]
    )


def test_compare_refuses_what_it_cannot_compare(store: Store) -> None:
    for ids, error in (([1], ConfigError), ([1, 1], ConfigError), ([1, 99], ExperimentNotFound)):
        with pytest.raises(error):
            load_comparison(store, ids)
    code, _, err = cli(store, "compare", "1", "99")
    assert code == 1 and err.strip() == "error: no experiment with id 99"


def test_cli_compare_json_and_table(store: Store) -> None:
    store.retag([1], add=("ref",))
    store.annotate(1, "the baseline")
    code, out, _ = cli(store, "compare", "1", "4", "--json")
    assert code == 0
    d = json.loads(out)
    assert (
        d["reference"] == 1
        and d["runs"][0]["tags"] == ["ref"]
        and d["runs"][0]["note"] == "the baseline"
    )
    assert d["config_diff"] == {"train.ratio": ["1:1", "0:1"]}
    row = next(r for r in d["final"] if r["label"] == "Mul mAP macro")
    assert row["deltas"][1] == pytest.approx(value("0:1", 0, "macro") - value("1:1", 0, "macro"))
    assert len(d["languages"]) == len(LANGS)
    code, out, _ = cli(store, "compare", "1", "4")
    assert code == 0 and "train.ratio" in out and "(-0.0400)" in out and "the baseline" in out


def test_group_by_pools_the_counted_runs_per_level(store: Store) -> None:
    store.retag([1, 4], add=("picked",))
    study = build_report(store)
    grouping = group_study(study, store.list_experiments(), parse_group_keys("tags"))
    assert [g.levels for g in grouping.groups] == [("-",), ("picked",)]
    picked = grouping.groups[1]
    want = describe([value("1:1", 0, "macro"), value("0:1", 0, "macro")])
    assert picked.ids == (1, 4) and picked.stats[MACRO].n == 2
    assert picked.stats[MACRO].mean == pytest.approx(want.mean)
    assert picked.stats[MACRO].ci_high == pytest.approx(want.ci_high)
    by_ratio = group_study(study, store.list_experiments(), ("ratio",))
    assert [(g.levels, g.stats[MACRO].n) for g in by_ratio.groups] == [(("1:1",), 3), (("0:1",), 3)]


def test_cli_report_group_by_json_and_errors(store: Store) -> None:
    code, out, _ = cli(store, "report", "--group-by", "train.ratio,seed", "--json")
    assert code == 0
    d = json.loads(out)
    groups = d["group_by"]["groups"]
    assert d["group_by"]["keys"] == ["train.ratio", "seed"] and len(groups) == 6
    assert all(
        g["values"]["macro:all"]["n"] == 1 and g["values"]["macro:all"]["sd"] is None
        for g in groups
    )
    code, out, _ = cli(store, "report", "--group-by", "train.ratio")
    assert code == 0 and "by train.ratio" in out and "± " in out
    for args, message in (
        (["-g", "lr"], "did you mean train.lr?"),
        (["-g", "ratio,ratio"], "given twice"),
        (["-g", "ratio", "-f", "csv"], "table, md or json"),
        (["--json", "-f", "md"], "disagree"),
    ):
        code, _, err = cli(store, "report", *args)
        assert (
            code == 1
            and err.startswith("error: ")
            and message in err
            and len(err.splitlines()) == 1
        )


def test_report_json_is_format_json(store: Store) -> None:
    a, b = cli(store, "report", "--json"), cli(store, "report", "--format", "json")
    assert a[0] == b[0] == 0 and json.loads(a[1]) == json.loads(b[1])


def test_tags_and_notes_from_the_command_line(store: Store) -> None:
    code, out, _ = cli(
        store, "queue", "add", "-r", "1:3", "-s", "7", "--tag", "new,draft", "--json"
    )
    assert code == 0 and json.loads(out)[0]["tags"] == ["draft", "new"]
    new_id = json.loads(out)[0]["id"]
    # "-draft" is a tag to remove, not short options (-d -r -a -f -t); nor is -h help here.
    code, out, _ = cli(store, "tag", str(new_id), "1", "+keep", "-draft", "-h", "--json")
    assert code == 0 and json.loads(out) == [
        {"id": 1, "tags": ["keep"]},
        {"id": new_id, "tags": ["keep", "new"]},
    ]
    code, out, _ = cli(store, "queue", "list", "--tag", "keep", "--tag", "new", "--json")
    assert [e["id"] for e in json.loads(out)] == [new_id]
    code, out, _ = cli(store, "note", "1", "diverged at 3k; lr 3e-5 too high")
    assert code == 0 and store.get(1).note == "diverged at 3k; lr 3e-5 too high"
    assert "note: diverged at 3k" in cli(store, "queue", "show", "1")[1]
    assert json.loads(cli(store, "note", "1", "--json")[1]) == {"id": 1, "note": store.get(1).note}
    code, out, _ = cli(store, "report", "--tag", "keep", "--json")
    assert code == 0 and [(r["experiment_id"], r["tags"]) for r in json.loads(out)["runs"]] == [
        (1, ["keep"])
    ]
    assert "Tags: keep #1." in cli(store, "report", "--sweep", "sweep")[1]
    code, out, _ = cli(store, "queue", "list", "--search", "LR 3E-5", "--json")
    assert code == 0 and [e["id"] for e in json.loads(out)] == [1]
    assert "matching '[x]'" in cli(store, "queue", "list", "--search", "[x]")[1]
    for args in (
        ["tag", "1", "+bad tag"],
        ["tag", "+x"],
        ["tag", "1", "+x", "-x"],
        ["tag", "99", "+x"],
        ["queue", "list", "--tag", "a b"],
        ["report", "--tag", "nobody"],
    ):
        code, _, err = cli(store, *args)
        assert code == 1 and err.startswith("error: ") and len(err.splitlines()) == 1, (args, err)
    assert store.get(1).tags == ("keep",)


def test_compare_json_has_no_nan(store: Store) -> None:
    code, out, _ = cli(store, "compare", "1", "2", "3", "--json")
    assert code == 0 and all(
        v is None or math.isfinite(v) for r in json.loads(out)["final"] for v in r["values"]
    )
