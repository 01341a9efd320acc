"""One owner per vocabulary: metric keys are built and parsed only by engine/metric_keys.py,
status words spelled only in engine/statuses.py; the type checker runs over both packages."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.metric_keys import (
    MACRO,
    LangSettingTable,
    MetricName,
    ParsedKey,
    Setting,
    Split,
    group_unit,
    lang_setting_table,
    lang_unit,
    metric_key,
    pair_key,
    parse_key,
    size_key,
    skipped_key,
)
from engine.statuses import TERMINAL, Status

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("engine", "optical_tui", "benchmarks")
           for p in (ROOT / folder).rglob("*.py")]
STATUS_LITERAL = re.compile(r"""["'](queued|running|done|failed|cancelled)["']""")
KEY_LITERAL = re.compile(
    r"""["'](eval|full|dev|train)/"""                                     # a literal key
    # a key built by formatting
    r"""|f["'][^"'\n]*\}/(mo|cr|mul|macro|group)/"""
    # a key tail
    r"""|/(map|r@1|r@10|mrr@10|ndcg@10|rank_distance|skipped|n_questions|n_candidates)["']""")


def test_no_status_or_metric_key_literal_outside_its_owner() -> None:
    assert len(SOURCES) > 40  # the globs found the code
    offenders = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if path.name != "statuses.py" and STATUS_LITERAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: status literal: {line.strip()}")
            if path.name != "metric_keys.py" and KEY_LITERAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: metric key literal: "
                                 f"{line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_patterns_do_catch_what_they_are_for() -> None:
    for line in ('x == "running"', "k = 'eval/macro/mul/map'", 'f"{prefix}/macro/{s}/map"',
                 'k + "/rank_distance"'):
        assert STATUS_LITERAL.search(line) or KEY_LITERAL.search(line), line


@pytest.mark.parametrize(("key", "parts"), [
    ("eval/mul/hi/map", ParsedKey("eval", "mul", lang_unit("hi"), metric="map")),
    ("full/group/low/cr/r@10", ParsedKey("full", "cr", group_unit("low"), metric="r@10")),
    ("eval/macro/mo/ndcg@10", ParsedKey("eval", "mo", MACRO, metric="ndcg@10")),
    ("eval/cr/ar->en/map", ParsedKey("eval", "cr", pair=("ar", "en"), metric="map")),
    ("dev/cr/ar->en/skipped", ParsedKey("dev", "cr", pair=("ar", "en"), metric="skipped")),
    ("full/n_questions", ParsedKey("full", metric="n_questions")),
    ("train/loss_ot", ParsedKey("train", metric="loss_ot")),
])
def test_keys_round_trip(key: str, parts: ParsedKey) -> None:
    assert parse_key(key) == parts


def test_builders_write_the_documented_scheme() -> None:
    assert metric_key(Split.QUICK, Setting.MUL, lang_unit("hi"),
                      MetricName.MAP) == "eval/mul/hi/map"
    assert metric_key(Split.FULL, Setting.CR, group_unit("low"),
                      MetricName.MAP) == "full/group/low/cr/map"
    assert metric_key(Split.FULL, Setting.MUL, MACRO,
                      MetricName.RANK_DISTANCE) == "full/macro/mul/rank_distance"
    assert pair_key(Split.QUICK, "ar", "en", MetricName.MAP) == "eval/cr/ar->en/map"
    assert skipped_key(Split.QUICK, Setting.CR, "ar", "en") == "eval/cr/ar->en/skipped"
    assert skipped_key(Split.QUICK, Setting.MUL, "ar") == "eval/mul/ar/skipped"
    assert size_key(Split.DEV, "n_candidates") == "dev/n_candidates"
    for junk in ("eval", "nope/mul/hi/map", "eval/xx/hi/map", "eval/mul/hi", "train/a/b"):
        assert parse_key(junk) is None


def test_lang_setting_table_rows_columns_and_rank_distance() -> None:
    values = {metric_key("eval", s, lang_unit(x), "map"): 0.1 * i for i, (s, x) in enumerate(
        (s, x) for s in ("mo", "cr", "mul") for x in ("ar", "en"))}
    values[metric_key("eval", "mul", MACRO, "rank_distance")] = 12.5
    t = lang_setting_table(values.get, "eval", ("ar", "en"), ("mul", "mo"), {"low": ("ar", "hi")},
                           zero_shot=("ar",))
    assert isinstance(t, LangSettingTable)
    assert t.columns == ("Mo mAP", "Mul mAP", "Mul rank dist.")  # always Mo, Cr, Mul order
    assert [r.label for r in t.rows] == ["ar*", "en", "low (ar)", "macro"]
    assert t.rows[0].values == (0.0, values["eval/mul/ar/map"], None)
    assert t.rows[-1].values == (None, None, 12.5)
    # Rank distance as the metric: only Mul has it; the extra column stays.
    r = lang_setting_table(values.get, "eval", ("ar",), ("mo", "mul"), {}, metric="rank_distance")
    assert r.columns == ("Mul rank distance", "Mul rank dist.")


def test_statuses_are_the_stored_strings() -> None:
    assert [s.value for s in Status] == ["queued", "running", "done", "failed", "cancelled"]
    assert Status("done") is Status.DONE and Status.DONE == "done" and Status.DONE.terminal
    assert TERMINAL == {Status.DONE, Status.FAILED,
                        Status.CANCELLED} and not Status.RUNNING.terminal


def test_type_checker_passes() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")
    assert mypy, "mypy is a dev dependency: pip install -e '.[dev]'"
    # config: pyproject
    out = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_type_ignore_names_its_code_and_its_reason() -> None:
    bare = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = re.search(r"#\s*type:\s*ignore(\[[^\]]+\])?(.*)", line)
            if m and not (m.group(1) and m.group(2).strip().lstrip("#").strip()):
                bare.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bare, "a `type: ignore[code]  # reason` is required:\n" + "\n".join(bare)
