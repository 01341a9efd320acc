"""engine.study.core statistics on hand-computed cases, the report built from a temp store, and
every output format parsed back (CSV, JSON) or checked for structure (Markdown, LaTeX, plots)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.config import Config, with_run
from engine.errors import ConfigError, ExperimentNotFound
from engine.metric_keys import MACRO, group_unit
from engine.store import NewExperiment, Store, open_store
from engine.study.core import Exclusion, build_report, describe, paired_difference
from engine.study.formats import render, tables, tex_escape

T_975_DF1 = 12.706204736174698  # Student t 97.5% quantile, 1 degree of freedom (tables)
T_975_DF2 = 4.302652729911275  # … 2 degrees of freedom

LANGS = ("ar", "de", "en", "es", "hi", "vi", "zh")


# --------------------------------------------------------------------------- statistics


def test_describe_three_values() -> None:
    # mean = (.5+.6+.7)/3 = .6; sd = sqrt((.01 + 0 + .01) / 2) = .1
    # 95% CI = .6 ± t(.975, 2) · .1 / √3 = .6 ± 4.302653 · .057735 = .6 ± .248414
    s = describe([0.5, 0.6, 0.7])
    assert s.n == 3
    assert s.mean == pytest.approx(0.6)
    assert s.sd == pytest.approx(0.1)
    assert s.ci_low == pytest.approx(0.6 - 0.248414, abs=1e-6)
    assert s.ci_high == pytest.approx(0.6 + T_975_DF2 * 0.1 / math.sqrt(3))


def test_describe_two_values_and_degenerate_cases() -> None:
    # [.4, .6]: mean .5, sd = sqrt(.02/1) = .141421, se = .1, half-width = 12.7062 · .1
    s = describe([0.4, 0.6])
    assert (s.mean, s.sd) == (pytest.approx(0.5), pytest.approx(math.sqrt(0.02)))
    assert s.ci_high - s.mean == pytest.approx(1.2706204736)
    one = describe([0.3])
    assert one.n == 1 and one.mean == 0.3 and math.isnan(one.sd) and math.isnan(one.ci_low)
    assert describe([]).n == 0 and math.isnan(describe([]).mean)


def test_paired_difference_three_seeds() -> None:
    # diffs by seed: .5-.4 = .1, .6-.55 = .05, .7-.6 = .1 → mean .083333
    # sd = sqrt((.016667² + .033333² + .016667²) / 2) = sqrt(.00083333) = .0288675; se = .0166667
    # t = .083333 / .0166667 = 5.0; df 2: two-sided p = 1 - t/√(2+t²) = 1 - 5/√27 = .0377504
    d = paired_difference({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.4, 1: 0.55, 2: 0.6})
    assert d.n == 3 and d.seeds == (0, 1, 2)
    assert d.mean == pytest.approx(0.25 / 3)
    assert d.sd == pytest.approx(0.0288675, abs=1e-7)
    assert d.t == pytest.approx(5.0)
    assert d.p_value == pytest.approx(1 - 5 / math.sqrt(27))
    assert d.ci_low == pytest.approx(0.25 / 3 - T_975_DF2 * 0.0166667, abs=1e-6)


def test_paired_difference_pairs_by_seed_only() -> None:
    # Seed 7 exists only in a and seed 9 only in b: left out. Pairs: (.5-.4, .7-.5) = (.1, .2)
    # mean .15, sd = sqrt((.05² + .05²)/1) = .0707107, se = .05, t = 3, df 1:
    # p = 1 - 2·atan(3)/π = .2048328; CI = .15 ± 12.7062 · .05 = .15 ± .6353102
    d = paired_difference({0: 0.5, 1: 0.7, 7: 0.9}, {0: 0.4, 1: 0.5, 9: 0.1})
    assert d.seeds == (0, 1) and d.n == 2
    assert d.mean == pytest.approx(0.15)
    assert d.t == pytest.approx(3.0)
    assert d.p_value == pytest.approx(1 - 2 * math.atan(3) / math.pi)
    assert d.ci_high == pytest.approx(0.15 + T_975_DF1 * 0.05)
    same = paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})  # constant +.1: no spread
    assert same.p_value == 0.0 and same.sd == pytest.approx(0.0)
    assert math.isnan(paired_difference({0: 1.0}, {0: 0.5}).p_value)  # one pair: no test


# --------------------------------------------------------------------------- a hand-built sweep


def value(ratio: str, seed: int, unit: str) -> float:
    """Hand-chosen run values: base per ratio + seed offset + unit offset."""
    base = {"1:0": 0.40, "1:1": 0.50, "0:1": 0.46}[ratio]
    offsets = {"high": 0.05, "low": -0.05, "macro": 0.0,
               **{lang: 0.001 * i for i, lang in enumerate(LANGS)}}
    return base + 0.01 * seed + offsets[unit]


def _keys(prefix: str, ratio: str, seed: int, shift: float = 0.0) -> dict[str, float]:
    out = {f"{prefix}/n_questions": 700.0, f"{prefix}/n_candidates": 3000.0}
    for setting in ("mo", "cr", "mul"):
        out[f"{prefix}/macro/{setting}/map"] = value(ratio, seed, "macro") + shift
        for g in ("high", "low"):
            out[f"{prefix}/group/{g}/{setting}/map"] = value(ratio, seed, g) + shift
        for lang in LANGS:
            out[f"{prefix}/{setting}/{lang}/map"] = value(ratio, seed, lang) + shift
    for unit in ("macro", "group/high", "group/low"):
        out[f"{prefix}/{unit}/mul/rank_distance"] = 100.0 * (1 + seed) + (10 if ratio == "1:0"
                                                                          else 0)
    return out


def add_run(store: Store, ratio: str, seed: int, *, name: str = "sweep", full: bool = False,
            status: str = "done", subset: int = 25) -> int:
    cfg = with_run(Config().replace(train={"steps": 10}, eval={"subset_questions": subset}), ratio,
                   seed)
    # Queued leftovers get a lower priority so the next claim takes the run being built.
    (e,) = store.add_experiments([NewExperiment(name, ratio, seed, cfg.to_dict(),
                                                priority=-1 if status == "queued" else 0)])
    if status == "queued":
        return e.id
    claimed = store.claim_next("w1", "cpu")
    assert claimed is not None and claimed.id == e.id
    # step 0: ignored
    points = [(k, 0, v - 0.3, 1.0) for k, v in _keys("eval", ratio, seed).items()]
    points += [(k, 10, v, 2.0) for k, v in _keys("eval", ratio, seed, shift=-0.1).items()]
    if full:
        points += [(k, 10, v, 3.0) for k, v in _keys("full", ratio, seed).items()]
    store.flush(claimed.lease, points, step=10, total=10)
    if status != "running":
        store.finish(claimed.lease, status)
    return e.id


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "experiments.db")
    for ratio in ("1:1", "0:1", "1:0"):
        for seed in (0, 1, 2):
            add_run(s, ratio, seed, full=True)
    add_run(s, "1:0", 3, status="failed")
    add_run(s, "0:1", 4, status="queued")
    yield s
    s.close()


def test_build_report_full_benchmark(store: Store) -> None:
    rep = build_report(store, sweep="sweep")
    assert rep.source == "full" and rep.ratios == ("1:0", "1:1", "0:1")
    assert rep.zero_shot == ("ar", "hi", "vi")  # default train_langs en, de, es, zh
    assert rep.groups == {"high": ("en", "de", "es", "vi", "zh"), "low": ("ar", "hi")}
    # 1:1 high: .55, .56, .57 → mean .56, sd .01
    s = rep.summary[((), "1:1", group_unit("high"))]
    assert (s.n, s.mean, s.sd) == (3, pytest.approx(0.56), pytest.approx(0.01))
    # 1:0 − 1:1 is −.10 for every seed: mean −.1, no spread, p = 0
    d = rep.differences[((), "1:0", MACRO)]
    assert d.n == 3 and d.mean == pytest.approx(-0.1) and d.p_value == 0.0
    assert ((), "1:1", MACRO) not in rep.differences
    # rank distance 1:0: 110, 210, 310 → mean 210, sd 100
    assert rep.rank_distance[((), "1:0", MACRO)].mean == pytest.approx(210.0)
    assert rep.rank_distance[((), "1:0", MACRO)].sd == pytest.approx(100.0)
    assert rep.counts[((), "1:0")] == {"done": 3,
                                       "failed": 1} and rep.counts[((), "0:1")] == {"done": 3,
                                                                                    "queued": 1}
    assert rep.setup["steps"] == "10" and "full MLQA-R" in rep.setup["scored on"]
    assert rep.notes == () and not rep.subset
    assert rep.before == {}  # full/… has no step-0 point to compare with


def test_report_falls_back_to_quick_subset_and_says_so(store: Store) -> None:
    add_run(store, "1:1", 5, full=False)  # one done run without a full-benchmark result
    rep = build_report(store, sweep="sweep")
    assert rep.source == "eval"
    assert rep.subset and any("quick-curve" in n for n in rep.notes)
    assert "quick subset (25 questions per language" in rep.setup["scored on"]
    # eval values at the last step (10), not step 0: 1:1 seed 5 macro = .5 + .05 − .1
    run = next(r for r in rep.runs if r.seed == 5)
    assert run.step == 10 and run.values[MACRO] == pytest.approx(0.45)
    assert "QUICK SUBSET" in render(rep, "md")
    # Before training = the step-0 points of the same runs: macro (.5·4 + .46·3 + .40·3 + .01·14)/10
    # − .3
    assert rep.before[((), MACRO)].n == 10 and rep.before[((), MACRO)].mean == pytest.approx(0.172)
    # high, low, macro
    assert "| before training | 10 | 0.222 | 0.122 | 0.172 |" in render(rep, "md")
    assert any(r["section"] == "before_training"
               for r in csv.DictReader(io.StringIO(render(rep, "csv"))))
    assert build_report(store, sweep="sweep", source="full").summary[((), "1:1", MACRO)].n == 3
    # Curves on the whole benchmark (eval.subset_questions = 0, as configs/paper.toml): not a
    # subset.
    add_run(store, "1:1", 0, name="curves-full", subset=0)
    whole = build_report(store, sweep="curves-full")
    assert (whole.source == "eval" and not whole.subset
            and "subset_questions = 0" in whole.setup["scored on"])
    assert "QUICK SUBSET" not in render(whole, "md")


def test_duplicates_selection_and_errors(store: Store, tmp_path: Path) -> None:
    newer = add_run(store, "1:1", 0, full=True)  # same ratio and seed again: supersedes the first
    rep = build_report(store, sweep="sweep", setting="mo", metric="map")
    assert rep.summary[((), "1:1", MACRO)].n == 3
    (old,) = [x for x in rep.excluded if x.reason == Exclusion.SUPERSEDED]
    assert (old.ratio, old.seed, old.detail) == ("1:1", 0, f"by #{newer}")
    expected = f"Not counted: superseded #{old.experiment_id} (1:1 seed 0, by #{newer}); failed"
    assert expected in render(rep, "md")
    sub = build_report(store, ids=[1, 2])  # two 1:1 runs: no baseline partner, no differences
    assert sub.ratios == ("1:1",) and not sub.differences
    assert build_report(store).selection.startswith("sweep 'sweep'")  # default: the newest sweep
    with pytest.raises(ConfigError):
        build_report(store, metric="accuracy")
    with pytest.raises(ConfigError):
        build_report(store, sweep="sweep", ids=[1])
    with pytest.raises(ExperimentNotFound, match="sweeps: 'sweep'"):
        build_report(store, sweep="nope")
    add_run(store, "1:1", 0, name="pending", status="queued")
    with pytest.raises(ExperimentNotFound, match="no done experiments"):
        build_report(store, sweep="pending")


# --------------------------------------------------------------------------- formats


def test_csv_parses_back(store: Store) -> None:
    rep = build_report(store, sweep="sweep")
    rows = list(csv.DictReader(io.StringIO(render(rep, "csv"))))
    summary = {(r["ratio"], r["unit"], r["name"]): r for r in rows if r["section"] == "summary"}
    assert len(summary) == 3 * (2 + 1 + 7)
    row = summary[("1:1", "group", "high")]
    assert float(row["mean"]) == pytest.approx(0.56) and int(row["n"]) == 3
    assert summary[("1:1", "lang", "hi")]["zero_shot"] == "True"
    diff = next(r for r in rows if r["section"] == "differences" and r["ratio"] == "0:1"
                and r["name"] == "all")
    assert float(diff["mean"]) == pytest.approx(-0.04) and diff["baseline"] == "1:1"
    meta = {r["name"]: r["note"] for r in rows if r["section"] == "meta"}
    assert meta["group low"] == "ar hi" and meta["source"] == "full"


def test_json_parses_back(store: Store) -> None:
    rep = build_report(store, sweep="sweep")
    data = json.loads(render(rep, "json"))
    assert data["ratios"] == ["1:0", "1:1", "0:1"] and data["source"] == "full"
    low = next(r for r in data["summary"] if r["ratio"] == "0:1" and r["name"] == "low")
    assert low["mean"] == pytest.approx(0.42) and low["ci_low"] < low["mean"] < low["ci_high"]
    assert len(data["runs"]) == 9 and data["zero_shot"] == ["ar", "hi", "vi"]
    one = build_report(store, ids=[1])  # n = 1: sd and CI are null, not NaN
    assert json.loads(render(one, "json"))["summary"][0]["sd"] is None


def test_markdown_tables_are_well_formed(store: Store) -> None:
    rep = build_report(store, sweep="sweep")
    text = render(rep, "md")
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.lstrip().startswith("|")]
    assert len(blocks) == len(tables(rep)) == 4
    for block in blocks:
        lines = block.strip().splitlines()
        widths = {line.count("|") for line in lines}
        assert len(widths) == 1, block  # every row has the header's number of cells
        assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1])
    assert "| 1:0 | 3 | 0.460 ± 0.010 [" in text  # high: .40 + .05 + mean seed offset .01
    assert "groups" in text.lower() and "ar*" in text


def test_latex_is_balanced(store: Store) -> None:
    rep = build_report(store, sweep="sweep")
    text = render(rep, "tex")
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 4
    body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    stripped = body.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for ch in stripped:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0 and stripped.count("$") % 2 == 0
    for spec, rows in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body,
                                 re.DOTALL):
        for line in rows.strip().splitlines():
            if line.endswith(r"\\"):
                assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line
    assert tex_escape("a_b & 50% ± Δ") == r"a\_b \& 50\% $\pm$ $\Delta$"


def test_plot_files(store: Store, tmp_path: Path) -> None:
    from engine.study.plot import save_plot

    rep = build_report(store, sweep="sweep")
    png = save_plot(rep, tmp_path / "study.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in save_plot(build_report(store, setting="mo"),
                               tmp_path / "study.svg").read_text()
    with pytest.raises(ConfigError):
        save_plot(rep, tmp_path / "study.txt")


def test_cli_report(store: Store, tmp_path: Path) -> None:
    from optical_tui.cli import app

    db = str(store.path)
    runner = CliRunner()
    res = runner.invoke(app, ["--db", db, "report", "--sweep", "sweep", "--format", "json",
                              "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["metric"] == "map" and (tmp_path / "p.png").exists()
    res = runner.invoke(app, ["--db", db, "report", "--setting", "cr"])
    assert res.exit_code == 0 and "Δ mAP vs 1:1" in res.stdout and "Cr (X→Y) mAP" in res.stdout
    # not recorded in this store
    res = runner.invoke(app, ["--db", db, "report", "--metric", "r@10"])
    assert res.exit_code == 1 and "no done run has full/… values for mul r@10" in res.stderr
    res = runner.invoke(app, ["--db", db, "report", "--format", "md", "-o", str(tmp_path / "r.md")])
    assert res.exit_code == 0 and (tmp_path / "r.md").read_text().startswith("### MLQA-R")
    bad = runner.invoke(app, ["--db", db, "report", "--metric", "acc"])
    assert (bad.exit_code == 1
            and bad.stderr.strip().startswith("error: Invalid value for '--metric'"))
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "'map', 'r@1'" in bad.stderr  # the enum's choices, also listed by --help
